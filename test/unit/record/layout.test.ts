/**
 * The record layout is declared once, in bpf/event.h, whose offsets the C
 * compiler asserts (PWRU_EVENT_AT). This test reads those asserted offsets
 * and holds src/record/decode.ts to them: it writes a distinct value at each
 * field's offset and requires the decoder to read that value back as the
 * field it is. A field moved in the header and not in the decoder fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { EVENT_SIZE, FrameType, RecordDecoder } from '../../../src/record/decode';
import type { TraceEvent } from '../../../src/record/event';
import { ROOT } from '../fixtures';
import { HELLO, json } from '../record-stream';

const header = readFileSync(join(ROOT, 'bpf', 'event.h'), 'utf8');

/** Field name → asserted offset, from the header's PWRU_EVENT_AT lines. */
const OFFSET = new Map(
  [...header.matchAll(/^PWRU_EVENT_AT\((\w+), (\d+)\);$/gm)].map((m) => [m[1], Number(m[2])]),
);

function at(field: string): number {
  const off = OFFSET.get(field);
  assert.ok(off !== undefined, `bpf/event.h asserts no offset for ${field}`);
  return off;
}

const READY = {
  backend: 'tracepoint',
  backend_note: 'as asked',
  probes: [{ id: 3, name: 'ip_rcv', kind: 'tracepoint' }],
  attached: 1,
  skipped: 0,
  attach_ms: 1,
  filter: '',
  ringbuf_bytes: 4096,
  drop_reasons: { '77': 'SOME_REASON' },
};

const F_DROP = 0x01;
const F_HAS_REASON = 0x02;
const F_TRACKED = 0x04;
const F_HAS_TUPLE = 0x08;
const F_FREED = 0x10;

/** An event with every field set to a value of its own, at the header's offsets. */
function eventBytes(l4: number, l3 = 6): Buffer {
  const b = Buffer.alloc(EVENT_SIZE);
  b.writeBigUInt64LE(123456789012345n, at('ts'));
  b.writeBigUInt64LE(0xffff888812345678n, at('skb'));
  b.writeBigUInt64LE(0xffffffff81000000n, at('addr'));
  b.writeBigUInt64LE(0xffffffff8abcdef0n, at('caller'));
  b.writeUInt32LE(3, at('probe_id'));
  b.writeUInt32LE(5, at('cpu'));
  b.writeUInt32LE(4242, at('pid'));
  b.writeUInt32LE(4026531999, at('netns'));
  b.writeUInt32LE(0xabc, at('mark'));
  b.writeUInt32LE(17, at('ifindex'));
  b.writeUInt32LE(9000, at('mtu'));
  b.writeUInt32LE(1400, at('len'));
  b.writeUInt32LE(77, at('drop_reason'));
  b.writeInt32LE(12, at('stack_id'));
  b.writeUInt16LE(0x86dd, at('protocol'));
  b.writeUInt16LE(40001, at('sport'));
  b.writeUInt16LE(443, at('dport'));
  b[at('l3')] = l3;
  b[at('l4')] = l4;
  b[at('tcp_flags')] = 0x12;
  b[at('flags')] = F_DROP | F_HAS_REASON | F_TRACKED | F_HAS_TUPLE | F_FREED;
  b[at('icmp_type')] = 128;
  b[at('icmp_code')] = 3;
  b[at('pkt_type')] = 3;
  Buffer.from('fd000000000000000000000000000001', 'hex').copy(b, at('saddr'));
  Buffer.from('fd000000000000000000000000000002', 'hex').copy(b, at('daddr'));
  b.write('worker-7', at('comm'), 'latin1');
  b.write('eth9', at('ifname'), 'latin1');
  b.writeBigUInt64LE(0xffff888104a2c000n, at('head'));
  b.writeUInt32LE(0xdeadbeef, at('tcp_seq'));
  b.writeUInt16LE(54321, at('ip_id'));
  b[at('dataref')] = 3;
  return b;
}

function decode(l4: number, l3 = 6): TraceEvent {
  const events: TraceEvent[] = [];
  const d = new RecordDecoder({ event: (e) => events.push(e) });
  const h = Buffer.alloc(8);
  const body = eventBytes(l4, l3);
  h.writeUInt32LE(body.length, 0);
  h.writeUInt16LE(FrameType.Event, 4);
  d.push(Buffer.concat([json(FrameType.Hello, HELLO), json(FrameType.Ready, READY), h, body]));
  d.finish();
  assert.equal(events.length, 1);
  return events[0];
}

describe('the record layout: bpf/event.h and the decoder', () => {
  test('the header asserts every field once, and the size the decoder reads', () => {
    const struct = /^struct pwru_event \{\n([^}]*)\n\};/m.exec(header)?.[1] ?? '';
    const fields = [...struct.matchAll(/^\t(?:__[us]\d+|char) (\w+)(?:\[\d+\])?;/gm)].map((m) => m[1]);
    assert.ok(fields.length > 20, 'the struct was not found in bpf/event.h');
    assert.deepEqual([...OFFSET.keys()], fields, 'PWRU_EVENT_AT lines and struct pwru_event fields differ');
    const size = /_Static_assert\(sizeof\(struct pwru_event\) == (\d+),/.exec(header);
    assert.equal(Number(size?.[1]), EVENT_SIZE);
  });

  test('each field is read at its asserted offset (UDP)', () => {
    const e = decode(17);
    assert.equal(e.ts, '123456789012345');
    assert.equal(e.skb, '0xffff888812345678');
    assert.equal(e.caller, '0xffffffff8abcdef0');
    assert.equal(e.func, 'ip_rcv');
    assert.equal(e.cpu, 5);
    assert.equal(e.pid, 4242);
    assert.equal(e.netns, 4026531999);
    assert.equal(e.mark, 0xabc);
    assert.equal(e.ifindex, 17);
    assert.equal(e.mtu, 9000);
    assert.equal(e.len, 1400);
    assert.deepEqual(e.drop, { reason: 'SOME_REASON', code: 77 });
    assert.deepEqual(e.stack, []); // stack id 12, whose frames no STACK frame gave
    assert.equal(e.l3proto, 'IPv6');
    assert.equal(e.pktType, 'otherhost');
    assert.equal(e.process, 'worker-7');
    assert.equal(e.iface, 'eth9');
    assert.equal(e.freed, true);
    assert.equal(e.tracked, true);
    assert.equal(e.head, '0xffff888104a2c000');
    assert.equal(e.shared, 3);
    assert.equal(e.ipId, undefined, 'IPv6 has no IP ID');
    assert.equal(e.seq, undefined, 'UDP has no sequence number');
    assert.deepEqual(e.tuple, {
      family: 6,
      proto: 'UDP',
      src: 'fd00::1',
      dst: 'fd00::2',
      sport: 40001,
      dport: 443,
    });
  });

  test('TCP flags and sequence, the IPv4 ID, ICMP type and code at theirs', () => {
    assert.equal(decode(6).tuple?.tcpFlags, 'S.');
    assert.equal(decode(6).seq, 0xdeadbeef);
    assert.equal(decode(6, 4).ipId, 54321);
    const icmp = decode(58).tuple;
    assert.equal(icmp?.icmpType, 128);
    assert.equal(icmp?.icmpCode, 3);
  });
});

describe('the COPY frame: struct pwru_copy and the decoder', () => {
  const COPY_AT = new Map(
    [...header.matchAll(/^PWRU_COPY_AT\((\w+), (\d+)\);$/gm)].map((m) => [m[1], Number(m[2])]),
  );
  const copyAt = (f: string): number => {
    const off = COPY_AT.get(f);
    assert.ok(off !== undefined, `bpf/event.h asserts no offset for pwru_copy.${f}`);
    return off;
  };

  /** A COPY frame for the event eventBytes() makes (its ts and skb, or others), then that event. */
  function decodeCopied(ts: bigint, skb: bigint): TraceEvent {
    const size = Number(/_Static_assert\(sizeof\(struct pwru_copy\) == (\d+),/.exec(header)?.[1]);
    const c = Buffer.alloc(8 + size);
    c.writeUInt32LE(size, 0);
    c.writeUInt16LE(FrameType.Copy, 4);
    c.writeBigUInt64LE(ts, 8 + copyAt('ts'));
    c.writeBigUInt64LE(skb, 8 + copyAt('skb'));
    c.writeBigUInt64LE(0xffff888800aa0000n, 8 + copyAt('orig_skb'));
    c.writeBigUInt64LE(0xffff888800bb0000n, 8 + copyAt('orig_head'));
    const h = Buffer.alloc(8);
    const body = eventBytes(17);
    h.writeUInt32LE(body.length, 0);
    h.writeUInt16LE(FrameType.Event, 4);
    const events: TraceEvent[] = [];
    const d = new RecordDecoder({ event: (e) => events.push(e) });
    d.push(Buffer.concat([json(FrameType.Hello, HELLO), json(FrameType.Ready, READY), c, h, body]));
    d.finish();
    assert.equal(events.length, 1);
    return events[0];
  }

  test('the next event of that skb and time is a copy of that skb and buffer', () => {
    const e = decodeCopied(123456789012345n, 0xffff888812345678n);
    assert.deepEqual(e.copiedFrom, { skb: '0xffff888800aa0000', head: '0xffff888800bb0000' });
  });

  test('a COPY frame of another skb or time says nothing of the event', () => {
    assert.equal(decodeCopied(123456789012346n, 0xffff888812345678n).copiedFrom, undefined);
    assert.equal(decodeCopied(123456789012345n, 0xffff888812345600n).copiedFrom, undefined);
  });
});
