/**
 * Processes the benchmark starts: spawn, wait for a line, stop by pid, and
 * watch peak memory (VmHWM) of a process and of the children it starts.
 * Every process started here is remembered so that a failed run can end
 * exactly the processes it started, and no others.
 */
import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const started = new Set<ChildProcess>();

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout: string;
  stderr: string;
  /** Exit code, or the signal's name. */
  done: Promise<number | string>;
  /** Resolves with the match when stdout or stderr (as chosen) matches re. */
  waitFor(re: RegExp, stream: 'stdout' | 'stderr', timeoutMs: number): Promise<RegExpMatchArray>;
  signal(sig: NodeJS.Signals): void;
}

export function start(cmd: string, args: string[], options: SpawnOptions = {}): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  started.add(child);
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
  const proc: Proc = {
    child,
    pid: child.pid,
    stdout: '',
    stderr: '',
    done: new Promise((resolve) => {
      child.once('error', (err) => {
        proc.stderr += `\n${err.message}`;
        resolve('error');
      });
      child.once('close', (code, sig) => {
        started.delete(child);
        resolve(code ?? sig ?? -1);
      });
    }),
    waitFor(re, stream, timeoutMs) {
      return new Promise((resolve, reject) => {
        const source = stream === 'stdout' ? child.stdout : child.stderr;
        let finished = false;
        const check = () => {
          const m = proc[stream].match(re);
          if (m && !finished) {
            finished = true;
            clearTimeout(timer);
            source?.off('data', check);
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          finished = true;
          reject(
            new Error(`${cmd}: no ${re} on ${stream} within ${timeoutMs} ms; stderr: ${tail(proc.stderr)}`),
          );
        }, timeoutMs);
        source?.on('data', check);
        proc.done.then((code) =>
          setTimeout(() => {
            if (finished) return;
            finished = true;
            clearTimeout(timer);
            reject(
              new Error(`${cmd} ended (${code}) before ${re} on ${stream}; stderr: ${tail(proc.stderr)}`),
            );
          }, 20),
        );
        // Registered after the listener above, so that check() sees each chunk once appended.
        setImmediate(check);
      });
    },
    signal(sig) {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    },
  };
  child.stdout?.on('data', (c: Buffer) => {
    proc.stdout = keep(proc.stdout + c.toString());
  });
  child.stderr?.on('data', (c: Buffer) => {
    proc.stderr = keep(proc.stderr + c.toString());
  });
  return proc;
}

/** Output beyond this is dropped from the front: the benchmark reads only start and end lines. */
function keep(s: string): string {
  return s.length > 1 << 20 ? s.slice(0, 4096) + s.slice(-(1 << 19)) : s;
}

function tail(s: string): string {
  return s.trim().split('\n').slice(-5).join(' | ');
}

/** Stops a process by its pid: SIGINT, then SIGKILL after graceMs. Resolves with its exit. */
export async function stop(proc: Proc, graceMs = 10000): Promise<number | string> {
  proc.signal('SIGINT');
  const timer = setTimeout(() => proc.signal('SIGKILL'), graceMs);
  const code = await proc.done;
  clearTimeout(timer);
  return code;
}

/** Ends every process this benchmark started that is still running (by pid, one by one). */
export function killStarted(): void {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Direct children of a process. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}

export function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Peak resident set (VmHWM) in KiB, or undefined when the process is gone. */
/** Resident memory now (VmRSS), KiB. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function peakRssKiB(pid: number): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used so far, in seconds. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat, in clock ticks (USER_HZ, 100 on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Samples VmHWM and CPU time of a process and of its descendants, by command
 * name, every 100 ms until stopped. The kernel keeps the high-water mark
 * itself, so a sample shortly before exit is the process's peak.
 */
export class PeakMemory {
  private readonly peaks = new Map<string, number>();
  /** CPU seconds by command name, as last sampled. */
  readonly cpu = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly root: number,
    private readonly rootName: string,
  ) {
    this.timer = setInterval(() => this.sample(), 100);
    this.sample();
  }

  private sample(): void {
    const walk = (pid: number, name: string) => {
      const kib = peakRssKiB(pid);
      if (kib !== undefined) this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, kib));
      const cpu = cpuSeconds(pid);
      if (cpu !== undefined) this.cpu.set(name, Math.max(this.cpu.get(name) ?? 0, cpu));
      for (const c of childrenOf(pid)) {
        const name = comm(c);
        // Between fork and exec a child still carries its parent's name and image: not yet itself.
        if (name !== 'node') walk(c, name);
      }
    };
    walk(this.root, this.rootName);
  }

  /** CPU seconds by command name right now. */
  cpuNow(): Map<string, number> {
    this.sample();
    return new Map(this.cpu);
  }

  /** Stops sampling; peak KiB by command name (the root under rootName). */
  finish(): Map<string, number> {
    this.sample();
    clearInterval(this.timer);
    return this.peaks;
  }
}

/** CPU seconds used so far by a process and all its descendants. */
export function treeCpu(pid: number): number {
  let total = cpuSeconds(pid) ?? 0;
  for (const c of childrenOf(pid)) total += treeCpu(c);
  return total;
}
