/**
 * Native XDP on veth: veth copies a sent skb into a buffer of its own, runs the
 * program there and consumes the sent one; the run on the new skb names the
 * sent skb and its buffer (`from`). The summary reads the two as one packet
 * going on: the sent one "continues as" the new one, is not counted apart, and
 * is no end (--fail-on-drop counts what became of the new one). Nothing is
 * linked without the run, or when the run's `from` does not match what the
 * sent packet had.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeProgRun } from '../../../src/reading/culprits';
import { totalsLine } from '../../../src/reading/summary';
import { TraceReading } from '../../../src/reading/trace-reading';
import type { TraceEvent, TraceProgRun } from '../../../src/record/event';

const SENT = '0xffff0001';
const SENT_HEAD = '0xffff00a0';
const BUILT = '0xffff0002';
const BUILT_HEAD = '0xffff00b0';

function event(
  skb: string,
  head: string,
  func: string,
  ts: string,
  extra: Partial<TraceEvent> = {},
): TraceEvent {
  return {
    type: 'event',
    v: 2,
    ts,
    time: '',
    skb,
    head,
    func,
    probe: 'tracepoint',
    cpu: 1,
    pid: 1,
    process: 'udpkit',
    netns: 4026532000,
    mark: 0,
    ifindex: 2,
    iface: 'veth2',
    l3proto: 'IPv4',
    mtu: 1500,
    len: 60,
    pktType: 'host',
    ipId: 77,
    tuple: { family: 4, proto: 'UDP', src: '10.200.1.2', dst: '10.200.1.1', sport: 40000, dport: 9109 },
    ...extra,
  };
}

function run(over: Partial<TraceProgRun> = {}): TraceProgRun {
  return {
    type: 'prog',
    v: 2,
    ts: '3000',
    skb: BUILT,
    netns: 4026532001,
    kind: 'xdp',
    iface: 'veth1',
    ifindex: 3,
    program: { id: 12, name: 'pwru_xdp_nat', tag: '0123456789abcdef' },
    ret: 2,
    verdict: 'XDP_PASS',
    from: { skb: SENT, head: SENT_HEAD },
    ...over,
  };
}

/** The sent skb's steps, then (the run in between) the built one's, ending as last says. */
function trace(r: TraceProgRun | undefined, last: Partial<TraceEvent> = {}): TraceReading {
  const reading = new TraceReading();
  reading.event(event(SENT, SENT_HEAD, 'net_dev_queue', '1000'));
  reading.event(event(SENT, SENT_HEAD, 'net_dev_start_xmit', '1500'));
  reading.event(event(SENT, SENT_HEAD, 'consume_skb', '2000', { freed: true }));
  if (r) reading.prog(r);
  const into = { iface: 'veth1', ifindex: 3, netns: 4026532001 };
  reading.event(event(BUILT, BUILT_HEAD, 'net:napi_gro_receive_entry', '3000', into));
  reading.event(
    event(BUILT, BUILT_HEAD, 'consume_skb', '4000', { ...into, iface: '', ifindex: 0, freed: true, ...last }),
  );
  return reading;
}

function summaryOf(reading: TraceReading) {
  const r = reading.result();
  assert.equal(r.kind, 'packets');
  return r.summary;
}

describe('a packet veth copied for its XDP program continues as the copy', () => {
  test('the sent skb continues as the one built, counted once', () => {
    const reading = trace(run());
    assert.equal(reading.dropped(), false);
    const s = summaryOf(reading);
    const [sent, built] = s.packets;
    assert.equal(sent.verdict.kind, 'continued');
    assert.equal(sent.label, 'continues as #2');
    assert.equal(
      sent.text,
      `continues as packet #2 (skb ${BUILT}): veth copied it into the buffer of XDP program pwru_xdp_nat (id 12) at XDP of veth1:3: XDP_PASS, and freed it at consume_skb`,
    );
    assert.equal(built.continues, 1);
    assert.equal(built.verdict.kind, 'delivered');
    assert.match(built.text, new RegExp(`; it began as packet #1 \\(skb ${SENT}\\)$`));
    assert.deepEqual(built.programs, [
      `handled by BPF program pwru_xdp_nat (id 12, tag 0123456789abcdef) at XDP of veth1:3: XDP_PASS; continues skb ${SENT}, which veth copied into the program's buffer`,
    ]);
    // One datagram, one packet.
    assert.equal(s.packetCount, 1);
    assert.equal(s.verdicts.continued, 1);
    assert.equal(s.verdicts.sent + s.verdicts.consumed, 0);
    assert.equal(
      s.flows.reduce((n, f) => n + f.packets, 0),
      1,
    );
    assert.match(totalsLine(s), /^1 packet: 1 delivered, 1 of them began as another skb/);
  });

  test('--fail-on-drop counts the copy dropped once, and never the sent skb', () => {
    const reading = trace(run(), { drop: { reason: 'NETFILTER_DROP', code: 12 }, func: 'kfree_skb' });
    assert.equal(reading.dropped(), true);
    const s = summaryOf(reading);
    assert.equal(s.packets[0].verdict.kind, 'continued');
    assert.equal(s.packets[1].verdict.kind, 'dropped');
    assert.equal(s.packetCount, 1);
    assert.equal(s.verdicts.dropped, 1);
  });

  test('without the run, or with a run that names another skb or buffer, two packets', () => {
    for (const r of [
      undefined,
      run({ from: undefined }),
      run({ from: { skb: SENT, head: '0xffff00c0' } }),
      run({ from: { skb: '0xffff0003', head: SENT_HEAD } }),
    ]) {
      const s = summaryOf(trace(r));
      assert.equal(s.packetCount, 2, JSON.stringify(r));
      assert.notEqual(s.packets[0].verdict.kind, 'continued');
      assert.equal(s.packets[1].continues, undefined);
    }
  });

  test('a run that comes after the copy ended still links it (runs come in a ring of their own)', () => {
    const reading = new TraceReading();
    reading.event(event(SENT, SENT_HEAD, 'net_dev_queue', '1000'));
    reading.event(event(SENT, SENT_HEAD, 'consume_skb', '2000', { freed: true }));
    reading.event(event(BUILT, BUILT_HEAD, 'net:napi_gro_receive_entry', '3000'));
    reading.event(event(BUILT, BUILT_HEAD, 'consume_skb', '4000', { iface: '', ifindex: 0, freed: true }));
    reading.prog(run());
    const s = summaryOf(reading);
    assert.equal(s.packets[0].verdict.kind, 'continued');
    assert.equal(s.packetCount, 1);
  });

  test('the run line names the skb it continues', () => {
    assert.match(describeProgRun(run()), /: XDP_PASS; continues skb 0xffff0001, which veth copied/);
    assert.doesNotMatch(describeProgRun(run({ from: undefined })), /continues/);
  });
});
