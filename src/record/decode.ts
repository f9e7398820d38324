/**
 * Decodes the helper's record stream (bpf/event.h, docs/record-stream.md) into
 * trace lines. This is the only place that knows the binary layout: the C
 * header declares it, this file reads it.
 */
import { formatAddress } from './address';
import { type ProbeKind, TRACE_SCHEMA_VERSION, type TraceEvent, type Tuple } from './event';

export const STREAM_VERSION = 1;
export const EVENT_VERSION = 1;
export const EVENT_SIZE = 152;
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
} as const;

const F_DROP = 0x01;
const F_HAS_REASON = 0x02;
const F_TRACKED = 0x04;
const F_HAS_TUPLE = 0x08;
const F_FREED = 0x10;

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
  skipped: number;
  filter: string;
  drop_reasons: Record<string, string>;
  ringbuf_bytes: number;
}

export interface StatsInfo {
  seen: number;
  emitted: number;
  lost: number;
  final: boolean;
}

export interface HelperMessage {
  code: string;
  message: string;
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
  stats?(stats: StatsInfo): void;
  warning?(warning: HelperMessage): void;
  error?(error: HelperMessage): void;
  end?(end: EndInfo): void;
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

function hex64(buf: Buffer, off: number): string {
  const lo = buf.readUInt32LE(off);
  const hi = buf.readUInt32LE(off + 4);
  return hi === 0 ? `0x${lo.toString(16)}` : `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`;
}

/**
 * Incremental decoder: push() chunks as they arrive (they may split frames
 * anywhere) and the listener hears each record in order.
 */
export class RecordDecoder {
  private pending: Buffer | null = null;
  private probes: ProbeInfo[] = [];
  private dropReasons: Record<string, string> = {};
  private readonly symbols = new Map<string, string>();
  private readonly stacks = new Map<number, string[]>();
  /** realtime - monotonic, ms, to turn kernel timestamps into wall-clock times. */
  private monoToRealMs = 0;
  private monoBase = 0n;
  private seenHello = false;
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
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
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
    if (pos < buf.length) {
      buf = buf.subarray(pos);
      this.pending = Buffer.from(buf);
    } else {
      this.pending = null;
    }
  }

  /** Call when the stream ended: complains if it stopped inside a frame. */
  finish(): void {
    if (this.pending && this.pending.length > 0) {
      throw new StreamError(`record stream ended inside a frame (${this.pending.length} bytes left over)`);
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
      case FrameType.Hello: {
        const hello = this.json<HelloInfo>(buf, start, len);
        if (hello.stream !== STREAM_VERSION || hello.event_version !== EVENT_VERSION) {
          throw new StreamError(
            `helper speaks record stream v${hello.stream}/event v${hello.event_version}, this client reads v${STREAM_VERSION}/v${EVENT_VERSION}: use matching versions`,
          );
        }
        this.seenHello = true;
        this.monoBase = BigInt(hello.mono_ns);
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
    const probe = this.probes[b.readUInt32LE(o + OFF.probeId)];
    const tsLo = b.readUInt32LE(o + OFF.ts);
    const tsHi = b.readUInt32LE(o + OFF.ts + 4);
    const ts = (BigInt(tsHi) << 32n) | BigInt(tsLo);
    const flags = b[o + OFF.flags];
    const protocol = b.readUInt16LE(o + OFF.protocol);
    const ev: TraceEvent = {
      type: 'event',
      v: TRACE_SCHEMA_VERSION,
      ts: ts.toString(),
      time: new Date(this.monoToRealMs + Number(ts - this.monoBase) / 1e6).toISOString(),
      skb: hex64(b, o + OFF.skb),
      func: probe ? probe.name : `probe#${b.readUInt32LE(o + OFF.probeId)}`,
      probe: probe ? probe.kind : 'tracepoint',
      cpu: b.readUInt32LE(o + OFF.cpu),
      pid: b.readUInt32LE(o + OFF.pid),
      process: cString(b, o + OFF.comm, 16),
      netns: b.readUInt32LE(o + OFF.netns),
      mark: b.readUInt32LE(o + OFF.mark),
      ifindex: b.readUInt32LE(o + OFF.ifindex),
      iface: cString(b, o + OFF.ifname, 16),
      l3proto: L3_NAMES[protocol] ?? `0x${protocol.toString(16).padStart(4, '0')}`,
      mtu: b.readUInt32LE(o + OFF.mtu),
      len: b.readUInt32LE(o + OFF.len),
      pktType: PKT_TYPES[b[o + OFF.pktType]] ?? String(b[o + OFF.pktType]),
    };
    const caller = hex64(b, o + OFF.caller);
    if (caller !== '0x0') ev.caller = this.symbols.get(caller) ?? caller;
    if (flags & F_HAS_TUPLE) ev.tuple = this.decodeTuple(b, o);
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
    const stackId = b.readInt32LE(o + OFF.stackId);
    if (stackId >= 0) ev.stack = this.stacks.get(stackId) ?? [];
    if (this.node !== undefined) ev.node = this.node;
    return ev;
  }

  private decodeTuple(b: Buffer, o: number): Tuple {
    const family = b[o + OFF.l3] === 6 ? 6 : 4;
    const l4 = b[o + OFF.l4];
    const tuple: Tuple = {
      family,
      proto: L4_NAMES[l4] ?? String(l4),
      src: formatAddress(family, b, o + OFF.saddr),
      dst: formatAddress(family, b, o + OFF.daddr),
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
}
