/**
 * The record stream decoder on streams built byte by byte after bpf/event.h,
 * split at every possible point, as pipes and WebSockets split them.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FrameType, RecordDecoder, StreamError } from '../../../src/record/decode';
import type { TraceEvent } from '../../../src/record/event';
import { event, HELLO, json, packet, READY } from '../record-stream';

function stream(): Buffer {
  return Buffer.concat([
    json(FrameType.Hello, HELLO),
    json(FrameType.Ready, READY),
    json(FrameType.Symbol, { addr: '0xffffffff81a00010', name: 'nf_hook_slow+0x10' }),
    event({ probe: 7, ts: 1_500_000_000n }),
    event({ probe: 0, ts: 1_500_100_000n, drop: 12, comm: 'a-much-longer-nm', caller: 0xffffffff81a00010n }),
    event({ probe: 7, ts: 1_600_000_000n, v6: true }),
    json(FrameType.Stats, { seen: 10, emitted: 3, lost: 0, final: true }),
    json(FrameType.End, { reason: 'duration', events: 3, lost: 0 }),
  ]);
}

function decodeAll(chunks: Buffer[]) {
  const events: TraceEvent[] = [];
  const ends: string[] = [];
  const d = new RecordDecoder({ event: (e) => events.push(e), end: (e) => ends.push(e.reason) }, 'node-1');
  for (const c of chunks) d.push(c);
  d.finish();
  return { events, ends };
}

describe('record stream decoder', () => {
  test('decodes every field of an event', () => {
    const { events, ends } = decodeAll([stream()]);
    assert.deepEqual(ends, ['duration']);
    assert.equal(events.length, 3);
    const [rx, drop, v6] = events;
    assert.equal(rx.func, 'netif_receive_skb');
    assert.equal(rx.skb, '0xffff888100b84900');
    assert.equal(rx.ts, '1500000000');
    assert.equal(rx.time, '2026-11-25T00:05:53.500Z');
    assert.equal(rx.process, 'dig');
    assert.equal(rx.iface, 'eth0');
    assert.equal(rx.netns, 4026532176);
    assert.equal(rx.mark, 0x10);
    assert.equal(rx.l3proto, 'IPv4');
    assert.equal(rx.node, 'node-1');
    assert.deepEqual(rx.tuple, {
      family: 4,
      proto: 'UDP',
      src: '10.0.0.1',
      dst: '10.0.0.2',
      sport: 40000,
      dport: 53,
    });
    assert.equal(rx.drop, undefined);
    assert.equal(rx.caller, undefined);

    assert.equal(drop.func, 'kfree_skb');
    assert.deepEqual(drop.drop, { reason: 'NETFILTER_DROP', code: 12 });
    assert.equal(drop.freed, true);
    assert.equal(drop.process, 'a-much-longer-nm');
    assert.equal(drop.caller, 'nf_hook_slow+0x10');

    assert.equal(v6.l3proto, 'IPv6');
    assert.equal(v6.tuple?.src, 'fd00:64:1::1');
    assert.equal(v6.tuple?.dst, 'fd00:64:1::2');
  });

  test('gives the same events however the stream is split', () => {
    const whole = stream();
    const expected = decodeAll([whole]).events;
    for (let cut = 1; cut < whole.length; cut++) {
      const { events } = decodeAll([whole.subarray(0, cut), whole.subarray(cut)]);
      assert.deepEqual(events, expected, `split at byte ${cut}`);
    }
    const bytes = [...whole].map((x) => Buffer.from([x]));
    assert.deepEqual(decodeAll(bytes).events, expected, 'one byte at a time');
  });

  test('a stream cut inside a frame is reported, not silently accepted', () => {
    const whole = stream();
    assert.throws(() => decodeAll([whole.subarray(0, whole.length - 3)]), StreamError);
  });

  test('DIGEST (--emit json) comes through in order with the other frames, however the stream is split', () => {
    const whole = Buffer.concat([
      json(FrameType.Hello, HELLO),
      json(FrameType.Ready, READY),
      json(FrameType.Stats, { seen: 9, emitted: 3, lost: 0, final: false }),
      json(FrameType.Digest, { packets: 3, events: 3, drops: [] }),
      json(FrameType.End, { reason: 'signal', events: 3, lost: 0 }),
    ]);
    const run = (chunks: Buffer[]) => {
      const seen: string[] = [];
      const d = new RecordDecoder({
        stats: (s) => seen.push(`S:${s.seen}`),
        digest: (g) => seen.push(`D:${g.packets}`),
        end: (e) => seen.push(`E:${e.reason}`),
      });
      for (const c of chunks) d.push(c);
      d.finish();
      return seen.join(' ');
    };
    const expected = 'S:9 D:3 E:signal';
    assert.equal(run([whole]), expected);
    for (let cut = 1; cut < whole.length; cut++) {
      assert.equal(run([whole.subarray(0, cut), whole.subarray(cut)]), expected, `split at byte ${cut}`);
    }
    assert.throws(() => run([whole.subarray(0, whole.length - 20)]), StreamError);
  });

  test('PACKET (--snaplen) gives its bytes to the event after it, past SYMBOL frames, however the stream is split', () => {
    const ip = Buffer.from('4500001c00004000401100000a0000010a000002', 'hex');
    const all = Buffer.concat([
      json(FrameType.Hello, HELLO),
      json(FrameType.Ready, READY),
      packet(1_500_000_000n, ip, 1500),
      json(FrameType.Symbol, { addr: '0xffffffff81a00010', name: 'nf_hook_slow+0x10' }),
      event({ probe: 7, ts: 1_500_000_000n }),
      event({ probe: 7, ts: 1_500_000_100n }),
      // Bytes of another event than the next one are not given to it.
      packet(1_400_000_000n, ip, 28, 2),
      event({ probe: 7, ts: 1_600_000_000n }),
      packet(1_700_000_000n, ip.subarray(0, 4), 28, 2),
      event({ probe: 7, ts: 1_700_000_000n }),
    ]);
    for (let cut = 0; cut <= all.length; cut += 7) {
      const { events } = decodeAll([all.subarray(0, cut), all.subarray(cut)]);
      assert.deepEqual(
        events.map((e) => e.bytes),
        [
          { capture: 'first', len: 1500, data: ip.toString('base64') },
          undefined,
          undefined,
          { capture: 'changed', len: 28, data: ip.subarray(0, 4).toString('base64') },
        ],
      );
    }
  });

  test('refuses what is not a helper stream, and a helper of another version', () => {
    assert.throws(
      () => decodeAll([Buffer.from('{"type":"event"}\n')]),
      /does not start with a HELLO|corrupt/,
    );
    assert.throws(
      () => decodeAll([json(FrameType.Hello, { ...HELLO, event_version: 99 })]),
      /matching versions/,
    );
    assert.throws(() => decodeAll([json(FrameType.Hello, { ...HELLO, json_schema: 2 })]), /JSON lines v2/);
  });
});
