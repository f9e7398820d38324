/**
 * Runs the real CLI (`kubectl-pwru --local -o json`) as the tests' tracer and
 * collects what it printed. start() returns once the probes are attached.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { TraceEvent, TraceLine } from '../../src/record/event';

export const REPO = join(__dirname, '..', '..', '..');
export const CLI = join(REPO, 'bin', 'kubectl-pwru');
export const HELPER = join(
  REPO,
  'helper',
  'build',
  process.arch === 'x64' ? 'amd64' : process.arch,
  'pwru-helper',
);

export interface TraceResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: TraceLine[];
  events: TraceEvent[];
  stdout: string;
  stderr: string;
}

export class RunningTrace {
  private stdout = '';
  private stderr = '';
  private readonly done: Promise<TraceResult>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => {
      this.stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.done = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        const lines = this.stdout
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as TraceLine);
        resolve({
          code,
          signal,
          lines,
          events: lines.filter((l): l is TraceEvent => l.type === 'event'),
          stdout: this.stdout,
          stderr: this.stderr,
        });
      });
    });
  }

  /** Resolves when the CLI says probes are attached; rejects if it ends first. */
  async ready(timeoutMs = 30000): Promise<void> {
    const started = Date.now();
    while (!/tracing with/.test(this.stderr)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`tracer ended before it was ready:\n${this.stderr}`);
      }
      if (Date.now() - started > timeoutMs)
        throw new Error(`tracer not ready after ${timeoutMs} ms:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Resolves once its stdout so far satisfies cond; rejects, saying what it printed, after timeoutMs or if it ends first. */
  async until(what: string, cond: (stdout: string) => boolean, timeoutMs = 20000): Promise<void> {
    const started = Date.now();
    while (!cond(this.stdout)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`tracer ended before ${what}:\n${this.stderr}`);
      if (Date.now() - started > timeoutMs)
        throw new Error(`not ${what} after ${timeoutMs} ms:\n${this.stdout.slice(-2000)}\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops it as a user would (Ctrl-C) and returns what it printed. */
  async stop(): Promise<TraceResult> {
    // Give the last events time to leave the ring buffer.
    await new Promise((r) => setTimeout(r, 300));
    this.child.kill('SIGINT');
    return this.finished();
  }

  finished(): Promise<TraceResult> {
    return this.done;
  }
}

/** Starts `kubectl-pwru --local -o json ARGS`; a 60 s duration guards against a hung test. */
export function startTrace(args: string[], extraEnv: NodeJS.ProcessEnv = {}): RunningTrace {
  const child = spawn(process.execPath, [CLI, '--local', '-o', 'json', '--duration', '60s', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', ...extraEnv },
  });
  return new RunningTrace(child);
}

/** Runs the CLI to completion (for commands that should fail fast). */
export async function runCli(args: string[]): Promise<TraceResult> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new RunningTrace(child).finished();
}

export function funcs(events: TraceEvent[]): string[] {
  return events.map((e) => e.func);
}

/** The steps of the packet seen most often (the first datagram of a flow may wait for ARP in a copy). */
export function longestPath(events: TraceEvent[]): TraceEvent[] {
  const bySkb = new Map<string, TraceEvent[]>();
  for (const e of events) bySkb.set(e.skb, [...(bySkb.get(e.skb) ?? []), e]);
  return [...bySkb.values()].reduce((a, b) => (b.length > a.length ? b : a), []);
}
