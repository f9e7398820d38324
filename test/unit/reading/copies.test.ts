/**
 * Copies made by a copy function (nft `dup to`, iptables TEE: pskb_copy),
 * linked to their original by the event's copiedFrom (src/reading/copies.ts),
 * and what the original's verdict says of them, on nf_dup_ipv4's steps (dup-trace.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PacketTracker } from '../../../src/reading/packet-tracker';
import { describeVerdict, verdictLabel } from '../../../src/reading/verdict-words';
import { isLoss, verdictOf } from '../../../src/reading/verdicts';
import type { TraceEvent } from '../../../src/record/event';
import { event, tracePackets } from '../fixtures';
import { dupTrace } from './dup-trace';

function read(events: TraceEvent[]) {
  const done: number[] = [];
  const t = new PacketTracker({ onDone: (p) => done.push(p.id) });
  for (const e of events) t.observe(e);
  t.open();
  return { packets: t.packets(), done };
}

test('a copy made by pskb_copy is linked to its original at the step that says so', () => {
  const { packets } = read(dupTrace('sent'));
  const [orig, copy] = packets;
  assert.equal(packets.length, 2);
  assert.equal(copy.copyOf, orig.id);
  assert.equal(copy.copied, true);
  assert.deepEqual(
    orig.copies?.map((c) => c.id),
    [copy.id],
  );
});

test('the original dropped, its copy sent out: delivered by the copy, no loss', () => {
  const { packets, done } = read(dupTrace('sent'));
  const [orig, copy] = packets;
  const v = verdictOf(orig);
  assert.equal(v.kind, 'delivered', JSON.stringify(v));
  assert.equal(
    describeVerdict(v),
    `delivered (a copy sent out of veth0, packet #${copy.id}); the original freed at nf_hook_slow (NETFILTER_DROP)`,
  );
  assert.equal(verdictLabel(v), 'delivered (a copy sent out of veth0)');
  assert.equal(isLoss(v), false);
  // Held back until its copy was finished (here: at the end of the trace, as the copy is in flight).
  assert.ok(done.includes(orig.id));
});

test('the original dropped, its copy received and delivered to the IP stack: delivered by the copy', () => {
  const { packets } = read(dupTrace('local'));
  const [orig, copy] = packets;
  const v = verdictOf(orig);
  assert.equal(
    describeVerdict(v),
    `delivered (a copy to the local stack, packet #${copy.id}); the original freed at nf_hook_slow (NETFILTER_DROP)`,
  );
  assert.equal(isLoss(v), false);
});

test('the copy dropped too: the last living copy was dropped, both are losses', () => {
  const { packets } = read(dupTrace('dropped'));
  const [orig, copy] = packets;
  assert.equal(copy.copyOf, orig.id);
  assert.equal(isLoss(verdictOf(orig)), true);
  assert.equal(isLoss(verdictOf(copy)), true);
});

test('no copy seen (tracepoints): the original is a loss, nothing guessed', () => {
  const { packets } = read(dupTrace('none'));
  assert.equal(packets.length, 1);
  assert.equal(isLoss(verdictOf(packets[0])), true);
});

test('a clone sharing no buffer and saying nothing is not linked', () => {
  const events = dupTrace('sent').map((e) => {
    const { copiedFrom: _drop, ...rest } = e;
    return rest as TraceEvent;
  });
  const { packets } = read(events);
  assert.equal(packets[1].copyOf, undefined);
  assert.equal(isLoss(verdictOf(packets[0])), true);
});

test('a real trace (6.12, kprobe-multi): each copy linked at its first step reported, a buffer of its own', () => {
  const packets = tracePackets('nft-dup-6.12.jsonl');
  const copies = packets.filter((p) => p.copied);
  assert.equal(copies.length, 3);
  for (const c of copies) {
    const original = packets.find((p) => p.id === c.copyOf);
    assert.ok(original);
    assert.equal(c.steps[0].event.copiedFrom?.skb, original.skb, 'the link comes with the first step');
    assert.notEqual(c.steps[0].event.head, original.steps[0].event.head);
    assert.equal(
      c.steps[0].event.copiedFrom?.head,
      original.steps[0].event.head,
      'the original buffer, as reported',
    );
    const v = verdictOf(c);
    assert.equal(v.kind === 'delivered' && v.copyOf, original.id);
  }
});

test('a buffer handed on after a free no tracepoint saw: the next segment sharing it is not taken for a clone', () => {
  // As on a real cluster with tracepoints: the server's SYN-ACK is freed by __kfree_skb (no tracepoint), its
  // buffer goes to the server's next segment, which TCP clones for transmit (shared 2 at its first step).
  const synAck = {
    family: 4 as const,
    proto: 'TCP',
    src: '10.88.1.81',
    dst: '10.88.0.1',
    sport: 8080,
    dport: 46558,
  };
  const head = '0xffff888100aa0000';
  const first = event({
    skb: '0xffff1',
    func: 'net_dev_queue',
    head,
    seq: 100,
    tuple: { ...synAck, tcpFlags: 'S.' },
  });
  const next = (flags: string, seq: number) =>
    event({
      skb: '0xffff2',
      ts: '2000',
      func: 'net_dev_queue',
      head,
      shared: 2,
      seq,
      tuple: { ...synAck, tcpFlags: flags },
    });
  const apart = read([first, next('P.', 101)]).packets;
  assert.equal(apart.length, 2);
  assert.equal(apart[1].copyOf, undefined, 'another segment, not a clone of the SYN-ACK');
  // The control: the same bytes at the same buffer, shared, is a clone.
  const clone = read([first, next('S.', 100)]).packets;
  assert.equal(clone[1].copyOf, clone[0].id);
});
