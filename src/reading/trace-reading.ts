/**
 * Reading a trace as it goes, apart from how it is shown: packets followed
 * (src/reading/packet-tracker.ts), finished packets reduced to summary rows, the
 * helper's counts per node, whether a packet was dropped. A live trace and a
 * saved one (`show`) are read by the same code, so their summaries agree.
 */
import type { PacketDoneInfo } from '../record/decode';
import type {
  TraceCulprit,
  TraceDigest,
  TraceEvent,
  TraceHeader,
  TraceProgRun,
  TraceStats,
} from '../record/event';
import { CulpritBook, ProgRunBook } from './culprits';
import { noFailureByPlace } from './drop-rules';
import { type Observed, type Packet, PacketTracker, packetOfSteps } from './packet-tracker';
import { type DigestSummary, SummaryBuilder, summarizeDigest, type TraceSummary } from './summary';
import { isLoss } from './verdicts';

export class TraceReading {
  // Finished packets are reduced to summary rows at once: a long trace keeps
  // only the packets still in flight, not every step it printed.
  private readonly summary = new SummaryBuilder();
  private readonly tracker = new PacketTracker({
    retain: false,
    onDone: (p) => {
      if (isLoss(this.summary.packet(p).verdict)) this.losses++;
      this.onPacketDone?.(p);
    },
  });
  private readonly statsSeen: TraceStats[] = [];
  private readonly lostByNode = new Map<string, number>();
  /** Per node, the events the kernel did not hand over: lost (ring buffer full) and skipped (--max-rate). */
  private readonly missedByNode = new Map<string, number>();
  private headers = 0;
  private events = 0;
  /** Packets lost for real: dropped, and no drop rule says it was normal (drop-rules.ts). */
  private losses = 0;
  private digestLoss = false;
  private digested?: TraceDigest;
  private readonly culprits = new CulpritBook();
  private readonly progs = new ProgRunBook();
  /** --emit text|wide: packets the helper sent whole that copies may point to, by number. */
  private readonly copiesSent = new Map<number, Packet>();
  /** Originals waiting for their copies to arrive (the helper sends a copy first, except at the end). */
  private waiting: { packet: Packet; copies: number[]; count: number; open: boolean }[] = [];
  /** Packets the helper sent as still in flight at the end. */
  private readonly openSent: Packet[] = [];

  /** onPacketDone: each packet once finished (freed, or its address reused), for a view that needs whole packets. */
  constructor(private readonly onPacketDone?: (p: Packet) => void) {}

  header(_h: TraceHeader): void {
    this.headers++;
  }

  event(e: TraceEvent): Observed {
    this.events++;
    const o = this.tracker.observe(e);
    this.summary.step(o.step);
    return o;
  }

  /**
   * A finished packet from the helper, whole or standing for `count` of its
   * shape (--emit text|wide, helper/packet_book.c): read by the same verdict
   * code as the events. Its copies and replacement come linked by the helper,
   * which follows copies.ts and packet-tracker.ts.
   */
  packetDone(info: PacketDoneInfo, events: readonly TraceEvent[]): void {
    const packet = packetOfSteps(info.id, events);
    if (info.copy_of !== undefined) {
      packet.copyOf = info.copy_of;
      if (info.copied) packet.copied = true;
      this.copiesSent.set(packet.id, packet);
    }
    if (info.replaced_by !== undefined) packet.replacedBy = info.replaced_by;
    for (const s of packet.steps) this.summary.step(s, info.count);
    this.waiting.push({ packet, copies: info.copies ?? [], count: info.count, open: info.open === true });
    this.settle(false);
  }

  /** Reads the packets whose copies have all arrived (at the end: all of them, with what arrived). */
  private settle(end: boolean): void {
    let progress = true;
    while (progress) {
      progress = false;
      const still: typeof this.waiting = [];
      for (const w of this.waiting) {
        if (!end && !w.copies.every((id) => this.copiesSent.has(id))) {
          still.push(w);
          continue;
        }
        progress = true;
        const copies = w.copies.map((id) => this.copiesSent.get(id)).filter((c) => c !== undefined);
        if (copies.length) w.packet.copies = copies;
        for (const id of w.copies) this.copiesSent.delete(id);
        if (w.open) this.openSent.push(w.packet);
        else if (isLoss(this.summary.packet(w.packet, w.count).verdict)) this.losses += w.count;
      }
      this.waiting = still;
      if (end) break;
    }
  }

  /** Who dropped a packet: named in the summary's row of that packet. */
  culprit(c: TraceCulprit): void {
    this.culprits.add(c);
  }

  /** A tc or XDP program's run: named in the summary's row of its packet. */
  prog(p: TraceProgRun): void {
    this.progs.add(p);
  }

  /** Records the helper's counts; returns how many events its node has lost in all, when that grew. */
  stats(s: TraceStats): number | undefined {
    this.statsSeen.push(s);
    const node = s.node ?? '';
    this.missedByNode.set(node, s.lost + (s.skipped ?? 0));
    if (s.lost <= (this.lostByNode.get(node) ?? 0)) return undefined;
    this.lostByNode.set(node, s.lost);
    return s.lost;
  }

  /** Matching events never seen here: lost or skipped over --max-rate, all nodes together. */
  missedEvents(): number {
    let missed = 0;
    for (const n of this.missedByNode.values()) missed += n;
    return missed;
  }

  /** The helper's counts of the events it wrote as JSON lines itself. */
  digest(d: TraceDigest): void {
    this.digested = d;
    // The digest counts drops by reason and place: the rules that need the packet (its copies) cannot apply.
    this.digestLoss = d.drops.some((drop) => noFailureByPlace(drop.reason, drop.at) === undefined);
  }

  /**
   * A matching packet was lost (for --fail-on-drop): a packet's verdict is a
   * drop that no rule calls normal. Decided per packet, once it is finished:
   * an original freed while its copy lived waits for the copy. Call at the end.
   */
  dropped(): boolean {
    this.tracker.open(); // finishes what was held back
    this.settle(true);
    return this.losses > 0 || this.digestLoss;
  }

  /** Anything traced at all (a run refused before the probes were attached has nothing to sum up). */
  traced(): boolean {
    return this.headers > 0 || this.statsSeen.length > 0 || this.events > 0;
  }

  /** Packets not finished when the trace ended. */
  open(): Packet[] {
    return this.tracker.open();
  }

  /** The closing summary: of the events read here, or of the helper's digest when it wrote the lines. */
  result(): { kind: 'packets'; summary: TraceSummary } | { kind: 'digest'; summary: DigestSummary } {
    if (this.digested) return { kind: 'digest', summary: summarizeDigest(this.digested, this.statsSeen) };
    this.settle(true);
    return {
      kind: 'packets',
      summary: this.summary.build(
        [...this.tracker.open(), ...this.openSent],
        this.statsSeen,
        this.culprits,
        this.progs,
      ),
    };
  }
}
