/**
 * Connects one helper's record stream to a sink: what the local session and
 * each Kubernetes node session both do with it, written once: feed each chunk
 * (decode, push to the sink, pause the source while the sink is behind),
 * finish, and turn the helper's ERROR into the run's error. It remembers how
 * the helper ended, so that the session can report a helper that vanished.
 */

import { EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OUTPUT_FAILED, UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { type HelloInfo, RecordDecoder } from '../record/decode';
import { TRACE_SCHEMA_VERSION } from '../record/event';
import { TOOL_VERSION } from '../version';
import { DropCollector } from './drop-collector';
import { PacketCollector } from './packet-collector';

/** Helper error codes that mean the user's input was wrong: exit code 2 (docs/exit-codes.md). */
export const HELPER_BAD_INPUT: ReadonlySet<string> = new Set([
  'usage',
  'bad_filter',
  'filter_too_slow',
  'bad_regex',
  'no_interface',
  'no_match',
  'backend_unavailable',
]);

/** The exit code for a helper's error: 2 for bad input, 5 for an output it could not write, 1 otherwise. */
export function helperExitCode(code: string): number {
  if (code === 'output_failed') return EXIT_OUTPUT_FAILED;
  return HELPER_BAD_INPUT.has(code) ? EXIT_BAD_INPUT : EXIT_FAILED;
}

/** The helper refused or failed; message is the helper's own words. */
export class HelperError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface HelperOutcome {
  /** The helper's ERROR frame, if it sent one. */
  error?: HelperError;
  /** Why it stopped, from its END frame: 'signal', 'stdin', 'duration', 'max-events'. */
  endReason?: string;
  events: number;
  lost: number;
  ready: boolean;
}

export class HelperStream {
  readonly decoder: RecordDecoder;
  readonly outcome: HelperOutcome = { events: 0, lost: 0, ready: false };
  private hello?: HelloInfo;

  constructor(
    private readonly sink: TraceSink,
    {
      node,
      prefix,
      onReady,
    }: {
      /** The Kubernetes node: named in every line (docs/json-schema.md), and the traced host's name. */
      node?: string;
      /** Before progress and warnings, when several nodes are traced. */
      prefix?: string;
      /** Called once when probes are attached and events may flow. */
      onReady?: () => void;
    } = {},
  ) {
    const where = prefix ? `${prefix}: ` : '';
    const reports = sink.dropReport ? new DropCollector((r) => sink.dropReport?.({ ...r, node })) : undefined;
    const packets = sink.packetDone
      ? new PacketCollector((info, events) => {
          this.outcome.events += info.steps * info.count;
          sink.packetDone?.(info, events);
        })
      : undefined;
    this.decoder = new RecordDecoder(
      {
        hello: (hello) => {
          this.hello = hello;
        },
        progress: (p) => {
          const count = p.total > 0 ? ` ${p.done}/${p.total}` : '';
          sink.progress(`${where}${p.message}${count}`);
        },
        ready: (r) => {
          this.outcome.ready = true;
          sink.progress(`${where}backend ${r.backend}: ${r.backend_note}`);
          sink.header({
            type: 'header',
            v: TRACE_SCHEMA_VERSION,
            tool: 'kubectl-pwru',
            toolVersion: TOOL_VERSION,
            kernel: this.hello?.kernel ?? '',
            ...(node !== undefined ? { node } : {}),
            ...((node ?? this.hello?.hostname) ? { host: node ?? this.hello?.hostname } : {}),
            backend: r.backend,
            probes: r.attached,
            attachMs: r.attach_ms,
            filter: r.filter,
            startedAt: new Date().toISOString(),
            dropReasons: r.drop_reasons,
          });
          onReady?.();
        },
        event: (e) => {
          if (packets?.take(e)) return;
          this.outcome.events++;
          if (!reports?.take(e)) sink.event(e);
        },
        packetDone: (info) => packets?.start(info),
        lines: (text) => sink.lines?.(text),
        culprit: (c) => {
          sink.culprit?.({
            type: 'culprit',
            v: TRACE_SCHEMA_VERSION,
            ...(node !== undefined ? { node } : {}),
            ...c,
          });
        },
        prog: (p) => {
          sink.prog?.({
            type: 'prog',
            v: TRACE_SCHEMA_VERSION,
            ...(node !== undefined ? { node } : {}),
            ...p,
          });
        },
        dropReport: (r) => reports?.start(r),
        watch: (w) => sink.watch?.(w, node),
        digest: (d) => {
          this.outcome.events += d.events;
          sink.digest?.(d);
        },
        stats: (s) => {
          this.outcome.lost = s.lost;
          sink.stats({
            type: 'stats',
            v: TRACE_SCHEMA_VERSION,
            ...(node !== undefined ? { node } : {}),
            seen: s.seen,
            events: s.emitted,
            lost: s.lost,
            ...(s.bytes_lost ? { bytesLost: s.bytes_lost } : {}),
            ...(s.discarded !== undefined ? { discarded: s.discarded } : {}),
            ...(s.skipped !== undefined ? { skipped: s.skipped } : {}),
            final: s.final,
          });
        },
        warning: (w) => sink.warning(`${where}${w.message}`),
        error: (e) => {
          this.outcome.error = new HelperError(e.code, e.message);
        },
        end: (e) => {
          this.outcome.endReason = e.reason;
        },
      },
      node,
    );
  }

  push(chunk: Buffer): void {
    this.decoder.push(chunk);
    this.sink.flush?.();
  }

  /** Why the stream could not be read (corrupt, or a sink that failed), once feed() has said so. */
  readError?: Error;

  /**
   * What both sessions do with each chunk of the helper's stream: decode it
   * into the sink; false when it cannot be read (the session stops its
   * source; readError says why). When the sink is behind, the source is
   * paused until it has drained, so that the helper's pipe and then the
   * kernel's ring buffer absorb the excess, not this process's memory.
   */
  feed(chunk: Buffer, source: { pause(): void; resume(): void }): boolean {
    if (this.readError) return false;
    try {
      this.push(chunk);
    } catch (err) {
      this.readError = err as Error;
      return false;
    }
    // After END nothing more is shown: no reason to wait for the output.
    if (this.outcome.endReason !== undefined) return true;
    const drained = this.sink.waitForDrain?.();
    if (drained) {
      source.pause();
      drained.then(() => source.resume());
    }
    return true;
  }

  /**
   * The source has closed: the last frame read. After END, or after a stop,
   * a frame cut off at the end is expected (what came before it was shown).
   */
  finish({ cutOffExpected }: { cutOffExpected: boolean }): void {
    if (this.outcome.endReason !== undefined) return;
    try {
      this.decoder.finish();
    } catch (err) {
      if (!cutOffExpected) throw err;
    }
  }

  /** The helper's ERROR as the error to end the run with: its own words (after the prefix), its exit code. */
  helperError(prefix = ''): UserError | undefined {
    const { error } = this.outcome;
    return error && new UserError(`${prefix}${error.message}`, helperExitCode(error.code));
  }
}
