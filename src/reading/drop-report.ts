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

/**
 * The packet a list of steps is. The helper grouped them as one packet by the
 * rules the tracker applies too; should the tracker still split them, the part
 * with the drop (or the longest) is the packet.
 */
export function packetOf(events: TraceEvent[], id: number): Packet | undefined {
  const tracker = new PacketTracker();
  for (const e of events) tracker.observe(e);
  const all = tracker.packets();
  const pick =
    all.find((p) => p.steps.some((s) => s.event.drop)) ??
    all.reduce<Packet | undefined>((a, b) => (!a || b.steps.length > a.steps.length ? b : a), undefined);
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
    verdict,
    sentence: diff ? diff.sentence : aloneSentence(verdict, input.flow),
    forgotten: input.forgotten,
  };
  return { line, verdict, bad, good, diff };
}

/** A report read back from a saved line (`show`, `diff`): its packets rebuilt, compared again. */
export function caughtDropOf(line: DropReportLine): CaughtDrop | undefined {
  const bad = packetOf(line.bad.events, 2);
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
  for (const side of ['bad', 'good'] as const) {
    const path = o[side] as Record<string, unknown> | undefined;
    if (path === undefined && side === 'good') continue;
    if (!path || typeof path !== 'object' || !Array.isArray(path.events))
      return `"${side}.events" should be an array`;
    for (const [i, e] of (path.events as unknown[]).entries()) {
      const problem =
        e && typeof e === 'object' && !Array.isArray(e)
          ? eventProblem(e as Record<string, unknown>)
          : 'should be an object';
      if (problem) return `"${side}.events[${i}]": ${problem}`;
    }
  }
  return undefined;
}
