/**
 * The runner: runs inside the debug pod, next to the helper, started by the
 * pod's bootstrap once the client's bundle has been unpacked into the working
 * directory. It must stay dependency-free (node: built-ins only): it travels
 * to the node as one file.
 *
 * Its one job beyond starting the helper is to never leave probes behind,
 * while letting a client whose API connection dropped come back: the helper
 * is stopped when the client says `stop`, when its stdin ends, when the
 * client has been silent for the grace (clientGraceSec: its acknowledgements
 * are its heartbeat), or on SIGTERM (the pod is deleted). The helper's stdout
 * is forwarded byte for byte (compressed by the helper when the client asks), and what the
 * client has not acknowledged is kept (at most REPLAY_WINDOW; reading the
 * helper pauses beyond it, and the kernel counts what it cannot keep as lost),
 * so that a client that attaches again gets the stream from its last byte on.
 * The runner's own messages go to stderr.
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
  /** Stop the helper when the client has been silent this long (and, after the helper ended, exit). */
  clientGraceSec: number;
  /**
   * The helper's stream compressed (raw deflate, flushed at most 10 ms after what it holds was written): every
   * byte costs the container runtime, the kubelet and the API server, and events compress several times. The
   * helper compresses it (its --deflate, added here), this process forwards the bytes; offsets (ack, resume)
   * count the compressed bytes.
   */
  deflate?: boolean;
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

/**
 * What the client says on stdin after the bundle, one message a line
 * (src/kube/runner-link.ts sends them; docs/kubernetes.md, "Reconnecting"):
 *   ack N            the client has the first N bytes of the stream; also its heartbeat
 *   resume N MARKER  a new attach: write MARKER (hex), then the stream from byte N on
 *   stop             stop the helper; its last records still go out
 */
export const CONTROL = { ack: 'ack', resume: 'resume', stop: 'stop' } as const;

/** Output the client has not acknowledged is kept for a reconnect; reading the helper pauses beyond this. */
export const REPLAY_WINDOW = 4 * 1024 * 1024;

/** Bytes read from the helper between two collections of the young generation (see Collector). */
const YOUNG_EVERY = 2 * 1024 * 1024;

/**
 * Node gives each read of the helper's pipe a buffer of its own,
 * freed only when V8 collects the object that holds it. The runner makes so few objects that V8 seldom
 * collects (it waits for 64 MiB of such buffers), and musl's malloc keeps what it once held: a flood
 * took the runner from 47 to 83 MiB. So it collects every few MiB itself (the pod's node runs with
 * --expose-gc; without it, nothing happens): the young generation after YOUNG_EVERY bytes read, all of
 * it after REPLAY_WINDOW bytes sent (what the client acknowledged was old by then). Each costs well
 * under a millisecond on this small heap.
 */
export class Collector {
  private read = 0;
  private sent = 0;
  constructor(private readonly gc = (globalThis as { gc?: (o: { type: 'minor' | 'major' }) => void }).gc) {}

  /** Bytes read from the helper. */
  readBytes(n: number): void {
    this.read += n;
    if (this.read < YOUNG_EVERY) return;
    this.read = 0;
    this.gc?.({ type: 'minor' });
  }

  /** Everything (or the young generation), now. */
  all(type: 'minor' | 'major' = 'major'): void {
    this.read = 0;
    if (type === 'major') this.sent = 0;
    this.gc?.({ type });
  }

  /** Bytes sent to the client (and kept until acknowledged). */
  sentBytes(n: number): void {
    this.sent += n;
    if (this.sent >= REPLAY_WINDOW) this.all();
  }
}

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Doctor mode: every check at once; a client that goes away stops them. */
function runChecks(checks: string[][], leftover: Buffer): void {
  const facts: NodeFacts = {
    facts: {
      btf: existsSync('/sys/kernel/btf/vmlinux'),
      lockdown: readTrimmed('/sys/kernel/security/lockdown'),
      unprivilegedBpfDisabled: readTrimmed('/proc/sys/kernel/unprivileged_bpf_disabled'),
      kprobesEnabled: readTrimmed('/sys/kernel/debug/kprobes/enabled'),
    },
  };
  process.stdout.write(`${JSON.stringify(facts)}\n`);
  const stoppers: (() => void)[] = [];
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
      stoppers.push(stop);
    });
  });
  readControl(leftover, ([word]) => {
    if (word === CONTROL.stop) for (const stop of stoppers) stop();
  });
  process.stdin.resume();
  void Promise.all(helpers).then(() => process.stdin.destroy());
}

/**
 * After the stop, a helper that writes nothing for this long while it is read is killed (SIGKILL: the kernel
 * detaches its probes): it acts on a stop within 20 ms and writes its last records while it has any. Its
 * silence while reading it pauses (the client is behind) is ours, not its.
 */
const STOP_SILENCE_MS = 5000;
/**
 * The longest a stop may take: the backlog of a flood the path to the client carries slower than the helper
 * wrote it (the pipe, what is kept for the client, the API server's and the client's buffers) drains for up
 * to this long, the helper's last records (final counts, END) last. The client waits as long for them before
 * it deletes the pod (src/kube/session.ts); here the helper is killed when it is still writing by then.
 */
export const STOP_LIMIT_MS = 30_000;
/** After SIGTERM (the pod is being deleted), how long the client may still take the last bytes (inside the 10 s of grace a second Ctrl-C grants). */
const SIGNAL_WAIT_MS = 7000;

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

/** The client's control lines, from the bytes after the bundle on. */
function readControl(leftover: Buffer, onLine: (words: string[]) => void): void {
  let rest = '';
  const take = (text: string) => {
    rest += text;
    for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n')) {
      const line = rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
      if (line) onLine(line.split(/\s+/));
    }
    if (rest.length > 4096) rest = ''; // not ours: never a line this long
  };
  process.stdin.on('data', (c: Buffer) => take(c.toString('latin1')));
  take(leftover.toString('latin1'));
}

/** The stream from the client's last acknowledged byte on: what a reconnecting client is sent again. */
export class ReplayBuffer {
  /** Bytes of the stream so far. */
  written = 0;
  /** Bytes the client said it has. */
  acked = 0;
  private chunks: Buffer[] = [];
  /** Stream offset of chunks[0]. */
  private from = 0;

  add(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.written += chunk.length;
  }

  get unacked(): number {
    return this.written - this.acked;
  }

  ack(n: number): void {
    if (!Number.isFinite(n)) return;
    this.acked = Math.min(Math.max(n, this.acked), this.written);
    while (this.chunks.length > 0 && this.from + this.chunks[0].length <= this.acked) {
      this.from += this.chunks[0].length;
      this.chunks.shift();
    }
  }

  /** The stream from byte n on (n no earlier than the last acknowledgement). */
  since(n: number): Buffer[] {
    const out: Buffer[] = [];
    let off = this.from;
    for (const c of this.chunks) {
      const end = off + c.length;
      if (end > n) out.push(n > off ? c.subarray(n - off) : c);
      off = end;
    }
    return out;
  }
}

export function main(leftover: Buffer): void {
  const req = JSON.parse(readFileSync('request.json', 'utf8')) as RunnerRequest;
  if (req.checks) {
    runChecks(req.checks, leftover);
    return;
  }
  let args = req.deflate ? ['--deflate', ...req.args] : req.args;
  if (req.netnsContainerIds && req.netnsContainerIds.length > 0) {
    try {
      args = ['--filter-netns', String(resolveNetns(req.netnsContainerIds)), ...args];
    } catch (err) {
      log((err as Error).message);
      process.exit(2);
    }
  }

  const helper: ChildProcess = spawn('./pwru-helper', args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const replay = new ReplayBuffer();
  const graceMs = req.clientGraceSec * 1000;
  let stopping = false;
  let helperDone = false;
  /** Nobody will take the last bytes (stdin ended), or nobody has time to (the pod is being deleted). */
  let noWait = false;
  let killTimer: NodeJS.Timeout | undefined;
  /** When the helper last wrote, or reading it resumed. */
  let lastOut = Date.now();
  const stop = (why: string) => {
    if (stopping || helperDone) return;
    stopping = true;
    log(`stopping the helper: ${why}`);
    // One notice, stdin's EOF: the helper writes what fired before the stop, its final records and END, then
    // detaches. A second notice (SIGTERM, hurry()) would make it give up waiting for its reader, so a backlog's
    // last lines and final counts would not wait for the client. SIGKILL is the backstop: the kernel detaches
    // every probe when the helper's file descriptors close.
    helper.stdin?.end();
    flow();
    const since = Date.now();
    killTimer = setInterval(() => {
      const now = Date.now();
      if (!reading()) lastOut = now;
      const silent = now - lastOut > STOP_SILENCE_MS;
      if (!silent && now - since <= STOP_LIMIT_MS) return;
      log(
        silent
          ? `the helper wrote nothing for ${STOP_SILENCE_MS / 1000} s after the stop: killing it`
          : `the helper was still writing ${STOP_LIMIT_MS / 1000} s after the stop: killing it`,
      );
      helper.kill('SIGKILL');
      clearInterval(killTimer);
    }, 250);
    killTimer.unref();
  };
  /** The pod is being deleted: a stopped helper is told again (SIGTERM), and ends without waiting for its reader. */
  const hurry = (why: string) => {
    if (!stopping) return stop(why);
    if (helperDone) return;
    log(`${why}: the helper ends now`);
    helper.kill('SIGTERM');
  };

  // Reading the helper pauses while stdout is full (a slow client, through the runtime), or while the
  // client has not acknowledged REPLAY_WINDOW: the helper's pipe and then the kernel's ring buffer take the excess, which the helper counts as lost, instead of this
  // process's memory. Not after the stop: the helper then writes what is in its buffers and what fired
  // before the stop (at most 0.5 s of its ring buffer), and a reader that takes nothing for 2 s would make
  // it give up its final counts and END; they wait here for the client instead, a few MiB at most.
  let stdoutFull = false;
  let windowFull = false;
  const flow = () => {
    const full = replay.unacked > REPLAY_WINDOW;
    if (full && !windowFull)
      log(`the client has not taken ${REPLAY_WINDOW >> 20} MiB: reading the helper pauses until it does`);
    windowFull = full;
    if (reading()) {
      if (helper.stdout?.isPaused()) lastOut = Date.now();
      helper.stdout?.resume();
    } else helper.stdout?.pause();
  };
  const reading = () => stopping || !(stdoutFull || windowFull);
  helper.stdin?.on('error', () => {});
  const collector = new Collector();
  // What the bootstrap unpacked (the bundle, 2.3 MiB) is garbage from here on.
  collector.all();
  const send = (chunk: Buffer) => {
    replay.add(chunk);
    collector.sentBytes(chunk.length);
    if (!process.stdout.write(chunk) && !stdoutFull) {
      stdoutFull = true;
      process.stdout.once('drain', () => {
        stdoutFull = false;
        flow();
      });
    }
    flow();
  };
  helper.stdout?.on('data', (chunk: Buffer) => {
    lastOut = Date.now();
    collector.readBytes(chunk.length);
    send(chunk);
  });
  helper.on('error', (err) => {
    log(`cannot start the helper: ${err.message}`);
    process.exitCode = 2;
    helperDone = true;
    finish();
  });
  helper.on('close', (code, signal) => {
    clearInterval(killTimer);
    if (signal && !stopping) log(`the helper died of ${signal}`);
    process.exitCode = code ?? (stopping ? 0 : 1);
    helperDone = true;
    // The last records are the client's too: wait (at most the grace) until it has them.
    if (replay.unacked > 0 && !noWait)
      log(`the helper ended; waiting for the client to take the last ${replay.unacked} bytes`);
    maybeFinish();
  });
  const maybeFinish = () => {
    if (helperDone && (replay.unacked === 0 || noWait)) finish();
  };

  let lastHeard = Date.now();
  let lastTick = Date.now();
  const watchdog = setInterval(() => {
    const now = Date.now();
    // This process itself was stalled (a starved node): the messages that came meanwhile are still
    // unread in the pipe, and timers run before it is read. Its own stall is not the client's silence.
    if (now - lastTick > 2000) lastHeard = now;
    lastTick = now;
    if (now - lastHeard <= graceMs) return;
    if (!helperDone) stop(`no word from the client for ${req.clientGraceSec} s`);
    else {
      log(`the client did not come back for ${req.clientGraceSec} s; ${replay.unacked} bytes not delivered`);
      finish();
    }
  }, 1000);

  readControl(leftover, ([word, a, b]) => {
    lastHeard = Date.now();
    if (word === CONTROL.ack) {
      replay.ack(Number(a));
      flow();
      maybeFinish();
    } else if (word === CONTROL.resume) {
      // A new attach: everything written before MARKER reaches it too, and is skipped by the client.
      const from = Math.max(Number(a), replay.acked);
      replay.ack(from);
      log(
        `the client attached again: sending the stream from byte ${from} on (${replay.written - from} bytes)`,
      );
      process.stdout.write(Buffer.from(b ?? '', 'hex'));
      for (const c of replay.since(from)) process.stdout.write(c);
      flow();
      maybeFinish();
    } else if (word === CONTROL.stop) stop('the client asked');
  });
  const onEnd = () => {
    noWait = true;
    stop('the client closed the stream');
    maybeFinish();
  };
  process.stdin.on('end', onEnd);
  process.stdin.on('close', onEnd);
  process.stdin.on('error', onEnd);
  process.stdin.resume();
  const onSignal = (why: string) => {
    hurry(why);
    // The pod is being deleted: by the client once it has the helper's END, or gave up waiting for it (with a
    // second Ctrl-C: 10 s of grace), or by someone else. A backlog still reaches a client for a while, but
    // nobody may wait for it beyond the kubelet's SIGKILL.
    setTimeout(() => {
      noWait = true;
      maybeFinish();
    }, SIGNAL_WAIT_MS).unref();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM (the pod is being deleted)'));
  process.on('SIGINT', () => onSignal('SIGINT'));

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
