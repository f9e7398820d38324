import assert from 'node:assert/strict';
import { test } from 'node:test';
import { align, diffPackets, pickBad, pickGood } from '../../../src/reading/diff';
import { tracePackets } from '../fixtures';

function pair(goodName: string, badName: string) {
  const good = pickGood(tracePackets(goodName));
  const bad = pickBad(tracePackets(badName));
  assert.ok(good && bad);
  return diffPackets(good, bad);
}

test('alignment is a longest common subsequence of the steps', () => {
  const a = ['a', 'b', 'c', 'd', 'f'];
  const b = ['a', 'c', 'd', 'e', 'f'];
  assert.deepEqual(align(a, b), [
    [0, 0],
    [1, -1],
    [2, 1],
    [3, 2],
    [-1, 3],
    [4, 4],
  ]);
  assert.deepEqual(align([], ['x']), [[-1, 0]]);
});

test('good vs masquerade-borrowed-address: same path, different source at the SNAT step, then rp_filter', () => {
  const d = pair('good-masquerade.jsonl', 'bad-masquerade-rpfilter.jsonl');
  assert.ok(d.divergence >= 0);
  const row = d.rows[d.divergence];
  assert.equal(row.kind, 'differs');
  assert.equal(row.good?.event.func, 'net_dev_queue');
  assert.equal(d.rows[d.rows.length - 1].kind, 'replaced');
  assert.equal(
    d.sentence,
    'Both pass net_dev_queue; the failing one leaves with source 192.168.50.1 instead of 10.0.0.1 and is dropped by the reverse-path filter at ip_rcv_finish_core (IP_RPFILTER).',
  );
});

test('good vs iptables DROP: same rewrites, the path parts at the end', () => {
  const d = pair('good-masquerade.jsonl', 'netfilter-drop.jsonl');
  const row = d.rows[d.divergence];
  assert.equal(row.kind, 'replaced');
  assert.equal(d.divergence, d.rows.length - 1);
  assert.match(
    d.sentence,
    /^Both pass netif_receive_skb; then the failing one goes to kfree_skb instead of consume_skb/,
  );
  assert.match(
    d.sentence,
    /dropped by netfilter \(an iptables\/nftables rule\) at nft_do_chain \(NETFILTER_DROP\)\.$/,
  );
});

test('two recordings of the same working flow do not differ', () => {
  const d = pair('good-masquerade.jsonl', 'good-masquerade-again.jsonl');
  assert.equal(d.divergence, -1, JSON.stringify(d.rows.map((r) => r.kind)));
  assert.ok(d.rows.every((r) => r.kind === 'same'));
  assert.match(
    d.sentence,
    /^Both packets take the same \d+-step path and both are delivered to a local socket/,
  );
});

test('a packet against itself does not differ', () => {
  const [p] = tracePackets('bad-masquerade-rpfilter.jsonl');
  const d = diffPackets(p, p);
  assert.equal(d.divergence, -1);
  assert.match(d.sentence, /same 13-step path and both are dropped/);
});
