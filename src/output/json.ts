/**
 * `-o json` and saved traces: one TraceLine per line (src/record/event.ts,
 * docs/json-schema.md). Events carry two client annotations, `packet` and
 * `changes`, recomputed from scratch when a saved trace is read back, so that
 * `show -o json` of a saved trace reproduces it line for line.
 */

import type { Observed } from '../reading/packet-tracker';
import type { TraceEvent, TraceLine } from '../record/event';
import { eventJson } from '../record/json-line';

export function annotatedEvent(o: Observed): TraceEvent {
  const { packet: _p, changes: _c, ...e } = o.step.event;
  const out: TraceEvent = { ...e, packet: o.packet.id };
  if (o.step.changes.length) out.changes = o.step.changes.map((c) => ({ ...c }));
  return out;
}

/**
 * The annotated event as a JSON line. Live events have no annotations yet,
 * so they are appended to the event's own JSON without copying the object
 * (this runs once per event); same text as JSON.stringify(annotatedEvent(o)).
 */
export function annotatedEventLine(o: Observed): string {
  const e = o.step.event;
  if (e.packet !== undefined || e.changes !== undefined) return JSON.stringify(annotatedEvent(o));
  const base = eventJson(e);
  const changes = o.step.changes.length ? `,"changes":${JSON.stringify(o.step.changes)}` : '';
  return `${base.slice(0, -1)},"packet":${o.packet.id}${changes}}`;
}

export function jsonLine(line: TraceLine): string {
  return JSON.stringify(line);
}
