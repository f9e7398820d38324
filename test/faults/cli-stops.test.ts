/**
 * Stops of the CLI (`kubectl-pwru --local`) under a flood, in the text view
 * into a reader that sleeps until the stop (the helper's writes block on a
 * full pipe, so the ring buffer overflows: the text lines to a pipe keep up
 * with this sender when the reader is awake) and in --summary (every event
 * decoded and counted here): --duration, one SIGINT or SIGTERM, --max-events 1,
 * and a helper stopped with SIGSTOP that cannot keep --duration. Each ends within
 * about a second of the stop with the summary written and the counts true
 * (what was delivered, lost, and discarded after the stop); after each,
 * nothing of the run in the kernel and no helper process.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { NetLab } from '../integration/netlab';
import { CliProcess, EXIT_BOUND_MS, plainError, stopLeftovers } from './cli';
import { assertGoneFromKernel, assertNoHelperLeft, startFlood } from './harness';

/** "N events, M LOST (…), K after the stop not shown." from the closing totals. */
function totals(text: string): { events: number; lost: number; discarded: number } {
  const m =
    /(\d+) events, (\d+) (?:LOST|lost)[^,.]*(?:\([^)]*\))?(?:, (\d+) after the stop not shown)?\./.exec(text);
  if (!m) throw new Error(`no totals line in:\n${text.slice(-1500)}`);
  return { events: Number(m[1]), lost: Number(m[2]), discarded: Number(m[3] ?? 0) };
}

/** The highest "N events lost so far" the run has warned of (0 before any). */
function lostSoFar(stderr: string): number {
  return Math.max(0, ...[...stderr.matchAll(/(\d+) events lost so far/g)].map((m) => Number(m[1])));
}

describe('stops of the CLI under a flood', () => {
  const lab = new NetLab();
  let netns = '';
  let port = 0;
  let stopFlood: () => void = () => {};

  before(() => {
    const ns = lab.ns('c');
    netns = `/run/netns/${ns}`;
    port = 20000 + ((process.pid + 29) % 20000);
    stopFlood = startFlood(ns, '127.0.0.1', port, 900);
  });
  afterEach(stopLeftovers);
  after(() => {
    stopFlood();
    lab.destroy();
  });

  /** The CLI on a flood; its stdout read only after resume() when asleep (a `| less` scrolled back). */
  function cli(args: string[], asleep = false): CliProcess {
    const run = new CliProcess(
      ['--backend', 'tracepoint', '--filter-netns', netns, ...args, `udp and port ${port}`],
      'pipe',
    );
    if (asleep) run.child.stdout?.pause();
    return run;
  }

  for (const view of [[], ['--summary']]) {
    const name = view.length ? '--summary' : 'text';

    test(`${name}: --duration 2s detaches about 2 s after READY, the summary written, the loss counted`, async () => {
      const run = cli([...view, '--duration', '2s'], !view.length);
      const { helper, held } = await run.ready();
      await run.detachedWithin(helper, 2000 + 1500);
      run.child.stdout?.resume();
      const r = await run.finished(EXIT_BOUND_MS);
      assert.equal(r.code, 0, r.stderr);
      const t = totals(r.stdout);
      assert.ok(t.events > 0, `nothing delivered: ${JSON.stringify(t)}`);
      assert.ok(t.lost > 0, `a flood faster than any reader, and nothing lost? ${JSON.stringify(t)}`);
      await assertGoneFromKernel(held);
      await assertNoHelperLeft();
    });

    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      test(`${name}: one ${signal} to the CLI detaches within a second or so, the summary written`, async () => {
        const run = cli([...view, '--duration', '60s'], !view.length);
        const { helper, held } = await run.ready();
        // Stop once a loss has been reported: the closing totals must count at least that much.
        await run.until('a loss reported', () => lostSoFar(run.stderr) > 0, EXIT_BOUND_MS);
        const reported = lostSoFar(run.stderr);
        run.child.kill(signal);
        await run.detachedWithin(helper, 1500);
        run.child.stdout?.resume();
        const r = await run.finished(EXIT_BOUND_MS);
        assert.equal(r.code, 0, r.stderr);
        const t = totals(r.stdout);
        assert.ok(
          t.lost >= reported,
          `${reported} events lost were reported during the run, ${t.lost} at its end: ${JSON.stringify(t)}`,
        );
        await assertGoneFromKernel(held);
        await assertNoHelperLeft();
      });
    }
  }

  test('--max-events 1: one event, nothing lost, the flood after it counted as after the stop', async () => {
    const run = cli(['--max-events', '1', '--duration', '60s']);
    const { held } = await run.ready();
    const r = await run.finished(EXIT_BOUND_MS);
    assert.equal(r.code, 0, r.stderr);
    const t = totals(r.stdout);
    assert.equal(t.events, 1);
    assert.equal(t.lost, 0, r.stdout);
    assert.ok(t.discarded > 0, `the flood after the first event: ${r.stdout.slice(-300)}`);
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  });

  test('a helper stopped with SIGSTOP does not keep the CLI past --duration: killed, and said so', async () => {
    const run = cli(['--duration', '2s']);
    const { helper, held } = await run.ready();
    assert.ok(helper > 0, 'the helper runs');
    process.kill(helper, 'SIGSTOP');
    try {
      // --duration, then the client's own deadline (0.5 s) and the stop's silence bound (1.5 s);
      // without them it waits for the helper for ever.
      const r = await run.finished(EXIT_BOUND_MS);
      assert.equal(r.code, 1, r.stderr);
      assert.match(plainError(r.stderr), /the helper did not answer the stop within 1\.5 s .*killed it/);
    } finally {
      try {
        process.kill(helper, 'SIGCONT');
      } catch {
        // killed, as it should be
      }
    }
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  });
});
