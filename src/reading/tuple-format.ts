/** A packet's addresses as one short text, the way every view writes them. */
import type { Tunnel, Tuple } from '../record/event';

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

/** A tunnel and its inner packet: "vxlan vni 42: 10.244.1.5:5353->10.244.2.7:53(udp)". */
export function formatTunnel(t: Tunnel): string {
  const vni = t.vni !== undefined ? ` ${t.kind === 'gre' ? 'key' : 'vni'} ${t.vni}` : '';
  const inner = t.inner ? `: ${formatTuple(t.inner)}` : '';
  return `${t.kind}${vni}${inner}`;
}

/** A flow: the tuple without TCP flags. */
export function flowText(t: Tuple | undefined): string {
  if (!t) return '(no IP tuple)';
  const { tcpFlags: _flags, ...rest } = t;
  return formatTuple(rest);
}
