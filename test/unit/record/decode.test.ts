/**
 * The record stream decoder on streams built byte by byte after bpf/event.h,
 * split at every possible point, as pipes and WebSockets split them.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EVENT_SIZE, FrameType, RecordDecoder, StreamError } from '../../../src/record/decode';
import type { TraceEvent } from '../../../src/record/event';

function frame(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(payload.length, 0);
  h.writeUInt16LE(type, 4);
  return Buffer.concat([h, payload]);
}

const json = (type: number, o: object) => frame(type, Buffer.from(JSON.stringify(o)));

const HELLO = {
  stream: 1,
  event_version: 1,
  event_size: EVENT_SIZE,
  helper: '0.1.0',
  kernel: '6.18.0',
  arch: 'x86_64',
  hostname: 'node-1',
  mono_ns: '1000000000',
  real_ns: '1795565153000000000',
};
const READY = {
  backend: 'tracepoint',
  backend_note: 'as asked',
  probes: [
    { id: 0, name: 'kfree_skb', kind: 'tracepoint' },
    { id: 7, name: 'netif_receive_skb', kind: 'tracepoint' },
  ],
  attached: 2,
  skipped: 0,
  attach_ms: 12,
  filter: 'udp',
  ringbuf_bytes: 8388608,
  drop_reasons: { '12': 'NETFILTER_DROP' },
};

interface EventSpec {
  probe: number;
  ts: bigint;
  v6?: boolean;
  drop?: number;
  comm?: string;
  caller?: bigint;
}

/** A struct pwru_event, field by field (offsets from bpf/event.h). */
function event(spec: EventSpec): Buffer {
  const b = Buffer.alloc(EVENT_SIZE);
  b.writeBigUInt64LE(spec.ts, 0);
  b.writeBigUInt64LE(0xffff888100b84900n, 8);
  b.writeBigUInt64LE(spec.caller ?? 0n, 24);
  b.writeUInt32LE(spec.probe, 32);
  b.writeUInt32LE(1, 36); // cpu
  b.writeUInt32LE(4242, 40); // pid
  b.writeUInt32LE(4026532176, 44); // netns
  b.writeUInt32LE(0x10, 48); // mark
  b.writeUInt32LE(2, 52); // ifindex
  b.writeUInt32LE(1500, 56); // mtu
  b.writeUInt32LE(84, 60); // len
  b.writeUInt32LE(spec.drop ?? 0, 64);
  b.writeInt32LE(-1, 68); // stack id
  b.writeUInt16LE(spec.v6 ? 0x86dd : 0x0800, 72);
  b.writeUInt16LE(40000, 74);
  b.writeUInt16LE(53, 76);
  b[78] = spec.v6 ? 6 : 4;
  b[79] = 17; // UDP
  b[81] = 0x08 | (spec.drop ? 0x01 | 0x02 | 0x10 : 0); // tuple (+ drop, reason, freed)
  if (spec.v6) {
    Buffer.from('fd000064000100000000000000000001', 'hex').copy(b, 88);
    Buffer.from('fd000064000100000000000000000002', 'hex').copy(b, 104);
  } else {
    Buffer.from([10, 0, 0, 1]).copy(b, 88);
    Buffer.from([10, 0, 0, 2]).copy(b, 104);
  }
  b.write(spec.comm ?? 'dig', 120, 'latin1');
  b.write('eth0', 136, 'latin1');
  return frame(FrameType.Event, b);
}

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

  test('LINES (--emit json) come through byte for byte and in order, however the stream is split', () => {
    const a = '{"type":"event","packet":1}\n{"type":"event","packet":2}\n';
    const b = '{"type":"event","packet":3,"process":"caf\u00e9"}\n';
    const whole = Buffer.concat([
      json(FrameType.Hello, HELLO),
      json(FrameType.Ready, READY),
      frame(FrameType.Lines, Buffer.from(a)),
      json(FrameType.Stats, { seen: 9, emitted: 3, lost: 0, final: false }),
      frame(FrameType.Lines, Buffer.from(b)),
      json(FrameType.Digest, { packets: 3, events: 3, drops: [] }),
      json(FrameType.End, { reason: 'signal', events: 3, lost: 0 }),
    ]);
    const run = (chunks: Buffer[]) => {
      const seen: string[] = [];
      const d = new RecordDecoder({
        lines: (t) => seen.push(`L:${t.toString('latin1')}`),
        stats: (s) => seen.push(`S:${s.seen}`),
        digest: (g) => seen.push(`D:${g.packets}`),
        end: (e) => seen.push(`E:${e.reason}`),
      });
      for (const c of chunks) d.push(c);
      d.finish();
      // Pieces of one frame are joined for the comparison: only their order and bytes matter.
      return seen.join('').replace(/L:/g, '');
    };
    const expected = `${Buffer.from(a).toString('latin1')}S:9${Buffer.from(b).toString('latin1')}D:3E:signal`;
    assert.equal(run([whole]), expected);
    for (let cut = 1; cut < whole.length; cut++) {
      assert.equal(run([whole.subarray(0, cut), whole.subarray(cut)]), expected, `split at byte ${cut}`);
    }
    assert.equal(run([...whole].map((x) => Buffer.from([x]))), expected, 'one byte at a time');
    assert.throws(() => run([whole.subarray(0, whole.length - 80)]), StreamError);
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
  });
});
