/**
 * The tracers under comparison, each started the way a user would start it,
 * with its output going to a file: kubectl-pwru (--local), bpftrace on the
 * same tracepoints with the same predicate printing the same fields, and
 * tcpdump with the same pcap filter. Each start() resolves once the tracer
 * is attached and its stop() once it has ended and its output is counted.
 */
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { childrenOf, comm, cpuSeconds, PeakMemory, type Proc, sleep, start, stop, treeCpu } from './proc';

export const REPO = join(__dirname, '..', '..');
export const BIN = join(REPO, 'bin', 'kubectl-pwru');
export const BUILT_HELPER = join(REPO, 'helper', 'build', 'amd64', 'pwru-helper');

/** The helper under test: the CLI's own PWRU_HELPER override, which run.ts points at a private copy. */
export function helperBinary(): string {
  return process.env.PWRU_HELPER || BUILT_HELPER;
}

/** What every tracer is asked to match: one protocol between one address and anything. */
export interface Match {
  proto: 'tcp' | 'udp';
  host: string;
}

export function pcapFilter(m: Match): string {
  return `${m.proto} and host ${m.host}`;
}

export interface TracerOutcome {
  /** Events (or packets) that reached the output file. */
  delivered: number;
  /** Kernel-side loss the tool reports (ring buffer full, perf buffer lost, pcap drops). */
  kernelLost: number;
  /** pwru: events the kernel put in the ring buffer (final STATS "events"). */
  emitted?: number;
  /** Peak RSS in KiB by process name, when asked for. */
  memory?: Map<string, number>;
  /** CPU seconds used by process name, when memory was asked for. */
  cpu?: Map<string, number>;
  /** pwru: the stderr text, for the record. */
  stderr: string;
  outputBytes: number;
}

export interface RunningTracer {
  /** ms from spawn to attached. */
  readyMs: number;
  probes: number;
  attachMs?: number;
  /** The process that holds the BPF programs (for their run-time statistics). */
  bpfPid?(): number | undefined;
  /** kubectl-pwru: the CLI's own process (node). */
  cliPid?(): number;
  /** CPU seconds the tracer's processes have used so far. */
  cpuNow(): number;
  /** The same by process name (kubectl-pwru with memory sampling on). */
  cpuByProcess?(): Map<string, number>;
  stop(): Promise<TracerOutcome>;
}

export interface PwruOptions {
  match?: Match;
  format: 'json' | 'text' | 'wide';
  /** stdout goes here, as with `> file`. */
  outFile: string;
  filterFunc?: string;
  memory?: boolean;
  /** Flags for node itself, e.g. --cpu-prof. */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
  /** More trace flags, e.g. --pcapng FILE. */
  extraArgs?: string[];
  /** --duration (default 300s): the run is stopped when its traffic ends. */
  duration?: string;
  /** Count the events in the output at the end (default); a long run's reports need not be. */
  count?: boolean;
  /** Kubernetes mode instead of --local: node/NAME from a debug pod in namespace, through the real API server. */
  kube?: KubeRun;
}

export interface KubeRun {
  node: string;
  namespace: string;
  kubeconfig: string;
  /**
   * The pod's processes, once the trace runs, by name: the runner and the helper (memory and CPU),
   * and what carries the stream to the CLI (CPU only). Found on this machine: the node is it.
   */
  podProcesses(): { runner?: number; carriers: Map<string, number> };
}

const TRACING = /tracing(?: on \S+)? with (\S+): (\d+) probes attached in (\d+) ms/;

export async function startPwru(o: PwruOptions): Promise<RunningTracer> {
  const where = o.kube
    ? [`node/${o.kube.node}`, '--kubeconfig', o.kube.kubeconfig, '--debug-namespace', o.kube.namespace]
    : ['--local'];
  const args = [...(o.nodeArgs ?? []), BIN, ...where, '--backend', 'tracepoint', '-o', o.format];
  args.push('--duration', o.duration ?? '300s', '--no-color');
  if (o.filterFunc) args.push('--filter-func', o.filterFunc);
  if (o.extraArgs) args.push(...o.extraArgs);
  if (o.match) args.push(pcapFilter(o.match));
  const fd = openSync(o.outFile, 'w');
  const t0 = performance.now();
  let proc: Proc;
  try {
    proc = start(process.execPath, args, {
      stdio: ['ignore', fd, 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
  } finally {
    closeSync(fd);
  }
  const memory = o.memory ? new PeakMemory(proc.pid, 'kubectl-pwru (node)') : undefined;
  let m: RegExpMatchArray;
  try {
    m = await proc.waitFor(TRACING, 'stderr', o.readyTimeoutMs ?? 30000);
  } catch (err) {
    memory?.finish();
    await stop(proc, 2000);
    throw err;
  }
  const readyMs = performance.now() - t0;
  // Kubernetes mode: the runner and the helper are the debug pod's, not the CLI's children.
  const pod = o.kube?.podProcesses();
  const podMemory =
    memory && pod?.runner ? new PeakMemory(pod.runner, 'runner (node, in the pod)') : undefined;
  const cpuByProcess = () => {
    const cpu = new Map([...(memory?.cpuNow() ?? []), ...(podMemory?.cpuNow() ?? [])]);
    for (const [name, pid] of pod?.carriers ?? []) cpu.set(name, cpuSeconds(pid) ?? 0);
    return cpu;
  };
  return {
    readyMs,
    probes: Number(m[2]),
    attachMs: Number(m[3]),
    bpfPid: () => childrenOf(proc.pid).find((c) => comm(c) === 'pwru-helper'),
    cliPid: () => proc.pid,
    cpuNow: () => treeCpu(proc.pid),
    cpuByProcess: memory ? cpuByProcess : undefined,
    async stop() {
      const code = await stop(proc);
      const podPeaks = podMemory?.finish();
      const mem = memory ? new Map([...memory.finish(), ...(podPeaks ?? [])]) : undefined;
      if (code !== 0) throw new Error(`kubectl-pwru exited with ${code}: ${proc.stderr.slice(-500)}`);
      const count = () =>
        o.outFile === '/dev/null' || o.count === false
          ? { delivered: 0, kernelLost: 0 }
          : o.format === 'json'
            ? countJson(o.outFile)
            : countText(o.outFile, o.format);
      let counted: ReturnType<typeof count>;
      try {
        counted = count();
      } catch (err) {
        throw new Error(`${(err as Error).message}; kubectl-pwru said: ${proc.stderr.slice(-500)}`);
      }
      return {
        ...counted,
        memory: mem,
        cpu: memory?.cpu,
        stderr: proc.stderr,
        outputBytes: statSync(o.outFile).size,
      };
    },
  };
}

/** -o json: header line, event lines, the final stats line. */
function countJson(file: string): { delivered: number; kernelLost: number; emitted?: number } {
  let delivered = 0;
  let stats: { events: number; lost: number } | undefined;
  scanLines(file, (line) => {
    if (line.startsWith('{"type":"event"')) delivered++;
    else if (line.startsWith('{"type":"stats"')) stats = JSON.parse(line) as { events: number; lost: number };
  });
  if (!stats) throw new Error(`no final stats line in ${file}`);
  return { delivered, kernelLost: stats.lost, emitted: stats.events };
}

/** -o text: one line per event starting with the skb address, then the summary "N events, L lost". */
function countText(
  file: string,
  format: 'text' | 'wide',
): { delivered: number; kernelLost: number; emitted?: number } {
  let delivered = 0;
  let summary: RegExpMatchArray | null = null;
  // An event's line starts with its skb (text) or its time (wide).
  const isEvent =
    format === 'text' ? (l: string) => l.startsWith('0x') : (l: string) => /^\d\d:\d\d:\d\d/.test(l);
  scanLines(file, (line) => {
    if (isEvent(line)) delivered++;
    else summary = line.match(/(\d+) events(?:, 0 lost|, (\d+) LOST)/) ?? summary;
  });
  const s = summary as RegExpMatchArray | null;
  if (!s) throw new Error(`no summary line in ${file}`);
  // The summary counts events the client received; the kernel's emitted count is not in text output.
  return { delivered, kernelLost: Number(s[2] ?? 0), emitted: Number(s[1]) };
}

/** Calls fn for each line of a file of any size, without holding it in memory. */
export function scanLines(file: string, fn: (line: string) => void): void {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(8 << 20);
  let rest = '';
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const text = rest + buf.toString('utf8', 0, n);
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) fn(line);
    }
  } finally {
    closeSync(fd);
  }
  if (rest) fn(rest);
}

export interface BpftraceOptions {
  match: Match;
  tracepoints: string[];
  outFile: string;
  scriptFile: string;
}

/** Tracepoint category/name for each name whose trace event carries the skb address (bpftrace's args->skbaddr). */
export function skbTracepoints(names: string[]): { probe: string; name: string }[] {
  const out: { probe: string; name: string }[] = [];
  const root = '/sys/kernel/tracing/events';
  const categories = existsSync(root) ? readdirSync(root) : [];
  for (const name of names) {
    for (const cat of categories) {
      const format = join(root, cat, name, 'format');
      if (!existsSync(format)) continue;
      if (/field:(const )?void \* skbaddr;/.test(readFileSync(format, 'utf8'))) {
        out.push({ probe: `tracepoint:${cat}:${name}`, name });
      }
      break;
    }
  }
  return out;
}

/** An IPv4 address as bpftrace reads a __be32 on a little-endian machine. */
function be32(ip: string): string {
  const [a, b, c, d] = ip.split('.').map(Number);
  return `0x${((d << 24) | (c << 16) | (b << 8) | a).toString(16).padStart(8, '0')}`;
}

/**
 * The same predicate as the pcap filter (protocol and host, on the IPv4
 * header at the network header) and the same fields as a pwru event: skb,
 * cpu, pid, process, netns, mark, interface, ifindex, protocol, mtu, length,
 * addresses, ports, tracepoint, time.
 */
export function bpftraceScript(m: Match, probes: string[]): string {
  const proto = m.proto === 'tcp' ? 6 : 17;
  const host = be32(m.host);
  return `BEGIN { printf("READY\\n"); }
${probes.join(',\n')}
{
  $skb = (struct sk_buff *)args->skbaddr;
  $ip = (struct iphdr *)($skb->head + $skb->network_header);
  if ($skb->network_header != 0xffff && $ip->protocol == ${proto} && ($ip->saddr == ${host} || $ip->daddr == ${host})) {
    $l4 = (uint8 *)($skb->head + $skb->network_header + $ip->ihl * 4);
    printf("%llx %u %u %s %u %u %s %u %x %u %u %s %s %u %u %s %llu\\n", (uint64)$skb, cpu, pid, comm,
      $skb->dev->nd_net.net->ns.inum, $skb->mark, $skb->dev->name, $skb->dev->ifindex, $skb->protocol,
      $skb->dev->mtu, $skb->len, ntop($ip->saddr), ntop($ip->daddr), (*$l4 << 8) | *($l4 + 1),
      (*($l4 + 2) << 8) | *($l4 + 3), probe, nsecs);
  }
}
`;
}

export async function startBpftrace(o: BpftraceOptions): Promise<RunningTracer> {
  const probes = skbTracepoints(o.tracepoints).map((t) => t.probe);
  if (probes.length === 0) throw new Error('no tracepoint with an skbaddr field (is tracefs mounted?)');
  writeFileSync(o.scriptFile, bpftraceScript(o.match, probes));
  // stdout to a file as with `>`: bpftrace's own -o buffers until exit.
  const fd = openSync(o.outFile, 'w');
  const t0 = performance.now();
  let proc: Proc;
  try {
    proc = start('bpftrace', [o.scriptFile], { stdio: ['ignore', fd, 'pipe'] });
  } finally {
    closeSync(fd);
  }
  const until = Date.now() + 90000;
  while (!fileHas(o.outFile, 'READY')) {
    if (Date.now() > until || proc.child.exitCode !== null) {
      await stop(proc, 2000);
      throw new Error(`bpftrace did not attach: ${proc.stderr.slice(-500)}`);
    }
    await sleep(50);
  }
  const readyMs = performance.now() - t0;
  return {
    readyMs,
    probes: probes.length,
    bpfPid: () => proc.pid,
    cpuNow: () => treeCpu(proc.pid),
    async stop() {
      await stop(proc);
      let delivered = 0;
      let lost = 0;
      scanLines(o.outFile, (line) => {
        if (/^[0-9a-f]{12,} /.test(line)) delivered++;
        else {
          const l = line.match(/Lost (\d+) events/);
          if (l) lost += Number(l[1]);
        }
      });
      return { delivered, kernelLost: lost, stderr: proc.stderr, outputBytes: statSync(o.outFile).size };
    },
  };
}

function fileHas(file: string, text: string): boolean {
  try {
    const fd = openSync(file, 'r');
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    closeSync(fd);
    return buf.toString('utf8', 0, n).includes(text);
  } catch {
    return false;
  }
}

export interface TcpdumpOptions {
  match: Match;
  netns: string;
  iface: string;
  outFile: string;
}

export async function startTcpdump(o: TcpdumpOptions): Promise<RunningTracer> {
  const t0 = performance.now();
  const proc = start('ip', [
    'netns',
    'exec',
    o.netns,
    'tcpdump',
    '-i',
    o.iface,
    '-n',
    '-w',
    o.outFile,
    pcapFilter(o.match),
  ]);
  await proc.waitFor(/listening on/, 'stderr', 20000);
  const readyMs = performance.now() - t0;
  return {
    readyMs,
    probes: 1,
    cpuNow: () => treeCpu(proc.pid),
    async stop() {
      await stop(proc);
      const captured = proc.stderr.match(/(\d+) packets? captured/);
      const dropped = proc.stderr.match(/(\d+) packets? dropped by kernel/);
      if (!captured) throw new Error(`tcpdump said: ${proc.stderr.slice(-300)}`);
      return {
        delivered: Number(captured[1]),
        kernelLost: Number(dropped?.[1] ?? 0),
        stderr: proc.stderr,
        outputBytes: statSync(o.outFile).size,
      };
    },
  };
}
