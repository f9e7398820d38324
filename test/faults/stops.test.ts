/**
 * Every stop is prompt, at every stage of a run (compiling the filter,
 * attaching, tracing, detaching), under a flood from a sender faster than any
 * reader: SIGINT/SIGTERM and the client going away (stdin EOF) end the run
 * with END and exit 0, SIGKILL leaves nothing behind, SIGSTOP/SIGCONT cuts
 * nothing. After each: nothing of the run in the kernel, no helper process,
 * the stream whole to its last frame.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type HelperProcess, startHelper } from '../integration/helper-process';
import { NetLab } from '../integration/netlab';
import {
  assertGoneFromKernel,
  assertNoHelperLeft,
  beforeDetach,
  type Held,
  heldBy,
  startFlood,
} from './harness';

/** A filter that takes libpcap seconds to compile: 2000 host terms. */
const LONG_FILTER = Array.from(
  { length: 2000 },
  (_, i) => `host 10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
).join(' or ');

describe('stops at every stage', () => {
  const lab = new NetLab();
  let ns = '';
  let netns = '';
  let port = 0;
  let stopFlood: () => void = () => {};

  before(() => {
    ns = lab.ns('s');
    netns = `/run/netns/${ns}`;
    port = 20000 + ((process.pid + 7) % 20000);
    stopFlood = startFlood(ns, '127.0.0.1', port, 600);
  });
  after(() => {
    stopFlood();
    lab.destroy();
  });

  function trace(args: string[], stdin: 'pipe' | 'ignore' = 'ignore'): HelperProcess {
    return startHelper(
      ['--backend', 'tracepoint', '--filter-netns', netns, ...args, '--', `udp and port ${port}`],
      {
        stdin,
      },
    );
  }

  /** Time from now until the helper has exited. */
  async function exitWithin(h: HelperProcess) {
    const t0 = Date.now();
    const r = await h.finished();
    return { r, ms: Date.now() - t0 };
  }

  /**
   * Waits until the helper holds no link any more (detached) or has exited:
   * the promptness of a stop. Its exit may come later, once a reader that was
   * behind has taken the events that fired before the stop.
   */
  async function detachedWithin(h: HelperProcess, boundMs: number): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      const gone = h.child.exitCode !== null || h.child.signalCode !== null;
      const links = gone ? 0 : heldBy(h.child.pid ?? 0).links.size;
      if (links === 0) return Date.now() - t0;
      if (Date.now() - t0 > boundMs) assert.fail(`still ${links} links held ${boundMs} ms after the stop`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function clean(held: Held) {
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  }

  test('--duration 2 under a flood detaches about 2 s after READY, with the real loss counted', async () => {
    const h = trace(['--duration', '2']);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    const ms = await detachedWithin(h, 2000 + 1500);
    const r = await h.finished();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.end?.reason, 'duration');
    assert.ok(ms > 1500, `detached ${ms} ms after READY: before its --duration`);
    assert.equal(r.streamError, undefined);
    assert.ok(r.events.length > 0);
    assert.ok((r.stats.at(-1)?.seen ?? 0) > r.events.length, 'the flood was seen');
    await clean(held);
  });

  test('--max-events 1 under a flood: one event, nothing lost, the rest discarded', async () => {
    const h = trace(['--max-events', '1']);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    const r = await h.finished();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.end?.reason, 'max-events');
    assert.equal(r.events.length, 1);
    assert.equal(r.end?.events, 1);
    assert.equal(r.end?.lost, 0, `reported lost: ${JSON.stringify(r.end)}`);
    assert.ok((r.end?.discarded ?? 0) > 0, 'the flood after the first event was read and discarded');
    await clean(held);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    test(`${signal} while tracing under a flood: END within a second or so, final STATS, exit 0`, async () => {
      const h = trace(['--duration', '60']);
      await h.ready();
      await h.until('events flowing', (r) => r.events.length > 100);
      const held = heldBy(h.child.pid ?? 0);
      h.child.kill(signal);
      await detachedWithin(h, 1500);
      const r = await h.finished();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.end?.reason, 'signal');
      assert.deepEqual(beforeDetach(r.order).slice(-2), ['stats', 'end']);
      assert.equal(r.streamError, undefined);
      await clean(held);
    });
  }

  test('stdin EOF (the client went away) while tracing: END stdin, exit 0', async () => {
    const h = trace(['--duration', '60'], 'pipe');
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.stdin?.end();
    await detachedWithin(h, 1500);
    const r = await h.finished();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.end?.reason, 'stdin');
    assert.equal(r.streamError, undefined);
    await clean(held);
  });

  test('SIGKILL while tracing: the kernel lets go of everything', async () => {
    const h = trace(['--duration', '60']);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    assert.ok(held.progs.size > 0 && held.links.size > 0, 'the helper holds its programs and links');
    h.child.kill('SIGKILL');
    const r = await h.finished();
    assert.equal(r.signal, 'SIGKILL');
    await clean(held);
  });

  test('SIGSTOP past --duration, then SIGCONT: the run ends at once, nothing cut', async () => {
    const h = trace(['--duration', '1']);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 2500));
    h.child.kill('SIGCONT');
    await detachedWithin(h, 1500);
    const r = await h.finished();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.end?.reason, 'duration');
    assert.equal(r.streamError, undefined);
    await clean(held);
  });

  for (const [signal, reason] of [
    ['SIGINT', 'signal'],
    ['SIGTERM', 'signal'],
  ] as const) {
    test(`${signal} while attaching: END ${reason} (with or without READY), nothing left`, async () => {
      const h = trace(['--duration', '60']);
      await h.until('attaching', (r) => r.order.includes('progress'));
      const held = heldBy(h.child.pid ?? 0);
      h.child.kill(signal);
      await detachedWithin(h, 1500);
      const r = await h.finished();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.end?.reason, reason);
      assert.equal(r.streamError, undefined);
      await clean(held);
    });
  }

  test('SIGKILL while attaching: nothing left', async () => {
    const h = trace(['--duration', '60']);
    await h.until('attaching', (r) => r.order.includes('progress'));
    const held = heldBy(h.child.pid ?? 0);
    h.child.kill('SIGKILL');
    await h.finished();
    await clean(held);
  });

  test('a second signal while detaching: no waiting for anything, nothing left', async () => {
    const h = trace(['--duration', '60']);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.stdout?.pause(); // nobody reads: the last frames would wait for the reader
    h.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    h.child.kill('SIGTERM');
    const { r, ms } = await exitWithin(h);
    h.child.stdout?.resume();
    assert.equal(r.code, 0, r.stderr);
    assert.ok(ms < 2500, `${ms} ms`);
    await clean(held);
  });

  test('SIGKILL while detaching: nothing left', async () => {
    const h = trace(['--duration', '60']);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.kill('SIGINT');
    await h
      .until('detaching', (r) => r.order.lastIndexOf('progress') > r.order.indexOf('ready'), 5000)
      .catch(() => {
        // it may have finished detaching already: SIGKILL then finds it at the end
      });
    h.child.kill('SIGKILL');
    await h.finished();
    await clean(held);
  });

  for (const [how, reason] of [
    ['SIGINT', 'signal'],
    ['SIGTERM', 'signal'],
    ['stdin EOF', 'stdin'],
  ] as const) {
    test(`${how} while the filter compiles: END ${reason} at once, the compilers gone`, async () => {
      const h = startHelper(['--backend', 'tracepoint', '--', LONG_FILTER], { stdin: 'pipe' });
      await h.until('HELLO', (r) => r.order.includes('hello'));
      await new Promise((r) => setTimeout(r, 300)); // compiling by now: it takes seconds
      if (how === 'stdin EOF') h.child.stdin?.end();
      else h.child.kill(how);
      const { r, ms } = await exitWithin(h);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.order, ['hello', 'end']);
      assert.equal(r.end?.reason, reason);
      assert.ok(ms < 1500, `${ms} ms`);
      await assertNoHelperLeft();
    });
  }

  test('SIGKILL while the filter compiles: the compilers die with the helper', async () => {
    const h = startHelper(['--backend', 'tracepoint', '--', LONG_FILTER], { stdin: 'pipe' });
    await h.until('HELLO', (r) => r.order.includes('hello'));
    await new Promise((r) => setTimeout(r, 300));
    h.child.kill('SIGKILL');
    await h.finished();
    await assertNoHelperLeft();
  });

  test('SIGSTOP and SIGCONT while the filter compiles: the run goes on', async () => {
    const h = startHelper(['--backend', 'tracepoint', '--duration', '1', '--', LONG_FILTER]);
    await h.until('HELLO', (r) => r.order.includes('hello'));
    h.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 1000));
    h.child.kill('SIGCONT');
    const r = await h.finished();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.end?.reason, 'duration');
    await assertNoHelperLeft();
  });
});
