/**
 * 1. What tracing costs the traffic, and 4. memory while it does: iperf3
 * between the two namespaces with nothing attached, then with kubectl-pwru,
 * bpftrace and tcpdump attached, (a) matching none of the traffic and (b)
 * matching all of it with output to a file. TCP (GSO: few, large skbs) and
 * small-packet UDP (many skbs). Baselines are taken before, between and after
 * the traced runs, and each ratio is against their median, because the
 * machine is shared.
 */
import { join } from 'node:path';
import type { BenchContext } from './context';
import { startRunner } from './helper';
import type { IperfResult, Load } from './net';
import { median, mib, pct, rate } from './report';
import {
  type Match,
  pcapFilter,
  type RunningTracer,
  startBpftrace,
  startPwru,
  startTcpdump,
  type TracerOutcome,
} from './tracers';

type Tool = 'kubectl-pwru' | 'bpftrace' | 'tcpdump';

interface Traced {
  tool: Tool;
  iperf: IperfResult;
  outcome: TracerOutcome;
}

const LOAD_NAME: Record<Load, string> = {
  tcp: 'TCP (iperf3, GSO)',
  udp64: 'UDP 64 B (iperf3 -u -b 0 -l 64)',
};

function show(load: Load, r: IperfResult): string {
  return load === 'tcp' ? rate(r.value, 'bit/s') : rate(r.value, 'pkt/s');
}

export async function overhead(ctx: BenchContext): Promise<void> {
  const { net } = ctx;
  const memory = new Map<string, number>();
  for (const load of ['udp64', 'tcp'] as Load[]) {
    const none: Match = { proto: load === 'tcp' ? 'tcp' : 'udp', host: net.absentIp };
    const all: Match = { proto: none.proto, host: net.serverIp };
    const baselines: IperfResult[] = [await net.iperf(load, ctx.seconds)];
    const a: Traced[] = [];
    for (const tool of ['kubectl-pwru', 'bpftrace', 'tcpdump'] as Tool[]) {
      a.push(await traced(ctx, load, tool, none, 'a'));
    }
    baselines.push(await net.iperf(load, ctx.seconds));
    const b: Traced[] = [];
    for (const tool of ['kubectl-pwru', 'bpftrace', 'tcpdump'] as Tool[]) {
      b.push(await traced(ctx, load, tool, all, 'b'));
    }
    baselines.push(await net.iperf(load, ctx.seconds));

    const base = median(baselines.map((r) => r.value));
    const section = `1 ${load}`;
    ctx.report.add({
      section,
      what: `baseline, nothing attached: ${LOAD_NAME[load]}`,
      value: `${show(load, { ...baselines[0], value: base })} (median of ${baselines
        .map((r) => show(load, r))
        .join(
          ', ',
        )})${load === 'udp64' ? `; received ${rate(median(baselines.map((r) => r.receivedPps ?? 0)), 'pkt/s')}` : ''}`,
    });
    const ratio = (t: Traced) => t.iperf.value / base;
    for (const t of a) {
      const goal = t.tool === 'kubectl-pwru' ? '≥ 97% of baseline' : undefined;
      ctx.report.add({
        section,
        what: `(a) ${t.tool}, filter matches none (${pcapFilter(none)})`,
        value: `${pct(ratio(t))} (${show(load, t.iperf)})`,
        goal,
        met: goal ? ratio(t) >= 0.97 : undefined,
      });
    }
    const others = b.filter((t) => t.tool !== 'kubectl-pwru').map(ratio);
    for (const t of b) {
      const pwru = t.tool === 'kubectl-pwru';
      const o = t.outcome;
      const lost = o.kernelLost ? `, ${o.kernelLost} lost in the kernel` : ', 0 lost';
      const unit = t.tool === 'tcpdump' ? 'packets' : 'events';
      ctx.report.add({
        section,
        what: `(b) ${t.tool}, matches all, to a file${pwru ? ' (-o json > file)' : ''}`,
        value: `${pct(ratio(t))} (${show(load, t.iperf)}); ${o.delivered} ${unit} written${lost}`,
        goal: pwru ? '≥ 80% and > bpftrace, tcpdump' : undefined,
        met: pwru ? ratio(t) >= 0.8 && others.every((x) => ratio(t) > x) : undefined,
      });
      if (pwru && o.emitted !== undefined && o.emitted !== o.delivered) {
        ctx.report.add({
          section,
          what: '(b) kubectl-pwru: events the kernel emitted but the file lacks',
          value: String(o.emitted - o.delivered),
          goal: '0',
          met: false,
        });
      }
      for (const [name, kib] of o.memory ?? []) memory.set(name, Math.max(memory.get(name) ?? 0, kib));
    }
  }

  // The runner forwarding the helper's records (as in the debug pod), same UDP load, matching all.
  try {
    const all: Match = { proto: 'udp', host: net.serverIp };
    const runner = await startRunner(
      ['--backend', 'tracepoint', '--', pcapFilter(all)],
      join(ctx.work, 'runner.bin'),
    );
    await net.iperf('udp64', ctx.seconds);
    const r = await runner.stop();
    for (const [name, kib] of r.memory) {
      const key = name === 'pwru-helper' ? 'pwru-helper (under the runner)' : name;
      memory.set(key, Math.max(memory.get(key) ?? 0, kib));
    }
  } catch (err) {
    ctx.report.notMeasured('4 memory', 'peak RSS, runner', (err as Error).message);
  }
  for (const [name, kib] of memory) {
    const helper = name.startsWith('pwru-helper');
    ctx.report.add({
      section: '4 memory',
      what: `peak RSS during (b), ${name}`,
      value: mib(kib),
      goal: helper ? '≤ 32 MiB' : undefined,
      met: helper ? kib <= 32 * 1024 : undefined,
    });
  }
}

async function traced(
  ctx: BenchContext,
  load: Load,
  tool: Tool,
  match: Match,
  variant: 'a' | 'b',
): Promise<Traced> {
  const file = join(ctx.work, `${load}-${variant}-${tool}.out`);
  let tracer: RunningTracer;
  if (tool === 'kubectl-pwru') {
    tracer = await startPwru({ match, format: 'json', outFile: file, memory: variant === 'b' });
  } else if (tool === 'bpftrace') {
    tracer = await startBpftrace({
      match,
      tracepoints: ctx.tracepoints,
      outFile: file,
      scriptFile: join(ctx.work, `${load}-${variant}.bt`),
    });
  } else {
    tracer = await startTcpdump({
      match,
      netns: ctx.net.client,
      iface: ctx.net.clientIf,
      outFile: `${file}.pcap`,
    });
  }
  let iperf: IperfResult;
  try {
    iperf = await ctx.net.iperf(load, ctx.seconds);
  } catch (err) {
    await tracer.stop().catch(() => undefined);
    throw err;
  }
  return { tool, iperf, outcome: await tracer.stop() };
}
