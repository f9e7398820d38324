/**
 * Faults of the outputs, on the CLI (`kubectl-pwru --local`), in the text view
 * (the client writes every line) and in `-o json` (the helper writes them): a
 * disk that fills up, /dev/full, a reader that sleeps, a reader that goes away
 * (`| head -3`), two runs writing one file. A write that fails ends the run at
 * once with a message naming the output and exit 5; a reader that left ends it
 * quietly with exit 0; a slow reader slows it and cuts nothing. After each:
 * nothing of the run in the kernel, no helper process, what was written whole
 * to its last line.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { NetLab } from '../integration/netlab';
import { CliProcess, EXIT_BOUND_MS, plainError, stopLeftovers } from './cli';
import { assertGoneFromKernel, assertNoHelperLeft, startFlood, tinyDisk, wholeLines } from './harness';

/** docs/exit-codes.md */
const EXIT_OUTPUT_FAILED = 5;

describe('faults of the CLI outputs', () => {
  const lab = new NetLab();
  let netns = '';
  let port = 0;
  let stopFlood: () => void = () => {};

  before(() => {
    const ns = lab.ns('o');
    netns = `/run/netns/${ns}`;
    port = 20000 + ((process.pid + 13) % 20000);
    stopFlood = startFlood(ns, '127.0.0.1', port, 900);
  });
  afterEach(stopLeftovers);
  after(() => {
    stopFlood();
    lab.destroy();
  });

  function cli(args: string[], stdout: number | 'pipe' = 'pipe'): CliProcess {
    return new CliProcess(
      ['--backend', 'tracepoint', '--filter-netns', netns, ...args, `udp and port ${port}`],
      stdout,
    );
  }

  for (const view of ['text', 'json'] as const) {
    test(`-o ${view}, --output-file on a 64 KiB disk under a flood: exit 5 at once naming the file, the file whole`, async () => {
      const disk = tinyDisk(64);
      const file = join(disk.dir, 'trace.jsonl');
      try {
        const run = cli(['-o', view, '--duration', '30s', '--output-file', file]);
        const { held } = await run.ready();
        const r = await run.finished(EXIT_BOUND_MS);
        assert.equal(r.code, EXIT_OUTPUT_FAILED, r.stderr);
        assert.match(
          plainError(r.stderr),
          new RegExp(`cannot write the trace to ${file}: No space left on device`),
        );
        const lines = wholeLines(readFileSync(file, 'utf8'), file);
        assert.ok(lines.length > 10, `only ${lines.length} lines on the disk`);
        assert.equal(existsSync(`${file}.lock`), false, 'the lock is removed');
        await assertGoneFromKernel(held);
        await assertNoHelperLeft();
      } finally {
        disk.remove();
      }
    });

    test(`-o ${view}, --output-file /dev/full: exit 5 at the first write, naming it`, async () => {
      const run = cli(['-o', view, '--duration', '30s', '--output-file', '/dev/full']);
      const { held } = await run.ready();
      const r = await run.finished(EXIT_BOUND_MS);
      assert.equal(r.code, EXIT_OUTPUT_FAILED, r.stderr);
      assert.match(plainError(r.stderr), /cannot write the trace to \/dev\/full: No space left on device/);
      await assertGoneFromKernel(held);
      await assertNoHelperLeft();
    });

    test(`-o ${view}, stdout on /dev/full: a message, not a stack trace, exit 5`, async () => {
      const fd = openSync('/dev/full', 'w');
      try {
        const run = cli(['-o', view, '--duration', '30s'], fd);
        const { held } = await run.ready();
        const r = await run.finished(EXIT_BOUND_MS);
        assert.equal(r.code, EXIT_OUTPUT_FAILED, r.stderr);
        assert.match(plainError(r.stderr), /cannot write the trace to stdout: No space left on device/);
        await assertGoneFromKernel(held);
        await assertNoHelperLeft();
      } finally {
        closeSync(fd);
      }
    });

    test(`-o ${view} | head -3: the reader leaves, the probes detach promptly, nothing said wrong, exit 0`, async () => {
      const run = cli(['-o', view, '--duration', '30s']);
      const { helper, held } = await run.ready();
      await run.until('three lines out', () => run.stdout.split('\n').length > 3, 10000);
      run.child.stdout?.destroy();
      await run.detachedWithin(helper, 1500);
      const r = await run.finished(EXIT_BOUND_MS);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(plainError(r.stderr), '');
      const totals = /(\d+) events, (\d+|0) (?:LOST|lost)/.exec(r.stderr + r.stdout);
      if (view === 'json')
        assert.ok(totals && Number(totals[1]) > 0, `the totals say what was delivered:\n${r.stderr}`);
      await assertGoneFromKernel(held);
      await assertNoHelperLeft();
    });

    test(`-o ${view} into a reader that sleeps: the run goes to its --duration, the last line whole`, async () => {
      const run = cli(['-o', view, '--duration', '3s']);
      const { held } = await run.ready();
      const readyMs = Date.now() - run.started;
      run.child.stdout?.pause();
      await new Promise((r) => setTimeout(r, 2000));
      run.child.stdout?.resume();
      const r = await run.finished(EXIT_BOUND_MS);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.ms - readyMs >= 2900, `ended ${r.ms - readyMs} ms after READY: before its --duration`);
      assert.ok(
        r.stdout.endsWith('\n'),
        `stdout ends inside a line: …${JSON.stringify(r.stdout.slice(-80))}`,
      );
      if (view === 'json') {
        const lines = wholeLines(r.stdout, 'stdout') as { type: string; final?: boolean; lost?: number }[];
        const last = lines.at(-1);
        assert.equal(last?.type, 'stats', 'the final stats line ends the output');
        assert.ok(
          (last?.lost ?? 0) > 0,
          `a reader asleep for 2 s under a flood lost nothing? ${JSON.stringify(last)}`,
        );
      } else {
        assert.match(r.stdout, /\d+ events, \d+ LOST/);
      }
      await assertGoneFromKernel(held);
      await assertNoHelperLeft();
    });
  }

  test('two runs, one --output-file: the second is refused while the first writes, the file holds the first run only', async () => {
    const disk = tinyDisk(4096);
    const file = join(disk.dir, 'trace.jsonl');
    try {
      // The first run traces a port nothing is sent to: it lives until stopped.
      const quiet = ['--backend', 'tracepoint', '--filter-netns', netns, '-o', 'json', '--output-file', file];
      const first = new CliProcess([...quiet, '--duration', '60s', `udp and port ${port + 1}`], 'pipe');
      const { helper, held } = await first.ready();
      const second = new CliProcess([...quiet, '--duration', '3s', `udp and port ${port}`], 'pipe');
      const r2 = await second.finished(EXIT_BOUND_MS);
      assert.equal(r2.code, 1, r2.stderr);
      assert.match(plainError(r2.stderr), /is being written by another kubectl-pwru run \(process \d+/);
      assert.ok(first.child.exitCode === null, 'the first run still traces');
      first.child.kill('SIGINT');
      await first.detachedWithin(helper, 1500);
      const r1 = await first.finished(EXIT_BOUND_MS);
      assert.equal(r1.code, 0, r1.stderr);
      const lines = wholeLines(readFileSync(file, 'utf8'), file) as { type: string }[];
      assert.deepEqual(
        lines.map((l) => l.type),
        ['header', 'stats'],
        'the first run alone wrote the file',
      );
      assert.equal(existsSync(`${file}.lock`), false, 'the lock is removed');
      await assertGoneFromKernel(held);
      await assertNoHelperLeft();
    } finally {
      disk.remove();
    }
  });
});
