/**
 * 8. Function probes side by side with cilium/pwru (../shared/pwru/pwru), in
 * the qemu kernel-matrix guests (this machine's kernel has no kprobes): one
 * boot per kernel runs both binaries, alternately, on the same traffic and
 * filter, and every timing is taken by the guest's own clock (its shell polls
 * each tool's output every 50 ms: see test/kernel-matrix/guest/init.sh).
 *
 * - 6.12, kprobe-multi: attach step, start → ready, detach, functions covered.
 * - 6.1 (no fprobe: plain kprobes), every skb function: start → ready, and
 *   SIGINT → the user's prompt back: for the helper its END frame (the client
 *   returns there; the helper detaches after it, alone), for pwru its exit.
 *
 * Emulation (TCG) makes every figure slower than on hardware, and the host is
 * shared: the ratios in one boot are the point, not the seconds.
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { bootGuest, type CaseResult, type CaseSpec } from '../test/kernel-matrix/guest';
import type { BenchContext } from './context';
import { median } from './report';
import { helperBinary, REPO } from './tracers';

const SECTION = '8 functions';
export const PWRU = join(REPO, '..', 'shared', 'pwru', 'pwru');
/** The flow both tools trace: delivered to :9000, dropped by iptables at :9001 (guest/init.sh). */
const FILTER = 'udp and (dst port 9000 or dst port 9001)';

interface Side {
  tool: 'helper' | 'pwru';
  runs: CaseResult[];
}

function cases(backend: string, rounds: number): CaseSpec[] {
  const out: CaseSpec[] = [];
  for (let i = 1; i <= rounds; i++) {
    for (const tool of ['helper', 'pwru'] as const) {
      out.push({
        name: `${tool}-${i}`,
        tool,
        traffic: 'full',
        readyTimeout: 600,
        args: ['--backend', backend, '--', FILTER],
      });
    }
  }
  return out;
}

const s = (x: number) =>
  Number.isFinite(x) ? `${x.toFixed(2)} s` : 'not seen (the 50 ms poll missed its marks)';
/** The median of the runs where the guest saw the marks (a 50 ms poll can miss pwru's progress lines). */
const med = (xs: number[]) => {
  const seen = xs.filter(Number.isFinite);
  return seen.length ? median(seen) : Number.NaN;
};
const spread = (xs: number[]) =>
  xs.length > 1 ? ` (${xs.map((x) => (Number.isFinite(x) ? x.toFixed(2) : 'not seen')).join(', ')})` : '';

/** Start → ready, guest seconds (the helper's READY frame; pwru's "Listening for events"). */
function ready(c: CaseResult): number {
  return c.readySeconds;
}

/** The attach step alone: the helper's own timing; pwru's progress lines, as the guest saw them. */
function attachStep(c: CaseResult): number {
  if (c.ready?.steps_ms) return c.ready.steps_ms.attach / 1000;
  return c.marks['attach-end'] - c.marks['attach-begin'];
}

/** SIGINT → the user's prompt back: END for the helper (its client returns there), the exit for pwru. */
function promptBack(c: CaseResult): number {
  return c.ready ? c.marks.end - c.stopAt : c.stopSeconds;
}

/** Detaching: after END to the exit for the helper; from "Detaching kprobes" to the exit for pwru. */
function detach(c: CaseResult): number {
  const from = c.ready ? c.marks.end : c.marks['detach-begin'];
  return c.stopAt + c.stopSeconds - from;
}

/**
 * The kernel's own removal, from the same start as detach() to the moment its
 * lists were back to what they were before the run (the guest's 'clean' mark):
 * the helper hands its function probes to the kernel to remove after its exit.
 */
function kernelClean(c: CaseResult): number {
  const from = c.ready ? c.marks.end : c.marks['detach-begin'];
  return (c.marks.clean ?? Number.NaN) - from;
}

/** Functions attached: the helper's READY, and what the kernel lists (plain kprobes, or ftrace's traced functions). */
function functionsCovered(c: CaseResult, backend: string): string {
  const kernel = (backend === 'kprobe' ? c.info.kprobes : c.info.ftrace) ?? '?';
  return c.ready ? `${c.ready.attached - countTracepoints(c)} (kernel: ${kernel})` : kernel;
}

function countTracepoints(c: CaseResult): number {
  return c.ready?.probes.filter((p) => p.kind === 'tracepoint').length ?? 0;
}

function events(c: CaseResult): number {
  return c.ready ? c.events.length : Number(c.info.events ?? Number.NaN);
}

function failed(side: Side): string | undefined {
  const bad = side.runs.find((c) => c.exitCode !== 0 || c.state !== 'ready');
  if (!bad) return undefined;
  const why = bad.errors[0]?.message ?? bad.stderr.trim().split('\n').slice(-2).join(' ');
  return `${side.tool} run ${bad.name}: state ${bad.state}, exit ${bad.exitCode}: ${why.slice(0, 300)}`;
}

async function boot(kernel: string, backend: string, rounds: number): Promise<[Side, Side, string]> {
  const before = loadavg()[0];
  const run = await bootGuest({
    kernel,
    helper: helperBinary(),
    pwru: PWRU,
    cases: cases(backend, rounds),
    timeoutMs: 40 * 60_000,
  });
  const runs = [...run.cases.values()];
  const load = `host load average ${before.toFixed(1)} → ${loadavg()[0].toFixed(1)} on ${run.release}`;
  return [
    { tool: 'helper', runs: runs.filter((c) => c.name.startsWith('helper')) },
    { tool: 'pwru', runs: runs.filter((c) => c.name.startsWith('pwru')) },
    load,
  ];
}

function figure(
  ctx: BenchContext,
  what: string,
  h: number[],
  p: number[],
  goal: string,
  met: (h: number, p: number) => boolean,
): void {
  const mh = med(h);
  const mp = med(p);
  ctx.report.add({
    section: SECTION,
    what,
    value: `helper ${s(mh)}${spread(h)}, pwru ${s(mp)}${spread(p)}${Number.isFinite(mh / mp) ? `: ${(mh / mp).toFixed(2)}× pwru's` : ''}`,
    goal: goal || undefined,
    met: goal && Number.isFinite(mh) && Number.isFinite(mp) ? met(mh, mp) : undefined,
  });
}

async function kprobeMulti(ctx: BenchContext): Promise<void> {
  const backend = 'kprobe-multi';
  const [h, p, load] = await boot('6.12', backend, 3);
  const bad = failed(h) ?? failed(p);
  if (bad) return ctx.report.notMeasured(SECTION, '6.12 kprobe-multi, side by side with pwru', bad);
  const label = '6.12 kprobe-multi (all skb functions)';
  figure(
    ctx,
    `${label}: attach step`,
    h.runs.map(attachStep),
    p.runs.map(attachStep),
    "≤ pwru's",
    (a, b) => a <= b,
  );
  figure(
    ctx,
    `${label}: start → ready`,
    h.runs.map(ready),
    p.runs.map(ready),
    '≤ 1.0 s (≥ 10× faster)',
    (a, b) => a <= 1.0 && a * 10 <= b,
  );
  figure(
    ctx,
    `${label}: detach (helper: END → its exit; pwru: "Detaching kprobes" → its exit)`,
    h.runs.map(detach),
    p.runs.map(detach),
    "≤ pwru's",
    (a, b) => a <= b,
  );
  figure(
    ctx,
    `${label}: … until the kernel lists none of the probes (helper: it removes them after the exit)`,
    h.runs.map(kernelClean),
    p.runs.map(kernelClean),
    '',
    () => true,
  );
  figure(
    ctx,
    `${label}: SIGINT → prompt back (helper: END)`,
    h.runs.map(promptBack),
    p.runs.map(promptBack),
    '',
    () => true,
  );
  startupSteps(ctx, label, h);
  coverage(ctx, label, backend, h, p, load, 'the same functions (both counts)');
}

/** The helper's own start-up steps (READY's steps_ms), medians of its runs: where start → ready goes. */
function startupSteps(ctx: BenchContext, label: string, h: Side): void {
  const steps = h.runs.map((c) => c.ready?.steps_ms).filter((x) => x !== undefined);
  if (!steps.length) return;
  const keys = Object.keys(steps[0]) as (keyof (typeof steps)[0])[];
  const ms = (k: (typeof keys)[number]) => median(steps.map((x) => x[k] ?? Number.NaN));
  const named = keys.filter((k) => k !== 'total');
  const outside = ms('total') - named.reduce((sum, k) => sum + ms(k), 0);
  ctx.report.add({
    section: SECTION,
    what: `${label}: the helper's start-up steps (READY's steps_ms, medians of ${steps.length} runs)`,
    value: `${named.map((k) => `${k} ${Math.round(ms(k))}`).join(', ')} ms; main() → READY ${Math.round(
      ms('total'),
    )} ms (${Math.round(outside)} ms in no step)`,
  });
}

/** Both tools' functions covered and events of the traced flow, from their first runs. */
function coverage(
  ctx: BenchContext,
  label: string,
  backend: string,
  h: Parameters<typeof failed>[0],
  p: Parameters<typeof failed>[0],
  load: string,
  goal?: string,
): void {
  ctx.report.add({
    section: SECTION,
    what: `${label}: functions covered, events of the traced flow`,
    value: `helper ${functionsCovered(h.runs[0], backend)}, ${events(h.runs[0])} events; pwru ${functionsCovered(p.runs[0], backend)}, ${events(p.runs[0])} events; ${load}`,
    ...(goal ? { goal } : {}),
  });
}

async function plainKprobes(ctx: BenchContext): Promise<void> {
  const backend = 'kprobe';
  const [h, p, load] = await boot('6.1', backend, 1);
  const bad = failed(h) ?? failed(p);
  if (bad) return ctx.report.notMeasured(SECTION, '6.1 plain kprobes, side by side with pwru', bad);
  const label = '6.1 plain kprobes (every skb function)';
  figure(
    ctx,
    `${label}: start → ready`,
    h.runs.map(ready),
    p.runs.map(ready),
    "≤ 0.5× pwru's",
    (a, b) => a <= 0.5 * b,
  );
  figure(
    ctx,
    `${label}: SIGINT → prompt back (helper: END; pwru: its exit)`,
    h.runs.map(promptBack),
    p.runs.map(promptBack),
    "≤ 0.5× pwru's",
    (a, b) => a <= 0.5 * b,
  );
  figure(ctx, `${label}: attach step`, h.runs.map(attachStep), p.runs.map(attachStep), '', () => true);
  figure(
    ctx,
    `${label}: detach (helper: after END, alone)`,
    h.runs.map(detach),
    p.runs.map(detach),
    '',
    () => true,
  );
  figure(
    ctx,
    `${label}: … until the kernel lists none of the probes`,
    h.runs.map(kernelClean),
    p.runs.map(kernelClean),
    '',
    () => true,
  );
  coverage(ctx, label, backend, h, p, load);
}

export async function functions(ctx: BenchContext): Promise<void> {
  if (!existsSync(PWRU)) return ctx.report.notMeasured(SECTION, 'side by side with pwru', `no ${PWRU}`);
  for (const [name, fn] of [
    ['6.12 kprobe-multi', kprobeMulti],
    ['6.1 plain kprobes', plainKprobes],
  ] as const) {
    try {
      await fn(ctx);
    } catch (err) {
      ctx.report.notMeasured(SECTION, name, (err as Error).message.split('\n')[0].slice(0, 400));
    }
  }
}
