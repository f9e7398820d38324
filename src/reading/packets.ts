/**
 * Turns a stream of trace events into packets: each packet's steps, what
 * changed between two steps (NAT, a new device, a mark), and how it ended.
 *
 * An skb address names a packet only while the packet lives: after a step
 * that freed it, the same address (on the same node) is a new packet.
 */
import type { TraceEvent, Tuple } from '../record/event';
import { droppedBy, explainDropReason } from './drop-reasons';

export type ChangeField =
  | 'src'
  | 'dst'
  | 'sport'
  | 'dport'
  | 'proto'
  | 'iface'
  | 'netns'
  | 'mark'
  | 'l3proto';

export interface Change {
  field: ChangeField;
  from: string;
  to: string;
}

/** What a set of changes at one step amounts to, in the usual words. */
export type ChangeKind = 'SNAT' | 'DNAT' | 'encap' | 'decap' | 'device' | 'netns' | 'mark';

export interface Step {
  event: TraceEvent;
  /** 0-based position in the packet's path. */
  index: number;
  /** What differs from the packet's previous step (empty for the first). */
  changes: Change[];
  /** In a merged flow path (diff --flow): the packet this step belongs to, and whether it is a reply. */
  packet?: number;
  reply?: boolean;
}

export type Verdict =
  | { kind: 'dropped'; func: string; reason: string; step: number }
  | { kind: 'delivered'; func: string; socket: boolean; step: number }
  | { kind: 'sent'; iface: string; func: string; step: number }
  | { kind: 'consumed'; func: string; step: number; replacedBy?: number }
  | { kind: 'in-flight'; func: string; step: number; iface?: string; received?: boolean };

export interface Packet {
  /** 1-based, in order of first appearance in the trace. */
  id: number;
  node?: string;
  skb: string;
  steps: Step[];
  /** The first tuple seen (before any NAT). */
  tuple?: Tuple;
  /** A step freed it: the trace saw its whole life. */
  freed: boolean;
  /**
   * Seen only being freed, right before a packet with the same tuple started
   * on the same CPU: the kernel swapped the skb for a copy (e.g. to make room
   * for headers) and the path goes on as that packet.
   */
  replacedBy?: number;
  /** For a merged flow path (diff --flow): the packets it is made of, and the one it was chosen by. */
  packets?: number[];
  seed?: Packet;
}

/** Packet state the change detector compares against: the last value seen of each field. */
interface Last {
  tuple?: Tuple;
  iface?: string;
  netns?: number;
  mark?: number;
  l3proto?: string;
}

/** Tunnels by UDP port or IP protocol, to tell encapsulation from NAT. */
const TUNNEL_PORTS: Record<string, string> = {
  '4789': 'VXLAN',
  '8472': 'VXLAN',
  '6081': 'Geneve',
  '51820': 'WireGuard',
};
const TUNNEL_PROTOS: Record<string, string> = {
  GRE: 'GRE',
  '47': 'GRE',
  '4': 'IPIP',
  '41': 'IPv6-in-IPv4',
  ESP: 'IPsec ESP',
  '50': 'IPsec ESP',
};

function tunnelOf(port?: string, proto?: string): string | undefined {
  return (proto && TUNNEL_PROTOS[proto]) || (port ? TUNNEL_PORTS[port] : undefined);
}

function isEncapTuple(t: Tuple): boolean {
  if (tunnelOf(undefined, t.proto)) return true;
  return t.proto === 'UDP' && Boolean(tunnelOf(String(t.dport)) ?? tunnelOf(String(t.sport)));
}

export function detectChanges(last: Last, e: TraceEvent): Change[] {
  const out: Change[] = [];
  const t = e.tuple;
  if (t && last.tuple) {
    const p = last.tuple;
    if (p.proto !== t.proto) out.push({ field: 'proto', from: p.proto, to: t.proto });
    if (p.src !== t.src) out.push({ field: 'src', from: p.src, to: t.src });
    if (p.sport !== t.sport && p.sport !== undefined && t.sport !== undefined)
      out.push({ field: 'sport', from: String(p.sport), to: String(t.sport) });
    if (p.dst !== t.dst) out.push({ field: 'dst', from: p.dst, to: t.dst });
    if (p.dport !== t.dport && p.dport !== undefined && t.dport !== undefined)
      out.push({ field: 'dport', from: String(p.dport), to: String(t.dport) });
  }
  // A step with no device yet (local output before routing) is not a change.
  if (e.iface && last.iface && e.iface !== last.iface)
    out.push({ field: 'iface', from: last.iface, to: e.iface });
  if (last.netns !== undefined && e.netns && e.netns !== last.netns)
    out.push({ field: 'netns', from: String(last.netns), to: String(e.netns) });
  if (last.mark !== undefined && e.mark !== last.mark)
    out.push({ field: 'mark', from: `0x${last.mark.toString(16)}`, to: `0x${e.mark.toString(16)}` });
  if (last.l3proto && e.l3proto && e.l3proto !== last.l3proto)
    out.push({ field: 'l3proto', from: last.l3proto, to: e.l3proto });
  return out;
}

function update(last: Last, e: TraceEvent): void {
  if (e.tuple) last.tuple = e.tuple;
  if (e.iface) last.iface = e.iface;
  if (e.netns) last.netns = e.netns;
  last.mark = e.mark;
  if (e.l3proto) last.l3proto = e.l3proto;
}

/** Groups a change set into what a person would call it. */
export function classifyChanges(changes: Change[], before?: Tuple, after?: Tuple): ChangeKind[] {
  const fields = new Set(changes.map((c) => c.field));
  const kinds: ChangeKind[] = [];
  const addrBoth = fields.has('src') && fields.has('dst');
  if (before && after && (fields.has('proto') || addrBoth) && (isEncapTuple(after) || isEncapTuple(before))) {
    kinds.push(isEncapTuple(after) ? 'encap' : 'decap');
  } else {
    if (fields.has('src') || fields.has('sport')) kinds.push('SNAT');
    if (fields.has('dst') || fields.has('dport')) kinds.push('DNAT');
  }
  if (fields.has('iface')) kinds.push('device');
  if (fields.has('netns')) kinds.push('netns');
  if (fields.has('mark')) kinds.push('mark');
  return kinds;
}

/**
 * "SNAT src 10.244.0.5 → 192.168.50.1, iface rs → s0", or for a tunnel
 * "VXLAN encap, outer 192.168.1.1:50480 → 192.168.1.2:4789, iface vx0 → ua".
 */
export function describeChanges(changes: Change[]): string {
  const parts: string[] = [];
  const has = (f: ChangeField) => changes.find((c) => c.field === f);
  const src = has('src');
  const dst = has('dst');
  const sport = has('sport');
  const dport = has('dport');
  const proto = has('proto');
  const encap = (src && dst) || proto ? tunnelOf(dport?.to, proto?.to) : undefined;
  const decap = !encap && ((src && dst) || proto) ? tunnelOf(dport?.from, proto?.from) : undefined;
  if (encap || decap) {
    const side = encap ? 'to' : 'from';
    const other = encap ? 'from' : 'to';
    const end = (a?: Change, port?: Change) =>
      `${a?.[encap ? side : other] ?? '?'}${port ? `:${port[encap ? side : other]}` : ''}`;
    parts.push(
      `${encap ?? decap} ${encap ? 'encap, outer' : 'decap, inner'} ${end(src, sport)} → ${end(dst, dport)}`,
    );
  } else {
    // A protocol change that is no known tunnel: say what changed, without calling it NAT.
    if (proto) parts.push(`proto ${proto.from} → ${proto.to}`);
    if (src || sport) {
      const label = proto ? 'src' : 'SNAT src';
      if (src) parts.push(`${label} ${src.from} → ${src.to}`);
      if (sport) parts.push(`sport ${sport.from} → ${sport.to}`);
    }
    if (dst || dport) {
      const label = proto ? 'dst' : 'DNAT dst';
      if (dst) parts.push(`${label} ${dst.from} → ${dst.to}`);
      if (dport) parts.push(`dport ${dport.from} → ${dport.to}`);
    }
  }
  for (const f of ['iface', 'netns', 'mark', 'l3proto'] as const) {
    const c = has(f);
    if (c) parts.push(`${f} ${c.from} → ${c.to}`);
  }
  return parts.join(', ');
}

/** Strips a tracepoint's "category:" and a symbol's "+0xoff" / ".isra.0" suffixes. */
const baseFuncs = new Map<string, string>();

export function baseFunc(name: string): string {
  // Called several times per event on a handful of distinct names: remember them.
  let base = baseFuncs.get(name);
  if (base === undefined) {
    const noCat = name.includes(':') ? name.slice(name.lastIndexOf(':') + 1) : name;
    base = noCat
      .replace(/\+0x[0-9a-f]+(\/0x[0-9a-f]+)?$/i, '')
      .replace(/\.(isra|constprop|part|cold)\.\d+$/, '');
    if (baseFuncs.size < 65536) baseFuncs.set(name, base);
  }
  return base;
}

/** Functions that hand a packet to a socket (or read it out of one). */
const SOCKET_FUNCS = new Set([
  'tcp_v4_do_rcv',
  'tcp_v6_do_rcv',
  'tcp_rcv_established',
  'tcp_rcv_state_process',
  'tcp_data_queue',
  'tcp_queue_rcv',
  'tcp_child_process',
  'udp_queue_rcv_skb',
  'udp_queue_rcv_one_skb',
  'udpv6_queue_rcv_skb',
  'udpv6_queue_rcv_one_skb',
  '__udp_enqueue_schedule_skb',
  'sock_queue_rcv_skb',
  'sock_queue_rcv_skb_reason',
  '__sock_queue_rcv_skb',
  'raw_rcv',
  'rawv6_rcv',
  'ping_rcv',
  'ping_queue_rcv_skb',
  'skb_copy_datagram_iovec',
  // tcp:tcp_probe fires as an established socket takes a segment in
  'tcp_probe',
  'skb_consume_udp',
  '__skb_recv_udp',
  '__skb_try_recv_datagram',
  'skb_recv_datagram',
  'unix_stream_recvmsg',
]);

/** The local IP stack: the packet was for this host (socket not yet known). */
const LOCAL_FUNCS = new Set([
  'ip_local_deliver',
  'ip_local_deliver_finish',
  'ip_protocol_deliver_rcu',
  'ip6_input',
  'ip6_input_finish',
  'ip6_protocol_deliver_rcu',
  'tcp_v4_rcv',
  'tcp_v6_rcv',
  'udp_rcv',
  '__udp4_lib_rcv',
  'udp_unicast_rcv_skb',
  'udpv6_rcv',
  '__udp6_lib_rcv',
  'icmp_rcv',
  'icmpv6_rcv',
  'igmp_rcv',
]);

/** Handing the packet to a device driver to send. */
const XMIT_FUNCS = new Set([
  'net_dev_xmit',
  'net_dev_start_xmit',
  'dev_hard_start_xmit',
  'xmit_one',
  'netdev_start_xmit',
  'sch_direct_xmit',
]);

/** Receiving from a device: after these, the packet is inside a (maybe other) host again. */
const RECV_FUNCS = new Set([
  'netif_rx_entry',
  'netif_rx_ni_entry',
  'napi_gro_frags_entry',
  'netif_rx',
  'netif_rx_internal',
  '__netif_rx',
  'netif_receive_skb',
  'netif_receive_skb_entry',
  '__netif_receive_skb',
  '__netif_receive_skb_core',
  '__netif_receive_skb_one_core',
  'napi_gro_receive',
  'napi_gro_receive_entry',
  'netif_receive_skb_list_entry',
  'ip_rcv',
  'ip_rcv_core',
  'ipv6_rcv',
  'veth_forward_skb',
  'dev_forward_skb',
  '__dev_forward_skb',
]);

/** Where a packet starts down the transmit path: a socket or the forwarding code hands it to a device. */
export const TX_START_FUNCS: ReadonlySet<string> = new Set([
  'net_dev_queue',
  'dev_queue_xmit',
  '__dev_queue_xmit',
  'ip_local_out',
  '__ip_local_out',
  'ip_output',
  'ip6_local_out',
  'ip6_output',
  '__ip_queue_xmit',
  'ip_queue_xmit',
  'ip_send_skb',
]);

/**
 * The kernel sometimes frees an skb without a tracepoint (__kfree_skb, the
 * per-CPU caches), so a reused address may arrive with no free in between.
 * A packet only changes network namespace by being received on the other
 * side of a veth or tunnel; one that starts down the transmit path in
 * another namespace is a new packet, and so is one whose tuple turned around.
 */
function startsNewPacket(last: Last, e: TraceEvent): boolean {
  // NAT rewrites one end; a tuple turned around is the other direction's packet.
  const a = last.tuple;
  const b = e.tuple;
  if (
    a &&
    b &&
    a.src === b.dst &&
    a.dst === b.src &&
    a.sport === b.dport &&
    a.dport === b.sport &&
    a.src !== a.dst
  )
    return true;
  if (!last.netns || !e.netns || e.netns === last.netns) return false;
  return TX_START_FUNCS.has(baseFunc(e.func));
}

export type StepRole = 'socket' | 'local' | 'xmit' | 'recv' | 'other';

export function stepRole(func: string): StepRole {
  const f = baseFunc(func);
  if (SOCKET_FUNCS.has(f)) return 'socket';
  if (LOCAL_FUNCS.has(f)) return 'local';
  if (XMIT_FUNCS.has(f) || /_xmit$/.test(f)) return 'xmit';
  if (RECV_FUNCS.has(f)) return 'recv';
  return 'other';
}

/** Where the drop happened: the caller (kfree_skb's location) when known, else the step before. */
export function dropLocation(p: Packet, index: number): string {
  const e = p.steps[index].event;
  if (e.caller) return baseFunc(e.caller);
  const before = p.steps[index - 1];
  return before ? baseFunc(before.event.func) : baseFunc(e.func);
}

export function verdictOf(p: Packet): Verdict {
  const steps = p.steps;
  // A socket-teardown purge is the verdict of a packet only when nothing else
  // dropped it, and never of a whole flow (diff --flow) whose packets got through.
  const drops = steps.map((s, i) => [s, i] as const).filter(([s]) => s.event.drop);
  const real = drops.find(([s]) => !explainDropReason(s.event.drop?.reason ?? '').housekeeping);
  const dropIndex = (real ?? (p.packets ? undefined : drops[0]))?.[1] ?? -1;
  // A flow nothing dropped ends the way the packet it was chosen by ended.
  if (dropIndex < 0 && p.seed) return verdictOf(p.seed);
  if (dropIndex >= 0) {
    const drop = steps[dropIndex].event.drop;
    return {
      kind: 'dropped',
      func: dropLocation(p, dropIndex),
      reason: drop?.reason ?? 'UNKNOWN',
      step: dropIndex,
    };
  }
  let lastXmit = -1;
  let lastRecv = -1;
  let lastSocket = -1;
  let lastLocal = -1;
  steps.forEach((s, i) => {
    const role = stepRole(s.event.func);
    if (role === 'xmit') lastXmit = i;
    else if (role === 'recv') lastRecv = i;
    else if (role === 'socket') lastSocket = i;
    else if (role === 'local') lastLocal = i;
  });
  const sinceOut = Math.max(lastXmit, lastRecv);
  if (lastSocket >= 0 && lastSocket > lastXmit) {
    return {
      kind: 'delivered',
      func: baseFunc(steps[lastSocket].event.func),
      socket: true,
      step: lastSocket,
    };
  }
  if (lastLocal >= 0 && lastLocal > sinceOut) {
    return { kind: 'delivered', func: baseFunc(steps[lastLocal].event.func), socket: false, step: lastLocal };
  }
  if (lastXmit >= 0 && lastXmit > lastRecv) {
    const e = steps[lastXmit].event;
    return { kind: 'sent', iface: e.iface, func: baseFunc(e.func), step: lastXmit };
  }
  const last = steps.length - 1;
  const lastEvent = steps[last].event;
  const func = baseFunc(lastEvent.func);
  if (p.freed && last > 0 && lastRecv >= 0 && lastRecv > lastXmit) {
    // Freed without a drop after it was received and not sent on: this host
    // used it. With tracepoints only, the socket functions are invisible, but
    // a free with no device left means the socket layer had taken it over.
    return { kind: 'delivered', func, socket: lastEvent.iface === '' && !lastEvent.ifindex, step: last };
  }
  if (p.freed)
    return { kind: 'consumed', func, step: last, ...(p.replacedBy ? { replacedBy: p.replacedBy } : {}) };
  return {
    kind: 'in-flight',
    func,
    step: last,
    ...(lastEvent.iface ? { iface: lastEvent.iface } : {}),
    ...(stepRole(lastEvent.func) === 'recv' ? { received: true } : {}),
  };
}

/** The verdict in words: "dropped at ip_rcv_finish_core by the reverse-path filter (IP_RPFILTER)". */
export function describeVerdict(v: Verdict): string {
  switch (v.kind) {
    case 'dropped': {
      const info = explainDropReason(v.reason);
      if (info.by) return `dropped at ${v.func} by ${droppedBy(v.reason)} (${v.reason})`;
      return `dropped at ${v.func} (${v.reason}: ${info.text})`;
    }
    case 'delivered':
      return v.socket
        ? `delivered to a local socket (${v.func})`
        : `delivered to the local stack (${v.func})`;
    case 'sent':
      return `sent out of ${v.iface || 'an interface'} (${v.func})`;
    case 'consumed':
      if (v.replacedBy)
        return `freed at ${v.func} as the kernel went on with a copy of it (packet #${v.replacedBy})`;
      return `freed without a drop at ${v.func}`;
    case 'in-flight':
      if (v.received)
        return `received on ${v.iface || 'a device'} (${v.func}); its end was not traced (still queued, or freed by a path without a tracepoint)`;
      return v.iface
        ? `not freed when the trace ended: last seen at ${v.func} on ${v.iface} (queued or still in flight)`
        : `not freed when the trace ended: last seen at ${v.func} (queued or still in flight)`;
  }
}

/** Short form for tables: "dropped: IP_RPFILTER at ip_rcv_finish_core". */
export function verdictLabel(v: Verdict): string {
  switch (v.kind) {
    case 'dropped':
      return `dropped at ${v.func}: ${v.reason}`;
    case 'delivered':
      return v.socket ? 'delivered to socket' : `delivered locally (${v.func})`;
    case 'sent':
      return `sent out of ${v.iface || '?'}`;
    case 'consumed':
      return v.replacedBy ? `replaced by a copy: #${v.replacedBy}` : `freed at ${v.func}`;
    case 'in-flight':
      if (v.received) return `received on ${v.iface || '?'}, end not traced`;
      return v.iface ? `in flight (last: ${v.func} on ${v.iface})` : `in flight (last: ${v.func})`;
  }
}

/**
 * "src:port->dst:port(proto:flags)"; with names (Kubernetes mode), the owners
 * of the addresses follow: "… [shop/web-1 → shop/web-0]", "?" for an address
 * that belongs to no pod or service.
 */
export function formatTuple(t: Tuple | undefined, names = false): string {
  if (!t) return '';
  const wrap = (a: string) => (t.family === 6 ? `[${a}]` : a);
  const proto = t.proto.toLowerCase();
  const owners = names && (t.srcName || t.dstName) ? ` [${t.srcName ?? '?'} → ${t.dstName ?? '?'}]` : '';
  if (t.sport !== undefined || t.dport !== undefined) {
    const flags = t.tcpFlags ? `:${t.tcpFlags}` : '';
    return `${wrap(t.src)}:${t.sport ?? 0}->${wrap(t.dst)}:${t.dport ?? 0}(${proto}${flags})${owners}`;
  }
  return `${t.src}->${t.dst}(${proto})${owners}`;
}

/** The packet's flow: its first tuple without TCP flags. */
export function flowKey(p: Packet): string {
  if (!p.tuple) return '(no IP tuple)';
  const { tcpFlags: _flags, ...t } = p.tuple;
  return formatTuple(t);
}

export interface Observed {
  packet: Packet;
  step: Step;
}

/** Follows packets through a trace, one event at a time. */
export interface TrackerOptions {
  /**
   * Keep finished packets (default). A live sink passes false and an onDone
   * that reduces each finished packet to a summary row, so memory stays
   * bounded by the packets in flight.
   */
  retain?: boolean;
  /** Called once per packet when it is finished: freed, or its address reused. */
  onDone?: (packet: Packet) => void;
}

/**
 * Packets followed at once. Frees without a tracepoint leave addresses
 * behind; past this many the tracker forgets them all (they end as they are).
 * helper/packet_track.c numbers packets by the same rule.
 */
export const MAX_LIVE_PACKETS = 8192;

/** How soon after a lone free a copy must start to count as its replacement. */
const REPLACEMENT_WINDOW_NS = 1_000_000n;

function sameFlow(a?: Tuple, b?: Tuple): boolean {
  return Boolean(
    a &&
      b &&
      a.src === b.src &&
      a.dst === b.dst &&
      a.sport === b.sport &&
      a.dport === b.dport &&
      a.proto === b.proto,
  );
}

export class PacketTracker {
  private readonly live = new Map<string, { packet: Packet; last: Last }>();
  private readonly all: Packet[] = [];
  private count = 0;
  /** The last packet seen only being freed, held back until we know whether a copy follows. */
  private lone?: { packet: Packet; ts: bigint; cpu: number };

  constructor(private readonly options: TrackerOptions = {}) {}

  private done(packet: Packet): void {
    if (packet.steps.length === 1 && packet.freed && !packet.steps[0].event.drop) {
      // Hold it: the next new packet may be its copy.
      this.flushLone();
      const e = packet.steps[0].event;
      this.lone = { packet, ts: toBig(e.ts), cpu: e.cpu };
      return;
    }
    this.options.onDone?.(packet);
  }

  private flushLone(): void {
    if (!this.lone) return;
    const { packet } = this.lone;
    this.lone = undefined;
    this.options.onDone?.(packet);
  }

  /** A new packet starts: if a lone free just before it on the same CPU had its tuple, that was its original. */
  private started(packet: Packet, e: TraceEvent): void {
    const lone = this.lone;
    if (!lone) return;
    const gap = toBig(e.ts) - lone.ts;
    if (
      lone.cpu === e.cpu &&
      gap >= 0n &&
      gap <= REPLACEMENT_WINDOW_NS &&
      sameFlow(lone.packet.tuple, e.tuple)
    ) {
      lone.packet.replacedBy = packet.id;
    }
    this.flushLone();
  }

  observe(e: TraceEvent): Observed {
    const key = `${e.node ?? ''}/${e.skb}`;
    let entry = this.live.get(key);
    if (entry && startsNewPacket(entry.last, e)) {
      this.done(entry.packet);
      entry = undefined;
    }
    if (!entry) {
      if (this.live.size >= MAX_LIVE_PACKETS) {
        for (const stale of this.live.values()) this.done(stale.packet);
        this.live.clear();
      }
      const packet: Packet = { id: ++this.count, skb: e.skb, steps: [], freed: false };
      if (e.node !== undefined) packet.node = e.node;
      entry = { packet, last: {} };
      this.live.set(key, entry);
      if (this.options.retain !== false) this.all.push(packet);
      this.started(packet, e);
    }
    const { packet, last } = entry;
    const step: Step = {
      event: e,
      index: packet.steps.length,
      changes: packet.steps.length ? detectChanges(last, e) : [],
    };
    packet.steps.push(step);
    if (!packet.tuple && e.tuple) packet.tuple = e.tuple;
    update(last, e);
    if (e.freed || e.drop) {
      packet.freed = true;
      this.live.delete(key);
      this.done(packet);
    }
    return { packet, step };
  }

  /** Every packet, in order of appearance (when retained). */
  packets(): Packet[] {
    return this.all;
  }

  /** Packets not finished yet: not freed when the trace ended (hands on a held-back lone free first). */
  open(): Packet[] {
    this.flushLone();
    return [...this.live.values()].map((e) => e.packet);
  }
}

function toBig(ts: string): bigint {
  try {
    return BigInt(ts);
  } catch {
    return 0n;
  }
}

export function trackAll(events: Iterable<TraceEvent>): Packet[] {
  const tracker = new PacketTracker();
  for (const e of events) tracker.observe(e);
  return tracker.packets();
}
