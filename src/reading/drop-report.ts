/**
 * A drop caught by `--on-drop`: the dropped packet's whole path and the last
 * packet of the same flow that got through, compared as `diff` compares two
 * packets. The helper keeps the flows and picks the two (helper/on_drop.c);
 * this file turns what it sent into the report that is printed, written as
 * one JSON line (`type: "drop"`), and read back by `show` and `diff`.
 */
import type { ReportedPath, TraceDropReport, TraceEvent } from '../record/event';
import { diffPackets, type PathDiff } from './diff';
import { type Packet, PacketTracker } from './packet-tracker';
import { isLoss, type Verdict, verdictOf } from './verdicts';

export type DropFlow = NonNullable<TraceDropReport['flow']>;
export type DropReportLine = TraceDropReport;

/** A report's two packets and their comparison. */
export interface CaughtDrop {
  line: DropReportLine;
  /** The dropped packet's verdict (the line's, as this client reads it). */
  verdict: Verdict;
  bad: Packet;
  good?: Packet;
  diff?: PathDiff;
}

const PROTO_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

export function protoName(l4: number): string {
  return PROTO_NAMES[l4] ?? String(l4);
}

/** A packet's steps as a report holds them, and its number in the trace. */
export interface ReportedSteps {
  events: TraceEvent[];
  id: number;
}

const byTime = (a: TraceEvent, b: TraceEvent) => {
  const d = BigInt(a.ts) - BigInt(b.ts);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
};

/**
 * The packet a list of steps is. The helper grouped them as one packet by the
 * rules the tracker applies too; should the tracker still split them, the part
 * with the drop (or the longest) is the packet. Its copies' steps, when the
 * report has them, go through the same tracker in time order, so that they are
 * linked to it (src/reading/copies.ts) and its verdict reads them.
 */
export function packetOf(events: TraceEvent[], id: number, copies: ReportedSteps[] = []): Packet | undefined {
  const tracker = new PacketTracker();
  const all = copies.length ? [...events, ...copies.flatMap((c) => c.events)].sort(byTime) : events;
  for (const e of all) tracker.observe(e);
  const own = new Set(events);
  const packets = tracker.packets();
  const mine = packets.filter((p) => p.steps.some((s) => own.has(s.event)));
  const pick =
    mine.find((p) => p.steps.some((s) => s.event.drop && own.has(s.event))) ??
    mine.reduce<Packet | undefined>((a, b) => (!a || b.steps.length > a.steps.length ? b : a), undefined);
  for (const c of copies) {
    const first = c.events[0];
    const p = first && packets.find((x) => x !== pick && x.steps.some((s) => s.event === first));
    if (p) p.id = c.id;
  }
  if (pick) pick.id = id;
  return pick;
}

/**
 * Whether a drop is a failure worth reporting: a real loss by the verdict
 * rules (src/reading/verdicts.ts, drop-rules.ts), what --fail-on-drop counts.
 */
export function isFailure(bad: Packet): boolean {
  return isLoss(verdictOf(bad));
}

function aloneSentence(v: Verdict, flow: DropFlow | undefined): string {
  const where = v.kind === 'dropped' ? ` at ${v.func} (${v.reason})` : '';
  return flow
    ? `Dropped${where}; no earlier packet of this flow got through while it was watched, so there is nothing to compare it with.`
    : `Dropped${where}; the packet showed no IP header, so it belongs to no flow and is shown alone.`;
}

/** The report of a drop: bad and good steps as the helper sent them, compared. */
export function buildReport(
  input: {
    n: number;
    node?: string;
    flow?: DropFlow;
    bad: ReportedPath;
    badPacket: number;
    good?: ReportedPath & { ended: string };
    goodPacket?: number;
    copies?: (ReportedPath & { ended: string })[];
    forgotten: { flows: number; packets: number; steps: number };
  },
  bad: Packet,
  good: Packet | undefined,
): CaughtDrop {
  const verdict = verdictOf(bad);
  const diff = good ? diffPackets(good, bad) : undefined;
  const dropStep = bad.steps.find((s) => s.event.drop) ?? bad.steps[bad.steps.length - 1];
  const line: TraceDropReport = {
    type: 'drop',
    v: 1,
    n: input.n,
    time: dropStep?.event.time ?? '',
    ...(input.node !== undefined ? { node: input.node } : {}),
    ...(input.flow ? { flow: input.flow } : {}),
    bad: input.bad,
    ...(input.good ? { good: input.good } : {}),
    ...(input.copies?.length ? { copies: input.copies } : {}),
    verdict,
    sentence: diff ? diff.sentence : aloneSentence(verdict, input.flow),
    forgotten: input.forgotten,
  };
  return { line, verdict, bad, good, diff };
}

/** A report read back from a saved line (`show`, `diff`): its packets rebuilt, compared again. */
export function caughtDropOf(line: DropReportLine): CaughtDrop | undefined {
  // The copies' numbers are not kept in the line: after the two packets'.
  const copies = (line.copies ?? []).map((c, i) => ({ events: c.events, id: 3 + i }));
  const bad = packetOf(line.bad.events, 2, copies);
  if (!bad) return undefined;
  const good = line.good ? packetOf(line.good.events, 1) : undefined;
  return { line, verdict: verdictOf(bad), bad, good, diff: good ? diffPackets(good, bad) : undefined };
}

/** Checks a saved report line's shape (its events with eventProblem); returns what is wrong, or undefined. */
export function checkDropLine(
  o: Record<string, unknown>,
  eventProblem: (e: Record<string, unknown>) => string | undefined,
): string | undefined {
  if (typeof o.n !== 'number') return '"n" should be a number';
  if (typeof o.sentence !== 'string') return '"sentence" should be a string';
  if (o.copies !== undefined && !Array.isArray(o.copies)) return '"copies" should be an array';
  const copies = ((o.copies as unknown[] | undefined) ?? []).map((c, k) => [`copies[${k}]`, c] as const);
  const paths = [['bad', o.bad] as const, ['good', o.good] as const, ...copies];
  for (const [side, path] of paths) {
    if (path === undefined && side === 'good') continue;
    const p = path as Record<string, unknown> | undefined;
    if (!p || typeof p !== 'object' || !Array.isArray(p.events)) return `"${side}.events" should be an array`;
    for (const [i, e] of (p.events as unknown[]).entries()) {
      const problem =
        e && typeof e === 'object' && !Array.isArray(e)
          ? eventProblem(e as Record<string, unknown>)
          : 'should be an object';
      if (problem) return `"${side}.events[${i}]": ${problem}`;
    }
  }
  return undefined;
}
