/**
 * Decodes the helper's record stream (bpf/event.h, docs/record-stream.md) into
 * trace lines. This is the only place that knows the binary layout: the C
 * header declares it, this file reads it.
 */
import { formatAddress } from './address';
import {
  type PacketBytes,
  type ProbeKind,
  TRACE_SCHEMA_VERSION,
  type TraceCulprit,
  type TraceDigest,
  type TraceEvent,
  type TraceProgRun,
  type Tunnel,
  type Tuple,
} from './event';

export const STREAM_VERSION = 1;
export const EVENT_VERSION = 2;
export const EVENT_SIZE = 168;
const FRAME_HEADER_SIZE = 8;
/** No JSON frame is anywhere near this; a larger length means the stream is corrupt. */
const MAX_FRAME = 64 << 20;

export const FrameType = {
  Hello: 1,
  Progress: 2,
  Ready: 3,
  Event: 4,
  Stats: 5,
  Error: 6,
  End: 7,
  Symbol: 8,
  Stack: 9,
  Warning: 10,
  Digest: 12,
  Packet: 14,
  Culprit: 15,
  DropReport: 16,
  Watch: 17,
  Tunnel: 18,
  Prog: 19,
  PacketDone: 20,
  Copy: 21,
  Lines: 22,
} as const;

/* Offsets in struct pwru_event. */
const OFF = {
  ts: 0,
  skb: 8,
  addr: 16,
  caller: 24,
  probeId: 32,
  cpu: 36,
  pid: 40,
  netns: 44,
  mark: 48,
  ifindex: 52,
  mtu: 56,
  len: 60,
  dropReason: 64,
  stackId: 68,
  protocol: 72,
  sport: 74,
  dport: 76,
  l3: 78,
  l4: 79,
  tcpFlags: 80,
  flags: 81,
  icmpType: 82,
  icmpCode: 83,
  pktType: 84,
  saddr: 88,
  daddr: 104,
  comm: 120,
  ifname: 136,
  head: 152,
  tcpSeq: 160,
  ipId: 164,
  dataref: 166,
} as const;

const F_DROP = 0x01;
const F_HAS_REASON = 0x02;
const F_TRACKED = 0x04;
const F_HAS_TUPLE = 0x08;
const F_FREED = 0x10;

/* struct pwru_packet (bpf/event.h): the header of a PACKET frame, the bytes after it. */
export const PACKET_HEADER_SIZE = 32;
const PKT = { ts: 0, skb: 8, origLen: 16, capLen: 20, why: 24 } as const;
const CAPTURES: Record<number, 'first' | 'changed'> = { 1: 'first', 2: 'changed' };

/* struct pwru_tunnel (bpf/event.h): a TUNNEL frame. */
export const TUNNEL_SIZE = 64;
const TUN = {
  ts: 0,
  skb: 8,
  vni: 16,
  kind: 20,
  l3: 21,
  l4: 22,
  sport: 24,
  dport: 26,
  saddr: 32,
  daddr: 48,
} as const;
/* struct pwru_copy (bpf/event.h): a COPY frame. */
export const COPY_SIZE = 32;
const CPY = { ts: 0, skb: 8, origSkb: 16, origHead: 24 } as const;

const TUNNEL_KINDS: Tunnel['kind'][] = ['unknown', 'vxlan', 'geneve', 'ipip', 'gre'];

export interface HelloInfo {
  stream: number;
  event_version: number;
  event_size: number;
  helper: string;
  kernel: string;
  arch: string;
  hostname: string;
  /** CLOCK_MONOTONIC and CLOCK_REALTIME read together, ns, as decimal strings. */
  mono_ns: string;
  real_ns: string;
  /** The version of the JSON lines it writes with --emit json. */
  json_schema?: number;
}

export interface ProgressInfo {
  phase: string;
  done: number;
  total: number;
  message: string;
}

export interface ProbeInfo {
  id: number;
  name: string;
  kind: ProbeKind;
}

export interface ReadyInfo {
  backend: ProbeKind;
  /** How the backend was chosen, e.g. "auto chose tracepoint (available: tracepoint)". */
  backend_note: string;
  probes: ProbeInfo[];
  attached: number;
  attach_ms: number;
  /**
   * How long the helper's start-up steps took, ms: the BTF, the input checked, choosing probes, loading,
   * the netfilter walkers' programs, attaching, the first reading of the rules; total from its main() to
   * READY (helpers before issue 18's start-up work send only btf, probes, load and attach).
   */
  steps_ms?: {
    btf: number;
    input?: number;
    probes: number;
    load: number;
    netfilter?: number;
    attach: number;
    culprits?: number;
    total?: number;
  };
  skipped: number;
  filter: string;
  drop_reasons: Record<string, string>;
  ringbuf_bytes: number;
}

export interface StatsInfo {
  seen: number;
  emitted: number;
  lost: number;
  /** --snaplen: events sent without their bytes. */
  bytes_lost?: number;
  /** Events read after the stop and not shown (helpers since the fault-injection work). */
  discarded?: number;
  /** --max-rate: matching events the kernel program did not write. */
  skipped?: number;
  final: boolean;
}

export interface HelperMessage {
  code: string;
  message: string;
}

export type CulpritInfo = Omit<TraceCulprit, 'type' | 'v' | 'node'>;
/** A PROG frame's payload: a tc/XDP program's run on a traced packet (a trace line without type, v and node). */
export type ProgRunInfo = Omit<TraceProgRun, 'type' | 'v' | 'node'>;
/**
 * --on-drop: a drop; the next bad.steps + good.steps EVENT frames, then each
 * copy's steps, are its packets' steps (docs/record-stream.md).
 */
export interface DropReportInfo {
  n: number;
  /** The flow as the packet entered the trace: absent when it never showed an IP tuple. */
  flow?: { family: 4 | 6; l4: number; src: string; dst: string; dport?: number };
  bad: ReportedPathInfo;
  good?: ReportedPathInfo;
  /** The dropped packet's copies and clones (a raw socket's, nft dup's), each with how it ended. */
  copies?: ReportedPathInfo[];
  forgotten_flows: number;
  forgotten_packets: number;
  forgotten_steps: number;
}

export interface ReportedPathInfo {
  packet: number;
  steps: number;
  forgotten_steps: number;
  /** The kept steps are the first gap_after and the last ones: the rest are forgotten. */
  gap_after?: number;
  /** How the good one or a copy ended: freed, quiet (its end untraced), in-flight; a copy also dropped. */
  ended?: string;
}

/**
 * --emit text|wide: a finished packet for the closing table (helper/packet_book.c);
 * the next `steps` EVENT frames are its steps. `count` packets of the same
 * shape stand behind it (id: the lowest of them).
 */
export interface PacketDoneInfo {
  id: number;
  count: number;
  steps: number;
  copy_of?: number;
  /** That copy has its own data buffer (a copy function made it), not a clone's. */
  copied?: boolean;
  replaced_by?: number;
  copies?: number[];
  /** Not finished when the trace ended. */
  open?: boolean;
}

/** --on-drop: what the helper watches and what it had to forget, with each STATS. */
export interface WatchInfo {
  packets: number;
  flows: number;
  drops: number;
  unreported: number;
  forgotten_flows: number;
  forgotten_packets: number;
  forgotten_steps: number;
  stored_steps: number;
  final: boolean;
}

export interface EndInfo {
  reason: string;
  events: number;
  lost: number;
}

/** What a consumer of the stream hears; every callback is optional. */
export interface RecordListener {
  hello?(hello: HelloInfo): void;
  progress?(progress: ProgressInfo): void;
  ready?(ready: ReadyInfo): void;
  event?(event: TraceEvent): void;
  digest?(digest: TraceDigest): void;
  /** Who dropped a packet: the payload of a CULPRIT frame (a trace line without type, v and node). */
  culprit?(culprit: CulpritInfo): void;
  /** A tc or XDP program's run on a traced packet: the payload of a PROG frame. */
  prog?(run: ProgRunInfo): void;
  stats?(stats: StatsInfo): void;
  warning?(warning: HelperMessage): void;
  error?(error: HelperMessage): void;
  end?(end: EndInfo): void;
  dropReport?(report: DropReportInfo): void;
  watch?(watch: WatchInfo): void;
  packetDone?(info: PacketDoneInfo): void;
  /** --lines-stream: whole lines the helper wrote (--emit json|text|wide), each with its newline; a view of the chunk. */
  lines?(text: Buffer): void;
}

export class StreamError extends Error {}

const PKT_TYPES = ['host', 'broadcast', 'multicast', 'otherhost', 'outgoing', 'loopback', 'user', 'kernel'];
const L3_NAMES: Record<number, string> = { 2048: 'IPv4', 34525: 'IPv6', 2054: 'ARP', 33024: '802.1Q' };
const L4_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

/** TCP flags as tcpdump writes them: "S", "S.", "P.", "F.", "R". */
export function tcpFlagLetters(flags: number): string {
  let s = '';
  if (flags & 0x01) s += 'F';
  if (flags & 0x02) s += 'S';
  if (flags & 0x04) s += 'R';
  if (flags & 0x08) s += 'P';
  if (flags & 0x20) s += 'U';
  if (flags & 0x40) s += 'E';
  if (flags & 0x80) s += 'W';
  if (flags & 0x10) s += '.';
  return s || 'none';
}

function cString(buf: Buffer, start: number, max: number): string {
  let end = start;
  const limit = start + max;
  while (end < limit && buf[end] !== 0) end++;
  return buf.toString('latin1', start, end);
}

/** Hex of a little-endian u64; kernel addresses share their high half, so that part is cached. */
const highHex = new Map<number, string>();
function hex64(buf: Buffer, off: number): string {
  const lo = buf.readUInt32LE(off);
  const hi = buf.readUInt32LE(off + 4);
  if (hi === 0) return `0x${lo.toString(16)}`;
  let h = highHex.get(hi);
  if (h === undefined) {
    h = `0x${hi.toString(16)}`;
    highHex.set(hi, h);
  }
  return h + lo.toString(16).padStart(8, '0');
}

/**
 * The text of recent skb and data-buffer addresses: a packet's dozen steps
 * repeat its address, so each is made once (direct-mapped on the low half,
 * whose bits above the slab alignment vary most).
 */
class AddressTexts {
  private readonly lo = new Uint32Array(1024);
  private readonly hi = new Uint32Array(1024);
  private readonly texts: string[] = new Array(1024).fill('');

  get(b: Buffer, off: number): string {
    const lo = b.readUInt32LE(off);
    const hi = b.readUInt32LE(off + 4);
    const i = ((lo >>> 6) ^ (lo >>> 16)) & 1023;
    if (this.texts[i] !== '' && this.lo[i] === lo && this.hi[i] === hi) return this.texts[i];
    const text = hex64(b, off);
    this.lo[i] = lo;
    this.hi[i] = hi;
    this.texts[i] = text;
    return text;
  }
}

/** Few distinct strings recur in a trace (addresses, names): decode each once. */
class StringCache<K> {
  private readonly map = new Map<K, string>();
  get(key: K, make: () => string): string {
    let v = this.map.get(key);
    if (v === undefined) {
      if (this.map.size > 4096) this.map.clear();
      v = make();
      this.map.set(key, v);
    }
    return v;
  }
}

/**
 * Strings made from 16 raw bytes (names, IPv6 addresses), looked up without
 * allocating a key: each slot keeps the bytes as four words, compared with
 * the words the hash was made of (no native call per lookup).
 */
class ByteStringCache {
  private readonly words = new Uint32Array(1024 * 4);
  private readonly texts: (string | undefined)[] = new Array(1024);

  constructor(private readonly make: (b: Buffer, off: number) => string) {}

  get(b: Buffer, off: number): string {
    const w0 = b.readUInt32LE(off);
    const w1 = b.readUInt32LE(off + 4);
    const w2 = b.readUInt32LE(off + 8);
    const w3 = b.readUInt32LE(off + 12);
    const h = (Math.imul(w0, 0x9e3779b1) ^ Math.imul(w1, 0x85ebca6b) ^ Math.imul(w2, 0xc2b2ae35) ^ w3) >>> 22;
    const text = this.texts[h];
    const at = h * 4;
    const words = this.words;
    if (
      text !== undefined &&
      words[at] === w0 &&
      words[at + 1] === w1 &&
      words[at + 2] === w2 &&
      words[at + 3] === w3
    )
      return text;
    const made = this.make(b, off);
    words[at] = w0;
    words[at + 1] = w1;
    words[at + 2] = w2;
    words[at + 3] = w3;
    this.texts[h] = made;
    return made;
  }
}

/**
 * Incremental decoder: push() chunks as they arrive (they may split frames
 * anywhere) and the listener hears each record in order.
 */
export class RecordDecoder {
  /** The start of a frame split across chunks. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  private probes: ProbeInfo[] = [];
  private dropReasons: Record<string, string> = {};
  private readonly symbols = new Map<string, string>();
  private readonly stacks = new Map<number, string[]>();
  /** realtime - monotonic, ms, to turn kernel timestamps into wall-clock times. */
  private monoToRealMs = 0;
  /** CLOCK_MONOTONIC at HELLO, ms (a double keeps sub-ms precision for years of uptime). */
  private monoBaseMs = 0;
  private lastMs = -1;
  private lastTime = '';
  private readonly v4Names = new StringCache<number>();
  private readonly v6Names = new ByteStringCache((b, off) => formatAddress(6, b, off));
  private readonly texts = new ByteStringCache((b, off) => cString(b, off, 16));
  private readonly addresses = new AddressTexts();
  private seenHello = false;
  /** A PACKET frame, waiting for the EVENT it comes before. */
  private pendingBytes?: { ts: string; skb: string; bytes: PacketBytes };
  /** A TUNNEL frame, likewise. */
  private pendingTunnel?: { ts: string; skb: string; tunnel: Tunnel };
  /** A COPY frame, likewise. */
  private pendingCopy?: { ts: string; skb: string; from: { skb: string; head: string } };
  private offset = 0;

  constructor(
    private readonly listener: RecordListener,
    private readonly node?: string,
  ) {}

  /** Bytes consumed so far: a position to report when the stream is corrupt. */
  get position(): number {
    return this.offset;
  }

  push(chunk: Buffer): void {
    if (this.partsLen === 0) {
      const pos = this.parse(chunk);
      if (pos < chunk.length) this.keep(chunk.subarray(pos));
      return;
    }
    // A frame split across chunks: gather its parts, join them once.
    this.keep(chunk);
    if (this.partsLen < this.needed()) return;
    const all = Buffer.concat(this.parts, this.partsLen);
    this.parts = [];
    this.partsLen = 0;
    const pos = this.parse(all);
    if (pos < all.length) this.keep(all.subarray(pos));
  }

  /** Views, not copies: stream chunks are fresh buffers that nothing writes to again. */
  private keep(part: Buffer): void {
    this.parts.push(part);
    this.partsLen += part.length;
  }

  /** Bytes the first kept frame needs in all (a header's worth while its header is incomplete). */
  private needed(): number {
    if (this.partsLen < FRAME_HEADER_SIZE) return FRAME_HEADER_SIZE;
    const first = this.parts[0];
    const head = first.length >= FRAME_HEADER_SIZE ? first : Buffer.concat(this.parts, FRAME_HEADER_SIZE);
    const len = head.readUInt32LE(0);
    if (len > MAX_FRAME)
      throw new StreamError(`corrupt record stream at byte ${this.offset}: frame of ${len} bytes`);
    return FRAME_HEADER_SIZE + len;
  }

  /** Decodes the whole frames in buf; returns where the first incomplete one starts. */
  private parse(buf: Buffer): number {
    let pos = 0;
    while (buf.length - pos >= FRAME_HEADER_SIZE) {
      const len = buf.readUInt32LE(pos);
      const type = buf.readUInt16LE(pos + 4);
      if (len > MAX_FRAME)
        throw new StreamError(`corrupt record stream at byte ${this.offset}: frame of ${len} bytes`);
      if (buf.length - pos - FRAME_HEADER_SIZE < len) break;
      const start = pos + FRAME_HEADER_SIZE;
      this.frame(type, buf, start, len);
      pos = start + len;
      this.offset += FRAME_HEADER_SIZE + len;
    }
    return pos;
  }

  /** Call when the stream ended: complains if it stopped inside a frame. */
  finish(): void {
    if (this.partsLen > 0) {
      throw new StreamError(`record stream ended inside a frame (${this.partsLen} bytes left over)`);
    }
  }

  private json<T>(buf: Buffer, start: number, len: number): T {
    const text = buf.toString('utf8', start, start + len);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new StreamError(
        `corrupt record stream at byte ${this.offset}: bad JSON frame ${text.slice(0, 80)}`,
      );
    }
  }

  private frame(type: number, buf: Buffer, start: number, len: number): void {
    if (!this.seenHello && type !== FrameType.Hello) {
      throw new StreamError('record stream does not start with a HELLO frame: is this the pwru helper?');
    }
    switch (type) {
      case FrameType.Event:
        if (len < EVENT_SIZE) throw new StreamError(`short event frame (${len} bytes)`);
        this.listener.event?.(this.decodeEvent(buf, start));
        return;
      case FrameType.Tunnel:
        if (len < TUNNEL_SIZE) throw new StreamError(`short tunnel frame (${len} bytes)`);
        this.pendingTunnel = this.decodeTunnel(buf, start);
        return;
      case FrameType.Copy:
        if (len < COPY_SIZE) throw new StreamError(`short copy frame (${len} bytes)`);
        this.pendingCopy = {
          ts: buf.readBigUInt64LE(start + CPY.ts).toString(),
          skb: hex64(buf, start + CPY.skb),
          from: {
            skb: this.addresses.get(buf, start + CPY.origSkb),
            head: this.addresses.get(buf, start + CPY.origHead),
          },
        };
        return;
      case FrameType.Packet:
        this.pendingBytes = this.decodePacket(buf, start, len);
        return;
      case FrameType.Digest:
        this.listener.digest?.(this.json<TraceDigest>(buf, start, len));
        return;
      case FrameType.Culprit:
        this.listener.culprit?.(this.json<CulpritInfo>(buf, start, len));
        return;
      case FrameType.Prog:
        this.listener.prog?.(this.json<ProgRunInfo>(buf, start, len));
        return;
      case FrameType.PacketDone:
        this.listener.packetDone?.(this.json<PacketDoneInfo>(buf, start, len));
        return;
      case FrameType.Lines:
        this.listener.lines?.(buf.subarray(start, start + len));
        return;
      case FrameType.Hello: {
        const hello = this.json<HelloInfo>(buf, start, len);
        // json_schema: the lines it would write with --emit json (a helper left from an older build).
        const schema = hello.json_schema ?? TRACE_SCHEMA_VERSION;
        if (
          hello.stream !== STREAM_VERSION ||
          hello.event_version !== EVENT_VERSION ||
          schema !== TRACE_SCHEMA_VERSION
        ) {
          throw new StreamError(
            `helper speaks record stream v${hello.stream}/event v${hello.event_version}/JSON lines v${schema}, this client reads v${STREAM_VERSION}/v${EVENT_VERSION}/v${TRACE_SCHEMA_VERSION}: use matching versions`,
          );
        }
        this.seenHello = true;
        this.monoBaseMs = Number(BigInt(hello.mono_ns) / 1000n) / 1000;
        this.monoToRealMs = Number(BigInt(hello.real_ns) / 1000000n);
        this.listener.hello?.(hello);
        return;
      }
      case FrameType.Progress:
        this.listener.progress?.(this.json<ProgressInfo>(buf, start, len));
        return;
      case FrameType.Ready: {
        const ready = this.json<ReadyInfo>(buf, start, len);
        // Ids are sparse when the kernel refused some probes.
        this.probes = [];
        for (const probe of ready.probes) this.probes[probe.id] = probe;
        this.dropReasons = ready.drop_reasons;
        this.listener.ready?.(ready);
        return;
      }
      case FrameType.Stats:
        this.listener.stats?.(this.json<StatsInfo>(buf, start, len));
        return;
      case FrameType.Error:
        this.listener.error?.(this.json<HelperMessage>(buf, start, len));
        return;
      case FrameType.Warning:
        this.listener.warning?.(this.json<HelperMessage>(buf, start, len));
        return;
      case FrameType.End:
        this.listener.end?.(this.json<EndInfo>(buf, start, len));
        return;
      case FrameType.Symbol: {
        const sym = this.json<{ addr: string; name: string }>(buf, start, len);
        this.symbols.set(sym.addr, sym.name);
        return;
      }
      case FrameType.DropReport:
        this.listener.dropReport?.(this.json<DropReportInfo>(buf, start, len));
        return;
      case FrameType.Watch:
        this.listener.watch?.(this.json<WatchInfo>(buf, start, len));
        return;
      case FrameType.Stack: {
        const stack = this.json<{ id: number; frames: string[] }>(buf, start, len);
        this.stacks.set(stack.id, stack.frames);
        return;
      }
      default:
        // Frames from a newer helper that this client does not know: skip them.
        return;
    }
  }

  private decodeEvent(b: Buffer, o: number): TraceEvent {
    const probeId = b.readUInt32LE(o + OFF.probeId);
    const probe = this.probes[probeId];
    const tsLo = b.readUInt32LE(o + OFF.ts);
    const tsHi = b.readUInt32LE(o + OFF.ts + 4);
    // Exact as a double below 2^53 ns (104 days of uptime); BigInt only beyond.
    const tsExact = tsHi < 0x200000;
    const tsNs = tsHi * 4294967296 + tsLo;
    const flags = b[o + OFF.flags];
    const protocol = b.readUInt16LE(o + OFF.protocol);
    const ev: TraceEvent = {
      type: 'event',
      v: TRACE_SCHEMA_VERSION,
      ts: tsExact ? String(tsNs) : ((BigInt(tsHi) << 32n) | BigInt(tsLo)).toString(),
      time: this.wallClock(tsNs),
      skb: this.addresses.get(b, o + OFF.skb),
      func: probe ? probe.name : `probe#${probeId}`,
      probe: probe ? probe.kind : 'tracepoint',
      cpu: b.readUInt32LE(o + OFF.cpu),
      pid: b.readUInt32LE(o + OFF.pid),
      process: this.text(b, o + OFF.comm),
      netns: b.readUInt32LE(o + OFF.netns),
      mark: b.readUInt32LE(o + OFF.mark),
      ifindex: b.readUInt32LE(o + OFF.ifindex),
      iface: this.text(b, o + OFF.ifname),
      l3proto: L3_NAMES[protocol] ?? `0x${protocol.toString(16).padStart(4, '0')}`,
      mtu: b.readUInt32LE(o + OFF.mtu),
      len: b.readUInt32LE(o + OFF.len),
      pktType: PKT_TYPES[b[o + OFF.pktType]] ?? String(b[o + OFF.pktType]),
    };
    if (b.readUInt32LE(o + OFF.caller) !== 0 || b.readUInt32LE(o + OFF.caller + 4) !== 0) {
      const caller = hex64(b, o + OFF.caller);
      ev.caller = this.symbols.get(caller) ?? caller;
    }
    if (flags & F_HAS_TUPLE) ev.tuple = this.decodeTuple(b, o);
    const tunnel = this.pendingTunnel;
    if (tunnel) {
      this.pendingTunnel = undefined;
      if (tunnel.ts === ev.ts && tunnel.skb === ev.skb) ev.tunnel = tunnel.tunnel;
    }
    if (flags & F_DROP) {
      if (flags & F_HAS_REASON) {
        const code = b.readUInt32LE(o + OFF.dropReason);
        ev.drop = { reason: this.dropReasons[code] ?? `REASON_${code}`, code };
      } else {
        ev.drop = { reason: 'UNKNOWN' };
      }
    }
    if (flags & F_FREED) ev.freed = true;
    if (flags & F_TRACKED) ev.tracked = true;
    if (b.readUInt32LE(o + OFF.head) !== 0 || b.readUInt32LE(o + OFF.head + 4) !== 0) {
      ev.head = this.addresses.get(b, o + OFF.head);
      if (b[o + OFF.dataref] > 1) ev.shared = b[o + OFF.dataref];
    }
    const copy = this.pendingCopy;
    if (copy) {
      this.pendingCopy = undefined;
      if (copy.ts === ev.ts && copy.skb === ev.skb) ev.copiedFrom = copy.from;
    }
    if (ev.tuple) {
      if (ev.tuple.family === 4) ev.ipId = b.readUInt16LE(o + OFF.ipId);
      if (ev.tuple.proto === 'TCP') ev.seq = b.readUInt32LE(o + OFF.tcpSeq);
    }
    const stackId = b.readInt32LE(o + OFF.stackId);
    if (stackId >= 0) ev.stack = this.stacks.get(stackId) ?? [];
    const pending = this.pendingBytes;
    if (pending) {
      this.pendingBytes = undefined;
      if (pending.ts === ev.ts && pending.skb === ev.skb) ev.bytes = pending.bytes;
    }
    if (this.node !== undefined) ev.node = this.node;
    return ev;
  }

  /** A TUNNEL frame: the inner packet of the EVENT that follows it. */
  private decodeTunnel(b: Buffer, o: number): { ts: string; skb: string; tunnel: Tunnel } {
    const tunnel: Tunnel = { kind: TUNNEL_KINDS[b[o + TUN.kind]] ?? 'unknown' };
    const vni = b.readUInt32LE(o + TUN.vni);
    if (vni) tunnel.vni = vni;
    const l3 = b[o + TUN.l3];
    if (l3 === 4 || l3 === 6) {
      const l4 = b[o + TUN.l4];
      tunnel.inner = {
        family: l3,
        proto: L4_NAMES[l4] ?? String(l4),
        src: this.address(l3, b, o + TUN.saddr),
        dst: this.address(l3, b, o + TUN.daddr),
      };
      if (l4 === 6 || l4 === 17) {
        tunnel.inner.sport = b.readUInt16LE(o + TUN.sport);
        tunnel.inner.dport = b.readUInt16LE(o + TUN.dport);
      }
    }
    return { ts: b.readBigUInt64LE(o + TUN.ts).toString(), skb: hex64(b, o + TUN.skb), tunnel };
  }

  /** A PACKET frame: the bytes of the EVENT that follows it (its ts and skb say so). */
  private decodePacket(b: Buffer, o: number, len: number): { ts: string; skb: string; bytes: PacketBytes } {
    if (len < PACKET_HEADER_SIZE) throw new StreamError(`short packet frame (${len} bytes)`);
    const capLen = b.readUInt32LE(o + PKT.capLen);
    if (PACKET_HEADER_SIZE + capLen > len)
      throw new StreamError(`packet frame of ${len} bytes says it holds ${capLen} bytes of packet`);
    const data = o + PACKET_HEADER_SIZE;
    return {
      ts: b.readBigUInt64LE(o + PKT.ts).toString(),
      skb: hex64(b, o + PKT.skb),
      bytes: {
        capture: CAPTURES[b.readUInt32LE(o + PKT.why)] ?? 'first',
        len: b.readUInt32LE(o + PKT.origLen),
        data: b.toString('base64', data, data + capLen),
      },
    };
  }

  /** ISO time of a kernel timestamp; events come in bursts within one millisecond. */
  private wallClock(tsNs: number): string {
    const ms = Math.floor(this.monoToRealMs + (tsNs / 1e6 - this.monoBaseMs));
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastTime = new Date(ms).toISOString();
    }
    return this.lastTime;
  }

  /** A NUL-terminated 16-byte name (process, interface). */
  private text(b: Buffer, off: number): string {
    return this.texts.get(b, off);
  }

  private decodeTuple(b: Buffer, o: number): Tuple {
    const family = b[o + OFF.l3] === 6 ? 6 : 4;
    const l4 = b[o + OFF.l4];
    const tuple: Tuple = {
      family,
      proto: L4_NAMES[l4] ?? String(l4),
      src: this.address(family, b, o + OFF.saddr),
      dst: this.address(family, b, o + OFF.daddr),
    };
    if (l4 === 6 || l4 === 17 || l4 === 132) {
      tuple.sport = b.readUInt16LE(o + OFF.sport);
      tuple.dport = b.readUInt16LE(o + OFF.dport);
      if (l4 === 6) tuple.tcpFlags = tcpFlagLetters(b[o + OFF.tcpFlags]);
    } else if (l4 === 1 || l4 === 58) {
      tuple.icmpType = b[o + OFF.icmpType];
      tuple.icmpCode = b[o + OFF.icmpCode];
    }
    return tuple;
  }

  private address(family: 4 | 6, b: Buffer, off: number): string {
    if (family === 4) return this.v4Names.get(b.readUInt32LE(off), () => formatAddress(4, b, off));
    return this.v6Names.get(b, off);
  }
}
