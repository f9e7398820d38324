/**
 * One trace event as a JSON line, byte for byte what JSON.stringify() makes
 * of it, about twice as fast: `-o json` and `--output-file` write every event,
 * hundreds of thousands a second. Keys come in TraceEvent's declared order;
 * strings that may hold anything (names, symbols) go through JSON.stringify.
 * test/unit/record/json-line.test.ts holds it equal to JSON.stringify for an
 * event with every field set: a field added to TraceEvent must be added here.
 */
import type { TraceEvent } from './event';

const q = JSON.stringify;

export function eventJson(e: TraceEvent): string {
  let s = `{"type":"event","v":${e.v},"ts":${q(e.ts)},"time":${q(e.time)},"skb":${q(e.skb)},"func":${q(e.func)},"probe":${q(e.probe)}`;
  s += `,"cpu":${e.cpu},"pid":${e.pid},"process":${q(e.process)},"netns":${e.netns},"mark":${e.mark},"ifindex":${e.ifindex},"iface":${q(e.iface)},"l3proto":${q(e.l3proto)},"mtu":${e.mtu},"len":${e.len},"pktType":${q(e.pktType)}`;
  if (e.caller !== undefined) s += `,"caller":${q(e.caller)}`;
  const t = e.tuple;
  if (t !== undefined) {
    s += `,"tuple":{"family":${t.family},"proto":${q(t.proto)},"src":${q(t.src)},"dst":${q(t.dst)}`;
    if (t.sport !== undefined) s += `,"sport":${t.sport}`;
    if (t.dport !== undefined) s += `,"dport":${t.dport}`;
    if (t.icmpType !== undefined) s += `,"icmpType":${t.icmpType}`;
    if (t.icmpCode !== undefined) s += `,"icmpCode":${t.icmpCode}`;
    if (t.tcpFlags !== undefined) s += `,"tcpFlags":${q(t.tcpFlags)}`;
    if (t.srcName !== undefined) s += `,"srcName":${q(t.srcName)}`;
    if (t.dstName !== undefined) s += `,"dstName":${q(t.dstName)}`;
    s += '}';
  }
  const tun = e.tunnel;
  if (tun !== undefined) {
    s += `,"tunnel":{"kind":${q(tun.kind)}`;
    if (tun.vni !== undefined) s += `,"vni":${tun.vni}`;
    const i = tun.inner;
    if (i !== undefined) {
      s += `,"inner":{"family":${i.family},"proto":${q(i.proto)},"src":${q(i.src)},"dst":${q(i.dst)}`;
      if (i.sport !== undefined) s += `,"sport":${i.sport}`;
      if (i.dport !== undefined) s += `,"dport":${i.dport}`;
      s += '}';
    }
    s += '}';
  }
  if (e.drop !== undefined) s += `,"drop":${q(e.drop)}`;
  if (e.freed !== undefined) s += `,"freed":${e.freed}`;
  if (e.tracked !== undefined) s += `,"tracked":${e.tracked}`;
  if (e.head !== undefined) s += `,"head":${q(e.head)}`;
  if (e.shared !== undefined) s += `,"shared":${e.shared}`;
  if (e.copiedFrom !== undefined)
    s += `,"copiedFrom":{"skb":${q(e.copiedFrom.skb)},"head":${q(e.copiedFrom.head)}}`;
  if (e.ipId !== undefined) s += `,"ipId":${e.ipId}`;
  if (e.seq !== undefined) s += `,"seq":${e.seq}`;
  if (e.stack !== undefined) s += `,"stack":${q(e.stack)}`;
  if (e.bytes !== undefined)
    s += `,"bytes":{"capture":${q(e.bytes.capture)},"len":${e.bytes.len},"data":${q(e.bytes.data)}}`;
  if (e.node !== undefined) s += `,"node":${q(e.node)}`;
  if (e.packet !== undefined) s += `,"packet":${e.packet}`;
  if (e.changes !== undefined) s += `,"changes":${q(e.changes)}`;
  return `${s}}`;
}
