/**
 * 7. What --on-drop costs (issue 16): small-UDP and TCP throughput with
 * --on-drop matching all the traffic, against nothing attached and against
 * the plain trace (-o json > file) of the same traffic, paired with baseline
 * runs as section 1 does (the machine's speed drifts). Memory over a long
 * run is section 7b (bench/long-run.ts).
 */
import { join } from 'node:path';
import type { BenchContext } from './context';
import type { IperfResult, Load } from './net';
import { median, pct, rate } from './report';
import { type Match, type RunningTracer, startPwru } from './tracers';

type Mode = 'on-drop' | 'trace';

const MODE_NAME: Record<Mode, string> = {
  'on-drop': '--on-drop',
  trace: 'plain trace (-o json > file)',
};

function show(load: Load, value: number): string {
  return load === 'tcp' ? rate(value, 'bit/s') : rate(value, 'pkt/s');
}

function start(ctx: BenchContext, mode: Mode, match: Match, tag: string): Promise<RunningTracer> {
  return startPwru({
    match,
    format: 'json',
    outFile: join(ctx.work, `ondrop-${tag}.out`),
    extraArgs: mode === 'on-drop' ? ['--on-drop'] : [],
  });
}

/** Baseline and traced runs side by side (order alternating, so that a steady drift cancels): traced/baseline. */
async function ratio(
  ctx: BenchContext,
  load: Load,
  mode: Mode,
  match: Match,
  i: number,
): Promise<[number, number]> {
  const tracedFirst = i % 2 === 1;
  const early = tracedFirst ? undefined : await ctx.net.iperf(load, ctx.seconds);
  const tracer = await start(ctx, mode, match, `${load}-${mode}-${i}`);
  let traced: IperfResult;
  try {
    traced = await ctx.net.iperf(load, ctx.seconds);
  } finally {
    await tracer.stop();
  }
  const base = early ?? (await ctx.net.iperf(load, ctx.seconds));
  return [traced.value / base.value, traced.value];
}

export async function onDrop(ctx: BenchContext): Promise<void> {
  const section = '7 on-drop';
  for (const load of ['udp64', 'tcp'] as Load[]) {
    const match: Match = { proto: load === 'tcp' ? 'tcp' : 'udp', host: ctx.net.serverIp };
    const medians = new Map<Mode, number>();
    for (const mode of ['on-drop', 'trace'] as Mode[]) {
      const rs: number[] = [];
      const values: number[] = [];
      for (let i = 0; i < ctx.repeat; i++) {
        const [r, v] = await ratio(ctx, load, mode, match, i);
        rs.push(r);
        values.push(v);
      }
      medians.set(mode, median(rs));
      ctx.report.add({
        section,
        what: `${load}: ${MODE_NAME[mode]}, matches all, against nothing attached`,
        value: `${pct(median(rs))} (${rs.map(pct).join(', ')}), ${show(load, median(values))}`,
      });
    }
    const onDropR = medians.get('on-drop') ?? 0;
    const traceR = medians.get('trace') ?? 1;
    ctx.report.add({
      section,
      what: `${load}: --on-drop against the plain trace (ratio of the medians)`,
      value: pct(onDropR / traceR),
      goal: '≥ 100% (nothing is written per event)',
      met: onDropR >= traceR * 0.97,
    });
  }
}
