/** Target parsing and filter composition: no cluster needed. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../../src/errors';
import { parseTarget, selectorString } from '../../src/kube/targets';
import { matchLabels } from '../k8s-apiserver/server';

test('targets parse the kubectl way', () => {
  assert.deepEqual(parseTarget('pod/web-0', undefined), { kind: 'pod', name: 'web-0' });
  assert.deepEqual(parseTarget('web-0', undefined), { kind: 'pod', name: 'web-0' });
  assert.deepEqual(parseTarget('po/web-0', undefined), { kind: 'pod', name: 'web-0' });
  assert.deepEqual(parseTarget('node/worker-3.example.com', undefined), {
    kind: 'node',
    name: 'worker-3.example.com',
  });
  assert.deepEqual(parseTarget('service/api', undefined), { kind: 'svc', name: 'api' });
  assert.deepEqual(parseTarget('deployment/checkout', 'tier=web'), { kind: 'deploy', name: 'checkout' });
  assert.deepEqual(parseTarget('ds/agent', undefined), { kind: 'ds', name: 'agent' });
  assert.deepEqual(parseTarget('statefulsets/db', undefined), { kind: 'sts', name: 'db' });
  assert.deepEqual(parseTarget(undefined, 'app=web'), { kind: 'selector', name: '' });
});

test('bad targets are refused before any API call', () => {
  assert.throws(
    () => parseTarget('rs/web', undefined),
    (e: Error) => e instanceof UserError && /unknown target kind "rs"/.test(e.message),
  );
  assert.throws(() => parseTarget('pod/Web_0', undefined), /not a valid Kubernetes object name/);
  assert.throws(() => parseTarget('pod/a;rm -rf /', undefined), /not a valid Kubernetes object name/);
  assert.throws(() => parseTarget('pod/web-0', 'app=web'), /-l selects pods of a workload/);
  assert.throws(() => parseTarget(undefined, undefined), /nothing to trace/);
});

test('workload selectors become kubectl selector strings, which the stand-in reads the same way', () => {
  const sel = selectorString({
    matchLabels: { app: 'web' },
    matchExpressions: [
      { key: 'tier', operator: 'In', values: ['front', 'edge'] },
      { key: 'canary', operator: 'DoesNotExist' },
      { key: 'zone', operator: 'NotIn', values: ['b'] },
      { key: 'owner', operator: 'Exists' },
    ],
  });
  assert.equal(sel, 'app=web,tier in (front,edge),!canary,zone notin (b),owner');
  assert.equal(matchLabels(sel, { app: 'web', tier: 'edge', zone: 'a', owner: 'x' }), true);
  assert.equal(matchLabels(sel, { app: 'web', tier: 'edge', zone: 'a', owner: 'x', canary: '1' }), false);
  assert.equal(matchLabels(sel, { app: 'web', tier: 'back', owner: 'x' }), false);
});
