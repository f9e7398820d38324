/**
 * Builds the sink for the chosen view. Every view follows packets the same
 * way (src/reading/packet-tracker.ts), so the line stream, the closing verdict
 * tables and --fail-on-drop agree. The same sink renders a live trace and a
 * saved one (`show` replays the file into it), so both look alike.
 *
 * stdout carries only the view (for `-o json`: JSON lines and nothing else);
 * progress, warnings and, in JSON mode, the human summary go to stderr.
 */
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { UserError } from '../errors';
import { explainDropReason } from '../reading/drop-reasons';
import { PacketTracker } from '../reading/packet-tracker';
import { SummaryBuilder, summarizeDigest } from '../reading/summary';
import type { TraceDigest, TraceEvent, TraceHeader, TraceStats } from '../record/event';
import { Painter } from './ansi';
import { annotatedEventLine, jsonLine } from './json';
import { LineBuffer } from './line-buffer';
import { PcapngWriter } from './pcapng';
import type { TraceSink } from './sink';
import { renderDigestSummary, renderSummary } from './summary-view';
import { formatTextLine, TextLayout, textHeader } from './text';
import { formatWideLine, WideLayout, wideHeader } from './wide';

export interface SinkOptions {
  format: 'text' | 'wide' | 'json';
  summary: boolean;
  outputFile?: string;
  /** --pcapng FILE: the steps that carry bytes, as pcapng (src/output/pcapng.ts). */
  pcapng?: string;
  color: boolean;
  showNode: boolean;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Rendering a saved trace (`show`): describe the recording instead of announcing a live one. */
  replay?: boolean;
}

export type ReadingSink = TraceSink & {
  /** Any packet dropped, socket-teardown purges aside (for --fail-on-drop). */
  dropped(): boolean;
};

/** Opened up front, so that a bad path fails before any probe is attached. */
function openFile(path: string): { stream: WriteStream; fd: number } {
  let fd: number;
  try {
    fd = openSync(path, 'w');
  } catch (e) {
    throw new UserError(`cannot write the trace to ${path}: ${(e as Error).message}`);
  }
  return { stream: createWriteStream(path, { fd }), fd };
}

/** Resolves once everything written to the stream so far is out. */
function written(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}

export function createSink(opts: SinkOptions): ReadingSink {
  const paint = new Painter(opts.color);
  const errPaint = new Painter(opts.color && Boolean((opts.stderr as NodeJS.WriteStream).isTTY));
  // Finished packets are reduced to summary rows at once: a long trace keeps
  // only the packets still in flight, not every step it printed.
  const summary = new SummaryBuilder();
  const pcapng = opts.pcapng ? new PcapngWriter(opts.pcapng) : undefined;
  const tracker = new PacketTracker({
    retain: false,
    onDone: (p) => {
      summary.packet(p);
      pcapng?.packetDone(p);
    },
  });
  const stats: TraceStats[] = [];
  const lostByNode = new Map<string, number>();
  const opened = opts.outputFile ? openFile(opts.outputFile) : undefined;
  const file = opened?.stream;
  let fileError: Error | undefined;
  file?.on('error', (err) => {
    fileError = err;
  });
  const text = new TextLayout();
  const wide = new WideLayout();
  const lines = !opts.summary;
  let headerPrinted = false;
  let headerSeen = false;
  let eventsSeen = 0;
  let anyDropped = false;
  let digest: TraceDigest | undefined;

  const stdoutLines = new LineBuffer(opts.stdout);
  const fileLines = file ? new LineBuffer(file) : undefined;
  const flush = () => {
    stdoutLines.flush();
    fileLines?.flush();
  };
  const out = (s: string) => stdoutLines.push(s);
  // stdout first, so that a warning lands after the lines it follows.
  const err = (s: string) => {
    stdoutLines.flush();
    opts.stderr.write(`${s}\n`);
  };

  const closeFile = async () => {
    if (!file) return;
    await new Promise<void>((resolve) => file.end(() => resolve()));
    if (fileError)
      throw new UserError(`could not write the trace to ${opts.outputFile}: ${fileError.message}`);
  };

  return {
    progress(message: string) {
      err(errPaint.paint(message, 'dim'));
    },

    header(h: TraceHeader) {
      headerSeen = true;
      fileLines?.push(jsonLine(h));
      const where = h.node ? ` on ${h.node}` : '';
      const filter = h.filter ? `, filter '${h.filter}'` : '';
      err(
        errPaint.paint(
          opts.replay
            ? `recorded ${h.startedAt}${where} (kernel ${h.kernel}) with ${h.backend}: ${h.probes} probes${filter}`
            : `tracing${where} with ${h.backend}: ${h.probes} probes attached in ${h.attachMs} ms`,
          'dim',
        ),
      );
      if (!lines) return;
      if (opts.format === 'json') {
        out(jsonLine(h));
      } else if (!headerPrinted) {
        headerPrinted = true;
        const head =
          opts.format === 'wide' ? wideHeader(wide, opts.showNode) : textHeader(text, opts.showNode);
        out(paint.paint(head, 'bold'));
      }
    },

    event(e: TraceEvent) {
      eventsSeen++;
      const o = tracker.observe(e);
      summary.step(o.step);
      pcapng?.step(o);
      if (e.drop && !explainDropReason(e.drop.reason).housekeeping) anyDropped = true;
      const annotated = opts.format === 'json' || file ? annotatedEventLine(o) : '';
      fileLines?.push(annotated);
      if (!lines) return;
      if (opts.format === 'json') out(annotated);
      else if (opts.format === 'wide') out(formatWideLine(o, wide, opts.showNode, paint));
      else out(formatTextLine(o, text, opts.showNode, paint));
    },

    stats(s: TraceStats) {
      stats.push(s);
      const node = s.node ?? '';
      const before = lostByNode.get(node) ?? 0;
      if (s.lost > before) {
        lostByNode.set(node, s.lost);
        const where = s.node ? `${s.node}: ` : '';
        err(
          errPaint.paint(
            `warning: ${where}${s.lost} events lost so far (ring buffer full): some packets' paths are incomplete; narrow the filter`,
            'yellow',
          ),
        );
      }
      if (!s.final) return;
      fileLines?.push(jsonLine(s));
      if (lines && opts.format === 'json') out(jsonLine(s));
    },

    // Lines and nothing else per event: a live trace (not `show`) may take the helper's own.
    acceptsLines: opts.format === 'json' && !opts.summary && !opts.replay && !pcapng,

    lineOutputs() {
      const stdoutFd = (opts.stdout as { fd?: unknown }).fd;
      if (typeof stdoutFd !== 'number') return undefined;
      const fds = opened ? [stdoutFd, opened.fd] : [stdoutFd];
      return {
        fds,
        ready: () => {
          flush();
          return Promise.all([opts.stdout, file].filter((s) => s !== undefined).map(written)).then(
            () => undefined,
          );
        },
      };
    },

    digest(d: TraceDigest) {
      digest = d;
      if (d.drops.some((drop) => !explainDropReason(drop.reason).housekeeping)) anyDropped = true;
    },

    warning(message: string) {
      err(errPaint.paint(`warning: ${message}`, 'yellow'));
    },

    flush,

    waitForDrain() {
      const waits = [stdoutLines.drained(), fileLines?.drained()].filter((w) => w !== undefined);
      return waits.length ? Promise.all(waits).then(() => undefined) : undefined;
    },

    async close() {
      flush();
      pcapng?.close(tracker.open());
      // Nothing was traced (refused before the probes were attached): no summary to give.
      if (!headerSeen && stats.length === 0 && eventsSeen === 0) {
        if (file) await new Promise<void>((resolve) => file.end(() => resolve()));
        return;
      }
      if (digest) {
        opts.stderr.write(renderDigestSummary(summarizeDigest(digest, stats), errPaint, opts.outputFile));
        await closeFile();
        return;
      }
      const result = summary.build(tracker.open(), stats);
      if (opts.summary && opts.format === 'json') {
        opts.stdout.write(`${JSON.stringify(result)}\n`);
      } else {
        const human = opts.format === 'json' ? errPaint : paint;
        const view = renderSummary(result, {
          paint: human,
          showNode: opts.showNode,
          functions: opts.summary,
        });
        if (opts.format === 'json') opts.stderr.write(view);
        else opts.stdout.write(`${lines && result.packets.length ? '\n' : ''}${view}`);
      }
      await closeFile();
    },

    dropped: () => anyDropped,
  };
}
