/**
 * 5. Scaling with the number of probes: the attach time and the cost on
 * small-packet UDP of a filter that matches nothing (1a), for growing
 * subsets of the tracepoints (--filter-func), in the helper's own order.
 * The drop and free tracepoints are always attached, so the smallest set is three.
 */
import { join } from 'node:path';
import type { BenchContext } from './context';
import { median, pct } from './report';
import { type Match, startPwru } from './tracers';

export async function scaling(ctx: BenchContext): Promise<void> {
  const none: Match = { proto: 'udp', host: ctx.net.absentIp };
  // The drop and free tracepoints are always attached; --filter-func picks among the others.
  const names = ctx.tracepoints.filter((n) => n !== 'kfree_skb' && n !== 'consume_skb');
  const sizes = [...new Set([1, 2, 4, 8, 16, names.length].filter((n) => n <= names.length))];
  const rows: { size: number; probes: number; attachMs: number; readyMs: number; ratios: number[] }[] = [];
  for (const size of sizes) {
    const regex = `^(${names.slice(0, size).join('|')})$`;
    const row = { size, probes: 0, attachMs: 0, readyMs: 0, ratios: [] as number[] };
    for (let i = 0; i < ctx.repeat; i++) {
      const base = await ctx.net.iperf('udp64', ctx.seconds);
      const t = await startPwru({
        match: none,
        format: 'text',
        outFile: join(ctx.work, `scale-${size}.out`),
        filterFunc: regex,
      });
      const r = await ctx.net.iperf('udp64', ctx.seconds).finally(() => t.stop());
      row.probes = t.probes;
      row.attachMs = Math.max(row.attachMs, t.attachMs ?? 0);
      row.readyMs = Math.max(row.readyMs, t.readyMs);
      row.ratios.push(r.value / base.value);
    }
    rows.push(row);
  }
  for (const row of rows) {
    ctx.report.add({
      section: '5 scaling',
      what: `${row.probes} tracepoints (drop, free, and the first ${row.size} others): attach; (1a) UDP 64 B`,
      value: `attach ${row.attachMs} ms, ready ${Math.round(row.readyMs)} ms (slowest of ${row.ratios.length}); ${pct(median(row.ratios))} of baseline (${row.ratios.map(pct).join(', ')})`,
    });
  }
}
