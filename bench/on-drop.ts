/**
 * 7. What --on-drop costs (issue 16): small-UDP and TCP throughput with
 * --on-drop matching all the traffic, against nothing attached and against
 * the plain trace (-o json > file) of the same traffic, paired with baseline
 * runs as section 1 does (the machine's speed drifts); then the helper's and
 * the CLI's memory after a steady-rate run with --on-drop
 * (BENCH_STEADY_SECONDS, default 120 s, at 20,000 packets/s).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context';
import type { IperfResult, Load } from './net';
import { median, mib, pct, rate } from './report';
import { type Match, type RunningTracer, startPwru } from './tracers';

type Mode = 'on-drop' | 'trace';

const MODE_NAME: Record<Mode, string> = {
  'on-drop': '--on-drop',
  trace: 'plain trace (-o json > file)',
};

const STEADY_PPS = 20000;

function show(load: Load, value: number): string {
  return load === 'tcp' ? rate(value, 'bit/s') : rate(value, 'pkt/s');
}

function start(
  ctx: BenchContext,
  mode: Mode,
  match: Match,
  tag: string,
  memory = false,
): Promise<RunningTracer> {
  return startPwru({
    match,
    format: 'json',
    outFile: join(ctx.work, `ondrop-${tag}.out`),
    memory,
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
  await steadyMemory(ctx, section);
}

/** --on-drop for BENCH_STEADY_SECONDS at a steady rate: what the helper and the CLI hold at the end. */
async function steadyMemory(ctx: BenchContext, section: string): Promise<void> {
  const seconds = Number(process.env.BENCH_STEADY_SECONDS ?? 120);
  const match: Match = { proto: 'udp', host: ctx.net.serverIp };
  const tracer = await start(ctx, 'on-drop', match, 'steady', true);
  const helperPid = tracer.bpfPid?.();
  const cliPid = helperPid === undefined ? undefined : Number(readParent(helperPid));
  let traffic: IperfResult | undefined;
  const rssAtEnd = new Map<string, number>();
  try {
    traffic = await ctx.net.iperf('udp64', seconds, STEADY_PPS);
    for (const [name, pid] of [
      ['pwru-helper', helperPid],
      ['kubectl-pwru (node)', cliPid],
    ] as const) {
      if (pid !== undefined) rssAtEnd.set(name, rssKiB(pid) ?? 0);
    }
  } finally {
    const outcome = await tracer.stop();
    for (const [name, kib] of outcome.memory ?? []) {
      const helper = name.startsWith('pwru-helper');
      const end = rssAtEnd.get(helper ? 'pwru-helper' : name);
      ctx.report.add({
        section,
        what: `--on-drop for ${seconds} s at ${rate(STEADY_PPS, 'pkt/s')} (UDP 64 B, matched): ${name} memory`,
        value: `peak ${mib(kib)}${end !== undefined ? `, at the end ${mib(end)}` : ''}${traffic ? `; ${rate(traffic.value, 'pkt/s')} sent` : ''}`,
        goal: helper ? '≤ 32 MiB' : undefined,
        met: helper ? kib <= 32 * 1024 : undefined,
      });
    }
  }
}

function readParent(pid: number): string {
  try {
    return /^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
  } catch {
    return '';
  }
}

function rssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
