import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSink } from '../../../src/output/create-sink';
import { diffPackets, flowPath, pickBad, pickGood } from '../../../src/reading/diff';
import { replay } from '../../../src/reading/replay';
import { formatTuple } from '../../../src/reading/tuple-format';
import { verdictOf } from '../../../src/reading/verdicts';
import { traceLines, tracePackets } from '../fixtures';
import { Capture } from '../output/capture';

test('TCP through masquerade: reused addresses do not glue packets together', () => {
  const packets = tracePackets('tcp-good.jsonl');
  for (const p of packets) {
    // Every packet keeps one direction: the client's (10.244.0.5 first) or the server's.
    const dirs = new Set(p.steps.filter((s) => s.event.tuple).map((s) => s.event.tuple?.sport === 8080));
    assert.equal(dirs.size, 1, `packet #${p.id} ${formatTuple(p.tuple)} mixes directions`);
    // and stays within one crossing of the path: client → router → server or back
    assert.ok(p.steps.length <= 16, `packet #${p.id} has ${p.steps.length} steps`);
  }
  const flags = packets.filter((p) => p.steps.length > 1).map((p) => p.tuple?.tcpFlags);
  assert.equal(flags[0], 'S');
  assert.equal(flags[1], 'S.');
  assert.ok(flags.includes('F.'));
});

test('TCP: segments an established socket took (tcp_probe) are delivered; the close-time purge is housekeeping', async () => {
  const packets = tracePackets('tcp-good.jsonl');
  const delivered = packets.filter((p) => verdictOf(p).kind === 'delivered');
  assert.ok(delivered.length >= 4, `${delivered.length} delivered`);
  const purged = packets.filter((p) => {
    const v = verdictOf(p);
    return v.kind === 'dropped' && v.reason === 'QUEUE_PURGE';
  });
  assert.equal(purged.length, 1);
  assert.equal(purged[0].tuple?.tcpFlags, 'F.');
  const v = verdictOf(purged[0]);
  assert.equal(v.kind === 'dropped' && v.noFailure?.rule, 'queue-purged-on-close');
  const sink = createSink({
    format: 'json',
    summary: true,
    color: false,
    showNode: false,
    stdout: new Capture(),
    stderr: new Capture(),
  });
  await replay(traceLines('tcp-good.jsonl'), sink);
  await sink.close();
  assert.equal(sink.dropped(), false, '--fail-on-drop does not fire on a normal close');
});

test('diff --flow: the working connection with its replies against SYNs the reverse-path filter drops', () => {
  const goods = tracePackets('tcp-good.jsonl');
  const bads = tracePackets('tcp-bad-rpfilter.jsonl');
  const good = pickGood(goods);
  const bad = pickBad(bads);
  assert.ok(good && bad);
  const gf = flowPath(goods, good);
  const bf = flowPath(bads, bad);
  assert.ok(
    gf.steps.some((s) => s.reply),
    'server replies belong to the flow, though NAT changed their tuple',
  );
  assert.equal(gf.packets?.length, goods.filter((p) => p.steps.length > 1).length);
  assert.equal(bf.packets?.length, 2, 'the SYN and its retransmission');
  const d = diffPackets(gf, bf);
  assert.equal(d.goodVerdict.kind, 'delivered');
  assert.equal(d.rows[d.divergence].kind, 'differs');
  assert.equal(
    d.sentence,
    'Both pass net_dev_queue; the failing one leaves with source 192.168.50.1 instead of 10.0.0.1 and is dropped by the reverse-path filter at ip_rcv_finish_core (IP_RPFILTER).',
  );
  // steps stay in time order across packets
  const ts = gf.steps.map((s) => BigInt(s.event.ts));
  assert.ok(ts.every((t, i) => i === 0 || t >= ts[i - 1]));
});

test('a lone free right before a packet with its tuple on the same CPU is that packet swapped for a copy', () => {
  const [first, second] = tracePackets('tcp-good.jsonl');
  assert.equal(first.steps.length, 1);
  assert.deepEqual(verdictOf(first), {
    kind: 'consumed',
    func: 'consume_skb',
    step: 0,
    replacedBy: second.id,
  });
  assert.equal(second.steps.length > 10, true);
  // a packet of another flow in between is no replacement
  const [nf] = tracePackets('netfilter-drop.jsonl');
  assert.equal(nf.replacedBy, undefined);
});
