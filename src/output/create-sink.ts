/**
 * Builds the sink for the chosen view: the trace is read by
 * src/reading/trace-reading.ts, written to its outputs by line-output.ts
 * (stdout, and --output-file opened by output-file.ts), and this module only
 * dispatches each line to the view (text, wide, JSON lines, the closing
 * tables). The same sink renders a live trace and a saved one (`show` replays
 * the file into it), so both look alike.
 *
 * stdout carries only the view (for `-o json`: JSON lines and nothing else);
 * progress, warnings and, in JSON mode, the human summary go to stderr.
 */
import { EXIT_OUTPUT_FAILED, UserError } from '../errors';
import { describeCulprit, describeProgRun } from '../reading/culprits';
import { TraceReading } from '../reading/trace-reading';
import type { PacketDoneInfo } from '../record/decode';
import type {
  TraceCulprit,
  TraceDigest,
  TraceEvent,
  TraceHeader,
  TraceProgRun,
  TraceStats,
} from '../record/event';
import { Painter } from './ansi';
import { annotatedEventLine, jsonLine } from './json';
import { faultMessage, type LineOutput, stdoutOutput } from './line-output';
import { openOutputFile } from './output-file';
import { PcapngWriter } from './pcapng';
import { type Rotation, traceFileOutput } from './rotating-output';
import type { TraceSink } from './sink';
import { renderDigestSummary, renderSummary } from './summary-view';
import { formatTextLine, TextLayout, textHeader } from './text';
import { FoldingLines } from './tty-fold';
import { formatWideLine, WideLayout, wideHeader } from './wide';

export interface SinkOptions {
  format: 'text' | 'wide' | 'json';
  summary: boolean;
  outputFile?: string;
  /** --output-file-max-size/--output-file-max-backups: the file rotates. */
  rotation?: Rotation;
  /** --pcapng FILE: the steps that carry bytes, as pcapng (src/output/pcapng.ts). */
  pcapng?: string;
  color: boolean;
  showNode: boolean;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Rendering a saved trace (`show`): describe the recording instead of announcing a live one. */
  replay?: boolean;
  /**
   * --fail-on-drop: the exit code needs each packet's verdict (a copy linked
   * to its original, src/reading/drop-rules.ts), which only the client's
   * reading has: it reads the events itself, never the helper's lines.
   */
  verdicts?: boolean;
  /**
   * An output failed (a full disk) or its reader went away (`| head`): the
   * run should stop. close() then reports a failure as an error.
   */
  onOutputFault?: () => void;
  /** On a terminal, the most lines a second a live trace shows (tty-fold.ts); the rest are folded. */
  ttyLinesPerSecond?: number;
}

export type ReadingSink = TraceSink & {
  /** Any packet dropped, socket-teardown purges aside (for --fail-on-drop). */
  dropped(): boolean;
  /** Matching events never seen: lost (ring buffer full) or skipped (--max-rate), all nodes together. */
  missedEvents(): number;
};

export function createSink(opts: SinkOptions): ReadingSink {
  const paint = new Painter(opts.color);
  const errPaint = new Painter(opts.color && Boolean((opts.stderr as NodeJS.WriteStream).isTTY));
  const pcapng = opts.pcapng ? new PcapngWriter(opts.pcapng) : undefined;
  const reading = new TraceReading((p) => pcapng?.packetDone(p));
  let faultTold = false;
  const onFault = (o: LineOutput) => {
    // A reader that left is no failure: said once, quietly, for a person at a terminal.
    if (o.fault?.kind === 'closed')
      opts.stderr.write(errPaint.paint(`${o.name} was closed by its reader: stopping\n`, 'dim'));
    if (faultTold) return;
    faultTold = true;
    opts.onOutputFault?.();
  };
  const stdout = stdoutOutput(opts.stdout, onFault);
  const opened = opts.outputFile ? openOutputFile(opts.outputFile) : undefined;
  const file =
    opened && opts.outputFile
      ? traceFileOutput(opts.outputFile, opened.fd, opts.rotation, onFault)
      : undefined;
  const outputs = file ? [stdout, file] : [stdout];
  // A live trace's lines on a terminal: folded past what a person can read (tty-fold.ts).
  const fold =
    !opts.replay && !opts.summary && opts.format !== 'json' && (opts.stdout as NodeJS.WriteStream).isTTY
      ? new FoldingLines(
          (note) => stdout.push(paint.paint(note, 'dim')),
          opts.ttyLinesPerSecond,
          Date.now,
          () => stdout.behind(),
        )
      : undefined;
  // A terminal that folds is never waited for (tty-fold.ts); files and pipes are.
  const waitFor = fold ? outputs.filter((o) => o !== stdout) : outputs;
  const text = new TextLayout();
  const wide = new WideLayout();
  const lines = !opts.summary;
  // The helper writes every line of the trace (lineOutputs() taken): another writer's line could land inside one of its.
  let helperWritesLines = false;
  let headerPrinted = false;

  const flush = () => {
    for (const o of outputs) o.flush();
  };
  const out = (s: string) => stdout.push(s);
  // stdout first, so that a warning lands after the lines it follows.
  const err = (s: string) => {
    stdout.flush();
    opts.stderr.write(`${s}\n`);
  };

  const closeOutputs = async () => {
    await Promise.all(outputs.map((o) => o.end()));
    opened?.release();
    for (const o of outputs) {
      const failed = faultMessage(o);
      if (failed) throw new UserError(`${failed}; the run was stopped there`, EXIT_OUTPUT_FAILED);
    }
  };

  return {
    progress(message: string) {
      err(errPaint.paint(message, 'dim'));
    },

    header(h: TraceHeader) {
      reading.header(h);
      pcapng?.header(h);
      file?.push(jsonLine(h));
      // A live trace on one node need not say which: the node is named when there are several.
      const where = h.node && (opts.showNode || opts.replay) ? ` on ${h.node}` : '';
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
      const o = reading.event(e);
      pcapng?.step(o);
      // stdout gone (`| head`) or failed: its lines are not made (the events are still read and counted).
      const toStdout = lines && !stdout.fault;
      const annotated =
        (toStdout && opts.format === 'json') || (file && !file.fault) ? annotatedEventLine(o) : '';
      file?.push(annotated);
      if (!toStdout || (fold && !fold.admit())) return;
      if (opts.format === 'json') out(annotated);
      else if (opts.format === 'wide') out(formatWideLine(o, wide, opts.showNode, paint));
      else out(formatTextLine(o, text, opts.showNode, paint));
    },

    // After its drop's line: the rule (or why it could not be told), under it in text views.
    culprit(c: TraceCulprit) {
      reading.culprit(c);
      file?.push(jsonLine(c));
      if (!lines || helperWritesLines) return;
      if (opts.format === 'json') out(jsonLine(c));
      else out(paint.paint(`    ↳ ${c.skb} ${describeCulprit(c)}`, c.method === 'none' ? 'yellow' : 'red'));
    },

    // Under the packet's steps: a tc or XDP program that handled it, and what it returned.
    prog(p: TraceProgRun) {
      reading.prog(p);
      file?.push(jsonLine(p));
      if (!lines || helperWritesLines) return;
      if (opts.format === 'json') out(jsonLine(p));
      else out(paint.paint(`    ↳ ${p.skb} ${describeProgRun(p)}`, 'cyan'));
    },

    stats(s: TraceStats) {
      const lost = reading.stats(s);
      if (lost !== undefined) {
        const where = s.node ? `${s.node}: ` : '';
        err(
          errPaint.paint(
            `warning: ${where}${lost} events lost so far (ring buffer full): some packets' paths are incomplete; narrow the filter`,
            'yellow',
          ),
        );
      }
      if (!s.final) return;
      file?.push(jsonLine(s));
      if (lines && opts.format === 'json') out(jsonLine(s));
    },

    // Lines and nothing else per event: a live trace (not `show`) may take the helper's own. The text views'
    // only when they go to a file or a pipe without colour, and no --output-file wants JSON lines beside them.
    acceptsLines:
      opts.summary || opts.replay || pcapng
        ? undefined
        : opts.format === 'json'
          ? opts.verdicts
            ? undefined
            : 'json'
          : !file && !fold && !opts.color && !(opts.stdout as NodeJS.WriteStream).isTTY
            ? opts.format
            : undefined,

    packetDone(info: PacketDoneInfo, events: TraceEvent[]) {
      reading.packetDone(info, events);
    },

    lineOutputs() {
      if (outputs.some((o) => o.fd === undefined)) return undefined;
      helperWritesLines = true;
      return {
        fds: outputs.map((o) => o.fd as number),
        names: outputs.map((o) => o.name),
        ready: () => {
          flush();
          return Promise.all(outputs.map((o) => o.written())).then(() => undefined);
        },
      };
    },

    linesFromStream() {
      helperWritesLines = true;
    },

    // The helper's lines from its record stream (Kubernetes mode): copied to every output that still takes them.
    lines(text: Buffer) {
      for (const o of outputs) if (!o.fault) o.pushBytes(text);
    },

    digest(d: TraceDigest) {
      reading.digest(d);
    },

    warning(message: string) {
      err(errPaint.paint(`warning: ${message}`, 'yellow'));
    },

    flush,

    waitForDrain() {
      const waits = waitFor.map((o) => o.drained()).filter((w) => w !== undefined);
      return waits.length ? Promise.all(waits).then(() => undefined) : undefined;
    },

    async close() {
      fold?.end();
      flush();
      pcapng?.close(reading.open());
      // Nothing was traced (refused before the probes were attached): no summary to give.
      if (!reading.traced()) {
        await closeOutputs();
        return;
      }
      const result = reading.result();
      if (result.kind === 'digest') {
        opts.stderr.write(renderDigestSummary(result.summary, errPaint, opts.outputFile));
      } else if (opts.summary && opts.format === 'json') {
        stdout.write(`${JSON.stringify(result.summary)}\n`);
      } else {
        const human = opts.format === 'json' ? errPaint : paint;
        const view = renderSummary(result.summary, {
          paint: human,
          showNode: opts.showNode,
          functions: opts.summary,
        });
        if (opts.format === 'json') opts.stderr.write(view);
        else stdout.write(`${lines && result.summary.packetCount ? '\n' : ''}${view}`);
      }
      await closeOutputs();
    },

    dropped: () => reading.dropped(),
    missedEvents: () => reading.missedEvents(),
  };
}
