/**
 * One packet is one packet: an skb address the kernel reused after a free no
 * tracepoint saw is not taken for the same packet, and a NAT marker is never
 * made of two packets. The trace is a real one: a UDP flood between two
 * namespaces with the tracepoint backend (the ring buffer overflowed, so some
 * packets' frees were lost), cut down to one reused address.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trackAll } from '../../../src/reading/packet-tracker';
import { formatTuple } from '../../../src/reading/tuple-format';
import type { TraceEvent } from '../../../src/record/event';
import { event, traceEvents } from '../fixtures';

const ADDRESSING = new Set(['src', 'dst', 'sport', 'dport', 'proto']);

function rewrites(events: TraceEvent[]): string[] {
  return trackAll(events).flatMap((p) =>
    p.steps.flatMap((s) =>
      s.changes.filter((c) => ADDRESSING.has(c.field)).map((c) => `#${p.id} ${c.field}`),
    ),
  );
}

test('a reused skb address is a new packet when its IPv4 ID differs: no invented DNAT', () => {
  const events = traceEvents('reused-address.jsonl');
  assert.equal(new Set(events.map((e) => e.skb)).size, 1, 'one address throughout');
  const packets = trackAll(events);
  assert.deepEqual(
    packets.map((p) => `${formatTuple(p.tuple)} ${p.steps.length}`),
    [
      '10.99.1.1:60093->10.99.1.2:9001(udp) 1',
      '10.99.1.1:60093->10.99.1.2:9013(udp) 7',
      '10.99.1.1:60093->10.99.1.2:9001(udp) 1',
      '10.99.1.1:60093->10.99.1.2:9017(udp) 7',
    ],
  );
  assert.deepEqual(rewrites(events), []);
});

test('the same trace without what tells packets apart (recorded before event version 2) merges them', () => {
  // What the tracker did before: shows the fixture does test the rule.
  const legacy = traceEvents('reused-address.jsonl').map(
    ({ head: _h, ipId: _i, seq: _s, shared: _d, ...e }) => e,
  );
  assert.deepEqual(rewrites(legacy), ['#1 dport', '#2 dport']);
});

test('a rewrite with the same IPv4 ID or TCP sequence is NAT; without evidence, a new packet', () => {
  const before = {
    family: 4 as const,
    proto: 'UDP',
    src: '10.0.0.1',
    dst: '10.96.0.10',
    sport: 1000,
    dport: 53,
  };
  const after = { ...before, dst: '10.244.1.7', dport: 5353 };
  const path = (a: Partial<TraceEvent>, b: Partial<TraceEvent>) => [
    event({ func: 'netif_receive_skb', tuple: before, head: '0xffff1', ...a }),
    event({ func: 'net_dev_queue', ts: '2000', tuple: after, head: '0xffff2', ...b }),
  ];
  // the same non-zero IP ID: DNAT
  assert.deepEqual(rewrites(path({ ipId: 7 }, { ipId: 7 })), ['#1 dst', '#1 dport']);
  // an IP ID of 0 (DF datagrams of unconnected sockets) proves nothing, nor does the same data
  // buffer (tcp-close.jsonl: packets #4 and #6, two directions, one skb and one buffer)
  assert.deepEqual(rewrites(path({ ipId: 0 }, { ipId: 0 })), []);
  assert.equal(trackAll(path({ ipId: 0 }, { ipId: 0 })).length, 2);
  assert.equal(trackAll(path({ ipId: 0 }, { ipId: 0, head: '0xffff1' })).length, 2);
  // TCP: the sequence number
  const tcp = (t: typeof before) => ({ ...t, proto: 'TCP', tcpFlags: 'S' });
  const tcpPath = (seqA: number, seqB: number) => [
    event({ tuple: tcp(before), head: '0xffff1', ipId: 1, seq: seqA }),
    event({ ts: '2000', tuple: tcp(after), head: '0xffff2', ipId: 1, seq: seqB }),
  ];
  assert.deepEqual(rewrites(tcpPath(99, 99)), ['#1 dst', '#1 dport']);
  assert.equal(trackAll(tcpPath(99, 100)).length, 2);
});

test('a tunnel header that comes or goes has an ID of its own: still the same packet', () => {
  const inner = {
    family: 4 as const,
    proto: 'UDP',
    src: '10.10.0.1',
    dst: '10.10.0.2',
    sport: 40000,
    dport: 9000,
  };
  const outer = {
    family: 4 as const,
    proto: 'UDP',
    src: '192.168.1.1',
    dst: '192.168.1.2',
    sport: 50000,
    dport: 4789,
  };
  const packets = trackAll([
    event({ tuple: inner, head: '0xffff1', ipId: 5 }),
    event({ ts: '2000', tuple: outer, head: '0xffff1', ipId: 900 }),
    event({ ts: '3000', tuple: inner, head: '0xffff1', ipId: 5 }),
  ]);
  assert.equal(packets.length, 1);
});
