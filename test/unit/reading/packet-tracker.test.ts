import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyChanges, describeChanges } from '../../../src/reading/changes';
import { baseFunc } from '../../../src/reading/kernel-functions';
import { MAX_LIVE_PACKETS, PacketTracker, trackAll } from '../../../src/reading/packet-tracker';
import { formatTuple } from '../../../src/reading/tuple-format';
import { describeVerdict } from '../../../src/reading/verdict-words';
import { verdictOf } from '../../../src/reading/verdicts';
import { event, tracePackets } from '../fixtures';

test('rp_filter trace: both datagrams dropped at ip_rcv_finish_core', () => {
  const packets = tracePackets('bad-masquerade-rpfilter.jsonl');
  assert.equal(packets.length, 2);
  for (const p of packets) {
    assert.equal(p.freed, true);
    assert.deepEqual(verdictOf(p), {
      kind: 'dropped',
      func: 'ip_rcv_finish_core',
      reason: 'IP_RPFILTER',
      step: 12,
    });
  }
  assert.equal(
    describeVerdict(verdictOf(packets[0])),
    'dropped at ip_rcv_finish_core by the reverse-path filter (IP_RPFILTER)',
  );
});

test('rp_filter trace: the step where masquerade rewrote the source says so', () => {
  const [p] = tracePackets('bad-masquerade-rpfilter.jsonl');
  const changed = p.steps.filter((s) => s.changes.some((c) => c.field === 'src'));
  assert.equal(changed.length, 1, 'the source changes once');
  const step = changed[0];
  assert.equal(baseFunc(step.event.func), 'net_dev_queue');
  assert.equal(step.event.iface, 'rs');
  assert.equal(describeChanges(step.changes), 'SNAT src 10.244.0.5 → 192.168.50.1, iface rc → rs');
  assert.deepEqual(classifyChanges(step.changes, p.tuple, step.event.tuple), ['SNAT', 'device']);
  // crossing the veth into the server's namespace is a device and namespace change, not NAT
  const crossing = p.steps.find((s) => s.event.iface === 's0' && s.changes.length);
  assert.ok(crossing);
  assert.deepEqual(
    crossing.changes.map((c) => c.field),
    ['iface', 'netns'],
  );
});

test('netfilter and no-socket traces: dropped where the kernel says, with its reason', () => {
  const [nf] = tracePackets('netfilter-drop.jsonl');
  assert.deepEqual(verdictOf(nf), {
    kind: 'dropped',
    func: 'nft_do_chain',
    reason: 'NETFILTER_DROP',
    step: 12,
  });
  const [ns] = tracePackets('no-socket.jsonl');
  const v = verdictOf(ns);
  assert.equal(v.kind, 'dropped');
  assert.equal(v.kind === 'dropped' && v.reason, 'NO_SOCKET');
  assert.equal(v.kind === 'dropped' && v.func, '__udp4_lib_rcv');
});

test('good trace: a packet freed after it was received with no device left went to a socket', () => {
  const packets = tracePackets('good-masquerade.jsonl');
  const verdicts = packets.map((p) => verdictOf(p).kind);
  assert.ok(verdicts.includes('delivered'), verdicts.join(','));
  assert.ok(!verdicts.includes('dropped'));
  const delivered = packets.find((p) => verdictOf(p).kind === 'delivered');
  assert.ok(delivered);
  const v = verdictOf(delivered);
  assert.equal(v.kind === 'delivered' && v.socket, true);
  assert.ok(delivered.steps.some((s) => s.changes.some((c) => c.field === 'src' && c.to === '10.0.0.1')));
});

test('a packet not freed when the trace ended is in flight, last seen where it was', () => {
  const p = trackAll([
    event({ func: 'net_dev_queue', iface: 'eth0' }),
    event({ func: 'net_dev_start_xmit' }),
  ])[0];
  const v = verdictOf(p);
  assert.equal(v.kind, 'sent');
  const q = trackAll([event({ func: 'netif_receive_skb', iface: 'eth1' })])[0];
  assert.deepEqual(verdictOf(q), {
    kind: 'in-flight',
    func: 'netif_receive_skb',
    step: 0,
    iface: 'eth1',
    received: true,
  });
  assert.match(
    describeVerdict(verdictOf(q)),
    /^received on eth1 \(netif_receive_skb\); its end was not traced/,
  );
  const r = trackAll([event({ func: 'net_dev_queue', iface: 'eth1' })])[0];
  assert.match(
    describeVerdict(verdictOf(r)),
    /^not freed when the trace ended: last seen at net_dev_queue on eth1/,
  );
});

test('DNAT, mark and encapsulation markers', () => {
  const svc = {
    family: 4 as const,
    proto: 'TCP',
    src: '10.0.0.9',
    dst: '10.96.0.10',
    sport: 5555,
    dport: 80,
  };
  const pod = { ...svc, dst: '10.244.1.7', dport: 8080 };
  const p = trackAll([
    event({ func: 'ip_rcv', tuple: svc }),
    event({ func: 'ip_forward', tuple: pod, mark: 0x4000 }),
  ])[0];
  const s = p.steps[1];
  assert.equal(
    describeChanges(s.changes),
    'DNAT dst 10.96.0.10 → 10.244.1.7, dport 80 → 8080, mark 0x0 → 0x4000',
  );
  assert.deepEqual(classifyChanges(s.changes, svc, pod), ['DNAT', 'mark']);
  const outer = {
    family: 4 as const,
    proto: 'UDP',
    src: '192.168.1.1',
    dst: '192.168.1.2',
    sport: 40000,
    dport: 4789,
  };
  const e = trackAll([
    event({ func: 'vxlan_xmit', tuple: pod }),
    event({ func: 'ip_output', tuple: outer }),
  ])[0];
  assert.deepEqual(classifyChanges(e.steps[1].changes, pod, outer), ['encap']);
});

test('one skb address on two nodes is two packets; after a free it is a new one', () => {
  const t = new PacketTracker();
  const a = t.observe(event({ node: 'n1' })).packet;
  const b = t.observe(event({ node: 'n2' })).packet;
  assert.notEqual(a.id, b.id);
  t.observe(event({ node: 'n1', func: 'consume_skb', freed: true }));
  const c = t.observe(event({ node: 'n1' })).packet;
  assert.equal(c.id, 3);
  assert.equal(a.steps.length, 2);
});

test('function names: tracepoint categories and symbol offsets are stripped', () => {
  assert.equal(baseFunc('skb:kfree_skb'), 'kfree_skb');
  assert.equal(baseFunc('ip_rcv_finish_core.isra.0+0x1a5'), 'ip_rcv_finish_core');
  assert.equal(baseFunc('nft_do_chain+0x3c2/0x5c0'), 'nft_do_chain');
});

test('a live tracker hands finished packets on and keeps only those in flight', () => {
  const done: number[] = [];
  const t = new PacketTracker({ retain: false, onDone: (p) => done.push(p.id) });
  t.observe(event({ skb: '0x1', func: 'net_dev_queue' }));
  t.observe(event({ skb: '0x2', func: 'net_dev_queue' }));
  t.observe(event({ skb: '0x1', func: 'kfree_skb', drop: { reason: 'NO_SOCKET' }, freed: true }));
  // 0x2 comes back turned around without a traced free: the old packet is finished
  const back = event({ skb: '0x2', func: 'net_dev_queue' });
  back.tuple = { family: 4, proto: 'UDP', src: '10.0.0.2', dst: '10.0.0.1', sport: 53, dport: 1000 };
  t.observe(back);
  assert.deepEqual(done, [1, 2]);
  assert.deepEqual(t.packets(), []);
  assert.deepEqual(
    t.open().map((p) => p.id),
    [3],
  );
});

test('VXLAN: the encapsulation and the decapsulation say so, with the outer and inner tuples', () => {
  const packets = tracePackets('vxlan.jsonl');
  const p = packets.find((x) => x.steps.some((s) => s.changes.length));
  assert.ok(p);
  const notes = p.steps
    .filter((s) => s.changes.some((c) => c.field === 'dst'))
    .map((s) => describeChanges(s.changes));
  assert.equal(notes.length, 2);
  assert.match(notes[0], /^VXLAN encap, outer 192\.168\.1\.1:\d+ → 192\.168\.1\.2:4789, iface vx0 → ua$/);
  assert.match(notes[1], /^VXLAN decap, inner 10\.10\.0\.1:\d+ → 10\.10\.0\.2:9000, iface ub → vx0$/);
  const [enc, dec] = p.steps.filter((s) => s.changes.some((c) => c.field === 'dst'));
  assert.deepEqual(classifyChanges(enc.changes, p.tuple, enc.event.tuple), ['encap', 'device']);
  assert.deepEqual(classifyChanges(dec.changes, enc.event.tuple, dec.event.tuple), ['decap', 'device']);
  assert.equal(verdictOf(p).kind, 'delivered');
});

test('service DNAT and masquerade at one hop: both rewrites on the step after them', () => {
  const [p] = tracePackets('dnat.jsonl');
  assert.match(formatTuple(p.tuple), /^10\.244\.0\.5:\d+->10\.0\.0\.100:80\(udp\)$/);
  const step = p.steps.find((s) => s.changes.some((c) => c.field === 'dst'));
  assert.ok(step);
  assert.equal(baseFunc(step.event.func), 'net_dev_queue');
  assert.equal(
    describeChanges(step.changes),
    'SNAT src 10.244.0.5 → 10.0.0.1, DNAT dst 10.0.0.100 → 10.0.0.2, dport 80 → 9000, iface rc → rs',
  );
  assert.deepEqual(classifyChanges(step.changes, p.tuple, step.event.tuple), ['SNAT', 'DNAT', 'device']);
});

test('past MAX_LIVE_PACKETS packets in flight the tracker forgets them all, as the helper does', () => {
  const tracker = new PacketTracker({ retain: false });
  const skb = (i: number) => `0xffff8880${i.toString(16).padStart(8, '0')}`;
  for (let i = 0; i < MAX_LIVE_PACKETS; i++) tracker.observe(event({ skb: skb(i) }));
  // Still followed: the same address continues its packet.
  assert.equal(tracker.observe(event({ skb: skb(0), func: 'ip_rcv' })).packet.id, 1);
  // One more address: all are forgotten, so the first one now starts a new packet.
  assert.equal(tracker.observe(event({ skb: skb(MAX_LIVE_PACKETS) })).packet.id, MAX_LIVE_PACKETS + 1);
  assert.equal(tracker.observe(event({ skb: skb(0), func: 'ip_rcv' })).packet.id, MAX_LIVE_PACKETS + 2);
  assert.equal(tracker.open().length, 2);
});
