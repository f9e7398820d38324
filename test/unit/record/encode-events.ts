/**
 * Turns saved trace events (JSON lines) back into the helper's record stream
 * (bpf/event.h), so that both JSON writers can be run over the real traces
 * under test/fixtures/traces too. Callers and stacks are left out (they need
 * SYMBOL and STACK frames); every field a writer decides on is kept.
 */
import { EVENT_SIZE, FrameType } from '../../../src/record/decode';
import type { TraceEvent, TraceHeader } from '../../../src/record/event';
import { HELLO, json } from '../record-stream';

const L3 = new Map([
  ['IPv4', 0x0800],
  ['IPv6', 0x86dd],
  ['ARP', 0x0806],
  ['802.1Q', 0x8100],
]);
const L4 = new Map([
  ['ICMP', 1],
  ['TCP', 6],
  ['UDP', 17],
  ['ICMPv6', 58],
  ['SCTP', 132],
]);
const PKT_TYPES = ['host', 'broadcast', 'multicast', 'otherhost', 'outgoing', 'loopback', 'user', 'kernel'];
const TCP_FLAGS: Record<string, number> = {
  F: 0x01,
  S: 0x02,
  R: 0x04,
  P: 0x08,
  U: 0x20,
  E: 0x40,
  W: 0x80,
  '.': 0x10,
};

function address(family: 4 | 6, text: string, b: Buffer, off: number): void {
  if (family === 4) {
    Buffer.from(text.split('.').map(Number)).copy(b, off);
    return;
  }
  const [head, tail = ''] = text.split('::');
  const groups = (s: string) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = text.includes('::') ? groups(tail) : [];
  const all = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  all.forEach((g, i) => {
    b.writeUInt16BE(Number.parseInt(g, 16), off + 2 * i);
  });
}

function eventBytes(e: TraceEvent, probeId: number, reasonCode: number | undefined): Buffer {
  const b = Buffer.alloc(EVENT_SIZE);
  b.writeBigUInt64LE(BigInt(e.ts), 0);
  b.writeBigUInt64LE(BigInt(e.skb), 8);
  b.writeUInt32LE(probeId, 32);
  b.writeUInt32LE(e.cpu, 36);
  b.writeUInt32LE(e.pid, 40);
  b.writeUInt32LE(e.netns, 44);
  b.writeUInt32LE(e.mark, 48);
  b.writeUInt32LE(e.ifindex, 52);
  b.writeUInt32LE(e.mtu, 56);
  b.writeUInt32LE(e.len, 60);
  b.writeInt32LE(-1, 68);
  b.writeUInt16LE(L3.get(e.l3proto) ?? Number.parseInt(e.l3proto, 16), 72);
  let flags = 0;
  const t = e.tuple;
  if (t) {
    flags |= 0x08;
    b[78] = t.family;
    b[79] = L4.get(t.proto) ?? Number(t.proto);
    b.writeUInt16LE(t.sport ?? 0, 74);
    b.writeUInt16LE(t.dport ?? 0, 76);
    for (const c of t.tcpFlags ?? '') b[80] |= TCP_FLAGS[c] ?? 0;
    b[82] = t.icmpType ?? 0;
    b[83] = t.icmpCode ?? 0;
    address(t.family, t.src, b, 88);
    address(t.family, t.dst, b, 104);
  }
  if (e.drop) {
    flags |= 0x01;
    if (reasonCode !== undefined) {
      flags |= 0x02;
      b.writeUInt32LE(reasonCode, 64);
    }
  }
  if (e.freed) flags |= 0x10;
  if (e.tracked) flags |= 0x04;
  b[81] = flags;
  b[84] = Math.max(0, PKT_TYPES.indexOf(e.pktType));
  b.write(e.process, 120, 16, 'latin1');
  b.write(e.iface, 136, 16, 'latin1');
  if (e.head) b.writeBigUInt64LE(BigInt(e.head), 152);
  b.writeUInt32LE(e.seq ?? 0, 160);
  b.writeUInt16LE(e.ipId ?? 0, 164);
  b[166] = e.head ? (e.shared ?? 1) : 0;
  const h = Buffer.alloc(8);
  h.writeUInt32LE(EVENT_SIZE, 0);
  h.writeUInt16LE(FrameType.Event, 4);
  return Buffer.concat([h, b]);
}

/** A COPY frame (struct pwru_copy) before the event of a copy that says what it was copied from. */
function copyFrame(e: TraceEvent): Buffer {
  const b = Buffer.alloc(8 + 32);
  b.writeUInt32LE(32, 0);
  b.writeUInt16LE(FrameType.Copy, 4);
  b.writeBigUInt64LE(BigInt(e.ts), 8);
  b.writeBigUInt64LE(BigInt(e.skb), 16);
  b.writeBigUInt64LE(BigInt(e.copiedFrom?.skb ?? 0), 24);
  b.writeBigUInt64LE(BigInt(e.copiedFrom?.head ?? 0), 32);
  return b;
}

/** HELLO, READY (one probe per function the events name) and the events, as the helper would write them. */
export function encodeTrace(header: TraceHeader, events: TraceEvent[]): Buffer {
  const funcs = [...new Set(events.map((e) => e.func))];
  const codes = new Map(Object.entries(header.dropReasons).map(([code, name]) => [name, Number(code)]));
  const ready = {
    backend: header.backend,
    backend_note: 'as recorded',
    probes: funcs.map((name, id) => ({ id, name, kind: header.backend })),
    attached: funcs.length,
    skipped: 0,
    attach_ms: header.attachMs,
    filter: header.filter,
    ringbuf_bytes: 8388608,
    drop_reasons: header.dropReasons,
  };
  const parts = [json(FrameType.Hello, HELLO), json(FrameType.Ready, ready)];
  for (const e of events) {
    const code = e.drop ? (e.drop.code ?? codes.get(e.drop.reason)) : undefined;
    if (e.copiedFrom) parts.push(copyFrame(e));
    parts.push(eventBytes(e, funcs.indexOf(e.func), code));
  }
  return Buffer.concat(parts);
}
