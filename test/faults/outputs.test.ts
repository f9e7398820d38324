/**
 * Faults of the outputs, on the helper itself: a disk that fills up, a device
 * that takes nothing (/dev/full), a reader that sleeps, a reader that goes
 * away. A write that fails ends the run at once with an ERROR that names the
 * output; a slow reader slows the run and never cuts it short; after each,
 * nothing of the run is left in the kernel, no helper process is left, and
 * what was written reads to its last line.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startHelper } from '../integration/helper-process';
import { NetLab } from '../integration/netlab';
import { HELPER } from '../integration/tracer';
import {
  assertGoneFromKernel,
  assertNoHelperLeft,
  beforeDetach,
  heldBy,
  startFlood,
  tinyDisk,
  WholeLineCounter,
  wholeLines,
} from './harness';

describe('faults of the outputs', () => {
  const lab = new NetLab();
  let ns = '';
  let netns = '';
  let port = 0;

  before(() => {
    ns = lab.ns('f');
    netns = `/run/netns/${ns}`;
    port = 20000 + (process.pid % 20000);
  });
  after(() => lab.destroy());

  /** The helper tracing the flood in the lab's namespace, JSON lines to fd 3 (named `name`). */
  function jsonTrace(fd3: number | 'pipe', name: string, extra: string[] = []) {
    return startHelper(
      [
        '--backend',
        'tracepoint',
        '--filter-netns',
        netns,
        '--emit',
        'json',
        '--lines-fd',
        '3',
        '--lines-name',
        name,
        ...extra,
        '--',
        `udp and port ${port}`,
      ],
      { stdin: 'pipe', extraFds: [fd3] },
    );
  }

  /**
   * Traces the flood with its JSON lines on fd (named name) until the helper
   * gives up on it; checks the ERROR and that nothing of the run is left.
   */
  async function untilOutputFails(fd: number, name: string) {
    const h = jsonTrace(fd, name, ['--duration', '60']);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.stdin?.write('g');
    const stop = startFlood(ns, '127.0.0.1', port, 30);
    try {
      await h.until('an ERROR', (r) => r.error !== undefined, 20000);
    } finally {
      stop();
    }
    const r = await h.finished();
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.error?.code, 'output_failed');
    assert.equal(r.error?.message, `cannot write the trace to ${name}: No space left on device`);
    assert.deepEqual(beforeDetach(r.order).slice(-2), ['stats', 'error']);
    assert.equal(r.streamError, undefined);
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  }

  test('a disk that fills up: ERROR output_failed naming the file, at once, the file whole to its last line', async () => {
    const disk = tinyDisk(64);
    const file = join(disk.dir, 'trace.jsonl');
    const fd = openSync(file, 'w');
    try {
      await untilOutputFails(fd, file);
      const lines = wholeLines(readFileSync(file, 'utf8'), file);
      assert.ok(lines.length > 10, `only ${lines.length} lines on the disk`);
    } finally {
      closeSync(fd);
      disk.remove();
    }
  });

  test('/dev/full as the lines output: ERROR at the first write', async () => {
    const fd = openSync('/dev/full', 'w');
    try {
      await untilOutputFails(fd, '/dev/full');
    } finally {
      closeSync(fd);
    }
  });

  test('/dev/full as the record stream: exit 1 before anything is loaded', async () => {
    const fd = openSync('/dev/full', 'w');
    try {
      const child = spawn(HELPER, ['--backend', 'tracepoint', '--', 'udp'], {
        stdio: ['ignore', fd, 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      assert.equal(code, 1);
      assert.match(stderr, /cannot write the record stream to stdout: No space left on device/);
      assert.doesNotMatch(stderr, /attach/);
    } finally {
      closeSync(fd);
    }
    await assertNoHelperLeft();
  });

  test('a reader that sleeps: the run goes on to its end, the stream whole, what could not wait counted as lost', async () => {
    const h = startHelper([
      '--backend',
      'tracepoint',
      '--filter-netns',
      netns,
      '--duration',
      '3',
      '--',
      `udp and port ${port}`,
    ]);
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.stdout?.pause(); // the reader sleeps: the socket and the helper's buffer fill up
    const stop = startFlood(ns, '127.0.0.1', port, 10);
    await new Promise((r) => setTimeout(r, 1500));
    h.child.stdout?.resume();
    const r = await h.finished();
    stop();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.streamError, undefined);
    assert.equal(r.end?.reason, 'duration');
    assert.ok(r.events.length > 0);
    assert.equal(r.end?.events, r.events.length, 'END counts what was delivered');
    assert.ok(
      (r.end?.lost ?? 0) > 0,
      `a reader asleep for 1.5 s under a flood lost nothing? ${JSON.stringify(r.end)}`,
    );
    assert.equal(r.stats.at(-1)?.final, true);
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  });

  test('JSON lines into a pipe read slowly: every line whole, the run to its end', async () => {
    const h = jsonTrace('pipe', 'stdout', ['--duration', '3']);
    const pipe = h.child.stdio[3] as NodeJS.ReadableStream;
    const lines = new WholeLineCounter('the lines');
    pipe.on('data', (d: Buffer) => lines.push(d));
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.stdin?.write('g');
    pipe.pause();
    const stop = startFlood(ns, '127.0.0.1', port, 10);
    await new Promise((r) => setTimeout(r, 1500));
    pipe.resume();
    const r = await h.finished();
    stop();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.end?.reason, 'duration');
    assert.equal(lines.end(), r.end?.events, 'END counts the lines written');
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  });

  test('the lines reader goes away (| head): END output-closed naming it, exit 0', async () => {
    const h = jsonTrace('pipe', 'stdout', ['--duration', '60']);
    const pipe = h.child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    await h.ready();
    const held = heldBy(h.child.pid ?? 0);
    h.child.stdin?.write('g');
    const stop = startFlood(ns, '127.0.0.1', port, 30);
    await new Promise<void>((resolve) => pipe.once('data', () => resolve()));
    pipe.destroy();
    const r = await h.finished();
    stop();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.end?.reason, 'output-closed');
    assert.equal(r.end?.output, 'stdout');
    assert.equal(r.streamError, undefined);
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  });
});
