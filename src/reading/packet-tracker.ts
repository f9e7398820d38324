/**
 * Turns a stream of trace events into packets: each packet's steps and what
 * changed between two steps. helper/packet_track.c numbers packets by the
 * same rules for its JSON lines (test/unit/record/twins.test.ts holds them
 * together).
 *
 * An skb address names a packet only while the packet lives: after a step
 * that freed it, the same address (on the same node) is a new packet.
 */
import type { TraceEvent, Tuple } from '../record/event';
import { type Change, detectChanges, isEncapTuple, type LastSeen, remember } from './changes';
import { CopyLinker } from './copies';
import { baseFunc, TX_START_FUNCS } from './kernel-functions';

export interface Step {
  event: TraceEvent;
  /** 0-based position in the packet's path. */
  index: number;
  /** What differs from the packet's previous step (empty for the first). */
  changes: Change[];
  /** In a merged flow path (diff --flow): the packet this step belongs to, and whether it is a reply. */
  packet?: number;
  reply?: boolean;
}

export interface Packet {
  /** 1-based, in order of first appearance in the trace. */
  id: number;
  node?: string;
  skb: string;
  steps: Step[];
  /** The first tuple seen (before any NAT). */
  tuple?: Tuple;
  /** A step freed it: the trace saw its whole life. */
  freed: boolean;
  /**
   * Seen only being freed, right before a packet with the same tuple started
   * on the same CPU: the kernel swapped the skb for a copy (e.g. to make room
   * for headers) and the path goes on as that packet.
   */
  replacedBy?: number;
  /** A copy of that packet: a clone sharing its data buffer, or a copy made of it (copies.ts). */
  copyOf?: number;
  /** That copy has a data buffer of its own: a copy function made it (skb_copy, pskb_copy), not a clone. */
  copied?: boolean;
  /** Copies of this packet seen in the trace (copies.ts). */
  copies?: Packet[];
  /** For a merged flow path (diff --flow): the packets it is made of, and the one it was chosen by. */
  packets?: number[];
  seed?: Packet;
}

/**
 * Whether an event at a live packet's skb address is another packet's.
 *
 * The kernel sometimes frees an skb without a tracepoint (__kfree_skb, the
 * per-CPU caches), so a reused address may arrive with no free in between.
 * What tells packets apart then (event version 2): the IPv4 ID and the TCP
 * sequence number, which no NAT rewrites, and the data buffer (skb->head).
 * - a tuple turned around is the other direction's packet;
 * - an IPv4 ID or TCP sequence that differs from the packet's last header is
 *   another packet's (unless a tunnel header came or went: the outer header
 *   has an ID of its own);
 * - a rewritten tuple (what would show as NAT) is kept only with evidence
 *   that it is the same packet: the same TCP sequence or the same non-zero
 *   IPv4 ID. The data buffer is no evidence: the kernel hands a freed skb and
 *   its freed buffer to the next packet together (seen on loopback TCP). When
 *   unsure, a new packet starts: a NAT marker is never invented from two
 *   packets;
 * - a packet only changes network namespace by being received on the other
 *   side of a veth or tunnel: one that starts down the transmit path in
 *   another namespace is a new packet.
 * Events recorded before version 2 carry none of these fields; their tuples
 * are compared as before (a rewrite is taken as such).
 */
function startsNewPacket(last: LastSeen, e: TraceEvent): boolean {
  const a = last.tuple;
  const b = e.tuple;
  if (a && b) {
    // NAT rewrites one end; a tuple turned around is the other direction's packet.
    if (a.src === b.dst && a.dst === b.src && a.sport === b.dport && a.dport === b.sport && a.src !== a.dst)
      return true;
    if (isEncapTuple(a) === isEncapTuple(b) && !sameHeader(last, e)) return true;
  }
  if (!last.netns || !e.netns || e.netns === last.netns) return false;
  return TX_START_FUNCS.has(baseFunc(e.func));
}

/** Same packet by its header: no ID or sequence that differs, and evidence for any rewrite (head: version 2). */
function sameHeader(last: LastSeen, e: TraceEvent): boolean {
  const bothIds = last.ipId !== undefined && e.ipId !== undefined;
  const bothSeqs = last.seq !== undefined && e.seq !== undefined;
  if ((bothIds && last.ipId !== e.ipId) || (bothSeqs && last.seq !== e.seq)) return false;
  if (!rewritten(last.tuple, e.tuple)) return true;
  if (last.head === undefined && e.head === undefined) return true; // recorded before version 2
  return bothSeqs || (bothIds && e.ipId !== 0);
}

/** Addresses, ports or protocol differ: what a change set would call NAT. */
function rewritten(a?: Tuple, b?: Tuple): boolean {
  if (!a || !b) return false;
  if (a.src !== b.src || a.dst !== b.dst || a.proto !== b.proto) return true;
  const ports = a.sport !== undefined && b.sport !== undefined;
  return ports && (a.sport !== b.sport || a.dport !== b.dport);
}

export interface Observed {
  packet: Packet;
  step: Step;
}

/** Follows packets through a trace, one event at a time. */
export interface TrackerOptions {
  /**
   * Keep finished packets (default). A live sink passes false and an onDone
   * that reduces each finished packet to a summary row, so memory stays
   * bounded by the packets in flight.
   */
  retain?: boolean;
  /** Called once per packet when it is finished: freed, or its address reused. */
  onDone?: (packet: Packet) => void;
}

/**
 * Packets followed at once. Frees without a tracepoint leave addresses
 * behind; past this many the tracker forgets them all (they end as they are).
 * helper/packet_track.c numbers packets by the same rule.
 */
export const MAX_LIVE_PACKETS = 8192;

/** How soon after a lone free a copy must start to count as its replacement. */
const REPLACEMENT_WINDOW_NS = 1_000_000n;

function sameFlow(a?: Tuple, b?: Tuple): boolean {
  return Boolean(
    a &&
      b &&
      a.src === b.src &&
      a.dst === b.dst &&
      a.sport === b.sport &&
      a.dport === b.dport &&
      a.proto === b.proto,
  );
}

/**
 * A packet whose steps are known to be one packet's (the helper followed it:
 * --emit text|wide, helper/packet_book.c), with its changes step by step as
 * observe() makes them. Its copies and replacement are the caller's to link.
 */
export function packetOfSteps(id: number, events: readonly TraceEvent[]): Packet {
  const first = events[0];
  const packet: Packet = { id, skb: first?.skb ?? '', steps: [], freed: false };
  if (first?.node !== undefined) packet.node = first.node;
  const last: LastSeen = {};
  for (const e of events) {
    packet.steps.push({
      event: e,
      index: packet.steps.length,
      changes: packet.steps.length ? detectChanges(last, e) : [],
    });
    if (!packet.tuple && e.tuple) packet.tuple = e.tuple;
    remember(last, e);
    if (e.freed || e.drop) packet.freed = true;
  }
  return packet;
}

export class PacketTracker {
  private readonly live = new Map<string, { packet: Packet; last: LastSeen }>();
  private readonly all: Packet[] = [];
  private count = 0;
  /** The last packet seen only being freed, held back until we know whether a copy follows. */
  private lone?: { packet: Packet; ts: bigint; cpu: number };
  private readonly copies: CopyLinker;

  constructor(private readonly options: TrackerOptions = {}) {
    this.copies = new CopyLinker((p) => this.options.onDone?.(p));
  }

  private done(packet: Packet): void {
    if (packet.steps.length === 1 && packet.freed && !packet.steps[0].event.drop) {
      // Hold it: the next new packet may be its copy.
      this.flushLone();
      const e = packet.steps[0].event;
      this.lone = { packet, ts: toBig(e.ts), cpu: e.cpu };
      return;
    }
    this.copies.finished(packet);
  }

  private flushLone(): void {
    if (!this.lone) return;
    const { packet } = this.lone;
    this.lone = undefined;
    this.copies.finished(packet);
  }

  /** A new packet starts: if a lone free just before it on the same CPU had its tuple, that was its original. */
  private started(packet: Packet, e: TraceEvent): void {
    const lone = this.lone;
    if (!lone) return;
    const gap = toBig(e.ts) - lone.ts;
    if (
      lone.cpu === e.cpu &&
      gap >= 0n &&
      gap <= REPLACEMENT_WINDOW_NS &&
      sameFlow(lone.packet.tuple, e.tuple)
    ) {
      lone.packet.replacedBy = packet.id;
    }
    this.flushLone();
  }

  observe(e: TraceEvent): Observed {
    // The address alone on one node (no concatenation per event); node names hold no "0x".
    const key = e.node === undefined ? e.skb : `${e.node}/${e.skb}`;
    let entry = this.live.get(key);
    if (entry && startsNewPacket(entry.last, e)) {
      this.done(entry.packet);
      entry = undefined;
    }
    if (!entry) {
      if (this.live.size >= MAX_LIVE_PACKETS) {
        for (const stale of this.live.values()) this.done(stale.packet);
        this.live.clear();
      }
      const packet: Packet = { id: ++this.count, skb: e.skb, steps: [], freed: false };
      if (e.node !== undefined) packet.node = e.node;
      entry = { packet, last: {} };
      this.live.set(key, entry);
      if (this.options.retain !== false) this.all.push(packet);
      this.copies.started(packet, e);
      this.started(packet, e);
    }
    const { packet, last } = entry;
    const step: Step = {
      event: e,
      index: packet.steps.length,
      changes: packet.steps.length ? detectChanges(last, e) : [],
    };
    packet.steps.push(step);
    if (!packet.tuple && e.tuple) packet.tuple = e.tuple;
    remember(last, e);
    this.copies.step(packet, e);
    if (e.freed || e.drop) {
      packet.freed = true;
      this.live.delete(key);
      this.done(packet);
    }
    return { packet, step };
  }

  /** Every packet, in order of appearance (when retained). */
  packets(): Packet[] {
    return this.all;
  }

  /** Packets not finished yet: not freed when the trace ended (hands on a held-back lone free first). */
  open(): Packet[] {
    this.flushLone();
    this.copies.flush();
    return [...this.live.values()].map((e) => e.packet);
  }
}

function toBig(ts: string): bigint {
  try {
    return BigInt(ts);
  } catch {
    return 0n;
  }
}

export function trackAll(events: Iterable<TraceEvent>): Packet[] {
  const tracker = new PacketTracker();
  for (const e of events) tracker.observe(e);
  return tracker.packets();
}
