/**
 * The text views' lines are written by two twins on purpose (speed): the
 * helper in C with --emit text and --emit wide (helper/event_text.c, with
 * packet_track.c and the words of helper/text_notes.c) and the client in
 * TypeScript (src/output/text.ts, wide.ts, with src/reading). This test runs
 * both over the helper's recorded record streams (test/fixtures/streams) and
 * over the real traces under test/fixtures/traces turned back into record
 * streams, and requires the same lines, byte for byte, as they reach a file
 * or a pipe (no colour). The helper gets its words from the client
 * (src/output/text-notes.ts), as a live trace passes them. No root, no BPF:
 * the C writer runs in the test build pwru-replay (`make -C helper replay`).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Painter } from '../../../src/output/ansi';
import { renderSummary } from '../../../src/output/summary-view';
import { formatTextLine, TextLayout } from '../../../src/output/text';
import { textNotes } from '../../../src/output/text-notes';
import { formatWideLine, WideLayout } from '../../../src/output/wide';
import { TX_START_FUNCS } from '../../../src/reading/kernel-functions';
import { PacketTracker } from '../../../src/reading/packet-tracker';
import { TraceReading } from '../../../src/reading/trace-reading';
import { RecordDecoder } from '../../../src/record/decode';
import type { TraceEvent } from '../../../src/record/event';
import { PacketCollector } from '../../../src/trace/packet-collector';
import { ROOT, TRACES, traceEvents, traceHeader } from '../fixtures';
import { encodeTrace } from './encode-events';

const STREAMS = join(ROOT, 'test', 'fixtures', 'streams');
const REPLAY = join(ROOT, 'helper', 'build', 'host', 'pwru-replay');
type View = 'text' | 'wide';

/** The client's lines for a stream, as a file gets them: decoded, followed packet by packet, written. */
function clientLines(file: string, view: View): string[] {
  const events: TraceEvent[] = [];
  const decoder = new RecordDecoder({ event: (e) => events.push(e) });
  decoder.push(readFileSync(file));
  decoder.finish();
  const tracker = new PacketTracker({ retain: false });
  const paint = new Painter(false);
  const text = new TextLayout();
  const wide = new WideLayout();
  const out = events.map((e) => {
    const o = tracker.observe(e);
    return view === 'wide' ? formatWideLine(o, wide, false, paint) : formatTextLine(o, text, false, paint);
  });
  return `${out.join('\n')}\n`.split('\n').slice(0, -1);
}

/** The helper's lines for the same stream (its digest, the last line, left out). */
function helperLines(file: string, view: View): string[] {
  const r = spawnSync(
    REPLAY,
    ['--packet-starts', [...TX_START_FUNCS].join(','), '--emit', view, '--text-notes', textNotes(), file],
    { encoding: 'utf8', maxBuffer: 256 << 20 },
  );
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').slice(0, -1);
  assert.match(lines.pop() ?? '', /^\{"type":"digest"/);
  return lines;
}

/** The closing tables as a person reads them (packet rows, or flow rows), and whether --fail-on-drop fails. */
function tables(reading: TraceReading): { rows: string; flows: string; dropped: boolean } {
  const result = reading.result();
  assert.equal(result.kind, 'packets');
  if (result.kind !== 'packets') throw new Error('no packets');
  const paint = new Painter(false);
  return {
    rows: renderSummary(result.summary, { paint, showNode: false, functions: false }),
    flows: renderSummary(result.summary, { paint, showNode: false, functions: false, maxPacketRows: 0 }),
    dropped: reading.dropped(),
  };
}

/** The client's tables from every event of a stream. */
function clientTables(file: string): ReturnType<typeof tables> {
  const reading = new TraceReading();
  const decoder = new RecordDecoder({ event: (e) => reading.event(e) });
  decoder.push(readFileSync(file));
  decoder.finish();
  return tables(reading);
}

/** The client's tables from the finished packets the helper sends with --emit text (helper/packet_book.c). */
function unitTables(
  file: string,
  wholeFirst: number,
  dir: string,
): ReturnType<typeof tables> & { units: number } {
  const out = join(dir, `units-${wholeFirst}`);
  const r = spawnSync(
    REPLAY,
    [
      '--packet-starts',
      [...TX_START_FUNCS].join(','),
      '--emit',
      'text',
      '--text-notes',
      textNotes(),
      '--units',
      out,
      '--whole-first',
      String(wholeFirst),
      file,
    ],
    { encoding: 'utf8', maxBuffer: 256 << 20 },
  );
  assert.equal(r.status, 0, r.stderr);
  const reading = new TraceReading();
  let units = 0;
  const packets = new PacketCollector((info, events) => {
    units++;
    reading.packetDone(info, events);
  });
  const decoder = new RecordDecoder({
    event: (e) => assert.ok(packets.take(e), 'an event outside a finished packet'),
    packetDone: (info) => packets.start(info),
  });
  decoder.push(readFileSync(out));
  decoder.finish();
  return { ...tables(reading), units };
}

function sameLines(name: string, view: View, file: string): string[] {
  const client = clientLines(file, view);
  const helper = helperLines(file, view);
  assert.ok(client.length > 0, `${name}: no lines`);
  for (let i = 0; i < Math.max(client.length, helper.length); i++)
    assert.equal(helper[i], client[i], `${name} (${view}): line ${i + 1} differs`);
  return client;
}

describe('the text view twins (C and TypeScript) on recorded streams', () => {
  before(() => {
    execFileSync('make', ['-s', '-C', join(ROOT, 'helper'), 'replay'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  });

  const files = readdirSync(STREAMS).filter((f) => f.endsWith('.records'));
  const encoded = mkdtempSync(join(tmpdir(), 'pwru-text-twins-'));
  after(() => rmSync(encoded, { recursive: true, force: true }));
  const traces = readdirSync(TRACES).filter((f) => f.endsWith('.jsonl'));
  const seen: Record<View, string[]> = { text: [], wide: [] };

  for (const view of ['text', 'wide'] as const) {
    for (const name of files) {
      test(`${view}, ${name}: the same lines, byte for byte`, () => {
        seen[view].push(...sameLines(name, view, join(STREAMS, name)));
      });
    }
    for (const name of traces) {
      test(`${view}, the real trace ${name} as a record stream: the same lines`, () => {
        const file = join(encoded, `${name}.${view}.records`);
        writeFileSync(file, encodeTrace(traceHeader(name), traceEvents(name)));
        seen[view].push(...sameLines(name, view, file));
      });
    }
  }

  const shaped = { streams: 0, fewerUnits: 0 };
  for (const name of [...files, ...traces]) {
    test(`the closing tables of ${name} from the helper's finished packets: the same as from every event`, () => {
      let file = join(STREAMS, name);
      if (name.endsWith('.jsonl')) {
        file = join(encoded, `${name}.units.records`);
        writeFileSync(file, encodeTrace(traceHeader(name), traceEvents(name)));
      }
      const client = clientTables(file);
      // As shipped (the first 40 packets whole), and with every packet that may be counted under its shape.
      for (const wholeFirst of [40, 0]) {
        const helper = unitTables(file, wholeFirst, encoded);
        // A packet's own row is shown only when every packet is (at most 40): then all came whole.
        if (wholeFirst === 40)
          assert.equal(helper.rows, client.rows, `${name}, whole first ${wholeFirst}: the packet table`);
        assert.equal(helper.flows, client.flows, `${name}, whole first ${wholeFirst}: the flow table`);
        assert.equal(helper.dropped, client.dropped, `${name}, whole first ${wholeFirst}: --fail-on-drop`);
        if (wholeFirst === 0) {
          shaped.streams++;
          const packets = Number(/(\d+) packets/.exec(client.flows)?.[1] ?? 0);
          if (helper.units < packets) shaped.fewerUnits++;
        }
      }
    });
  }

  test('packets were counted under shapes, not only sent whole', () => {
    assert.ok(shaped.streams > 0 && shaped.fewerUnits > 0, JSON.stringify(shaped));
  });

  test('wide: time since the first step rounds as the client does, exact halves and negatives included', () => {
    // 0.25 µs and 0.75 µs are exact halves of a tenth (toFixed rounds them up, printf to even); the last step
    // comes before the first (another CPU's clock).
    const steps = [0, 250, 750, 1250, 49, 50, 99_950, -250, -150];
    const [first] = traceEvents('dnat.jsonl');
    const base = BigInt(first.ts);
    const events = steps.map((d) => ({ ...first, ts: String(base + BigInt(d)), drop: undefined }));
    const file = join(encoded, 'since.records');
    writeFileSync(file, encodeTrace(traceHeader('dnat.jsonl'), events));
    const lines = sameLines('since', 'wide', file);
    assert.ok(
      lines.some((l) => l.includes('+0.3µs')) && lines.some((l) => l.includes('+-0.3µs')),
      lines.join('\n'),
    );
  });

  test('the lines compared hold what the writers have to get right', () => {
    for (const view of ['text', 'wide'] as const) {
      const all = seen[view];
      const has = (what: string, re: RegExp) =>
        assert.ok(
          all.some((l) => re.test(l)),
          `${view}: ${what}`,
        );
      has('a drop explained', /\)\s+\[(?!not a failure)[^\]]*\]$/);
      has('a drop that is no failure', /\[not a failure: /);
      has('NAT', /\[(SNAT|DNAT) /);
      has('an encapsulation', /\[\w+ encap, outer /);
      has('a change of device', /iface \S+ → /);
      has('a tunnel and its inner packet', /\[vxlan vni \d+: /);
      has('IPv6 with ports', /\[[0-9a-f:]+\]:\d+->/);
      has('TCP flags', /\(tcp:[A-Z.]+\)/);
      has('ICMP', /\(icmp(v6)?\)/);
      has('a kernel stack', /^ {4}\S/);
      if (view === 'wide') {
        has('time since the first step', /\+\d+\.\dµs/);
        has('a named caller', / [a-z_0-9]+\+0x[0-9a-f]+/);
      }
    }
  });
});
