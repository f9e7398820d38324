/**
 * The CLI as a fault case runs it: `kubectl-pwru --local` with its stdout on
 * a pipe (read, slowly, or closed) or a descriptor (a file, /dev/full), its
 * stderr kept, the helper it started found (for the BPF objects it holds), and
 * every wait bounded, saying what it saw when the bound passed. A stop's
 * promptness is its probes detached (kernel-visible); the exit is bounded
 * only against a hang, since on a loaded machine the client's reading of
 * what fired before the stop takes what the machine gives it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { CLI, HELPER } from '../integration/tracer';
import { type Held, heldBy } from './harness';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** When the CLI exited, ms after it started. */
  ms: number;
}

/** Processes running the helper whose parent is pid. */
function helpersOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/exe`) !== HELPER) continue;
      // stat: "pid (comm) state ppid …"; comm has no ')' for the helper.
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

/** Every CLI a test started and did not see end: stopped by stopLeftovers(), so one failure does not spill into the next case. */
const running = new Set<CliProcess>();

/** Kills (SIGKILL) the CLIs a failed case left running, and waits for them; call after each case. */
export async function stopLeftovers(): Promise<void> {
  for (const cli of running) {
    if (!cli.exited) cli.child.kill('SIGKILL');
    await cli.finished(EXIT_BOUND_MS).catch(() => {});
  }
  running.clear();
}

export class CliProcess {
  readonly child: ChildProcess;
  readonly started = Date.now();
  stdout = '';
  stderr = '';
  private readonly done: Promise<CliRun>;

  constructor(args: string[], stdout: number | 'pipe') {
    this.child = spawn(process.execPath, [CLI, '--local', ...args], {
      stdio: ['ignore', stdout, 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.stdout += d.toString();
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    running.add(this);
    this.done = new Promise((resolve) => {
      this.child.on('close', (code, signal) =>
        resolve({
          code,
          signal,
          stdout: this.stdout,
          stderr: this.stderr,
          ms: Date.now() - this.started,
        }),
      );
    });
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /**
   * Waits until probes are attached; returns the helper's pid (0 when it has
   * ended already: --max-events 1 under a flood) and what it holds in the kernel.
   */
  async ready(boundMs = 30000): Promise<{ helper: number; held: Held }> {
    await this.until('the CLI says it is tracing', () => /tracing with/.test(this.stderr), boundMs);
    const [helper] = helpersOf(this.child.pid ?? 0);
    return { helper: helper ?? 0, held: helper ? heldBy(helper) : { progs: new Set(), links: new Set() } };
  }

  /**
   * A bound for this machine as it is now: ms on this machine idle, scaled by
   * how much slower than usual (~300 ms) this run's own attach was. Under
   * the load of many test processes on two cores everything takes longer,
   * the stop's signal handling and the helper's detach included.
   */
  scaled(ms: number): number {
    const attachMs = Number(/attached in (\d+) ms/.exec(this.stderr)?.[1] ?? 0);
    return Math.round(ms * Math.max(1, attachMs / 300));
  }

  async until(what: string, cond: () => boolean, boundMs: number): Promise<void> {
    const t0 = Date.now();
    while (!cond()) {
      if (this.exited && !cond())
        throw new Error(`the CLI ended before ${what}; exit ${this.child.exitCode}, stderr:\n${this.stderr}`);
      if (Date.now() - t0 > boundMs)
        throw new Error(`not ${what} after ${boundMs} ms; stderr so far:\n${this.stderr.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * The promptness of a stop: waits until the helper holds no BPF link any
   * more (detached) or is gone; fails, saying how many it still held, past
   * idleMs scaled to the machine's load (scaled()). The CLI's exit may come later, once it has read what fired
   * before the stop (on a machine under load, that takes what it takes).
   */
  async detachedWithin(helper: number, idleMs: number): Promise<number> {
    const t0 = Date.now();
    const boundMs = this.scaled(idleMs);
    for (;;) {
      const links = helper ? heldBy(helper).links.size : 0;
      if (links === 0) return Date.now() - t0;
      if (Date.now() - t0 > boundMs)
        throw new Error(
          `the helper still holds ${links} links ${boundMs} ms after the stop (${idleMs} ms scaled to this run's attach); stderr:\n${this.stderr.slice(-1500)}`,
        );
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The CLI's end; fails, saying what it printed, when it takes longer than boundMs from now (a hang). */
  async finished(boundMs: number): Promise<CliRun & { sinceMs: number }> {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new Error(`the CLI still runs ${boundMs} ms later; stderr so far:\n${this.stderr.slice(-2000)}`),
        );
      }, boundMs);
    });
    try {
      const r = await Promise.race([this.done, bound]);
      return { ...r, sinceMs: Date.now() - t0 };
    } finally {
      clearTimeout(timer);
      if (!this.exited) this.child.kill('SIGKILL');
    }
  }
}

/** Bound on a CLI's exit after its run has stopped: long enough for a loaded machine, short of a hang. */
export const EXIT_BOUND_MS = 20000;

/** `error: …` lines and no JavaScript stack (`    at …`). */
export function plainError(stderr: string): string {
  if (/^\s+at .+:\d+:\d+\)?$/m.test(stderr)) throw new Error(`a stack trace on stderr:\n${stderr}`);
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('error: '))
    .join('\n');
}
