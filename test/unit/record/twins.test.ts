/**
 * The JSON lines of a trace are written by two twins on purpose (speed): the
 * helper in C with --emit json (helper/event_json.c, packet_track.c) and the
 * client in TypeScript (src/output/json.ts with src/reading/packet-tracker.ts and changes.ts). This
 * test runs both over the helper's own recorded record streams
 * (test/fixtures/streams, made by test/fixtures/record-streams.sh) and
 * requires the same lines, byte for byte; and over the real traces under
 * test/fixtures/traces, turned back into record streams (encode-events.ts),
 * whose reused skb addresses and rewrites hold the two packet trackers to the
 * same rules. No root, no BPF: the C writer runs
 * in a test build of its own (pwru-replay, `make -C helper replay`), which
 * needs only a C compiler.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { annotatedEventLine } from '../../../src/output/json';
import { TX_START_FUNCS } from '../../../src/reading/kernel-functions';
import { PacketTracker } from '../../../src/reading/packet-tracker';
import { RecordDecoder } from '../../../src/record/decode';
import type { TraceEvent } from '../../../src/record/event';
import { ROOT, TRACES, traceEvents, traceHeader } from '../fixtures';
import { encodeTrace } from './encode-events';

const STREAMS = join(ROOT, 'test', 'fixtures', 'streams');
const REPLAY = join(ROOT, 'helper', 'build', 'host', 'pwru-replay');

/** The client's lines for a stream: decoded, followed packet by packet, written. */
function clientLines(file: string): { lines: string[]; packets: number } {
  const events: TraceEvent[] = [];
  const decoder = new RecordDecoder({ event: (e) => events.push(e) });
  decoder.push(readFileSync(file));
  decoder.finish();
  const tracker = new PacketTracker({ retain: false });
  let packets = 0;
  const lines = events.map((e) => {
    const o = tracker.observe(e);
    packets = Math.max(packets, o.packet.id);
    return annotatedEventLine(o);
  });
  return { lines, packets };
}

/** The helper's lines for the same stream, and its digest (the last line). */
function helperLines(file: string): { lines: string[]; digest: { packets: number; events: number } } {
  const r = spawnSync(REPLAY, ['--packet-starts', [...TX_START_FUNCS].join(','), file], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  const digest = JSON.parse(lines.pop() ?? '{}') as { type: string; packets: number; events: number };
  assert.equal(digest.type, 'digest');
  return { lines, digest };
}

describe('the JSON writer twins (C and TypeScript) on recorded streams', () => {
  before(() => {
    execFileSync('make', ['-s', '-C', join(ROOT, 'helper'), 'replay'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  });

  const files = readdirSync(STREAMS).filter((f) => f.endsWith('.records'));
  test('there are recorded streams to compare', () => {
    assert.ok(files.length >= 2, `streams: ${files.join(', ')}`);
  });

  for (const name of files) {
    test(`${name}: the same lines, packets and changes included, byte for byte`, () => {
      const file = join(STREAMS, name);
      const client = clientLines(file);
      const helper = helperLines(file);
      assert.ok(client.lines.length > 10, `${name}: only ${client.lines.length} events`);
      for (let i = 0; i < Math.max(client.lines.length, helper.lines.length); i++)
        assert.equal(helper.lines[i], client.lines[i], `${name}: line ${i + 1} differs`);
      assert.equal(helper.digest.events, client.lines.length);
      assert.equal(helper.digest.packets, client.packets, `${name}: packets numbered`);
    });
  }

  const encoded = mkdtempSync(join(tmpdir(), 'pwru-twins-'));
  after(() => rmSync(encoded, { recursive: true, force: true }));
  const traces = readdirSync(TRACES).filter((f) => f.endsWith('.jsonl'));
  for (const name of traces) {
    test(`the real trace ${name}, as a record stream: the same lines`, () => {
      const file = join(encoded, `${name}.records`);
      writeFileSync(file, encodeTrace(traceHeader(name), traceEvents(name)));
      const client = clientLines(file);
      const helper = helperLines(file);
      assert.ok(client.lines.length > 0, `${name}: no events`);
      for (let i = 0; i < Math.max(client.lines.length, helper.lines.length); i++)
        assert.equal(helper.lines[i], client.lines[i], `${name}: line ${i + 1} differs`);
      assert.equal(helper.digest.packets, client.packets, `${name}: packets numbered`);
    });
  }

  test('the streams hold what the writers have to get right', () => {
    const all = files
      .flatMap((f) => clientLines(join(STREAMS, f)).lines)
      .map((l) => JSON.parse(l) as TraceEvent);
    assert.ok(
      all.some((e) => e.changes?.some((c) => c.field === 'dport')),
      'a rewrite (DNAT)',
    );
    assert.ok(
      all.some((e) => e.tuple?.family === 6 && e.tuple.proto === 'TCP'),
      'TCP over IPv6',
    );
    assert.ok(
      all.some((e) => e.tuple?.proto === 'ICMPv6'),
      'ICMPv6',
    );
    assert.ok(
      all.some((e) => (e.stack?.length ?? 0) > 0),
      'kernel stacks',
    );
    assert.ok(
      all.some((e) => e.drop?.reason === 'NO_SOCKET'),
      'a drop with its reason',
    );
    assert.ok(
      all.some((e) => e.caller && !e.caller.startsWith('0x')),
      'named callers',
    );
    assert.ok(
      all.some((e) => e.tunnel?.kind === 'vxlan' && e.tunnel.inner?.dport === 9000),
      'a tunnel with its inner packet',
    );
    assert.ok(
      all.some((e) => e.tracked),
      'followed skbs',
    );
    assert.ok(
      all.some((e) => e.changes?.some((c) => c.field === 'iface')),
      'a change of device',
    );
  });
});
