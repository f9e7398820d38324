import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createSink } from '../../../src/output/create-sink';
import { FoldingLines } from '../../../src/output/tty-fold';
import type { TraceEvent } from '../../../src/record/event';
import { traceLines } from '../fixtures';
import { Capture } from './capture';

/** Gives the sink the recorded trace's header; returns its first event, for copies with their own skb. */
function startTrace(sink: ReturnType<typeof createSink>): TraceEvent {
  const lines = traceLines('netfilter-drop.jsonl');
  const header = lines.find((l) => l.type === 'header');
  const event = lines.find((l): l is TraceEvent => l.type === 'event');
  assert.ok(header && event);
  if (header.type === 'header') sink.header(header);
  return event;
}

test('lines past the budget of a window are folded, and a note says how many', () => {
  let now = 0;
  const notes: string[] = [];
  const fold = new FoldingLines(
    (n) => notes.push(n),
    1000,
    () => now,
  );
  let shown = 0;
  for (let i = 0; i < 250; i++) if (fold.admit()) shown++;
  assert.equal(shown, 100, 'a tenth of a second shows a tenth of the budget');
  assert.deepEqual(notes, []);
  now = 100;
  assert.equal(fold.admit(), true, 'the next window shows lines again');
  assert.equal(notes.length, 1);
  assert.match(notes[0], /^… 150 lines folded \(more than a terminal shows/);
  for (let i = 0; i < 150; i++) fold.admit();
  fold.end();
  assert.match(notes[1], /^… 51 lines folded/);
  assert.equal(fold.folded, 201);
});

test('a live trace on a terminal folds a firehose; every event is still counted', async () => {
  const stdout = Object.assign(new Capture(), { isTTY: true });
  const stderr = new Capture();
  const sink = createSink({
    format: 'text',
    summary: false,
    color: false,
    showNode: false,
    stdout,
    stderr,
    ttyLinesPerSecond: 10, // one line per tenth of a second
  });
  const event = startTrace(sink);
  const n = 200;
  for (let i = 0; i < n; i++) sink.event({ ...event, skb: `0x${(0x1000 + i).toString(16)}` });
  await sink.close();
  const eventLines = stdout.text.split('\n').filter((l) => l.startsWith('0x'));
  assert.ok(eventLines.length < n, `${eventLines.length} of ${n} lines shown`);
  const folded = [...stdout.text.matchAll(/… (\d+) lines folded/g)].reduce((sum, m) => sum + Number(m[1]), 0);
  assert.ok(folded > 0, stdout.text.slice(-500));
  assert.equal(eventLines.length + folded, n, 'each line is shown or counted as folded');
  assert.match(stdout.text, new RegExp(`${n} events`), 'the summary counts every event');
});

/** A terminal that takes nothing until it is let go (a paused or very slow one). */
class StuckTerminal extends Writable {
  text = '';
  isTTY = true;
  private held: (() => void)[] = [];

  constructor() {
    super({ highWaterMark: 1024 });
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.text += chunk.toString();
    this.held.push(() => done());
  }

  letGo(): void {
    for (const done of this.held.splice(0)) done();
  }
}

test('a terminal that falls behind is never waited for: its lines are folded, and counted', async () => {
  const stdout = new StuckTerminal();
  const stderr = new Capture();
  const sink = createSink({ format: 'text', summary: false, color: false, showNode: false, stdout, stderr });
  const event = startTrace(sink);
  const n = 300;
  for (let i = 0; i < n; i++) {
    sink.event({ ...event, skb: `0x${(0x1000 + i).toString(16)}` });
    sink.flush?.();
    assert.equal(sink.waitForDrain?.(), undefined, `the trace would wait for the terminal at event ${i + 1}`);
  }
  const closed = sink.close();
  const letGo = setInterval(() => stdout.letGo(), 1);
  await closed.finally(() => clearInterval(letGo));
  const eventLines = stdout.text.split('\n').filter((l) => l.startsWith('0x'));
  const folded = [...stdout.text.matchAll(/… (\d+) lines folded/g)].reduce((sum, m) => sum + Number(m[1]), 0);
  assert.ok(eventLines.length < 50, `${eventLines.length} lines shown to a terminal that took nothing`);
  assert.equal(eventLines.length + folded, n, 'each line is shown or counted as folded');
  assert.match(stdout.text, new RegExp(`${n} events`), 'the summary counts every event');
});

test('a pipe that falls behind is waited for: every line is kept', () => {
  const stdout = new StuckTerminal();
  stdout.isTTY = false;
  const sink = createSink({
    format: 'text',
    summary: false,
    color: false,
    showNode: false,
    stdout,
    stderr: new Capture(),
  });
  const event = traceLines('netfilter-drop.jsonl').find((l): l is TraceEvent => l.type === 'event');
  assert.ok(event);
  let waited = false;
  for (let i = 0; i < 300 && !waited; i++) {
    sink.event({ ...event, skb: `0x${(0x1000 + i).toString(16)}` });
    sink.flush?.();
    waited = sink.waitForDrain?.() !== undefined;
  }
  assert.ok(waited, 'the producer is asked to wait for a pipe');
});
