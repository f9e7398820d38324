/**
 * The CLI as a fault case runs it: `kubectl-pwru --local` with its stdout on
 * a pipe (read, slowly, or closed) or a descriptor (a file, /dev/full), its
 * stderr kept, the helper it started found (for the BPF objects it holds), and
 * every wait bounded, saying what it saw when the bound passed.
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

  /** Waits until probes are attached; returns the helper's pid and what it holds in the kernel. */
  async ready(boundMs = 20000): Promise<{ helper: number; held: Held }> {
    await this.until('the CLI says it is tracing', () => /tracing with/.test(this.stderr), boundMs);
    const [helper] = helpersOf(this.child.pid ?? 0);
    if (!helper) throw new Error(`tracing, but no helper process of the CLI found; stderr:\n${this.stderr}`);
    return { helper, held: heldBy(helper) };
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

  /** The CLI's end; fails, saying what it printed, when it takes longer than boundMs from now. */
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

/** `error: …` lines and no JavaScript stack (`    at …`). */
export function plainError(stderr: string): string {
  if (/^\s+at .+:\d+:\d+\)?$/m.test(stderr)) throw new Error(`a stack trace on stderr:\n${stderr}`);
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('error: '))
    .join('\n');
}
