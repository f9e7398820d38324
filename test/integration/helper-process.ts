/**
 * Runs pwru-helper itself (no CLI) and reads its record stream with the
 * client's decoder, for the tests of what the helper promises on its own:
 * HELLO first, an ERROR or an END last, nothing cut inside a frame.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import {
  type EndInfo,
  type HelperMessage,
  type ReadyInfo,
  RecordDecoder,
  type StatsInfo,
} from '../../src/record/decode';
import type { TraceDigest, TraceEvent } from '../../src/record/event';
import { HELPER } from './tracer';

/** END as the helper writes it (docs/record-stream.md): more than the client reads. */
export type HelperEnd = EndInfo & { output?: string; discarded?: number };
export type HelperStats = StatsInfo & { discarded?: number };

/** What the stream said, in order of kind. */
export interface HelperRecords {
  /** Frame kinds in the order they came ("hello", "ready", "event", …). */
  order: string[];
  ready?: ReadyInfo;
  events: TraceEvent[];
  stats: HelperStats[];
  warnings: HelperMessage[];
  error?: HelperMessage;
  end?: HelperEnd;
  digest?: TraceDigest;
  /** Why the stream could not be read to its end (cut inside a frame, corrupt), if it could not. */
  streamError?: string;
}

export interface HelperRun extends HelperRecords {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** A helper process being read as it runs. */
export class HelperProcess {
  readonly records: HelperRecords = { order: [], events: [], stats: [], warnings: [] };
  private stderr = '';
  private readonly decoder: RecordDecoder;
  private readonly done: Promise<HelperRun>;

  constructor(readonly child: ChildProcess) {
    const r = this.records;
    this.decoder = new RecordDecoder({
      hello: () => r.order.push('hello'),
      progress: () => r.order.push('progress'),
      ready: (x) => {
        r.order.push('ready');
        r.ready = x;
      },
      event: (e) => {
        if (r.order.at(-1) !== 'event') r.order.push('event');
        r.events.push(e);
      },
      digest: (d) => {
        r.order.push('digest');
        r.digest = d;
      },
      stats: (s) => {
        r.order.push('stats');
        r.stats.push(s);
      },
      warning: (w) => {
        r.order.push('warning');
        r.warnings.push(w);
      },
      error: (e) => {
        r.order.push('error');
        r.error = e;
      },
      end: (e) => {
        r.order.push('end');
        r.end = e;
      },
    });
    child.stdout?.on('data', (d: Buffer) => {
      if (r.streamError) return;
      try {
        this.decoder.push(d);
      } catch (e) {
        r.streamError = (e as Error).message;
      }
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.done = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        if (!r.streamError) {
          try {
            this.decoder.finish();
          } catch (e) {
            r.streamError = (e as Error).message;
          }
        }
        resolve({ ...r, code, signal, stderr: this.stderr });
      });
    });
  }

  /** Resolves once READY came (probes attached); rejects if the helper ended first or the bound passed. */
  async ready(timeoutMs = 60000): Promise<ReadyInfo> {
    const started = Date.now();
    while (!this.records.ready) {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`the helper ended before READY:\n${this.stderr}`);
      if (Date.now() - started > timeoutMs)
        throw new Error(`no READY after ${timeoutMs} ms; frames so far: ${this.records.order.join(' ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.records.ready;
  }

  /** Waits for a condition on what was read, with a bound; says what it saw when the bound passes. */
  async until(what: string, check: (r: HelperRecords) => boolean, timeoutMs = 30000): Promise<void> {
    const started = Date.now();
    while (!check(this.records)) {
      if (Date.now() - started > timeoutMs)
        throw new Error(`${what}: not after ${timeoutMs} ms; frames so far: ${this.records.order.join(' ')}`);
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`${what}: the helper ended first; frames: ${this.records.order.join(' ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  finished(): Promise<HelperRun> {
    return this.done;
  }
}

export interface HelperOptions {
  /** Run as nobody, with no capabilities at all. */
  unprivileged?: boolean;
  /** stdin: a pipe the test holds (the helper then watches it for EOF), or nothing. */
  stdin?: 'pipe' | 'ignore';
  /** Descriptors 3 and up. */
  extraFds?: (number | 'pipe')[];
}

export function startHelper(args: string[], opts: HelperOptions = {}): HelperProcess {
  const stdio: StdioOptions = [opts.stdin ?? 'ignore', 'pipe', 'pipe', ...(opts.extraFds ?? [])];
  const child = opts.unprivileged
    ? spawn(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          '--inh-caps=-all',
          '--bounding-set=-all',
          HELPER,
          ...args,
        ],
        { stdio },
      )
    : spawn(HELPER, args, { stdio });
  return new HelperProcess(child);
}

export function runHelper(args: string[], opts: HelperOptions = {}): Promise<HelperRun> {
  return startHelper(args, opts).finished();
}
