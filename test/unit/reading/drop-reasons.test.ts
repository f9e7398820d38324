import assert from 'node:assert/strict';
import { test } from 'node:test';
import { droppedBy, explainDropReason } from '../../../src/reading/drop-reasons';
import { traceHeader } from '../fixtures';

test('every drop reason the recorded kernel (6.18, from its BTF) can report is explained', () => {
  const names = Object.values(traceHeader('bad-masquerade-rpfilter.jsonl').dropReasons);
  assert.ok(names.length > 100, `expected the full enum from BTF, got ${names.length}`);
  const notReasons = new Set(['NOT_DROPPED_YET', 'CONSUMED', 'MAX']);
  const missing = names.filter(
    (n) => !notReasons.has(n) && !n.startsWith('SUBSYS_') && !explainDropReason(n).known,
  );
  assert.deepEqual(missing, []);
  for (const n of names) assert.ok(explainDropReason(n).text.length > 10, n);
});

test('a reason this version does not know still shows, under its own name', () => {
  const info = explainDropReason('SKB_DROP_REASON_FANCY_NEW_THING');
  assert.equal(info.known, false);
  assert.equal(info.name, 'FANCY_NEW_THING');
  assert.match(info.text, /FANCY_NEW_THING/);
  assert.equal(droppedBy('FANCY_NEW_THING'), 'the kernel (FANCY_NEW_THING)');
});

test('the common reasons say what likely caused them and what to check', () => {
  const common = [
    'IP_RPFILTER',
    'NETFILTER_DROP',
    'NO_SOCKET',
    'OTHERHOST',
    'IP_OUTNOROUTES',
    'IP_INNOROUTES',
    'NEIGH_FAILED',
    'QDISC_DROP',
    'TCP_INVALID_SEQUENCE',
    'TCP_OLD_DATA',
    'UDP_CSUM',
    'TCP_CSUM',
    'PKT_TOO_BIG',
  ];
  for (const n of common) {
    const info = explainDropReason(n);
    assert.ok(info.cause, `${n} has a likely cause`);
    assert.ok(info.check && info.check.length > 0, `${n} says what to check`);
  }
  const rp = explainDropReason('IP_RPFILTER');
  const checks = rp.check?.join('\n') ?? '';
  assert.match(checks, /source address/);
  assert.match(checks, /rp_filter/);
  assert.match(checks, /MASQUERADE picked its address from an unexpected interface/);
  assert.equal(droppedBy('IP_RPFILTER'), 'the reverse-path filter');
});
