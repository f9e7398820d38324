/**
 * What changed between two steps of one packet (addresses, ports, device,
 * namespace, mark), what that amounts to (NAT, encapsulation), and how to say
 * it. helper/packet_track.c computes the same changes for its JSON lines.
 */
import type { TraceEvent, Tuple } from '../record/event';

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

/** Packet state the change detector compares against: the last value seen of each field. */
export interface LastSeen {
  tuple?: Tuple;
  /** The IPv4 ID and TCP sequence of the header the last tuple came from (what tells packets apart). */
  ipId?: number;
  seq?: number;
  /** The last data buffer seen (skb->head). */
  head?: string;
  iface?: string;
  netns?: number;
  mark?: number;
  l3proto?: string;
}

/** Tunnels by UDP port or IP protocol, to tell encapsulation from NAT. */
export const TUNNEL_PORTS: Readonly<Record<string, string>> = {
  '4789': 'VXLAN',
  '8472': 'VXLAN',
  '6081': 'Geneve',
  '51820': 'WireGuard',
};
export const TUNNEL_PROTOS: Readonly<Record<string, string>> = {
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

/** TUNNEL_PORTS as numbers: asked for every event, where making the strings would cost more than the lookup. */
const TUNNEL_PORT_NUMBERS = new Set(Object.keys(TUNNEL_PORTS).map(Number));

export function isEncapTuple(t: Tuple): boolean {
  if (tunnelOf(undefined, t.proto)) return true;
  return (
    t.proto === 'UDP' &&
    ((t.dport !== undefined && TUNNEL_PORT_NUMBERS.has(t.dport)) ||
      (t.sport !== undefined && TUNNEL_PORT_NUMBERS.has(t.sport)))
  );
}

export function detectChanges(last: LastSeen, e: TraceEvent): Change[] {
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

export function remember(last: LastSeen, e: TraceEvent): void {
  if (e.tuple) {
    last.tuple = e.tuple;
    last.ipId = e.ipId;
    last.seq = e.seq;
  }
  if (e.head) last.head = e.head;
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
