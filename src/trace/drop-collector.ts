/**
 * --on-drop: a DROP_REPORT frame announces how many EVENT frames that follow
 * belong to it (the dropped packet's steps, then the good one's). This
 * gathers them into one report for the sink.
 */
import type { DropReportInfo } from '../record/decode';
import type { TraceEvent } from '../record/event';

export interface CollectedReport {
  info: DropReportInfo;
  bad: TraceEvent[];
  good: TraceEvent[];
}

export class DropCollector {
  private pending?: CollectedReport;

  constructor(private readonly done: (report: CollectedReport) => void) {}

  start(info: DropReportInfo): void {
    this.pending = { info, bad: [], good: [] };
    this.finishIfWhole();
  }

  /** Takes an event that belongs to the report being gathered; false when none is. */
  take(e: TraceEvent): boolean {
    const p = this.pending;
    if (!p) return false;
    if (p.bad.length < p.info.bad.steps) p.bad.push(e);
    else p.good.push(e);
    this.finishIfWhole();
    return true;
  }

  private finishIfWhole(): void {
    const p = this.pending;
    if (!p || p.bad.length < p.info.bad.steps || p.good.length < (p.info.good?.steps ?? 0)) return;
    this.pending = undefined;
    this.done(p);
  }
}
