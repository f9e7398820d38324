/**
 * The closing tables: each packet's (or flow's) verdict, the drop reasons in
 * plain words with what to check, and, in --summary mode, the busiest
 * functions.
 */
import Table from 'cli-table3';
import { explainDropReason } from '../reading/drop-reasons';
import { type DigestSummary, type ReasonCount, type TraceSummary, totalsLine } from '../reading/summary';
import type { Painter } from './ansi';

export interface SummaryViewOptions {
  paint: Painter;
  showNode: boolean;
  /** Show the per-function counts (the --summary view). */
  functions: boolean;
  /** Above this many packets, one row per flow instead. */
  maxPacketRows?: number;
}

function table(head: string[], paint: Painter): Table.Table {
  return new Table({
    head: head.map((h) => paint.paint(h, 'bold')),
    style: { head: [], border: [] },
    // Compact: no rule between rows, so a long trace's table stays readable.
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    wordWrap: true,
  });
}

function verdictCell(label: string, kind: string, paint: Painter): string {
  if (kind === 'dropped') return paint.paint(label, 'red', 'bold');
  if (kind === 'delivered' || kind === 'sent') return paint.paint(label, 'green');
  return paint.paint(label, 'yellow');
}

export function renderSummary(s: TraceSummary, opts: SummaryViewOptions): string {
  const { paint } = opts;
  const out: string[] = [];
  const max = opts.maxPacketRows ?? 40;
  const node = opts.showNode;
  if (s.packetCount === 0) {
    out.push('No packet matched the filter.');
  } else if (s.packetCount <= max) {
    const t = table(
      [...(node ? ['NODE'] : []), 'PKT', 'TUPLE', 'FIRST STEP', 'LAST STEP', 'STEPS', 'VERDICT'],
      paint,
    );
    for (const r of s.packets) {
      const tuple = r.finalTuple ? `${r.tuple}\nlast: ${r.finalTuple}` : r.tuple;
      t.push([
        ...(node ? [r.node ?? ''] : []),
        paint.packet(r.id, `#${r.id}`),
        tuple,
        r.first,
        r.last,
        String(r.steps),
        verdictCell(r.label, r.verdict.kind, paint) +
          (r.programs ? `\n${r.programs.join('\n')}` : '') +
          (r.culprit ? `\n${r.culprit.text}` : ''),
      ]);
    }
    out.push(t.toString());
  } else {
    out.push(`${s.packetCount} packets, one row per flow:`);
    const t = table(
      [...(node ? ['NODE'] : []), 'FLOW', 'PACKETS', 'FIRST STEP', 'LAST STEP', 'VERDICTS'],
      paint,
    );
    for (const f of s.flows) {
      const sorted = Object.entries(f.verdicts).sort((a, b) => b[1] - a[1]);
      // Seven outcomes fit; past that, the least common are folded into one line (never "1 × 1 other").
      const kept = sorted.length > 7 ? 6 : 7;
      const shown = sorted.slice(0, kept).map(([label, n]) => `${n} × ${label}`);
      if (sorted.length > kept) {
        const rest = sorted.slice(kept).reduce((sum, [, n]) => sum + n, 0);
        shown.push(`${rest} × one of ${sorted.length - kept} other outcomes`);
      }
      const verdicts = shown.join('\n');
      t.push([...(node ? [f.node ?? ''] : []), f.flow, String(f.packets), f.first, f.last, verdicts]);
    }
    out.push(t.toString());
  }
  const changed = s.packets.filter((r) => r.changes.length);
  if (changed.length && s.packetCount <= max) {
    out.push('Rewrites along the way:');
    for (const r of changed) for (const c of r.changes) out.push(`  ${paint.packet(r.id, `#${r.id}`)} ${c}`);
  }
  out.push(...dropReasonSection(s.dropReasons, paint));
  if (opts.functions && s.functions.length) {
    const t = table(['FUNCTION', 'HITS'], paint);
    for (const f of s.functions.slice(0, 15)) t.push([f.func, String(f.count)]);
    if (s.functions.length > 15) t.push([`… ${s.functions.length - 15} more`, '']);
    out.push(t.toString());
  }
  out.push(totalsLine(s));
  return `${out.join('\n')}\n`;
}

/** The drop reasons in plain words, with what to check. */
function dropReasonSection(reasons: ReasonCount[], paint: Painter): string[] {
  const out: string[] = [];
  if (!reasons.length) return out;
  const t = table(['DROP REASON', 'PACKETS', 'WHERE', 'WHAT IT MEANS'], paint);
  for (const r of reasons) {
    const where = Object.entries(r.at)
      .map(([f, n]) => (Object.keys(r.at).length > 1 ? `${f} (${n})` : f))
      .join('\n');
    t.push([paint.paint(r.reason, 'red'), String(r.count), where, r.text]);
  }
  out.push(t.toString());
  for (const r of reasons) {
    const info = explainDropReason(r.reason);
    if (!info.cause && !info.check) continue;
    const cause = info.cause
      ? ` — likely cause: ${info.cause.charAt(0).toLowerCase()}${info.cause.slice(1)}`
      : '';
    out.push(`${paint.paint(r.reason, 'bold')}${cause}`);
    if (info.check?.length) out.push('  what to check:');
    for (const c of info.check ?? []) out.push(`  - ${c}`);
  }
  return out;
}

/** The closing words when the helper wrote the JSON lines: its counts, and where the verdicts are. */
export function renderDigestSummary(s: DigestSummary, paint: Painter, savedTo?: string): string {
  const out = dropReasonSection(s.dropReasons, paint);
  out.push(totalsLine(s));
  if (s.packets > 0) {
    const file = savedTo ?? 'FILE';
    out.push(
      paint.paint(
        `Each packet's path and verdict: kubectl pwru show ${file} (add --summary for the table).`,
        'dim',
      ),
    );
  }
  return `${out.join('\n')}\n`;
}
