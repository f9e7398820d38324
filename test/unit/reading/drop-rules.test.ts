/**
 * The drops that are not failures (src/reading/drop-rules.ts): one test per
 * rule, each on a real trace recorded on this project's machine with the
 * tracepoint backend (test/fixtures/traces), and a real loss beside them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createSink } from '../../../src/output/create-sink';
import { noFailureByPlace } from '../../../src/reading/drop-rules';
import { PacketTracker } from '../../../src/reading/packet-tracker';
import { replay } from '../../../src/reading/replay';
import { summarizeDigest, totalsLine } from '../../../src/reading/summary';
import { describeVerdict, verdictLabel } from '../../../src/reading/verdict-words';
import { isLoss, type Verdict, verdictOf } from '../../../src/reading/verdicts';
import { ROOT, traceLines, tracePackets } from '../fixtures';
import { Capture } from '../output/capture';
import { dupTrace } from './dup-trace';

/** What --fail-on-drop would say of a saved trace, read as `show` reads it. */
async function failsOnDrop(name: string): Promise<boolean> {
  const sink = createSink({
    format: 'json',
    summary: true,
    color: false,
    showNode: false,
    stdout: new Capture(),
    stderr: new Capture(),
  });
  await replay(traceLines(name), sink);
  await sink.close();
  return sink.dropped();
}

function dropped(v: Verdict): Extract<Verdict, { kind: 'dropped' }> {
  assert.equal(v.kind, 'dropped', JSON.stringify(v));
  return v as Extract<Verdict, { kind: 'dropped' }>;
}

test('every rule in the table has a test here', () => {
  const table = readFileSync(join(ROOT, 'src', 'reading', 'drop-rules.ts'), 'utf8');
  const rules = [...table.matchAll(/^\s+rule: '([\w-]+)',$/gm)].map((m) => m[1]);
  const tests = readFileSync(__filename.replace(/\.js$/, '.js'), 'utf8');
  assert.ok(rules.length >= 4, rules.join(','));
  for (const r of rules) assert.ok(tests.includes(`rule ${r}:`), `no test for the rule ${r}`);
});

test('rule copy-delivered: ping as root, the raw socket took a copy of each echo reply', async () => {
  const packets = tracePackets('ping-raw-socket.jsonl');
  const replies = packets.filter((p) => p.tuple?.icmpType === 0 && p.copies?.length);
  assert.equal(replies.length, 3, 'three echo replies, each with its copy');
  for (const reply of replies) {
    const v = verdictOf(reply);
    assert.equal(v.kind, 'delivered');
    const copy = reply.copies?.[0];
    assert.ok(copy);
    assert.equal(copy.copyOf, reply.id);
    assert.equal(copy.steps[0].event.head, reply.steps[0].event.head, 'the copy shares the data buffer');
    assert.equal(
      describeVerdict(v),
      `delivered (a copy to a raw socket, packet #${copy.id}); the original freed at ping_rcv (NO_SOCKET)`,
    );
    assert.equal(verdictLabel(v), 'delivered (a copy to a raw socket)');
    assert.equal(isLoss(v), false);
  }
  assert.equal(await failsOnDrop('ping-raw-socket.jsonl'), false, '--fail-on-drop does not count it');
});

test('rule copy-got-through: nft dup, the original dropped by a later rule, its copy delivered (6.1 and 6.12)', async () => {
  // Recorded in the kernel matrix (test/kernel-matrix/copies.test.ts, KERNEL_MATRIX_SAVE): kprobe on 6.1,
  // kprobe-multi on 6.12; `dup to 10.200.2.2 device veth3`, then `oifname veth1 udp dport 9003 drop`.
  for (const name of ['nft-dup-6.1.jsonl', 'nft-dup-6.12.jsonl']) {
    const packets = tracePackets(name);
    const originals = packets.filter((p) => p.copies?.some((c) => c.copied));
    assert.equal(originals.length, 3, `${name}: three datagrams, each with its copy`);
    for (const o of originals) {
      const copy = o.copies?.[0];
      assert.ok(copy);
      assert.equal(copy.steps.find((s) => s.event.copiedFrom)?.event.copiedFrom?.skb, o.skb);
      const v = verdictOf(o);
      assert.match(
        describeVerdict(v),
        new RegExp(
          `^delivered \\(a copy to a local socket, packet #${copy.id}\\); the original freed at (nf_hook_slow|nft_do_chain) \\(NETFILTER_DROP\\)$`,
        ),
        name,
      );
      assert.equal(isLoss(v), false);
    }
    assert.equal(await failsOnDrop(name), false, `${name}: --fail-on-drop does not count them`);
  }
  // The same drop with no copy seen (as with tracepoints) is a loss: the rule needs the copy.
  const alone = new PacketTracker();
  for (const e of dupTrace('none')) alone.observe(e);
  assert.equal(isLoss(verdictOf(alone.packets()[0])), true);
});

test('a copy that is dropped too leaves the original a loss (the last living copy was dropped)', () => {
  const packets = tracePackets('ping-raw-socket.jsonl');
  const reply = packets.find((p) => p.copies?.length);
  assert.ok(reply?.copies);
  const copy = reply.copies[0];
  const last = copy.steps[copy.steps.length - 1];
  // The same trace, the raw socket's copy freed with a reason instead of read (its buffer full).
  const dropping = {
    ...copy,
    steps: [
      ...copy.steps.slice(0, -1),
      { ...last, event: { ...last.event, drop: { reason: 'SOCKET_RCVBUFF' } } },
    ],
  };
  const v = dropped(verdictOf({ ...reply, copies: [dropping] }));
  assert.equal(v.reason, 'NO_SOCKET');
  assert.equal(v.noFailure, undefined);
  assert.equal(isLoss(v), true);
});

test('rule queue-purged-on-close: a healthy TCP exchange on loopback, its FIN purged as the server closes', async () => {
  const packets = tracePackets('tcp-close.jsonl');
  const drops = packets.map(verdictOf).filter((v) => v.kind === 'dropped');
  assert.equal(drops.length, 1);
  const v = dropped(drops[0]);
  assert.equal(v.reason, 'QUEUE_PURGE');
  assert.equal(v.func, 'sk_stream_kill_queues');
  assert.equal(v.noFailure?.rule, 'queue-purged-on-close');
  assert.match(
    describeVerdict(v),
    /^freed at sk_stream_kill_queues \(QUEUE_PURGE\), not a failure: a socket was closed/,
  );
  assert.equal(await failsOnDrop('tcp-close.jsonl'), false);
});

test('rule queue-purged-on-close-unnamed: a healthy TCP exchange on 6.1, the closing socket purges the peer FIN', async () => {
  // Recorded in the kernel matrix's 6.1 guest (test/kernel-matrix/record-trace.ts, traffic tcp): ns1 asks,
  // ns2 answers and closes first; ns2's socket, destroyed, frees ns1's FIN from its queue with no reason.
  const name = 'tcp-close-6.1.jsonl';
  const packets = tracePackets(name);
  const drops = packets.map(verdictOf).filter((v) => v.kind === 'dropped');
  assert.equal(drops.length, 1);
  const v = dropped(drops[0]);
  assert.equal(v.reason, 'NOT_SPECIFIED');
  assert.equal(v.func, 'sk_stream_kill_queues');
  assert.equal(v.noFailure?.rule, 'queue-purged-on-close-unnamed');
  assert.match(
    describeVerdict(v),
    /^freed at sk_stream_kill_queues \(NOT_SPECIFIED\), not a failure: a socket was closed/,
  );
  assert.equal(isLoss(v), false);
  assert.equal(await failsOnDrop(name), false);
  // The reason alone is no pass: NOT_SPECIFIED elsewhere stays a loss.
  assert.equal(noFailureByPlace('NOT_SPECIFIED', 'tcp_v4_rcv+0x10'), undefined);
  assert.match(noFailureByPlace('NOT_SPECIFIED', 'sk_stream_kill_queues+0x58') ?? '', /socket was closed/);
});

test('rule unix-peer-changed: a datagram socket connected elsewhere with a message unread', async () => {
  const p = tracePackets('unix-disconnect.jsonl').find((q) => q.steps.some((s) => s.event.drop));
  assert.ok(p);
  const v = dropped(verdictOf(p));
  assert.equal(v.reason, 'UNIX_DISCONNECT');
  assert.equal(v.noFailure?.rule, 'unix-peer-changed');
  assert.equal(await failsOnDrop('unix-disconnect.jsonl'), false);
});

test('rule unix-oob-skipped: out-of-band bytes read past without MSG_OOB', async () => {
  const oob = tracePackets('unix-skip-oob.jsonl').filter((p) => verdictOf(p).kind === 'dropped');
  assert.equal(oob.length, 2);
  for (const p of oob) assert.equal(dropped(verdictOf(p)).noFailure?.rule, 'unix-oob-skipped');
  assert.equal(await failsOnDrop('unix-skip-oob.jsonl'), false);
});

test('real losses stay failures: a netfilter DROP, a datagram to a closed port', async () => {
  for (const name of ['netfilter-drop.jsonl', 'no-socket.jsonl']) {
    const [p] = tracePackets(name);
    const v = dropped(verdictOf(p));
    assert.equal(v.noFailure, undefined, name);
    assert.equal(await failsOnDrop(name), true, name);
  }
});

test('with --fail-on-drop, -o json takes events, not the helper lines: the verdicts need the client', () => {
  const sink = (verdicts: boolean) =>
    createSink({
      format: 'json',
      summary: false,
      color: false,
      showNode: false,
      stdout: new Capture(),
      stderr: new Capture(),
      verdicts,
    });
  assert.equal(sink(false).acceptsLines, 'json');
  assert.equal(sink(true).acceptsLines, undefined);
});

test('shown, marked: the drop line says "not a failure" as it happens, the totals count it apart, the copy names its original', async () => {
  const out = new Capture();
  const sink = createSink({
    format: 'text',
    summary: false,
    color: false,
    showNode: false,
    stdout: out,
    stderr: new Capture(),
  });
  await replay(traceLines('tcp-close.jsonl'), sink);
  await sink.close();
  const text = out.text;
  assert.match(
    text,
    /kfree_skb\(QUEUE_PURGE\) {2}\[not a failure: a socket was closed with this packet still in its queue/,
  );
  const totals = text.split('\n').find((l) => l.startsWith('10 packets:')) ?? '';
  assert.match(totals, /1 freed on normal paths \(not failures\)/, totals);
  assert.doesNotMatch(totals, /dropped/, totals);
  const ping = tracePackets('ping-raw-socket.jsonl');
  const copy = ping.find((p) => p.copyOf !== undefined);
  assert.ok(copy);
  assert.equal(verdictLabel(verdictOf(copy)), `delivered, a copy of #${copy.copyOf}`);
});

test('the helper digest (-o json on --local) counts drops on normal paths apart, by reason and place', () => {
  const s = summarizeDigest({
    packets: 3,
    events: 20,
    drops: [
      { reason: 'QUEUE_PURGE', at: 'sk_stream_kill_queues+0x57', count: 1 },
      { reason: 'NETFILTER_DROP', at: 'nf_hook_slow+0x91', count: 1 },
    ],
  });
  assert.equal(s.normalDrops, 1);
  assert.match(totalsLine(s), /^3 packets: 1 dropped, 1 freed on normal paths \(not failures\)\./);
});
