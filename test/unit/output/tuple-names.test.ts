import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatTuple } from '../../../src/reading/tuple-format';

test('Kubernetes owners follow the tuple in the views, never inside it', () => {
  const t = {
    family: 4 as const,
    proto: 'UDP',
    src: '10.213.1.1',
    dst: '10.213.1.2',
    sport: 52192,
    dport: 9999,
    dstName: 'shop/web-0',
  };
  assert.equal(formatTuple(t, true), '10.213.1.1:52192->10.213.1.2:9999(udp) [? → shop/web-0]');
  // Flow keys and summaries use the bare tuple.
  assert.equal(formatTuple(t), '10.213.1.1:52192->10.213.1.2:9999(udp)');
  const { dstName: _n, ...bare } = t;
  assert.equal(formatTuple(bare, true), '10.213.1.1:52192->10.213.1.2:9999(udp)');
});
