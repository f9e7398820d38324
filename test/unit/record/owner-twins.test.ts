/**
 * Kubernetes mode with one node has the helper in the pod write the lines
 * (--lines-stream), naming the node (--line-node) and the addresses' owners
 * (--addr-names, from src/kube/names.ts namesFile) as the client does when
 * it reads every event (the decoder's node, names.ts nameTuple). The C
 * writers (pwru-replay, the same code as the helper's) and the TypeScript
 * views must give the same lines byte for byte on the recorded streams, with
 * some addresses named and some not (a "?" in the text views).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { namesFile, nameTuple } from '../../../src/kube/names';
import { Painter } from '../../../src/output/ansi';
import { annotatedEventLine } from '../../../src/output/json';
import { formatTextLine, TextLayout } from '../../../src/output/text';
import { textNotes } from '../../../src/output/text-notes';
import { formatWideLine, WideLayout } from '../../../src/output/wide';
import { TX_START_FUNCS } from '../../../src/reading/kernel-functions';
import { PacketTracker } from '../../../src/reading/packet-tracker';
import { RecordDecoder } from '../../../src/record/decode';
import type { TraceEvent } from '../../../src/record/event';
import { ROOT } from '../fixtures';

const STREAMS = join(ROOT, 'test', 'fixtures', 'streams');
const REPLAY = join(ROOT, 'helper', 'build', 'host', 'pwru-replay');
const NODE = 'worker-"3"';
type View = 'json' | 'text' | 'wide';

function decode(file: string, node?: string): TraceEvent[] {
  const events: TraceEvent[] = [];
  const decoder = new RecordDecoder({ event: (e) => events.push(e) }, node);
  decoder.push(readFileSync(file));
  decoder.finish();
  return events;
}

/** Every other address of the streams gets an owner: both named, one named, and none all occur. */
function someNames(files: string[]): Map<string, string> {
  const addrs = new Set<string>();
  for (const f of files) for (const e of decode(f)) if (e.tuple) addrs.add(e.tuple.src).add(e.tuple.dst);
  const names = new Map<string, string>();
  [...addrs].sort().forEach((a, i) => {
    if (i % 2 === 0) names.set(a, i % 4 === 0 ? `shop/web-${i}` : `svc/shop/api-${i}`);
  });
  return names;
}

function clientLines(file: string, view: View, names: Map<string, string>): string[] {
  const events = decode(file, view === 'json' ? NODE : undefined);
  const tracker = new PacketTracker({ retain: false });
  const paint = new Painter(false);
  const text = new TextLayout();
  const wide = new WideLayout();
  const out = events.map((e) => {
    if (e.tuple) e.tuple = nameTuple(e.tuple, names);
    const o = tracker.observe(e);
    if (view === 'json') return annotatedEventLine(o);
    return view === 'wide' ? formatWideLine(o, wide, false, paint) : formatTextLine(o, text, false, paint);
  });
  // A text line with a stack is several lines of the output.
  return `${out.join('\n')}\n`.split('\n').slice(0, -1);
}

function helperLines(file: string, view: View, namesPath: string): string[] {
  const args = ['--packet-starts', [...TX_START_FUNCS].join(','), '--emit', view, '--addr-names', namesPath];
  if (view === 'json') args.push('--line-node', NODE);
  else args.push('--text-notes', textNotes());
  const r = spawnSync(REPLAY, [...args, file], { encoding: 'utf8', maxBuffer: 256 << 20 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').slice(0, -1);
  assert.match(lines.pop() ?? '', /^\{"type":"digest"/);
  return lines;
}

describe("the helper's lines with the node and the addresses' owners (Kubernetes mode), twins of the client's", () => {
  before(() => {
    execFileSync('make', ['-s', '-C', join(ROOT, 'helper'), 'replay'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  });
  const files = readdirSync(STREAMS)
    .filter((f) => f.endsWith('.records'))
    .map((f) => join(STREAMS, f));
  const dir = mkdtempSync(join(tmpdir(), 'pwru-owner-twins-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const names = someNames(files);
  const namesPath = join(dir, 'names.txt');
  writeFileSync(namesPath, namesFile(names));
  const seen: Record<View, string[]> = { json: [], text: [], wide: [] };

  for (const view of ['json', 'text', 'wide'] as const) {
    for (const file of files) {
      test(`${view}, ${file.split('/').pop()}: the same lines, byte for byte`, () => {
        const client = clientLines(file, view, names);
        const helper = helperLines(file, view, namesPath);
        assert.ok(client.length > 10, `only ${client.length} lines`);
        for (let i = 0; i < Math.max(client.length, helper.length); i++)
          assert.equal(helper[i], client[i], `line ${i + 1} differs`);
        seen[view].push(...client);
      });
    }
  }

  test('the lines compared named the node and owners, with both, one and no end named', () => {
    assert.ok(names.size > 2, `names: ${[...names]}`);
    const events = seen.json.map((l) => JSON.parse(l) as TraceEvent);
    assert.ok(events.length > 0 && events.every((e) => e.node === NODE), 'every JSON line names the node');
    assert.ok(
      events.some((e) => e.tuple?.srcName && e.tuple.dstName),
      'both ends named',
    );
    assert.ok(
      events.some((e) => e.tuple && (e.tuple.srcName === undefined) !== (e.tuple.dstName === undefined)),
    );
    assert.ok(
      events.some((e) => e.tuple && !e.tuple.srcName && !e.tuple.dstName),
      'neither end named',
    );
    for (const view of ['text', 'wide'] as const) {
      assert.ok(
        seen[view].some((l) => / \[[^\]?]+ → [^\]?]+\]/.test(l)),
        `${view}: both owners`,
      );
      assert.ok(
        seen[view].some((l) => / \[(\? → [^\]?]+|[^\]?]+ → \?)\]/.test(l)),
        `${view}: one "?"`,
      );
    }
  });
});
