/**
 * 7b. Memory over a long run (issue 16: "helper and CLI memory after a
 * 30-minute run at a steady rate"; memory "stays bounded over a long run").
 * Small UDP at a steady rate for BENCH_STEADY_SECONDS (default 1800), every
 * packet matched, with the helper's and the CLI's RSS sampled every
 * BENCH_SAMPLE_SECONDS (default 10): peak, at 1/4, 1/2 and the end, and the
 * slope of the second half, so boundedness shows over time rather than in
 * one end value; with what the run said it forgot and lost.
 *
 * BENCH_STEADY_MODES (default on-drop): on-drop, json, text. on-drop runs at
 * 20,000 packets/s; the plain traces (-o json > file, -o text > file) at
 * BENCH_STEADY_TRACE_PPS (default 2,000: every packet is ~6 events, so
 * 20 kpkt/s would be ~75 GB of JSON in 30 minutes and more text than the
 * CLI formats on this shared machine).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context';
import type { IperfResult } from './net';
import { rssKiB, sleep } from './proc';
import { mib, rate } from './report';
import { type Match, type RunningTracer, startPwru, type TracerOutcome } from './tracers';

type Mode = 'on-drop' | 'json' | 'text';

const SECTION = '7b long run';
const HELPER_GOAL_MIB = 32;

const MODE_NAME: Record<Mode, string> = {
  'on-drop': '`--on-drop`',
  json: 'plain trace `-o json > file`',
  text: 'plain trace `-o text > file`',
};

/** One look at both processes: seconds since traffic started, RSS in KiB. */
interface Sample {
  t: number;
  helper?: number;
  cli?: number;
}

export async function longRun(ctx: BenchContext): Promise<void> {
  const seconds = Number(process.env.BENCH_STEADY_SECONDS ?? 1800);
  const every = Number(process.env.BENCH_SAMPLE_SECONDS ?? 10);
  const modes = (process.env.BENCH_STEADY_MODES ?? 'on-drop').split(',') as Mode[];
  for (const mode of modes) {
    if (!(mode in MODE_NAME)) throw new Error(`BENCH_STEADY_MODES: no mode '${mode}' (on-drop, json, text)`);
    const pps = mode === 'on-drop' ? 20000 : Number(process.env.BENCH_STEADY_TRACE_PPS ?? 2000);
    await oneRun(ctx, mode, seconds, every, pps);
  }
}

async function oneRun(
  ctx: BenchContext,
  mode: Mode,
  seconds: number,
  every: number,
  pps: number,
): Promise<void> {
  const match: Match = { proto: 'udp', host: ctx.net.serverIp };
  const outFile = join(ctx.work, `long-run-${mode}.out`);
  const tracer = await startPwru({
    match,
    format: mode === 'text' ? 'text' : 'json',
    outFile,
    memory: true,
    duration: `${seconds + 300}s`,
    count: mode !== 'on-drop',
    extraArgs: mode === 'on-drop' ? ['--on-drop'] : [],
  });
  const samples: Sample[] = [];
  let traffic: IperfResult | undefined;
  let outcome: TracerOutcome | undefined;
  try {
    const t0 = Date.now();
    const sampling = sampleUntil(tracer, samples, t0, every);
    try {
      traffic = await ctx.net.iperf('udp64', seconds, pps);
    } finally {
      sampling.stop();
      await sampling.done;
    }
  } finally {
    outcome = await tracer.stop();
    rmSync(outFile, { force: true });
  }
  const what = `${MODE_NAME[mode]} for ${seconds} s at ${rate(pps, 'pkt/s')} (UDP 64 B, all matched)`;
  const sent = traffic ? `; ${rate(traffic.value, 'pkt/s')} sent` : '';
  for (const [name, key] of [
    ['pwru-helper', 'helper'],
    ['kubectl-pwru (node)', 'cli'],
  ] as const) {
    const peak = [...(outcome.memory ?? [])].find(([n]) => n.startsWith(name))?.[1];
    const helper = key === 'helper';
    ctx.report.add({
      section: SECTION,
      what: `${what}: ${name} RSS`,
      value: `${describe(samples, key, peak)}${sent}`,
      goal: helper ? `≤ ${HELPER_GOAL_MIB} MiB, flat` : 'flat (second half)',
      met: peak === undefined ? undefined : (!helper || peak <= HELPER_GOAL_MIB * 1024) && flat(samples, key),
    });
  }
  const cpu = [...(outcome.cpu ?? [])].map(([n, s]) => `${n} ${s.toFixed(0)} s`).join(', ');
  ctx.report.add({
    section: SECTION,
    what: `${what}: what the run said`,
    value: `${said(mode, outcome)}${cpu ? ` CPU: ${cpu}.` : ''}`,
  });
}

/** RSS of the helper and the CLI every `every` seconds until stopped. */
function sampleUntil(
  tracer: RunningTracer,
  samples: Sample[],
  t0: number,
  every: number,
): { stop(): void; done: Promise<void> } {
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const helperPid = tracer.bpfPid?.();
      const cliPid = tracer.cliPid?.();
      samples.push({
        t: (Date.now() - t0) / 1000,
        helper: helperPid === undefined ? undefined : rssKiB(helperPid),
        cli: cliPid === undefined ? undefined : rssKiB(cliPid),
      });
      for (let i = 0; i < every * 10 && !stopped; i++) await sleep(100);
    }
  })();
  return {
    stop: () => {
      stopped = true;
    },
    done,
  };
}

/** The sample nearest a time. */
function at(samples: Sample[], key: 'helper' | 'cli', t: number): number | undefined {
  let best: Sample | undefined;
  for (const s of samples) {
    if (s[key] === undefined) continue;
    if (!best || Math.abs(s.t - t) < Math.abs(best.t - t)) best = s;
  }
  return best?.[key];
}

/** Least-squares slope of RSS over the second half, in KiB per hour. */
function secondHalfSlope(samples: Sample[], key: 'helper' | 'cli'): number | undefined {
  const end = samples.at(-1)?.t ?? 0;
  const pts = samples.filter((s) => s.t >= end / 2 && s[key] !== undefined) as Required<Sample>[];
  if (pts.length < 3) return undefined;
  const mt = pts.reduce((a, s) => a + s.t, 0) / pts.length;
  const mv = pts.reduce((a, s) => a + s[key], 0) / pts.length;
  let num = 0;
  let den = 0;
  for (const s of pts) {
    num += (s.t - mt) * (s[key] - mv);
    den += (s.t - mt) ** 2;
  }
  return den ? (num / den) * 3600 : undefined;
}

/**
 * Flat: what the second half's fitted line adds over the second half is under
 * 5% of the level (a garbage-collected heap saws up and down by more than
 * that between collections; a leak keeps climbing).
 */
function flat(samples: Sample[], key: 'helper' | 'cli'): boolean {
  const slope = secondHalfSlope(samples, key);
  const end = samples.at(-1)?.t ?? 0;
  const level = at(samples, key, end) ?? 0;
  return slope !== undefined && (slope * end) / 2 / 3600 < Math.max(1024, level * 0.05);
}

function describe(samples: Sample[], key: 'helper' | 'cli', peak: number | undefined): string {
  const end = samples.at(-1)?.t ?? 0;
  const show = (kib: number | undefined) => (kib === undefined ? '?' : mib(kib));
  const slope = secondHalfSlope(samples, key);
  const n = samples.filter((s) => s[key] !== undefined).length;
  return [
    `peak ${show(peak)}`,
    `at 1/4 ${show(at(samples, key, end / 4))}`,
    `1/2 ${show(at(samples, key, end / 2))}`,
    `end ${show(at(samples, key, end))}`,
    `second half ${slope === undefined ? '?' : `${slope >= 0 ? '+' : ''}${(slope / 1024).toFixed(2)} MiB/h`}`,
    `(${n} samples)`,
  ].join(', ');
}

/** The counts the run ended with: forgotten and lost (--on-drop's closing line), or delivered and lost. */
function said(mode: Mode, o: TracerOutcome): string {
  if (mode === 'on-drop') {
    const line = o.stderr
      .split('\n')
      .reverse()
      .find((l) => l.includes('forgotten to stay bounded'));
    return line ? line.trim() : `no closing line: ${o.stderr.trim().slice(-300)}`;
  }
  return `${o.delivered} events written, ${o.kernelLost} lost${o.emitted !== undefined ? ` (of ${o.emitted})` : ''}, ${mib(o.outputBytes / 1024)} of output`;
}
