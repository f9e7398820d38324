/**
 * --on-drop: a DROP_REPORT frame announces how many EVENT frames that follow
 * belong to it (the dropped packet's steps, then the good one's, then each
 * copy's). This gathers them into one report for the sink.
 */
import type { DropReportInfo } from '../record/decode';
import type { TraceEvent } from '../record/event';

export interface CollectedReport {
  info: DropReportInfo;
  bad: TraceEvent[];
  good: TraceEvent[];
  /** Each copy's steps, in the order of info.copies. */
  copies: TraceEvent[][];
}

export class DropCollector {
  private pending?: CollectedReport;

  constructor(private readonly done: (report: CollectedReport) => void) {}

  start(info: DropReportInfo): void {
    this.pending = { info, bad: [], good: [], copies: (info.copies ?? []).map(() => []) };
    this.finishIfWhole();
  }

  /** Takes an event that belongs to the report being gathered; false when none is. */
  take(e: TraceEvent): boolean {
    const p = this.pending;
    if (!p) return false;
    if (p.bad.length < p.info.bad.steps) p.bad.push(e);
    else if (p.good.length < (p.info.good?.steps ?? 0)) p.good.push(e);
    else p.copies[this.unfilledCopy(p)]?.push(e);
    this.finishIfWhole();
    return true;
  }

  /** The index of the first copy still short of its steps (copies.length: none). */
  private unfilledCopy(p: CollectedReport): number {
    const want = p.info.copies ?? [];
    const i = p.copies.findIndex((c, k) => c.length < want[k].steps);
    return i < 0 ? p.copies.length : i;
  }

  private finishIfWhole(): void {
    const p = this.pending;
    if (
      !p ||
      p.bad.length < p.info.bad.steps ||
      p.good.length < (p.info.good?.steps ?? 0) ||
      this.unfilledCopy(p) < p.copies.length
    )
      return;
    this.pending = undefined;
    this.done(p);
  }
}
