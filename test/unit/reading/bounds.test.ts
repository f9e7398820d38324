/**
 * What `show` and `diff` hold is bounded whatever the file's size: checked
 * with small generated files and low limits (the same code paths as the
 * default limits on files of hundreds of MB, which `npm run bench` measures).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeFlowTrace } from '../../../bench/big-trace';
import { pickBad, pickGood } from '../../../src/reading/diff';
import { readDiffSide } from '../../../src/reading/diff-sources';
import { PacketTracker, trackAll } from '../../../src/reading/packet-tracker';
import { OTHER_FLOWS, SummaryBuilder } from '../../../src/reading/summary';
import { MAX_LINE_BYTES, parseTrace, readTraceFile, TraceFileError } from '../../../src/reading/trace-file';
import type { TraceEvent } from '../../../src/record/event';
import { tracePath } from '../fixtures';

const dir = mkdtempSync(join(tmpdir(), 'pwru-bounds-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function eventsOf(file: string): TraceEvent[] {
  return parseTrace(readFileSync(file, 'utf8'), file).filter((l): l is TraceEvent => l.type === 'event');
}

test('the summary keeps the first rows and flows up to its limits, and counts every packet', () => {
  const file = join(dir, 'flows.jsonl');
  const packets = writeFlowTrace(file, 200_000, 20);
  const summary = new SummaryBuilder({ packetRows: 5, flows: 3 });
  const tracker = new PacketTracker({ retain: false, onDone: (p) => summary.packet(p) });
  const events = eventsOf(file);
  for (const e of events) summary.step(tracker.observe(e).step);
  const s = summary.build(tracker.open());
  assert.ok(packets > 50, `${packets} packets`);
  assert.equal(s.packetCount, packets);
  assert.deepEqual(
    s.packets.map((r) => r.id),
    [1, 2, 3, 4, 5],
  );
  const verdicts = Object.values(s.verdicts).reduce((a, b) => a + b, 0);
  assert.equal(verdicts, packets, 'every packet has its verdict counted');
  assert.equal(s.flows.length, 4, 'three flows and the rest');
  assert.equal(s.flows.at(-1)?.flow, OTHER_FLOWS);
  assert.equal(
    s.flows.reduce((n, f) => n + f.packets, 0),
    packets,
  );
  assert.equal(s.events, events.length);
});

test('diff --flow holds at most maxSteps steps of a flow as long as the file, and says how many it had', async () => {
  const file = join(dir, 'one-flow.jsonl');
  writeFlowTrace(file, 300_000);
  const events = eventsOf(file);
  const side = await readDiffSide(file, 'good', { flow: true, maxSteps: 50 });
  assert.ok(side);
  assert.equal(side.path.steps.length, 50);
  assert.equal(side.stepsSeen, events.length, 'every step of the file belongs to the flow or its replies');
  const ts = side.path.steps.map((s) => BigInt(s.event.ts));
  const earliest = events.map((e) => BigInt(e.ts)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  assert.deepEqual(ts, earliest.slice(0, 50), 'the first steps in time order');
  assert.ok(side.path.steps.some((s) => s.reply) && side.path.steps.some((s) => !s.reply));
});

test('diff picks, streamed, the packets pickGood and pickBad pick from the whole file', async () => {
  for (const name of [
    'good-masquerade.jsonl',
    'bad-masquerade-rpfilter.jsonl',
    'tcp-good.jsonl',
    'dnat.jsonl',
  ]) {
    const file = tracePath(name);
    const packets = trackAll(eventsOf(file));
    for (const [side, pick] of [
      ['good', pickGood],
      ['bad', pickBad],
    ] as const) {
      const streamed = await readDiffSide(file, side, { flow: false });
      assert.equal(streamed?.path.id, pick(packets)?.id, `${name}, ${side}`);
      assert.equal(streamed?.count, packets.length);
    }
  }
});

test('a line longer than MAX_LINE_BYTES is refused with its number, not held', async () => {
  const file = join(dir, 'long-line.jsonl');
  const header = readFileSync(tracePath('dnat.jsonl'), 'utf8').split('\n')[0];
  writeFileSync(file, `${header}\n${'x'.repeat(MAX_LINE_BYTES + 10)}\n`);
  await assert.rejects(
    async () => {
      for await (const _ of readTraceFile(file)) {
        // read on
      }
    },
    (err: unknown) =>
      err instanceof TraceFileError && err.line === 2 && /longer than 1 MiB/.test(err.message),
  );
});
