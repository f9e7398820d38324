/**
 * TCP (a)'s floor: what being attached costs before our programs do anything.
 * The same tracepoints as kubectl-pwru's (a), attached by the helper with
 * `--bench-floor` (every program returns at its first instruction), measured
 * in triples run back to back (nothing attached / kubectl-pwru (a) / the
 * floor, in rotating order) so that the machine's drift hits all three alike.
 * The goal is (a) within 1.5 points of the floor: the kernel's dispatch to
 * ~30 programs is not ours to remove, what our programs add is.
 */
import { join } from 'node:path';
import type { BenchContext } from './context';
import { startHelperToFile } from './helper';
import type { IperfResult, Load } from './net';
import { median, pct } from './report';
import { type Match, pcapFilter, type RunningTracer, startPwru } from './tracers';

type Arm = 'base' | 'ours' | 'floor';

/** Points by which (a) may sit below its floor. */
const GOAL_POINTS = 1.5;

function startArm(
  ctx: BenchContext,
  arm: Exclude<Arm, 'base'>,
  match: Match,
  i: number,
): Promise<RunningTracer> {
  const file = join(ctx.work, `floor-${arm}-${i}.out`);
  if (arm === 'ours') return startPwru({ match, format: 'json', outFile: file });
  return startHelperToFile(['--backend', 'tracepoint', '--bench-floor', '--', pcapFilter(match)], file);
}

async function measure(
  ctx: BenchContext,
  load: Load,
  arm: Arm,
  match: Match,
  i: number,
): Promise<IperfResult> {
  if (arm === 'base') return ctx.net.iperf(load, ctx.seconds);
  const tracer = await startArm(ctx, arm, match, i);
  try {
    return await ctx.net.iperf(load, ctx.seconds);
  } finally {
    await tracer.stop();
  }
}

export async function tcpFloor(ctx: BenchContext): Promise<void> {
  const load: Load = 'tcp';
  const section = '1 tcp';
  const match: Match = { proto: 'tcp', host: ctx.net.absentIp };
  const orders: Arm[][] = [
    ['base', 'ours', 'floor'],
    ['floor', 'base', 'ours'],
    ['ours', 'floor', 'base'],
  ];
  const ours: number[] = [];
  const floor: number[] = [];
  const gaps: number[] = [];
  const cpuGaps: number[] = [];
  for (let i = 0; i < ctx.repeat; i++) {
    const got = new Map<Arm, IperfResult>();
    for (const arm of orders[i % orders.length]) got.set(arm, await measure(ctx, load, arm, match, i));
    const base = got.get('base') as IperfResult;
    const o = (got.get('ours') as IperfResult).value / base.value;
    const f = (got.get('floor') as IperfResult).value / base.value;
    ours.push(o);
    floor.push(f);
    gaps.push(f - o);
    // CPU per MB carried (iperf3's processes only: neither tracer's user space works when nothing matches).
    const per = (r: IperfResult) => r.cpuSeconds / r.units;
    cpuGaps.push(
      per(base) / per(got.get('floor') as IperfResult) - per(base) / per(got.get('ours') as IperfResult),
    );
  }
  const gap = median(gaps);
  ctx.report.add({
    section,
    what: `(a) floor: the same tracepoints, programs that return at once (pwru-helper --bench-floor), ${pcapFilter(match)}`,
    value: `${pct(median(floor))} (${floor.map(pct).join(', ')})`,
  });
  ctx.report.add({
    section,
    what: '(a) kubectl-pwru below its floor, in the same triples (nothing / kubectl-pwru / floor, back to back)',
    value:
      `${(gap * 100).toFixed(1)} points (median of ${gaps.length}: ${gaps.map((g) => (g * 100).toFixed(1)).join(', ')}); ` +
      `kubectl-pwru ${pct(median(ours))}, floor ${pct(median(floor))}; by CPU per MB: ${(median(cpuGaps) * 100).toFixed(1)} points`,
    goal: `within ${GOAL_POINTS} points of the floor`,
    met: gap * 100 <= GOAL_POINTS,
  });
}
