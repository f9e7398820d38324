import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TraceEvent, Tuple } from '../../../src/record/event';
import { eventJson } from '../../../src/record/json-line';

/** Every field TraceEvent declares, in declaration order, with awkward strings. */
const full: Required<TraceEvent> = {
  type: 'event',
  v: 1,
  ts: '18446744073709551615',
  time: '2026-11-25T00:00:00.000Z',
  skb: '0xffff888100b84900',
  func: 'kfree_skb',
  probe: 'tracepoint',
  cpu: 1,
  pid: 42,
  process: 'we"ird\\name\n',
  netns: 4026531840,
  mark: 0x42,
  ifindex: 2,
  iface: 'eth0',
  l3proto: 'IPv4',
  mtu: 1500,
  len: 84,
  pktType: 'host',
  caller: 'nf_hook_slow+0x10',
  tuple: {
    family: 4,
    proto: 'TCP',
    src: '10.0.0.1',
    dst: '10.0.0.2',
    sport: 1,
    dport: 2,
    icmpType: 3,
    icmpCode: 4,
    tcpFlags: 'S.',
    srcName: 'shop/web-0',
    dstName: 'svc/shop/api',
  },
  tunnel: {
    kind: 'vxlan',
    vni: 42,
    inner: { family: 4, proto: 'UDP', src: '10.244.1.5', dst: '10.244.2.7', sport: 5353, dport: 53 },
  },
  drop: { reason: 'NETFILTER_DROP', code: 12 },
  freed: true,
  tracked: false,
  head: '0xffff888104a2c000',
  shared: 2,
  copiedFrom: { skb: '0xffff888003b1c000', head: '0xffff888004c2d000' },
  ipId: 54321,
  seq: 4294967295,
  stack: ['ip_rcv+0x1', 'a"b'],
  bytes: { capture: 'changed', len: 1500, data: 'RQAAVA==' },
  node: 'worker-1',
  packet: 7,
  changes: [{ field: 'src', from: '10.0.0.5', to: '192.168.50.1' }],
};

test('an event with every field serialises exactly as JSON.stringify does', () => {
  assert.equal(eventJson(full), JSON.stringify(full));
});

test('optional fields left out are left out', () => {
  const {
    caller,
    tuple,
    tunnel,
    drop,
    freed,
    tracked,
    head,
    shared,
    copiedFrom,
    ipId,
    seq,
    stack,
    bytes,
    node,
    packet,
    changes,
    ...bare
  } = full;
  assert.equal(eventJson(bare), JSON.stringify(bare));
  const icmp = {
    ...bare,
    tuple: { family: 6 as const, proto: 'ICMPv6', src: '::1', dst: '::2', icmpType: 128, icmpCode: 0 },
  };
  assert.equal(eventJson(icmp), JSON.stringify(icmp));
});

test('the field list here is the full TraceEvent (a new field fails this until eventJson knows it)', () => {
  // Required<TraceEvent> above does not compile without every field; this checks the order too.
  assert.deepEqual(Object.keys(JSON.parse(eventJson(full))), Object.keys(full));
  const tuple: Required<Tuple> = full.tuple as Required<Tuple>;
  assert.deepEqual(Object.keys(JSON.parse(eventJson(full)).tuple), Object.keys(tuple));
});
