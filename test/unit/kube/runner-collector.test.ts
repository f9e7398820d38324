import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Collector, REPLAY_WINDOW } from '../../../runner/runner';

test('the runner collects the young generation every 2 MiB read, and everything every REPLAY_WINDOW sent', () => {
  const calls: string[] = [];
  const c = new Collector((o) => calls.push(o.type));
  for (let i = 0; i < 31; i++) c.readBytes(64 * 1024);
  assert.deepEqual(calls, [], 'under 2 MiB read: nothing');
  c.readBytes(64 * 1024);
  assert.deepEqual(calls, ['minor']);
  c.sentBytes(REPLAY_WINDOW - 1);
  assert.deepEqual(calls, ['minor']);
  c.sentBytes(1);
  assert.deepEqual(calls, ['minor', 'major']);
  // A major collection starts the count of bytes read afresh.
  for (let i = 0; i < 31; i++) c.readBytes(64 * 1024);
  assert.deepEqual(calls, ['minor', 'major']);
});

test('without gc() (node started without --expose-gc) the runner goes on without collecting', () => {
  const c = new Collector(undefined);
  c.readBytes(64 * 1024 * 1024);
  c.sentBytes(REPLAY_WINDOW);
  c.all();
});
