/**
 * Kernel addresses are named from the first event on: a caller or stack
 * frame is never written as a bare address because the names were still
 * loading (they load while the probes attach, and the first event that needs
 * one waits for them). The flood runs before the probes attach: the first
 * events come the moment they are.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startHelper } from '../integration/helper-process';
import { NetLab } from '../integration/netlab';
import { startFlood } from './harness';

describe('names from the first event', () => {
  const lab = new NetLab();
  let ns = '';
  const port = 20000 + ((process.pid + 13) % 20000);

  before(() => {
    ns = lab.ns('n');
  });
  after(() => lab.destroy());

  test('the first drops name their caller, the first stacks their frames', async () => {
    const stop = startFlood(ns, '127.0.0.1', port, 30);
    const h = startHelper([
      '--backend',
      'tracepoint',
      '--filter-netns',
      `/run/netns/${ns}`,
      '--output-stack',
      '--max-events',
      '2000',
      '--',
      `udp and port ${port}`,
    ]);
    const r = await h.finished();
    stop();
    assert.equal(r.code, 0, r.stderr);
    const withCaller = r.events.filter((e) => e.caller !== undefined);
    assert.ok(withCaller.length > 0, 'no event with a caller (the drops to a closed port)');
    const bare = withCaller.filter((e) => e.caller?.startsWith('0x'));
    assert.deepEqual(
      bare.slice(0, 3).map((e) => `${e.func} ${e.caller}`),
      [],
      `${bare.length} of ${withCaller.length} callers unnamed`,
    );
    const frames = r.events.flatMap((e) => e.stack ?? []);
    assert.ok(frames.length > 0);
    assert.deepEqual(frames.filter((f) => f.startsWith('0x')).slice(0, 3), [], 'stack frames unnamed');
  });
});
