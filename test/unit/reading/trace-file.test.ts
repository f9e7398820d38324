import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadTraceFile, parseTrace, TraceFileError } from '../../../src/reading/trace-file';
import { traceText } from '../fixtures';

function errorOf(fn: () => unknown): TraceFileError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TraceFileError, `expected a TraceFileError, got ${err}`);
    return err;
  }
  assert.fail('expected an error');
}

test('a recorded trace parses: a header, events, a final stats line', () => {
  const lines = parseTrace(traceText('bad-masquerade-rpfilter.jsonl'));
  assert.equal(lines[0].type, 'header');
  assert.equal(lines[lines.length - 1].type, 'stats');
  assert.equal(lines.filter((l) => l.type === 'event').length, 26);
});

test('a truncated trace names the line that was cut', () => {
  const text = traceText('netfilter-drop.jsonl');
  const cut = text.slice(0, text.indexOf('\n', text.length / 2) + 40);
  const lineNo = cut.split('\n').length;
  const err = errorOf(() => parseTrace(cut, 'cut.jsonl'));
  assert.equal(err.line, lineNo);
  assert.match(err.message, new RegExp(`^cut\\.jsonl:${lineNo}: not valid JSON .*truncated`));
});

test('malformed lines give the file, the line number and what is wrong', () => {
  const good = traceText('no-socket.jsonl').split('\n');
  const cases: [string, RegExp][] = [
    ['[1,2]', /expected a JSON object, found array/],
    ['{"type":"event","v":1}', /"ts" is missing/],
    ['{"type":"event","v":1,"ts":5}', /"ts" should be a string, found number/],
    ['{"type":"surprise","v":1}', /unknown line type "surprise"/],
    ['{"type":"event"}', /no schema version/],
    [
      '{"type":"stats","v":99,"seen":1,"events":1,"lost":0}',
      /schema v99; this kubectl-pwru reads up to v1: upgrade/,
    ],
  ];
  for (const [bad, why] of cases) {
    const text = [good[0], good[1], bad, good[2]].join('\n');
    const err = errorOf(() => parseTrace(text, 't.jsonl'));
    assert.equal(err.line, 3, bad);
    assert.match(err.message, why);
    assert.match(err.message, /^t\.jsonl:3: /);
  }
  const dropped = JSON.parse(good[good.length - 3]);
  dropped.drop = { reason: 16 };
  const err = errorOf(() => parseTrace([good[0], JSON.stringify(dropped)].join('\n'), 't.jsonl'));
  assert.match(err.message, /^t\.jsonl:2: "drop.reason" should be a string/);
});

test('files: missing, empty and truncated on disk are errors, never crashes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pwru-trace-'));
  await assert.rejects(loadTraceFile(join(dir, 'nope.jsonl')), /nope\.jsonl: no such file/);
  writeFileSync(join(dir, 'empty.jsonl'), '\n\n');
  await assert.rejects(loadTraceFile(join(dir, 'empty.jsonl')), /empty\.jsonl: empty: no trace lines/);
  const text = traceText('good-masquerade.jsonl');
  writeFileSync(join(dir, 'cut.jsonl'), text.slice(0, text.length - 30));
  const n = text.trimEnd().split('\n').length;
  await assert.rejects(loadTraceFile(join(dir, 'cut.jsonl')), (err: unknown) => {
    assert.ok(err instanceof TraceFileError);
    assert.equal(err.line, n);
    return true;
  });
  await assert.rejects(loadTraceFile(dir), /is a directory|EISDIR/);
});
