/**
 * --emit text|wide: a PACKET_DONE frame announces how many EVENT frames that
 * follow are the finished packet's steps (helper/packet_book.c). This gathers
 * them into one packet for the sink's closing table.
 */
import type { PacketDoneInfo } from '../record/decode';
import type { TraceEvent } from '../record/event';

export class PacketCollector {
  private pending?: { info: PacketDoneInfo; events: TraceEvent[] };

  constructor(private readonly done: (info: PacketDoneInfo, events: TraceEvent[]) => void) {}

  start(info: PacketDoneInfo): void {
    this.pending = { info, events: [] };
    this.finishIfWhole();
  }

  /** Takes an event that belongs to the packet being gathered; false when none is. */
  take(e: TraceEvent): boolean {
    const p = this.pending;
    if (!p) return false;
    p.events.push(e);
    this.finishIfWhole();
    return true;
  }

  private finishIfWhole(): void {
    const p = this.pending;
    if (!p || p.events.length < p.info.steps) return;
    this.pending = undefined;
    this.done(p.info, p.events);
  }
}
