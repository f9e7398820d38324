/**
 * Builds the helper's record stream byte by byte after bpf/event.h, for tests
 * that feed the decoder or a fake helper.
 */
import { EVENT_SIZE, EVENT_VERSION, FrameType, PACKET_HEADER_SIZE } from '../../src/record/decode';

export function frame(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(payload.length, 0);
  h.writeUInt16LE(type, 4);
  return Buffer.concat([h, payload]);
}

export const json = (type: number, o: object) => frame(type, Buffer.from(JSON.stringify(o)));

export const HELLO = {
  stream: 1,
  event_version: EVENT_VERSION,
  event_size: EVENT_SIZE,
  helper: '0.1.0',
  kernel: '6.18.0',
  arch: 'x86_64',
  hostname: 'node-1',
  mono_ns: '1000000000',
  real_ns: '1795565153000000000',
  json_schema: 1,
};
export const READY = {
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

export interface EventSpec {
  probe: number;
  ts: bigint;
  v6?: boolean;
  drop?: number;
  comm?: string;
  caller?: bigint;
}

/** A struct pwru_event, field by field (offsets from bpf/event.h). */
export function event(spec: EventSpec): Buffer {
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

/** A PACKET frame (struct pwru_packet and the bytes): the bytes of the event with this ts that follows. */
export function packet(ts: bigint, bytes: Buffer, origLen: number, why: 1 | 2 = 1): Buffer {
  const b = Buffer.alloc(PACKET_HEADER_SIZE + bytes.length);
  b.writeBigUInt64LE(ts, 0);
  b.writeBigUInt64LE(0xffff888100b84900n, 8); // the skb event() writes
  b.writeUInt32LE(origLen, 16);
  b.writeUInt32LE(bytes.length, 20);
  b.writeUInt32LE(why, 24);
  bytes.copy(b, PACKET_HEADER_SIZE);
  return frame(FrameType.Packet, b);
}
