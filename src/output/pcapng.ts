/**
 * --pcapng FILE: the bytes the kernel program captured (--snaplen) as a
 * pcapng file for Wireshark and tshark. One Interface Description Block per
 * (node, network namespace, interface), named `node/netns/ifname` (the
 * host's name on --local); one
 * Enhanced Packet Block per captured step, whose comment says the packet's
 * number, the step, what was rewritten, and on the packet's last block its
 * verdict, the drop reason in words. The bytes start at the IP header
 * (LINKTYPE_RAW). Block layout: the pcapng specification
 * (draft-ietf-opsawg-pcapng): SHB, IDB, EPB, little-endian.
 *
 * A packet's last block waits for the packet's verdict (PacketTracker's
 * onDone); the ones before it are written as the next one arrives.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { UserError } from '../errors';
import { describeChanges } from '../reading/changes';
import type { Observed, Packet } from '../reading/packet-tracker';
import { describeVerdict } from '../reading/verdict-words';
import { verdictOf } from '../reading/verdicts';
import type { TraceEvent, TraceHeader } from '../record/event';
import { TOOL_VERSION } from '../version';

const BLOCK_SHB = 0x0a0d0d0a;
const BLOCK_IDB = 1;
const BLOCK_EPB = 6;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_TSRESOL = 9;
/** Raw IP: the bytes start at the IPv4 or IPv6 header (what the kernel program captures). */
const LINKTYPE_RAW = 101;
/** Write to the file in pieces about this big. */
const FLUSH_BYTES = 1 << 20;

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Options: code, length, value padded to 4 bytes; then opt_endofopt. */
function encodeOptions(options: [number, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of options) {
    const head = Buffer.alloc(4);
    head.writeUInt16LE(code, 0);
    head.writeUInt16LE(value.length, 2);
    parts.push(head, value, Buffer.alloc(pad4(value.length)));
  }
  parts.push(Buffer.alloc(4)); // opt_endofopt: code 0, length 0
  return Buffer.concat(parts);
}

/** A block: type, total length, body, total length again. */
function encodeBlock(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const b = Buffer.alloc(total);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(total, 4);
  body.copy(b, 8);
  b.writeUInt32LE(total, total - 4);
  return b;
}

function sectionHeader(): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  fixed.writeUInt16LE(1, 4); // major
  fixed.writeUInt16LE(0, 6); // minor
  fixed.writeBigInt64LE(-1n, 8); // section length: not given
  const opts = encodeOptions([[SHB_USERAPPL, Buffer.from(`kubectl-pwru ${TOOL_VERSION}`)]]);
  return encodeBlock(BLOCK_SHB, Buffer.concat([fixed, opts]));
}

function interfaceDescription(name: string): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(LINKTYPE_RAW, 0);
  fixed.writeUInt32LE(0, 4); // snaplen: no limit (each block says what it holds)
  const opts = encodeOptions([
    [IF_NAME, Buffer.from(name)],
    [IF_TSRESOL, Buffer.from([9])], // nanoseconds
  ]);
  return encodeBlock(BLOCK_IDB, Buffer.concat([fixed, opts]));
}

function enhancedPacket(iface: number, tsNs: bigint, data: Buffer, origLen: number, comment: string): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32LE(iface, 0);
  fixed.writeUInt32LE(Number(tsNs >> 32n), 4);
  fixed.writeUInt32LE(Number(tsNs & 0xffffffffn), 8);
  fixed.writeUInt32LE(data.length, 12);
  fixed.writeUInt32LE(Math.max(origLen, data.length), 16);
  const opts = encodeOptions([[OPT_COMMENT, Buffer.from(comment)]]);
  return encodeBlock(BLOCK_EPB, Buffer.concat([fixed, data, Buffer.alloc(pad4(data.length)), opts]));
}

/** A captured step waiting to be written. */
interface Held {
  iface: number;
  tsNs: bigint;
  data: Buffer;
  len: number;
  comment: string;
}

/** What a captured step's comment says before any verdict: "packet 3, step 5 (ip_rcv_core): DNAT dst …". */
export function stepComment(o: Observed): string {
  const e = o.step.event;
  const where = `packet ${o.packet.id}, step ${o.step.index + 1} (${e.func})`;
  if (e.bytes?.capture !== 'changed') return `${where}: first capture`;
  const changes = describeChanges(o.step.changes);
  return `${where}: rewritten${changes ? `: ${changes}` : ''}`;
}

/** The verdict in words, a drop with its reason explained: the comment of a packet's last block ends with it. */
export function verdictComment(p: Packet): string {
  return describeVerdict(verdictOf(p));
}

export class PcapngWriter {
  private readonly fd: number;
  private readonly interfaces = new Map<string, number>();
  /** Per node: CLOCK_REALTIME - CLOCK_MONOTONIC in ns, from the first captured event's time. */
  private readonly clockOffsets = new Map<string, bigint>();
  private readonly held = new Map<Packet, Held>();
  private chunks: Buffer[] = [];
  private size = 0;
  private failure?: Error;
  /** The host of events without a node (a local trace, or one node's): from the trace's header. */
  private host = 'local';

  /** Opened up front, so that a bad path fails before any probe is attached. */
  constructor(private readonly path: string) {
    try {
      this.fd = openSync(path, 'w');
    } catch (e) {
      throw new UserError(`cannot write the packets to ${path}: ${(e as Error).message}`);
    }
    this.put(sectionHeader());
  }

  /** A trace's header (one per node in Kubernetes mode): names the host. */
  header(h: TraceHeader): void {
    this.host = h.node ?? h.host ?? this.host;
  }

  /** Every step of the trace, in order; the ones with bytes become blocks. */
  step(o: Observed): void {
    const e = o.step.event;
    if (!e.bytes) return;
    const before = this.held.get(o.packet);
    if (before) this.write(before, '');
    this.held.set(o.packet, {
      iface: this.interfaceOf(e),
      tsNs: this.wallClockNs(e),
      data: Buffer.from(e.bytes.data, 'base64'),
      len: e.bytes.len,
      comment: stepComment(o),
    });
  }

  /** A packet is finished: its last block gets its verdict. */
  packetDone(p: Packet): void {
    const last = this.held.get(p);
    if (!last) return;
    this.held.delete(p);
    this.write(last, `; verdict: ${verdictComment(p)}`);
  }

  /** The packets still open when the trace ended, then the file closed. */
  close(open: Packet[]): void {
    for (const p of open) this.packetDone(p);
    for (const [p, last] of this.held) this.write(last, `; verdict: ${verdictComment(p)}`);
    this.held.clear();
    this.flush();
    closeSync(this.fd);
    if (this.failure)
      throw new UserError(`could not write the packets to ${this.path}: ${this.failure.message}`);
  }

  private interfaceOf(e: TraceEvent): number {
    const name = `${e.node ?? this.host}/${e.netns}/${e.iface || '-'}`;
    let id = this.interfaces.get(name);
    if (id === undefined) {
      id = this.interfaces.size;
      this.interfaces.set(name, id);
      this.put(interfaceDescription(name));
    }
    return id;
  }

  /**
   * The step's wall-clock time in ns: the kernel's monotonic ts plus the
   * node's offset, taken once from an event's millisecond wall-clock time, so
   * that steps keep their ns spacing and a saved trace gives the same file.
   */
  private wallClockNs(e: TraceEvent): bigint {
    const node = e.node ?? '';
    const ts = BigInt(e.ts);
    let offset = this.clockOffsets.get(node);
    if (offset === undefined) {
      offset = BigInt(Date.parse(e.time)) * 1_000_000n - ts;
      this.clockOffsets.set(node, offset);
    }
    return ts + offset;
  }

  private write(h: Held, verdict: string): void {
    this.put(enhancedPacket(h.iface, h.tsNs, h.data, h.len, h.comment + verdict));
  }

  private put(block: Buffer): void {
    this.chunks.push(block);
    this.size += block.length;
    if (this.size >= FLUSH_BYTES) this.flush();
  }

  private flush(): void {
    if (this.failure || this.size === 0) return;
    const all = Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.size = 0;
    try {
      let done = 0;
      while (done < all.length) done += writeSync(this.fd, all, done);
    } catch (e) {
      this.failure = e as Error;
    }
  }
}
