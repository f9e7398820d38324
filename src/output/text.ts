/** pwru-style text lines: one per step of a matching packet. */
import type { TraceEvent, Tuple } from '../record/event';

export const TEXT_HEADER = 'SKB                CPU PROCESS              NETNS      MARK/x     IFACE            PROTO  MTU   LEN   TUPLE FUNC';

function formatTuple(t: Tuple | undefined): string {
  if (!t) return '';
  const wrap = (a: string) => (t.family === 6 ? `[${a}]` : a);
  const proto = t.proto.toLowerCase();
  if (t.sport !== undefined) {
    const flags = t.tcpFlags ? `:${t.tcpFlags}` : '';
    return `${wrap(t.src)}:${t.sport}->${wrap(t.dst)}:${t.dport}(${proto}${flags})`;
  }
  if (t.icmpType !== undefined) return `${t.src}->${t.dst}(${proto} ${t.icmpType}/${t.icmpCode})`;
  return `${t.src}->${t.dst}(${proto})`;
}

export function formatFunc(e: TraceEvent): string {
  return e.drop ? `${e.func}(${e.drop.reason})` : e.func;
}

export function formatTextLine(e: TraceEvent, showNode: boolean): string {
  const iface = e.ifindex ? `${e.iface}:${e.ifindex}` : '';
  const fields = [
    e.skb.padEnd(18),
    String(e.cpu).padEnd(3),
    `[${e.process}]`.padEnd(20),
    String(e.netns).padEnd(10),
    `0x${e.mark.toString(16)}`.padEnd(10),
    iface.padEnd(16),
    e.l3proto.padEnd(6),
    String(e.mtu).padEnd(5),
    String(e.len).padEnd(5),
    formatTuple(e.tuple),
    formatFunc(e),
  ];
  const line = fields.join(' ');
  return showNode && e.node ? `${e.node} ${line}` : line;
}
