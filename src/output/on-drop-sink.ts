/**
 * The sink of `--on-drop`: nothing per event; each drop the helper caught
 * that is a failure is printed beside the last good packet of its flow
 * (src/output/drop-report-view.ts), or as one JSON line with `-o json`, and
 * saved to --output-file as that line. `show` replays a saved file into the
 * same sink. Drops that are not failures are counted, not reported.
 */

import { EXIT_OUTPUT_FAILED, UserError } from '../errors';
import { CulpritPairing, describeCulprit } from '../reading/culprits';
import {
  buildReport,
  type CaughtDrop,
  caughtDropOf,
  type DropReportLine,
  isFailure,
  packetOf,
  protoName,
} from '../reading/drop-report';
import type { WatchInfo } from '../record/decode';
import type { TraceCulprit, TraceEvent, TraceHeader, TraceStats } from '../record/event';
import { Painter } from './ansi';
import { describeFlow, renderCaughtDrop } from './drop-report-view';
import { jsonLine } from './json';
import { faultMessage } from './line-output';
import { openOutputFile } from './output-file';
import { type Rotation, traceFileOutput } from './rotating-output';
import type { HelperDropReport, TraceSink } from './sink';

export interface OnDropSinkOptions {
  json: boolean;
  outputFile?: string;
  rotation?: Rotation;
  /** The --output-file cannot be written (a full disk): the run stops. */
  onOutputFault?: () => void;
  color: boolean;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** --drops N: after N reported drops, enough() is called (the trace stops). */
  maxDrops?: number;
  enough?: () => void;
  /** `show` of a saved file. */
  replay?: boolean;
  columns?: number;
}

export type OnDropSink = TraceSink & {
  /** Any drop reported (for --fail-on-drop). */
  dropped(): boolean;
  /** Matching events never seen: lost (ring buffer full) or skipped (--max-rate), all nodes together. */
  missedEvents(): number;
};

export function createOnDropSink(opts: OnDropSinkOptions): OnDropSink {
  const paint = new Painter(opts.color);
  const errPaint = new Painter(opts.color && Boolean((opts.stderr as NodeJS.WriteStream).isTTY));
  const opened = opts.outputFile ? openOutputFile(opts.outputFile) : undefined;
  const file =
    opened && opts.outputFile
      ? traceFileOutput(opts.outputFile, opened.fd, opts.rotation, () => opts.onOutputFault?.())
      : undefined;
  const watches = new Map<string, WatchInfo>();
  const lostByNode = new Map<string, number>();
  const missedByNode = new Map<string, number>(); // lost and skipped (--max-rate), for --fail-on-drop
  let reported = 0;
  let notFailures = 0;
  let beyondLimit = 0;
  let headerSeen = false;
  let finalStats: TraceStats[] = [];
  const err = (s: string) => opts.stderr.write(`${s}\n`);
  const limitReached = () => opts.maxDrops !== undefined && reported >= opts.maxDrops;

  // Who dropped it: said under its report once both are here (a rule is named after its counters are read).
  const culprits = new CulpritPairing<number>((n, found) => {
    const c: TraceCulprit = { ...found, drop: n };
    if (opts.json) opts.stdout.write(`${jsonLine(c)}\n`);
    else
      opts.stdout.write(
        paint.paint(`    ↳ drop #${n} ${describeCulprit(c)}\n`, c.method === 'none' ? 'yellow' : 'red'),
      );
    file?.push(jsonLine(c));
    file?.flush();
  });
  const show = (c: CaughtDrop) => {
    if (opts.json) opts.stdout.write(`${JSON.stringify(c.line)}\n`);
    else opts.stdout.write(`${reported > 1 ? '\n' : ''}${renderCaughtDrop(c, paint, opts.columns)}`);
    file?.push(JSON.stringify(c.line));
    file?.flush();
    const dropped = [...c.bad.steps].reverse().find((s) => s.event.drop)?.event;
    if (dropped) culprits.drop({ ...dropped, ...(c.line.node ? { node: c.line.node } : {}) }, c.line.n);
  };

  return {
    progress(message: string) {
      err(errPaint.paint(message, 'dim'));
    },

    header(received: TraceHeader) {
      headerSeen = true;
      const h: TraceHeader = { ...received, onDrop: true };
      file?.push(jsonLine(h));
      if (opts.json) opts.stdout.write(`${jsonLine(h)}\n`);
      const where = h.node ? ` on ${h.node}` : '';
      err(
        errPaint.paint(
          opts.replay
            ? `recorded ${h.startedAt}${where} (kernel ${h.kernel}) with ${h.backend}: drops caught with --on-drop`
            : `tracing${where} with ${h.backend}: ${h.probes} probes attached in ${h.attachMs} ms; watching for drops (nothing is printed until one happens)`,
          'dim',
        ),
      );
    },

    event(_e: TraceEvent) {
      // Only the events of reports reach this sink, through dropReport().
    },

    dropReport(r: HelperDropReport) {
      const copyInfo = r.info.copies ?? [];
      const bad = packetOf(
        r.bad,
        r.info.bad.packet,
        r.copies.map((events, i) => ({ events, id: copyInfo[i]?.packet ?? 0 })),
      );
      if (!bad) return;
      if (!isFailure(bad)) {
        notFailures++;
        return;
      }
      if (limitReached()) {
        beyondLimit++;
        return;
      }
      reported++;
      const good = r.info.good && r.good.length ? packetOf(r.good, r.info.good.packet) : undefined;
      const f = r.info.flow;
      const caught = buildReport(
        {
          n: reported,
          node: r.node,
          flow: f && {
            family: f.family,
            proto: protoName(f.l4),
            src: f.src,
            dst: f.dst,
            ...(f.dport !== undefined ? { dport: f.dport } : {}),
          },
          bad: {
            events: r.bad,
            forgottenSteps: r.info.bad.forgotten_steps,
            ...(r.info.bad.gap_after !== undefined ? { gapAfter: r.info.bad.gap_after } : {}),
          },
          badPacket: r.info.bad.packet,
          copies: r.copies.map((events, i) => ({
            events,
            forgottenSteps: copyInfo[i]?.forgotten_steps ?? 0,
            ...(copyInfo[i]?.gap_after !== undefined ? { gapAfter: copyInfo[i].gap_after } : {}),
            ended: copyInfo[i]?.ended ?? 'freed',
          })),
          good:
            good && r.info.good
              ? {
                  events: r.good,
                  forgottenSteps: r.info.good.forgotten_steps,
                  ...(r.info.good.gap_after !== undefined ? { gapAfter: r.info.good.gap_after } : {}),
                  ended: r.info.good.ended ?? 'freed',
                }
              : undefined,
          forgotten: {
            flows: r.info.forgotten_flows,
            packets: r.info.forgotten_packets,
            steps: r.info.forgotten_steps,
          },
        },
        bad,
        good,
      );
      show(caught);
      if (limitReached()) opts.enough?.();
    },

    dropLine(line: DropReportLine) {
      const c = caughtDropOf(line);
      if (!c) return;
      reported++;
      show(c);
    },

    culprit(c: TraceCulprit) {
      culprits.culprit(c);
    },

    watch(w: WatchInfo, node?: string) {
      watches.set(node ?? '', w);
    },

    stats(s: TraceStats) {
      const node = s.node ?? '';
      missedByNode.set(node, s.lost + (s.skipped ?? 0));
      const before = lostByNode.get(node) ?? 0;
      if (s.lost > before) {
        lostByNode.set(node, s.lost);
        const where = s.node ? `${s.node}: ` : '';
        err(
          errPaint.paint(
            `warning: ${where}${s.lost} events lost so far (ring buffer full): a drop among them cannot be reported; narrow the filter`,
            'yellow',
          ),
        );
      }
      if (!s.final) return;
      finalStats = [...finalStats, s];
      file?.push(jsonLine(s));
      if (opts.json) opts.stdout.write(`${jsonLine(s)}\n`);
    },

    warning(message: string) {
      err(errPaint.paint(`warning: ${message}`, 'yellow'));
    },

    // A slow --output-file holds the helper back (its pipe, then the ring), not this process's memory.
    waitForDrain: () => file?.drained(),

    async close() {
      if (headerSeen || reported || notFailures) {
        const w = [...watches.values()];
        const sum = (k: keyof WatchInfo) => w.reduce((a, x) => a + Number(x[k]), 0);
        const lost = finalStats.reduce((a, s) => a + s.lost, 0);
        const parts = [
          `${reported} drop${reported === 1 ? '' : 's'} reported`,
          ...(notFailures ? [`${notFailures} not failures (not reported)`] : []),
          ...(beyondLimit ? [`${beyondLimit} after --drops ${opts.maxDrops}`] : []),
        ];
        if (w.length)
          parts.push(
            `${sum('packets')} packets watched in ${sum('flows')} flows`,
            `forgotten to stay bounded: ${sum('forgotten_flows')} flows, ${sum('forgotten_packets')} packets, ${sum('forgotten_steps')} steps`,
          );
        if (sum('unreported')) parts.push(`${sum('unreported')} drops not reported (output too slow)`);
        const skipped = finalStats.reduce((n, s) => n + (s.skipped ?? 0), 0);
        if (!opts.replay) parts.push(`${lost} events lost`);
        if (skipped)
          parts.push(`${skipped} events skipped over --max-rate (a drop among them cannot be reported)`);
        err(errPaint.paint(`${parts.join('; ')}.`, 'bold'));
      }
      if (file) {
        file.flush();
        await file.end();
        opened?.release();
        const failed = faultMessage(file);
        if (failed) throw new UserError(`${failed}; the run was stopped there`, EXIT_OUTPUT_FAILED);
      }
    },

    dropped: () => reported > 0,
    missedEvents: () => [...missedByNode.values()].reduce((a, n) => a + n, 0),
  };
}

export { describeFlow };
