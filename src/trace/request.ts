/**
 * A trace request: everything the user asked for, in one value, built by the
 * trace command (Complete), checked (Validate), then handed to a local or a
 * Kubernetes session (Run). helperArgs() is the one translation into the
 * helper's command line, used by the local runner and by the in-pod runner.
 */

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
  /** A pcap expression for the inner packet of a tunnel (VXLAN, Geneve, IP-in-IP, GRE). */
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
   * The helper writes the events as JSON lines itself (the sink's
   * acceptsLines) to its descriptors lineFds, following packets by these
   * rules: functions where a packet seen in another network namespace starts
   * anew (src/reading/packet-tracker.ts).
   */
  emitJson?: {
    packetStarts: readonly string[];
    lineFds: readonly number[];
    /** What each descriptor is (`stdout`, a path), for the helper's message when writing to it fails. */
    lineNames: readonly string[];
  };
  /**
   * --on-drop: the helper writes no events, only a report of each drop with
   * the last good packet of its flow (helper/on_drop.c), telling packets apart
   * by these rules (as emitJson).
   */
  onDrop?: { packetStarts: readonly string[] };
  /** --max-rate: matching events per second the kernel program writes at most. */
  maxRate?: number;
}

/** The helper's argv (without the program name) for a request. */
export function helperArgs(req: TraceRequest): string[] {
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
  if (req.emitJson) {
    args.push('--emit', 'json', '--packet-starts', req.emitJson.packetStarts.join(','));
    req.emitJson.lineFds.forEach((fd, i) => {
      args.push('--lines-fd', String(fd), '--lines-name', req.emitJson?.lineNames[i] ?? `descriptor ${fd}`);
    });
  }
  // "--" so that a filter starting with "-" is never taken for an option.
  if (req.pcapFilter) args.push('--', req.pcapFilter);
  return args;
}
