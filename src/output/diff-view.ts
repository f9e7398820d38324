/**
 * `diff` output: the two packets side by side, one aligned step per row, the
 * first row where they part ways marked, and the difference in one sentence.
 */

import { describeChanges } from '../reading/changes';
import type { PathDiff, RowKind } from '../reading/diff';
import { baseFunc } from '../reading/kernel-functions';
import type { Packet, Step } from '../reading/packet-tracker';
import { formatTuple } from '../reading/tuple-format';
import { describeVerdict } from '../reading/verdict-words';
import { type Painter, padEndVisible, visibleLength } from './ansi';

const MARK: Record<RowKind, string> = {
  same: '=',
  differs: '≠',
  'good-only': '<',
  'bad-only': '>',
  replaced: '|',
};

function cell(s: Step | undefined, paint: Painter): string {
  if (!s) return '';
  const e = s.event;
  let t = baseFunc(e.func);
  if (s.packet !== undefined) t = `#${s.packet}${s.reply ? ' ←' : ''} ${t}`;
  if (e.drop) t = paint.paint(`${t}(${e.drop.reason})`, 'red', 'bold');
  if (e.iface) t += paint.paint(` ${e.iface}`, 'dim');
  if (s.changes.length) t += ` ${paint.paint(`[${describeChanges(s.changes)}]`, 'yellow')}`;
  return t;
}

function title(label: string, file: string, p: Packet, count: number): string {
  if (p.packets) {
    const list = p.packets.map((n) => `#${n}`).join(', ');
    const replies = p.steps.some((s) => s.reply) ? '; ← marks replies' : '';
    return `${label}: ${file} flow of packet #${p.id} (packets ${list}${replies})  ${formatTuple(p.tuple)}`;
  }
  const of = count > 1 ? ` of ${count}` : '';
  return `${label}: ${file} packet #${p.id}${of}  ${formatTuple(p.tuple)}`;
}

export interface DiffViewOptions {
  paint: Painter;
  goodFile: string;
  badFile: string;
  goodCount: number;
  badCount: number;
  /** Terminal width, to cap the left column. */
  columns?: number;
}

export function renderDiff(d: PathDiff, opts: DiffViewOptions): string {
  const { paint } = opts;
  const out: string[] = [];
  out.push(`${paint.paint(title('working', opts.goodFile, d.good, opts.goodCount), 'green')}`);
  out.push(`         ${describeVerdict(d.goodVerdict)}`);
  out.push(`${paint.paint(title('failing', opts.badFile, d.bad, opts.badCount), 'red')}`);
  out.push(`         ${describeVerdict(d.badVerdict)}`);
  out.push('');
  const lefts = d.rows.map((r) => cell(r.good, paint));
  const cap = Math.max(30, Math.floor(((opts.columns ?? 160) - 12) / 2));
  const width = Math.min(cap, Math.max(7, ...lefts.map(visibleLength)));
  out.push(paint.paint(`     ${'WORKING'.padEnd(width)}    FAILING`, 'bold'));
  d.rows.forEach((r, i) => {
    const first = i === d.divergence;
    const prefix = first ? '>>' : '  ';
    const n = String(i + 1).padStart(3);
    let left = lefts[i];
    if (visibleLength(left) > width) left = `${baseFunc(r.good?.event.func ?? '')} …`;
    let line = `${prefix}${n} ${padEndVisible(left, width)}  ${MARK[r.kind]}  ${cell(r.bad, paint)}`;
    if (first) line = paint.paint(line, 'bold');
    else if (r.kind !== 'same') line = paint.paint(line, 'dim');
    out.push(line);
  });
  out.push('');
  out.push(
    paint.paint(
      '= same step   ≠ same step, different rewrite   < working only   > failing only   | different step',
      'dim',
    ),
  );
  if (d.divergence >= 0) out.push(`They part ways at row ${d.divergence + 1} (>>).`);
  out.push(paint.paint(d.sentence, 'bold'));
  return `${out.join('\n')}\n`;
}

/** `diff -o json`: the alignment and the sentence, for scripts. */
export function diffJson(d: PathDiff, goodFile: string, badFile: string): object {
  const side = (s?: Step) =>
    s && {
      step: s.index,
      ...(s.packet !== undefined ? { packet: s.packet } : {}),
      ...(s.reply ? { reply: true } : {}),
      func: s.event.func,
      ...(s.event.drop ? { drop: s.event.drop.reason } : {}),
      ...(s.changes.length ? { changes: s.changes } : {}),
    };
  return {
    type: 'diff',
    good: {
      file: goodFile,
      packet: d.good.id,
      packets: d.good.packets,
      tuple: d.good.tuple,
      verdict: d.goodVerdict,
      ...(d.goodCulprit ? { culprit: d.goodCulprit } : {}),
      ...(d.goodPrograms ? { programs: d.goodPrograms } : {}),
    },
    bad: {
      file: badFile,
      packet: d.bad.id,
      packets: d.bad.packets,
      tuple: d.bad.tuple,
      verdict: d.badVerdict,
      ...(d.badCulprit ? { culprit: d.badCulprit } : {}),
      ...(d.badPrograms ? { programs: d.badPrograms } : {}),
    },
    divergence: d.divergence < 0 ? null : d.divergence,
    rows: d.rows.map((r) => ({ kind: r.kind, good: side(r.good), bad: side(r.bad) })),
    sentence: d.sentence,
  };
}
