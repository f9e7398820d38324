/**
 * A caught drop (--on-drop, and `show` of its file) as a person reads it: the
 * dropped packet beside the last good one of its flow, exactly as `diff`
 * shows two packets (src/output/diff-view.ts), or alone when the flow had no
 * good packet.
 */

import { describeChanges } from '../reading/changes';
import type { CaughtDrop, DropFlow } from '../reading/drop-report';
import { baseFunc } from '../reading/kernel-functions';
import { formatTuple } from '../reading/tuple-format';
import { describeVerdict } from '../reading/verdict-words';
import type { Painter } from './ansi';
import { renderDiff } from './diff-view';

export function describeFlow(f: DropFlow | undefined): string {
  if (!f) return 'no IP header';
  const port = f.dport !== undefined ? ` port ${f.dport}` : '';
  return `${f.proto} ${f.src} → ${f.dst}${port}`;
}

function forgottenNote(what: string, forgotten: number, after?: number): string | undefined {
  if (!forgotten) return undefined;
  return `(${what}: ${forgotten} steps after step ${after ?? '?'} were not kept: the path was longer than the helper keeps)`;
}

export function renderCaughtDrop(c: CaughtDrop, paint: Painter, columns?: number): string {
  const { line } = c;
  const where = line.node ? ` on ${line.node}` : '';
  const out: string[] = [
    paint.paint(`── drop #${line.n} at ${line.time}${where}: flow ${describeFlow(line.flow)} ──`, 'bold'),
  ];
  if (c.diff) {
    out.push(
      renderDiff(c.diff, {
        paint,
        goodFile: 'last good',
        badFile: 'dropped',
        goodCount: 1,
        badCount: 1,
        columns,
      }).trimEnd(),
    );
  } else {
    out.push(paint.paint(`failing: packet #${c.bad.id}  ${formatTuple(c.bad.tuple)}`, 'red'));
    out.push(`         ${describeVerdict(c.verdict)}`);
    out.push('');
    c.bad.steps.forEach((s, i) => {
      const e = s.event;
      let t = baseFunc(e.func);
      if (e.drop) t = paint.paint(`${t}(${e.drop.reason})`, 'red', 'bold');
      if (e.iface) t += paint.paint(` ${e.iface}`, 'dim');
      if (s.changes.length) t += ` ${paint.paint(`[${describeChanges(s.changes)}]`, 'yellow')}`;
      out.push(`  ${String(i + 1).padStart(3)} ${t}`);
    });
    out.push('');
    out.push(paint.paint(line.sentence, 'bold'));
  }
  for (const note of [
    forgottenNote('dropped', line.bad.forgottenSteps, line.bad.gapAfter),
    line.good ? forgottenNote('last good', line.good.forgottenSteps, line.good.gapAfter) : undefined,
  ])
    if (note) out.push(paint.paint(note, 'dim'));
  return `${out.join('\n')}\n`;
}
