/**
 * 5. Scaling with the number of probes: the attach time, and what a filter
 * that matches nothing (1a) costs each packet, for growing subsets of the
 * tracepoints (--filter-func), in the helper's own order. The drop and free
 * tracepoints are always attached, so the smallest set is three.
 *
 * The cost is the BPF programs' run time per packet (kernel.bpf_stats_enabled)
 * at a fixed packet rate, not a throughput ratio: on a shared machine the
 * ratios of single runs drift by tens of percent, which would hide the trend.
 */
import { join } from 'node:path';
import { enableBpfStats, progStats } from './bpfstats';
import type { BenchContext } from './context';
import { median, rate } from './report';
import { type Match, startPwru } from './tracers';

const PPS = 10000;

export async function scaling(ctx: BenchContext): Promise<void> {
  const none: Match = { proto: 'udp', host: ctx.net.absentIp };
  const names = ctx.tracepoints.filter((n) => n !== 'kfree_skb' && n !== 'consume_skb');
  const sizes = [...new Set([1, 2, 4, 8, 16, names.length].filter((n) => n <= names.length))];
  const seconds = Math.max(2, Math.round(ctx.seconds * 0.75));
  const restore = enableBpfStats();
  try {
    for (const size of sizes) {
      const regex = `^(${names.slice(0, size).join('|')})$`;
      const attach: number[] = [];
      const ready: number[] = [];
      let probes = 0;
      let nsPerPacket = 0;
      let hitsPerPacket = 0;
      for (let i = 0; i < ctx.repeat; i++) {
        const t = await startPwru({
          match: none,
          format: 'text',
          outFile: join(ctx.work, `scale-${size}.out`),
          filterFunc: regex,
        });
        probes = t.probes;
        attach.push(t.attachMs ?? 0);
        ready.push(t.readyMs);
        if (i > 0) {
          await t.stop();
          continue;
        }
        const pid = t.bpfPid?.();
        try {
          const before = pid ? progStats(pid) : undefined;
          const r = await ctx.net.iperf('udp64', seconds, PPS);
          const after = pid ? progStats(pid) : undefined;
          const packets = r.value * r.seconds;
          if (before && after) {
            nsPerPacket = (after.ns - before.ns) / packets;
            hitsPerPacket = (after.runs - before.runs) / packets;
          }
        } finally {
          await t.stop();
        }
      }
      ctx.report.add({
        section: '5 scaling',
        what: `${probes} tracepoints (drop, free and the first ${size} others)`,
        value: `attach ${Math.round(median(attach))} ms, ready ${Math.round(median(ready))} ms (medians of ${attach.length}); (1a) BPF time ${Math.round(nsPerPacket)} ns per packet, ${hitsPerPacket.toFixed(1)} probe hits per packet (UDP 64 B at ${rate(PPS, 'pkt/s')})`,
      });
    }
  } finally {
    restore();
  }
  ctx.report.notes.push(
    'Scaling, function probes (information, from the qemu kernel matrix stage in test/kernel-matrix under software emulation, not this machine): see "Function probes under emulation" below.',
  );
}
