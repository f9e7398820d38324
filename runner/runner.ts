/**
 * The runner: runs inside the debug pod, next to the helper, started by the
 * pod's bootstrap once the client's bundle has been unpacked into the working
 * directory. It must stay dependency-free (node: built-ins only): it travels
 * to the node as one file.
 *
 * Its one job beyond starting the helper is to never leave probes behind:
 * the helper is stopped the moment the client's stdin ends (the client
 * stopped, or its attach stream closed: stdinOnce), when the client's
 * heartbeats stop (the network dropped), or on SIGTERM (the pod is deleted).
 * The helper's stdout is forwarded byte for byte; the runner's own messages
 * go to stderr.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** request.json, written by the client (src/kube/bundle.ts). */
export interface RunnerRequest {
  /** The helper's argv, exactly helperArgs(request). */
  args: string[];
  /** --pod-netns-only: container IDs of the target pod; the runner adds --filter-netns. */
  netnsContainerIds?: string[];
  /** Stop the helper when the client has been silent this long. */
  heartbeatTimeoutSec: number;
  /**
   * `kubectl pwru doctor`: instead of one trace, run the helper once per argv
   * here (all at once, each stopping itself) and write one JSON line per run
   * and one of the node's facts, then exit.
   */
  checks?: string[][];
}

/** One line of doctor output per helper run: its record stream, whole, in base64. */
export interface CheckResult {
  check: number;
  exitCode: number | null;
  stream: string;
  stderr: string;
}

/** The node's facts the helper does not report. */
export interface NodeFacts {
  facts: { btf: boolean; lockdown?: string; unprivilegedBpfDisabled?: string; kprobesEnabled?: string };
}

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Doctor mode: every check at once; a client that goes away stops them. */
function runChecks(checks: string[][]): void {
  const facts: NodeFacts = {
    facts: {
      btf: existsSync('/sys/kernel/btf/vmlinux'),
      lockdown: readTrimmed('/sys/kernel/security/lockdown'),
      unprivilegedBpfDisabled: readTrimmed('/proc/sys/kernel/unprivileged_bpf_disabled'),
      kprobesEnabled: readTrimmed('/sys/kernel/debug/kprobes/enabled'),
    },
  };
  process.stdout.write(`${JSON.stringify(facts)}\n`);
  const helpers = checks.map((args, check) => {
    const helper = spawn('./pwru-helper', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    helper.stdout?.on('data', (c: Buffer) => out.push(c));
    helper.stderr?.on('data', (c: Buffer) => err.push(c));
    helper.stdin?.on('error', () => {});
    return new Promise<void>((resolve) => {
      helper.on('error', (e) => err.push(Buffer.from(e.message)));
      helper.on('close', (code) => {
        const result: CheckResult = {
          check,
          exitCode: code,
          stream: Buffer.concat(out).toString('base64'),
          stderr: Buffer.concat(err).toString('utf8').slice(-2000),
        };
        process.stdout.write(`${JSON.stringify(result)}\n`);
        resolve();
      });
      const stop = () => helper.kill('SIGTERM');
      process.stdin.once('end', stop);
      process.on('SIGTERM', stop);
    });
  });
  process.stdin.resume();
  void Promise.all(helpers).then(() => process.stdin.destroy());
}

/** How long a stopped helper gets to flush its last records before SIGKILL. */
const STOP_GRACE_MS = 5000;

function log(message: string): void {
  process.stderr.write(`pwru runner: ${message}\n`);
}

/** "containerd://abc…" → "abc…": the form that appears in /proc/PID/cgroup. */
export function bareContainerId(id: string): string {
  const i = id.indexOf('://');
  return i >= 0 ? id.slice(i + 3) : id;
}

/**
 * Finds the network namespace inode of a container: a process whose cgroup
 * path names the container ID (every runtime puts the ID in the cgroup path)
 * lives in the container, and its /proc/PID/ns/net is the pod's netns.
 */
export function netnsOfContainer(containerId: string, proc = '/proc'): number | undefined {
  const id = bareContainerId(containerId);
  if (!/^[0-9a-zA-Z_.-]{8,}$/.test(id)) return undefined;
  for (const entry of readdirSync(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    let cgroup: string;
    try {
      cgroup = readFileSync(join(proc, entry, 'cgroup'), 'utf8');
    } catch {
      continue; // the process exited meanwhile
    }
    if (!cgroup.includes(id)) continue;
    try {
      return statSync(join(proc, entry, 'ns', 'net')).ino;
    } catch {}
  }
  return undefined;
}

function resolveNetns(ids: string[]): number {
  for (const id of ids) {
    const ino = netnsOfContainer(id);
    if (ino !== undefined) return ino;
  }
  throw new Error(
    `no process of container ${ids.map(bareContainerId).join(', ')} found in /proc: is the pod still running on this node?`,
  );
}

export function main(leftover: Buffer): void {
  const req = JSON.parse(readFileSync('request.json', 'utf8')) as RunnerRequest;
  if (req.checks) {
    runChecks(req.checks);
    return;
  }
  let args = req.args;
  if (req.netnsContainerIds && req.netnsContainerIds.length > 0) {
    try {
      args = ['--filter-netns', String(resolveNetns(req.netnsContainerIds)), ...args];
    } catch (err) {
      log((err as Error).message);
      process.exit(2);
    }
  }

  const helper: ChildProcess = spawn('./pwru-helper', args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    log(`stopping the helper: ${why}`);
    // The helper stops on stdin EOF and on SIGTERM; either makes it detach and
    // write its final records. SIGKILL is the backstop: the kernel detaches
    // every probe when the helper's file descriptors close.
    helper.stdin?.end();
    helper.kill('SIGTERM');
    killTimer = setTimeout(() => helper.kill('SIGKILL'), STOP_GRACE_MS);
    killTimer.unref();
  };

  helper.stdin?.on('error', () => {});
  helper.stdout?.on('data', (chunk: Buffer) => {
    // Backpressure: a slow client slows the helper, whose ring buffer then
    // reports lost events instead of growing without bound.
    if (!process.stdout.write(chunk)) {
      helper.stdout?.pause();
      process.stdout.once('drain', () => helper.stdout?.resume());
    }
  });
  helper.on('error', (err) => {
    log(`cannot start the helper: ${err.message}`);
    process.exitCode = 2;
    finish();
  });
  helper.on('close', (code, signal) => {
    if (killTimer) clearTimeout(killTimer);
    if (signal && !stopping) log(`the helper died of ${signal}`);
    process.exitCode = code ?? (stopping ? 0 : 1);
    finish();
  });

  let lastHeard = Date.now();
  let lastTick = Date.now();
  const watchdog = setInterval(() => {
    const now = Date.now();
    // This process itself was stalled (a starved node): the heartbeats that came meanwhile are still
    // unread in the pipe, and timers run before it is read. Its own stall is not the client's silence.
    if (now - lastTick > 2000) lastHeard = now;
    lastTick = now;
    if (now - lastHeard > req.heartbeatTimeoutSec * 1000) {
      stop(`no heartbeat from the client for ${req.heartbeatTimeoutSec} s`);
    }
  }, 1000);

  const onEnd = () => stop('the client closed the stream');
  process.stdin.on('data', () => {
    lastHeard = Date.now();
  });
  process.stdin.on('end', onEnd);
  process.stdin.on('close', onEnd);
  process.stdin.on('error', onEnd);
  process.stdin.resume();
  if (leftover.length > 0) lastHeard = Date.now();
  process.on('SIGTERM', () => stop('SIGTERM (the pod is being deleted)'));
  process.on('SIGINT', () => stop('SIGINT'));

  let finished = false;
  function finish(): void {
    if (finished) return;
    finished = true;
    clearInterval(watchdog);
    process.stdin.off('end', onEnd);
    process.stdin.off('close', onEnd);
    process.stdin.destroy();
    // Let stdout drain, then leave with the helper's exit code.
  }
}
