/**
 * A trace request: everything the user asked for, in one value, built once
 * (buildRequest) when where to trace is known, and never changed after: the
 * local session and the Kubernetes sessions run it as it is. helperArgs() is
 * the one translation into the helper's command line, used by the local
 * session and by the in-pod runner.
 */
import type { LinesFormat } from '../output/sink';
import { TX_START_FUNCS } from '../reading/kernel-functions';
import type { CommandWords } from './command-line';
import { parseDuration } from './duration';
import { composeFilter } from './filter';
import type { TraceFlags } from './flags';
import type { TracePlace } from './place';

export type Backend = 'auto' | 'kprobe-multi' | 'kprobe' | 'tracepoint';
export const BACKENDS: readonly Backend[] = ['auto', 'kprobe-multi', 'kprobe', 'tracepoint'];

/** --snaplen when --pcapng is given without it: the headers of most packets, and some payload. */
export const DEFAULT_SNAPLEN = 256;

export type OutputFormat = 'text' | 'wide' | 'json';

export interface TraceRequest {
  /** Full pcap-filter expression, flags and positional part already combined; '' traces everything. */
  pcapFilter: string;
  backend: Backend;
  /** POSIX extended regex on function names (kprobe backends) or tracepoint names. */
  filterFunc?: string;
  /** Network namespace: inode number or a path such as /proc/PID/ns/net or /run/netns/NAME. */
  filterNetns?: string;
  /** MARK or MARK/MASK, decimal or 0x hex. */
  filterMark?: string;
  filterIfname?: string;
  trackSkb: boolean;
  /** A pcap expression for the inner packet of a tunnel (VXLAN, Geneve, IP-in-IP, GRE), with the target's addresses. */
  tunnelFilter?: string;
  /** VXLAN's and Geneve's UDP ports, when not the usual ones. */
  vxlanPort?: number;
  genevePort?: number;
  allKmods: boolean;
  outputStack: boolean;
  /** Stop after this many seconds. */
  durationSec?: number;
  /** Stop after this many events. */
  maxEvents?: number;
  /** Ring buffer size in bytes (power of two). */
  ringbufBytes?: number;
  /** Bytes of each packet the kernel captures, from its IP header (at its first step and where it was rewritten). */
  snaplen?: number;
  /**
   * --on-drop: the helper writes no events, only a report of each drop with
   * the last good packet of its flow (helper/on_drop.c), telling packets apart
   * by these rules (as the JSON lines do).
   */
  onDrop?: { packetStarts: readonly string[] };
  /** --max-rate: matching events per second the kernel program writes at most. */
  maxRate?: number;
}

/**
 * The helper writes the events as JSON lines itself (the sink's acceptsLines)
 * to these descriptors of its own, following packets by these rules: the
 * functions where a packet seen in another network namespace starts anew
 * (src/reading/kernel-functions.ts). How a session wires its outputs, not
 * part of the request.
 */
export interface LineOutputs {
  /** Which lines: JSON, or a text view's (with the words of their notes, src/output/text-notes.ts). */
  emit: LinesFormat;
  textNotes?: string;
  packetStarts: readonly string[];
  /**
   * Where the lines go: the client's descriptors (its stdout and --output-file, as the helper's fd 3 and
   * 4), or the record stream itself as LINES frames (`stream`: Kubernetes mode, where the stream travels
   * through the runner and the API server and the client copies them to its outputs).
   */
  to: { fds: readonly number[]; names: readonly string[] } | 'stream';
  /** With JSON lines in Kubernetes mode: the node every line names. */
  node?: string;
  /** A file in the helper's directory of "ADDRESS NAME" lines: the lines name addresses' owners. */
  addrNames?: string;
}

/** The helper's argv (without the program name) for a request, and where its JSON lines go. */
export function helperArgs(req: TraceRequest, lines?: LineOutputs): string[] {
  const args = ['--backend', req.backend];
  if (req.filterFunc) args.push('--filter-func', req.filterFunc);
  if (req.filterNetns) args.push('--filter-netns', req.filterNetns);
  if (req.filterMark) args.push('--filter-mark', req.filterMark);
  if (req.filterIfname) args.push('--filter-ifname', req.filterIfname);
  if (req.trackSkb) args.push('--filter-track-skb');
  if (req.tunnelFilter) args.push('--tunnel-filter', req.tunnelFilter);
  if (req.vxlanPort !== undefined) args.push('--vxlan-port', String(req.vxlanPort));
  if (req.genevePort !== undefined) args.push('--geneve-port', String(req.genevePort));
  if (req.allKmods) args.push('--all-kmods');
  if (req.outputStack) args.push('--output-stack');
  if (req.durationSec !== undefined) args.push('--duration', String(req.durationSec));
  if (req.maxEvents !== undefined) args.push('--max-events', String(req.maxEvents));
  if (req.ringbufBytes !== undefined) args.push('--ringbuf-size', String(req.ringbufBytes));
  if (req.snaplen !== undefined) args.push('--snaplen', String(req.snaplen));
  if (req.maxRate !== undefined) args.push('--max-rate', String(req.maxRate));
  if (req.onDrop) args.push('--on-drop', '--packet-starts', req.onDrop.packetStarts.join(','));
  if (lines) {
    args.push('--emit', lines.emit, '--packet-starts', lines.packetStarts.join(','));
    if (lines.textNotes !== undefined) args.push('--text-notes', lines.textNotes);
    const to = lines.to;
    if (to === 'stream') args.push('--lines-stream');
    else
      to.fds.forEach((fd, i) => {
        args.push('--lines-fd', String(fd), '--lines-name', to.names[i] ?? `descriptor ${fd}`);
      });
    if (lines.node !== undefined) args.push('--line-node', lines.node);
    if (lines.addrNames !== undefined) args.push('--addr-names', lines.addrNames);
  }
  // "--" so that a filter starting with "-" is never taken for an option.
  if (req.pcapFilter) args.push('--', req.pcapFilter);
  return args;
}

/** --on-drop's ring buffer: 4 MiB (~25,000 events) instead of 8, so the helper stays well under 32 MiB. */
/**
 * Kubernetes mode's ring buffer: 32 MiB (~190,000 events, a second of a 200k events/s flood) instead of 8.
 * The stream goes through the runner, the runtime, the kubelet, the API server and the client, each a process
 * that may wait for a CPU, and the helper stops reading the ring while its reader waits: with 8 MiB (~0.25 s
 * of such a flood) floods of 150-200k events/s lost events in the kernel at a load of 4-5 on the 2-core test
 * machine, with 32 MiB none (BENCHMARKS.md, section 9). The pod's memory limit (512 MiB) holds it.
 */
const KUBE_RINGBUF_BYTES = 32 << 20;
const ON_DROP_RINGBUF_BYTES = 4 << 20;

/** The request, once where the trace runs is known: the target's addresses join the filters. */
export function buildRequest(flags: TraceFlags, words: CommandWords, place: TracePlace): TraceRequest {
  const tunnel = flags['tunnel-filter'];
  return {
    pcapFilter: composeFilter({
      proto: flags.proto,
      port: flags.port,
      host: flags.host,
      expression: words.expression,
      addresses: place.addresses,
    }),
    tunnelFilter:
      tunnel !== undefined ? composeFilter({ expression: tunnel, addresses: place.addresses }) : undefined,
    vxlanPort: flags['vxlan-port'],
    genevePort: flags['geneve-port'],
    backend: flags.backend as Backend,
    filterFunc: flags['filter-func'],
    filterNetns: flags['filter-netns'],
    filterMark: flags['filter-mark'],
    filterIfname: flags['filter-ifname'],
    trackSkb: Boolean(flags['filter-track-skb']),
    allKmods: Boolean(flags['all-kmods']),
    outputStack: Boolean(flags['output-stack']),
    durationSec: flags.duration !== undefined ? parseDuration('--duration', flags.duration) : undefined,
    maxEvents: flags['max-events'],
    // --on-drop runs for hours: the ring is mapped into the helper (its pages count in its memory) twice over.
    ringbufBytes:
      flags['ringbuf-size'] ??
      (flags['on-drop'] ? ON_DROP_RINGBUF_BYTES : flags.local ? undefined : KUBE_RINGBUF_BYTES),
    snaplen: flags.snaplen ?? (flags.pcapng !== undefined ? DEFAULT_SNAPLEN : undefined),
    maxRate: flags['max-rate'],
    ...(flags['on-drop'] ? { onDrop: { packetStarts: [...TX_START_FUNCS] } } : {}),
  };
}
