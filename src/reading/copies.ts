/**
 * Copies and clones: skbs that share a data buffer (skb->head). The kernel
 * clones a packet for a raw socket (ping's echo reply), for a tap (tcpdump),
 * for TCP's retransmit queue; the original and the clone then go separate
 * ways. A clone is linked to its original when it starts:
 * - at the data buffer of a packet that was dropped while its data was still
 *   shared (the event's `shared` count said another skb held it): that
 *   packet's data lived on in this copy;
 * - sharing the data buffer of a packet still in flight, and saying so
 *   (`shared` > 1 at its first step).
 * A copy (skb_copy, pskb_copy, skb_copy_expand: nft dup, TEE) has a data
 * buffer of its own: the kernel program says what it was copied from on its
 * first step after the copy function returned (`copiedFrom`, function
 * backends only), and it is linked then to the packet in flight at that
 * buffer. With tracepoints copies are not seen: a copy is a packet of its own.
 * A dropped original whose data lived on is held back from its summary until
 * its copies are finished, so that its verdict can say what became of them.
 */
import type { TraceEvent } from '../record/event';
import type { Packet } from './packet-tracker';
import { flowText } from './tuple-format';

/** A data buffer on a node: the address alone on one node (no concatenation per event). */
function headKey(node: string | undefined, head: string): string {
  return node === undefined ? head : `${node}/${head}`;
}

/** Originals waiting for a copy to appear, at most (the oldest give up first). */
const MAX_WAITING = 4096;

export class CopyLinker {
  /** Dropped while their data was shared: a copy may yet start at that buffer. */
  private readonly orphaned = new Map<string, Packet>();
  /** Held back until their linked copies are finished: how many are not. */
  private readonly pending = new Map<Packet, number>();
  /** Live packets by their data buffer. */
  private readonly liveHeads = new Map<string, Packet>();
  private readonly headOf = new Map<Packet, string>();
  private readonly originals = new Map<Packet, Packet>();

  /** release: a packet whose verdict no longer waits on anything. */
  constructor(private readonly release: (p: Packet) => void) {}

  /** A packet's first step: link it to the packet whose data it shares, if any. */
  started(packet: Packet, e: TraceEvent): void {
    if (!e.head) return;
    const key = headKey(e.node, e.head);
    const orphan = this.orphaned.get(key);
    const original = orphan ?? ((e.shared ?? 1) > 1 ? this.liveHeads.get(key) : undefined);
    if (!original || original === packet || !sameBytes(original, e)) return;
    if (orphan) {
      this.orphaned.delete(key);
      this.pending.set(orphan, (this.pending.get(orphan) ?? 0) + 1);
    }
    this.link(packet, original);
  }

  private link(packet: Packet, original: Packet): void {
    packet.copyOf = original.id;
    original.copies ??= [];
    original.copies.push(packet);
    this.originals.set(packet, original);
  }

  /** Every step: a copy linked to what it was copied from; where the packet's data is now. */
  step(packet: Packet, e: TraceEvent): void {
    if (e.copiedFrom && packet.copyOf === undefined) {
      const original = this.liveHeads.get(headKey(e.node, e.copiedFrom.head));
      if (original && original !== packet) {
        packet.copied = true;
        this.link(packet, original);
      }
    }
    if (!e.head) return;
    const key = headKey(e.node, e.head);
    const before = this.headOf.get(packet);
    if (before === key) return;
    if (before && this.liveHeads.get(before) === packet) this.liveHeads.delete(before);
    this.liveHeads.set(key, packet);
    this.headOf.set(packet, key);
  }

  /** The packet is finished: hold it back (its data lives on in a copy), or release it. */
  finished(packet: Packet): void {
    const key = this.headOf.get(packet);
    this.headOf.delete(packet);
    if (key && this.liveHeads.get(key) === packet) this.liveHeads.delete(key);
    const unfinished = (packet.copies ?? []).filter((c) => this.originals.has(c)).length;
    if (unfinished > 0) {
      this.pending.set(packet, unfinished);
    } else if (key && sharedWhenDropped(packet)) {
      this.orphan(key, packet);
    } else {
      this.done(packet);
    }
  }

  /** Everything still held back, at the end of the trace. */
  flush(): void {
    const held = [...this.orphaned.values(), ...this.pending.keys()].sort((a, b) => a.id - b.id);
    this.orphaned.clear();
    this.pending.clear();
    for (const p of held) this.release(p);
  }

  private orphan(key: string, packet: Packet): void {
    const before = this.orphaned.get(key);
    if (before) this.done(before);
    if (this.orphaned.size >= MAX_WAITING) {
      const [oldestKey, oldest] = this.orphaned.entries().next().value as [string, Packet];
      this.orphaned.delete(oldestKey);
      this.done(oldest);
    }
    this.orphaned.set(key, packet);
  }

  /** Released, and its original told that one more copy is finished. */
  private done(packet: Packet): void {
    this.release(packet);
    const original = this.originals.get(packet);
    if (!original) return;
    this.originals.delete(packet);
    const left = (this.pending.get(original) ?? 0) - 1;
    if (left > 0) {
      this.pending.set(original, left);
    } else if (this.pending.delete(original)) {
      this.done(original);
    }
  }
}

/**
 * A clone reads the bytes its original holds: the same header, ID and
 * sequence. A buffer address alone is no evidence: the tracepoint backend
 * misses some frees (TCP's __kfree_skb), so a packet it saw may be long gone
 * and its buffer handed to another (a reply in the same connection).
 */
function sameBytes(original: Packet, e: TraceEvent): boolean {
  const last = original.steps[original.steps.length - 1]?.event;
  if (!last) return false;
  if (last.ipId !== undefined && e.ipId !== undefined && last.ipId !== e.ipId) return false;
  if (last.seq !== undefined && e.seq !== undefined && last.seq !== e.seq) return false;
  const a = last.tuple;
  const b = e.tuple;
  if (!a || !b) return true;
  return flowText(a) === flowText(b) && a.tcpFlags === b.tcpFlags && a.icmpType === b.icmpType;
}

/** Dropped at a step where another skb still held its data. */
function sharedWhenDropped(p: Packet): boolean {
  return p.steps.some((s) => s.event.drop && (s.event.shared ?? 1) > 1);
}
