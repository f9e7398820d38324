/**
 * 2. The event pipeline: how many events per second reach the output with
 * nothing lost. Small UDP packets at a paced rate (iperf3 -b), matching all,
 * raised step by step until something is lost (in the kernel: the ring
 * buffer was full; in user space: the kernel emitted an event that the file
 * lacks); then the kernel's loss at twice the best loss-free rate. The same
 * for the text and wide views and for bpftrace printing the same fields.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_SNAPLEN } from '../src/trace/request';
import { clientCost } from './client-cost';
import type { BenchContext } from './context';
import { startHelperToFile } from './helper';
import { describeProfile, profileIn, summarizeProfile } from './profile';
import { pct, rate } from './report';
import {
  type Match,
  pcapFilter,
  type RunningTracer,
  startBpftrace,
  startPwru,
  type TracerOutcome,
} from './tracers';

export interface Step {
  pps: number;
  /** Packets/s iperf3 actually sent. */
  sentPps: number;
  /** Seconds of traffic. */
  wall: number;
  /** CPU seconds per process during the traffic (kubectl-pwru runs only). */
  cpu?: Map<string, number>;
  eventsPerSec: number;
  outcome: TracerOutcome;
  userLost: number;
  clean: boolean;
}

type Start = (file: string) => Promise<RunningTracer>;

/** Packet rates tried, lowest first. */
const STEPS = [
  2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 16000, 24000, 32000, 48000, 64000, 80000, 96000, 128000,
];
/** Halvings of the gap between the best clean step and the first lossy one. */
const REFINE = 2;

export async function pipeline(ctx: BenchContext): Promise<void> {
  // The routed path: twice the events per packet sent (bench/net.ts).
  const match: Match = { proto: 'udp', host: ctx.net.farIp };
  const json = await ramp(ctx, 'json', (f) => startPwru({ match, format: 'json', outFile: f, memory: true }));
  const text = await ramp(ctx, 'text', (f) => startPwru({ match, format: 'text', outFile: f, memory: true }));
  const wide = await ramp(ctx, 'wide', (f) => startPwru({ match, format: 'wide', outFile: f, memory: true }));
  const bpf = await ramp(ctx, 'bpftrace', (f) =>
    startBpftrace({ match, tracepoints: ctx.tracepoints, outFile: f, scriptFile: join(ctx.work, 'ramp.bt') }),
  );
  const helperOnly = await ramp(ctx, 'helper', (f) =>
    startHelperToFile(['--backend', 'tracepoint', '--', pcapFilter(match)], f),
  );
  const best = (r: Ramp) => r.best?.eventsPerSec ?? 0;
  ctx.report.add({
    section: '2 pipeline',
    what: 'kubectl-pwru -o json > file: highest loss-free rate',
    value: describe(json),
    goal: `≥ 500k ev/s and ≥ 2× bpftrace (${rate(2 * best(bpf), 'ev/s')})`,
    met: best(json) >= 500000 && best(json) >= 2 * best(bpf),
  });
  for (const [name, r] of [
    ['text', text],
    ['wide', wide],
  ] as const)
    ctx.report.add({
      section: '2 pipeline',
      what: `kubectl-pwru -o ${name} > file: highest loss-free rate`,
      value: describe(r),
      goal: '≥ 500k ev/s (issue 18)',
      met: best(r) >= 500000,
    });
  ctx.report.add({
    section: '2 pipeline',
    what: 'bpftrace printf > file: highest loss-free rate',
    value: describe(bpf),
  });
  ctx.report.add({
    section: '2 pipeline',
    what: 'for comparison: the helper alone > file (binary record stream, no client)',
    value: describe(helperOnly),
  });
  for (const [name, r] of [
    ['-o json', json],
    ['-o text', text],
    ['-o wide', wide],
  ] as const) {
    const at = r.firstLoss ?? r.best;
    if (at)
      ctx.report.add({
        section: '2 pipeline',
        what: `kubectl-pwru ${name}: CPU at ${rate(at.sentPps, 'pkt/s')}`,
        value: cpuShare(at),
      });
  }
  // The client's own cost per event, on the helper's biggest loss-free stream (client-cost.ts).
  if (helperOnly.best) {
    const stream = join(ctx.work, `ramp-helper-${helperOnly.best.pps}.out`);
    for (const format of ['text', 'wide', 'json'] as const) {
      const cost = clientCost(stream, format, join(ctx.work, `replay.${format}`));
      ctx.report.add({
        section: '2 pipeline',
        what: `the CLI's CPU per event, -o ${format}${format === 'json' ? ' read by the client (as with --pcapng)' : ''}: a recorded stream replayed`,
        value: `${cost.usPerEvent.toFixed(2)} µs (least of 3 runs, ${cost.events} events): ${rate(1e6 / cost.usPerEvent, 'ev/s')} per core at most`,
      });
    }
  }
  await profile(ctx, match, 'json', json.firstLoss ?? json.best);
  await profile(ctx, match, 'text', text.firstLoss ?? text.best);
  for (const [name, r] of [
    ['kubectl-pwru -o json', json],
    ['kubectl-pwru -o text', text],
    ['kubectl-pwru -o wide', wide],
    ['bpftrace', bpf],
    ['the helper alone', helperOnly],
  ] as const) {
    if (!r.double) continue;
    const o = r.double.outcome;
    const offered = o.delivered + o.kernelLost + r.double.userLost;
    ctx.report.add({
      section: '2 pipeline',
      what: `${name} at 2× that packet rate: kernel's lost events`,
      value: `${o.kernelLost} of ${offered} (${pct(o.kernelLost / Math.max(1, offered))}); ${rate(
        r.double.eventsPerSec,
        'ev/s',
      )} delivered at ${rate(r.double.sentPps, 'pkt/s')}${r.double.userLost ? `; ${r.double.userLost} lost in user space` : ''}`,
    });
  }
}

/**
 * 2b. The same ramp with packet bytes: -o json to a file and --pcapng at the
 * default snaplen. Every packet of the load is new, so each has its first
 * step captured: the heaviest case for the bytes. With --pcapng the client
 * decodes every event (the helper does not write the lines), as -o text does
 * in section 2.
 */
export async function pipelineWithBytes(ctx: BenchContext): Promise<void> {
  const match: Match = { proto: 'udp', host: ctx.net.farIp };
  const bytes = await ramp(ctx, 'pcapng', (f) =>
    startPwru({ match, format: 'json', outFile: f, memory: true, extraArgs: ['--pcapng', `${f}.pcapng`] }),
  );
  ctx.report.add({
    section: '2b pipeline with bytes',
    what: `kubectl-pwru -o json --pcapng (snaplen ${DEFAULT_SNAPLEN}) > file: highest loss-free rate`,
    value: describe(bytes),
  });
  const at = bytes.firstLoss ?? bytes.best;
  if (at)
    ctx.report.add({
      section: '2b pipeline with bytes',
      what: `kubectl-pwru --pcapng: CPU at ${rate(at.sentPps, 'pkt/s')}`,
      value: cpuShare(at),
    });
}

export interface Ramp {
  steps: Step[];
  best?: Step;
  /** The first step that lost events. */
  firstLoss?: Step;
  /** The ramp ended because the sender fell short of the asked rate (the tracer slowed it). */
  shortOf?: Step;
  double?: Step;
}

export function describe(r: Ramp): string {
  const best = r.best ? `${rate(r.best.eventsPerSec, 'ev/s')} (at ${rate(r.best.sentPps, 'pkt/s')})` : 'none';
  const loss = r.firstLoss
    ? `; first loss at ${rate(r.firstLoss.sentPps, 'pkt/s')}: ${r.firstLoss.outcome.kernelLost} in the kernel, ${r.firstLoss.userLost} in user space, ${rate(r.firstLoss.eventsPerSec, 'ev/s')} delivered`
    : r.shortOf
      ? `; no loss, but the sender managed only ${rate(r.shortOf.sentPps, 'pkt/s')} of the ${rate(r.shortOf.pps, 'pkt/s')} asked with this tracer attached`
      : '; no loss up to the highest rate tried';
  return best + loss;
}

export async function ramp(ctx: BenchContext, name: string, startTracer: Start): Promise<Ramp> {
  const out: Ramp = { steps: [] };
  const seconds = Math.max(2, Math.round(ctx.seconds * 0.75));
  for (const pps of STEPS) {
    let step = await measure(ctx, name, startTracer, pps, seconds);
    // On a shared machine the sender sometimes falls short for a while: once more before believing it.
    if (step.clean && step.sentPps < pps * 0.8) step = await measure(ctx, name, startTracer, pps, seconds);
    out.steps.push(step);
    process.stderr.write(
      `bench: pipeline ${name}: ${rate(step.sentPps, 'pkt/s')} → ${rate(step.eventsPerSec, 'ev/s')}, lost ${step.outcome.kernelLost} kernel, ${step.userLost} user\n`,
    );
    if (!step.clean) {
      out.firstLoss = step;
      break;
    }
    keepHighest(out, step);
    // The generator could not keep up: higher targets would measure the same thing.
    if (step.sentPps < pps * 0.8) {
      out.shortOf = step;
      break;
    }
  }
  // The steps are coarse at the top: narrow down where loss begins.
  for (let i = 0; i < REFINE && out.best && out.firstLoss; i++) {
    const pps = Math.round((out.best.pps + out.firstLoss.pps) / 2);
    const step = await measure(ctx, name, startTracer, pps, seconds);
    out.steps.push(step);
    process.stderr.write(
      `bench: pipeline ${name}: ${rate(step.sentPps, 'pkt/s')} → ${rate(step.eventsPerSec, 'ev/s')}, lost ${step.outcome.kernelLost} kernel, ${step.userLost} user (refining)\n`,
    );
    if (step.clean) keepHighest(out, step);
    else out.firstLoss = step;
  }
  if (out.best) out.double = await measure(ctx, name, startTracer, out.best.pps * 2, seconds);
  return out;
}

/** A clean step is the best only if it delivered more: a step the sender fell short in may deliver less than the one before. */
function keepHighest(out: Ramp, step: Step): void {
  if (!out.best || step.eventsPerSec >= out.best.eventsPerSec) out.best = step;
}

async function measure(
  ctx: BenchContext,
  name: string,
  startTracer: Start,
  pps: number,
  seconds: number,
): Promise<Step> {
  const tracer = await startTracer(join(ctx.work, `ramp-${name}-${pps}.out`));
  let sentPps: number;
  let wall: number;
  // CPU during the traffic only: start-up (Node, oclif, BTF, attach) is section 3's business.
  const cpuBefore = tracer.cpuByProcess?.();
  let cpu: Map<string, number> | undefined;
  try {
    const r = await ctx.net.iperf('udp64', seconds, pps, ctx.net.farIp);
    sentPps = r.value;
    wall = r.seconds;
    const cpuAfter = tracer.cpuByProcess?.();
    if (cpuBefore && cpuAfter)
      cpu = new Map([...cpuAfter].map(([n, sec]) => [n, sec - (cpuBefore.get(n) ?? 0)] as [string, number]));
  } catch (err) {
    await tracer.stop().catch(() => undefined);
    throw err;
  }
  const outcome = await tracer.stop();
  // pwru -o json: the final STATS "events" is what the kernel put in the ring buffer.
  // -o text: the client's own count (text output carries no kernel count).
  const userLost = outcome.emitted !== undefined ? Math.max(0, outcome.emitted - outcome.delivered) : 0;
  return {
    pps,
    sentPps,
    wall,
    cpu,
    eventsPerSec: outcome.delivered / wall,
    outcome,
    userLost,
    clean: outcome.kernelLost === 0 && userLost === 0,
  };
}

/**
 * CPU each process used during a step, as a share of one core and per
 * delivered event; and what their sum per event means for a core of its own
 * (on this 2-core machine the traffic generator competes for the same cores).
 */
export function cpuShare(step: Step): string {
  const wall = step.wall;
  const parts: string[] = [];
  let total = 0;
  for (const [name, sec] of step.cpu ?? []) {
    const perEvent = (sec * 1e6) / Math.max(1, step.outcome.delivered);
    total += perEvent;
    parts.push(`${name} ${pct(sec / wall)} of a core (${perEvent.toFixed(2)} µs/event)`);
  }
  if (parts.length > 1 && total > 0)
    parts.push(
      `together ${total.toFixed(2)} µs/event: ${rate(1e6 / total, 'ev/s')} per core of user-space work`,
    );
  return parts.join('; ') || 'not sampled';
}

/** One more run at the rate where loss began, under the V8 profiler. */
async function profile(
  ctx: BenchContext,
  match: Match,
  format: 'json' | 'text',
  at: Step | undefined,
): Promise<void> {
  if (!at) return;
  try {
    const dir = join(ctx.work, `pipeline-profile-${format}`);
    mkdirSync(dir, { recursive: true });
    const tracer = await startPwru({
      match,
      format,
      outFile: join(ctx.work, `pipeline-profile-${format}.out`),
      nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir],
    });
    await ctx.net
      .iperf('udp64', Math.max(2, Math.round(ctx.seconds * 0.75)), at.pps, ctx.net.farIp)
      .finally(() => tracer.stop());
    const p = summarizeProfile(profileIn(dir), 10);
    ctx.report.notes.push(
      `Event pipeline, -o ${format} at ${rate(at.sentPps, 'pkt/s')}: the CLI under node --cpu-prof (${Math.round(p.totalMs)} ms profiled). Self time by package: ${describeProfile(p, 'byPackage')}. By function: ${describeProfile(p, 'byFunction')}.`,
    );
  } catch (err) {
    ctx.report.notes.push(`Event pipeline, -o ${format}: the profiled run failed: ${(err as Error).message}`);
  }
}
