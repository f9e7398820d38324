import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BadInput } from '../../../src/errors';
import { checkBackendOnKernel } from '../../../src/kube/node-kernel';

test('a backend the node kernel is too old for is bad input, before any pod', () => {
  assert.throws(
    () => checkBackendOnKernel('worker-1', 'kprobe-multi', '5.15.0-1034-aws'),
    (e: unknown) =>
      e instanceof BadInput &&
      /--backend kprobe-multi needs Linux 5\.18 or later; node worker-1 runs 5\.15\.0-1034-aws/.test(
        e.message,
      ),
  );
  assert.throws(() => checkBackendOnKernel('old', 'tracepoint', '4.19.0-26-amd64'), BadInput);
});

test('a kernel new enough, auto, kprobe, or a version that cannot be read: left to the helper', () => {
  for (const [backend, kernel] of [
    ['kprobe-multi', '5.18.0'],
    ['kprobe-multi', '6.1.0-18-amd64'],
    ['tracepoint', '5.5.0'],
    ['tracepoint', '5.10.0-32-amd64'],
    ['kprobe', '4.19.0'],
    ['auto', '4.19.0'],
    ['kprobe-multi', ''],
    ['kprobe-multi', 'weird'],
  ] as const)
    assert.doesNotThrow(() => checkBackendOnKernel('n', backend, kernel), `${backend} on ${kernel}`);
});
