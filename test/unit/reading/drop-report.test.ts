/**
 * --on-drop's client side on real traces: a DROP_REPORT's events gathered,
 * compared as diff compares them, written as a `drop` line that reads back
 * with the same sentence; a drop alone; a drop that is no failure not reported.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createOnDropSink } from '../../../src/output/on-drop-sink';
import { caughtDropOf } from '../../../src/reading/drop-report';
import { parseTraceLine } from '../../../src/reading/trace-file';
import { verdictOf } from '../../../src/reading/verdicts';
import type { DropReportInfo } from '../../../src/record/decode';
import type { TraceDropReport, TraceEvent } from '../../../src/record/event';
import { DropCollector } from '../../../src/trace/drop-collector';
import { traceEvents, tracePackets } from '../fixtures';
import { Capture } from '../output/capture';

function info(bad: TraceEvent[], good: TraceEvent[]): DropReportInfo {
  return {
    n: 1,
    flow: { family: 4, l4: 17, src: '10.244.0.5', dst: '10.0.0.2', dport: 9000 },
    bad: { packet: 7, steps: bad.length, forgotten_steps: 0 },
    ...(good.length ? { good: { packet: 6, steps: good.length, forgotten_steps: 0, ended: 'freed' } } : {}),
    forgotten_flows: 0,
    forgotten_packets: 0,
    forgotten_steps: 0,
  };
}

function sink() {
  const stdout = new Capture();
  const stderr = new Capture();
  return { stdout, stderr, sink: createOnDropSink({ json: true, color: false, stdout, stderr }) };
}

const stepsOf = (name: string, pick: (v: string) => boolean) => {
  const p = tracePackets(name).find((x) => pick(verdictOf(x).kind));
  assert.ok(p, `a packet in ${name}`);
  return p.steps.map((s) => s.event);
};

describe('--on-drop reports', () => {
  const bad = stepsOf('bad-masquerade-rpfilter.jsonl', (k) => k === 'dropped');
  const good = stepsOf('good-masquerade.jsonl', (k) => k === 'delivered');

  test('the events after a DROP_REPORT are its packets: gathered, then compared and written as one line', async () => {
    const { stdout, sink: s } = sink();
    const collector = new DropCollector((r) => s.dropReport?.(r));
    collector.start(info(bad, good));
    for (const e of [...bad, ...good]) assert.ok(collector.take(e));
    assert.equal(collector.take(bad[0]), false, 'the report is whole: later events are not its');
    await s.close();

    const line = JSON.parse(stdout.text.trim()) as TraceDropReport;
    assert.equal(line.type, 'drop');
    assert.equal(line.good?.events.length, good.length);
    assert.equal(line.verdict.reason, 'IP_RPFILTER');
    assert.match(line.sentence, /source 192\.168\.50\.1 instead of 10\.0\.0\.1.*reverse-path filter/);
    assert.ok(s.dropped());

    // Read back as `show` and `diff` read it: the same sentence.
    const parsed = parseTraceLine(stdout.text.trim(), 'caught.jsonl', 1) as TraceDropReport;
    assert.equal(caughtDropOf(parsed)?.diff?.sentence, line.sentence);
  });

  test('with no good packet, the drop stands alone and says so', async () => {
    const { stdout, sink: s } = sink();
    s.dropReport?.({ info: info(bad, []), bad, good: [], copies: [] });
    await s.close();
    const line = JSON.parse(stdout.text.trim()) as TraceDropReport;
    assert.equal(line.good, undefined);
    assert.match(line.sentence, /no earlier packet of this flow got through/);
  });

  test('a drop that is no failure (a socket torn down) is counted, not reported', async () => {
    const purged = traceEvents('tcp-good.jsonl').filter((e) => e.drop?.reason === 'QUEUE_PURGE');
    assert.equal(purged.length, 1);
    const { stdout, stderr, sink: s } = sink();
    s.dropReport?.({ info: info(purged, []), bad: purged, good: [], copies: [] });
    await s.close();
    assert.equal(stdout.text, '');
    assert.equal(s.dropped(), false);
    assert.match(stderr.text, /1 not failures \(not reported\)/);
  });

  test("a drop whose clone was delivered (ping as root: the raw socket's) is no failure; without the clone it is one", async () => {
    const original = tracePackets('ping-raw-socket.jsonl').find((p) => p.copies?.length);
    assert.ok(original?.copies, 'the recorded ping has an echo reply with a raw socket clone');
    const bad = original.steps.map((s) => s.event);
    const clone = original.copies[0].steps.map((s) => s.event);
    const withCopy: DropReportInfo = {
      ...info(bad, []),
      copies: [{ packet: 9, steps: clone.length, forgotten_steps: 0, ended: 'freed' }],
    };
    const { stdout, stderr, sink: s } = sink();
    s.dropReport?.({ info: withCopy, bad, good: [], copies: [clone] });
    await s.close();
    assert.equal(stdout.text, '');
    assert.equal(s.dropped(), false);
    assert.match(stderr.text, /1 not failures \(not reported\)/);

    // The same drop without its clone is a loss: what the report said before it carried copies.
    const alone = sink();
    alone.sink.dropReport?.({ info: info(bad, []), bad, good: [], copies: [] });
    await alone.sink.close();
    assert.equal(alone.sink.dropped(), true);
    const line = JSON.parse(alone.stdout.text.trim()) as TraceDropReport;
    assert.equal(line.verdict.reason, 'NO_SOCKET');

    // A saved line with the copies reads back to the same verdict (show, diff).
    const saved: TraceDropReport = {
      ...line,
      copies: [{ events: clone, forgottenSteps: 0, ended: 'freed' }],
    };
    assert.equal(caughtDropOf(saved)?.verdict.kind, 'delivered');
  });

  test("the collector gives each copy its steps, after the good packet's", () => {
    const got: { bad: number; good: number; copies: number[] }[] = [];
    const c = new DropCollector((r) =>
      got.push({ bad: r.bad.length, good: r.good.length, copies: r.copies.map((x) => x.length) }),
    );
    const e = traceEvents('ping-raw-socket.jsonl');
    c.start({
      ...info(e.slice(0, 2), e.slice(0, 1)),
      copies: [
        { packet: 8, steps: 2, forgotten_steps: 0, ended: 'freed' },
        { packet: 9, steps: 1, forgotten_steps: 0, ended: 'dropped' },
      ],
    });
    for (const x of e.slice(0, 5)) assert.ok(c.take(x));
    assert.deepEqual(got, []);
    assert.ok(c.take(e[5]));
    assert.deepEqual(got, [{ bad: 2, good: 1, copies: [2, 1] }]);
    assert.equal(c.take(e[6]), false);
  });

  test('--drops N: the Nth report asks the run to stop, later ones are not shown', async () => {
    const stdout = new Capture();
    const stderr = new Capture();
    let enough = 0;
    const s = createOnDropSink({
      json: true,
      color: false,
      stdout,
      stderr,
      maxDrops: 1,
      enough: () => enough++,
    });
    s.dropReport?.({ info: info(bad, good), bad, good, copies: [] });
    s.dropReport?.({ info: info(bad, good), bad, good, copies: [] });
    await s.close();
    assert.equal(enough, 1);
    assert.equal(stdout.text.trim().split('\n').length, 1);
  });

  test('an --output-file that is behind holds the stream back (waitForDrain), until it has caught up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pwru-ondrop-'));
    const stdout = new Capture();
    const stderr = new Capture();
    const s = createOnDropSink({
      json: true,
      color: false,
      stdout,
      stderr,
      outputFile: join(dir, 'caught.jsonl'),
    });
    try {
      assert.equal(s.waitForDrain?.(), undefined, 'nothing queued: nothing to wait for');
      // More than the file output queues before it asks the producer to wait (1 MiB), in one go.
      let n = 0;
      while (!s.waitForDrain?.() && n < 10000) {
        s.dropReport?.({ info: info(bad, good), bad, good, copies: [] });
        n++;
      }
      const drained = s.waitForDrain?.();
      assert.ok(drained, `after ${n} reports written at once, the file is behind`);
      await drained;
      assert.equal(s.waitForDrain?.(), undefined, 'caught up');
      await s.close();
      const lines = readFileSync(join(dir, 'caught.jsonl'), 'utf8').trim().split('\n');
      assert.equal(lines.length, n, 'every report, none dropped while waiting');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
