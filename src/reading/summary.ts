/**
 * What a trace amounts to: one row per packet (or per flow, when there are
 * many) with its path's ends and its verdict, plus counts per drop reason and
 * per function. The same data feeds the tables (src/output/summary-view.ts)
 * and the `-o json --summary` object.
 */
import {
  type CulpritRule,
  TRACE_SCHEMA_VERSION,
  type TraceDigest,
  type TraceEvent,
  type TraceStats,
  type Tuple,
} from '../record/event';
import { classifyChanges, describeChanges } from './changes';
import {
  type CulpritBook,
  describeCulprit,
  describeProgRun,
  type PacketSpan,
  type ProgRunBook,
  progRunPhrase,
  spanOf,
  tsBefore,
} from './culprits';
import { explainDropReason } from './drop-reasons';
import { noFailureByPlace } from './drop-rules';
import { baseFunc } from './kernel-functions';
import type { Packet, Step } from './packet-tracker';
import { flowText, formatTuple } from './tuple-format';
import { describeVerdict, verdictLabel } from './verdict-words';
import { type Verdict, verdictOf } from './verdicts';

export interface PacketRow {
  id: number;
  node?: string;
  skb: string;
  flow: string;
  /** The first tuple with TCP flags, for display. */
  tuple: string;
  /** The tuple at the last step, when NAT or encapsulation changed it. */
  finalTuple?: string;
  first: string;
  last: string;
  steps: number;
  verdict: Verdict;
  /** Short label for tables. */
  label: string;
  /** The verdict as a sentence. */
  text: string;
  /** Every change along the way: "nf_nat_ipv4_out: SNAT src 10.244.0.5 → 192.168.50.1". */
  changes: string[];
  /** Who dropped it (src/reading/culprits.ts), when the helper said. */
  culprit?: { method: string; text: string; rule?: CulpritRule };
  /** The tc and XDP programs that handled it, where programs could be traced: "handled by BPF program … : TC_ACT_OK". */
  programs?: string[];
  /** It began as that packet, which veth copied into an XDP program's buffer (that row's verdict: `continued`). */
  continues?: number;
}

export interface FlowRow {
  flow: string;
  node?: string;
  packets: number;
  first: string;
  last: string;
  /** Verdict labels and how many packets of the flow got each. */
  verdicts: Record<string, number>;
}

export interface ReasonCount {
  reason: string;
  count: number;
  text: string;
  known: boolean;
  /** Where the kernel dropped packets for this reason, with counts. */
  at: Record<string, number>;
}

export interface TraceSummary {
  type: 'summary';
  v: number;
  /** The first SUMMARY_LIMITS.packetRows packets' rows, by number. */
  packets: PacketRow[];
  /** Every packet of the trace (packets[] may hold only the first of them). */
  packetCount: number;
  flows: FlowRow[];
  dropReasons: ReasonCount[];
  functions: { func: string; count: number }[];
  verdicts: Record<Verdict['kind'], number>;
  /** Of verdicts.dropped, the drops on normal paths: not failures (src/reading/drop-rules.ts). */
  normalDrops?: number;
  events: number;
  lost: number;
  /** Events after the stop (past --max-events, or while detaching): read, not shown, not lost. */
  discarded?: number;
  /** --max-rate: events the kernel program skipped. */
  skipped?: number;
}

export function packetRow(p: Packet): PacketRow {
  const verdict = verdictOf(p);
  const first = p.steps[0].event;
  const lastStep = p.steps[p.steps.length - 1].event;
  let lastTuple: Tuple | undefined;
  for (let i = p.steps.length - 1; i >= 0 && !lastTuple; i--) lastTuple = p.steps[i].event.tuple;
  const flow = flowText(p.tuple);
  const row: PacketRow = {
    id: p.id,
    skb: p.skb,
    flow,
    tuple: formatTuple(p.tuple),
    first: baseFunc(first.func),
    last: lastStep.drop ? `${baseFunc(lastStep.func)}(${lastStep.drop.reason})` : baseFunc(lastStep.func),
    steps: p.steps.length,
    verdict,
    label: verdictLabel(verdict),
    text: describeVerdict(verdict),
    changes: [],
  };
  if (p.node !== undefined) row.node = p.node;
  if (lastTuple && p.tuple) {
    const { tcpFlags: _a, ...a } = p.tuple;
    const { tcpFlags: _b, ...b } = lastTuple;
    const fin = formatTuple(b);
    if (fin !== formatTuple(a)) row.finalTuple = fin;
  }
  let before = p.tuple;
  for (const s of p.steps) {
    if (s.changes.length) {
      const kinds = classifyChanges(s.changes, before, s.event.tuple);
      const addressy = kinds.filter((k) => k === 'SNAT' || k === 'DNAT' || k === 'encap' || k === 'decap');
      if (addressy.length || s.changes.some((c) => c.field === 'mark'))
        row.changes.push(`${baseFunc(s.event.func)}: ${describeChanges(s.changes)}`);
    }
    if (s.event.tuple) before = s.event.tuple;
  }
  return row;
}

/**
 * How much of a trace the summary keeps, whatever its size: the rows of the
 * first packets (a table shows 40 at most; `-o json --summary` lists these),
 * and flows up to a number past which the rest are one row. Everything else
 * is counted as it goes. `show` of any file stays within its memory bound
 * with these (docs/reading-traces.md).
 */
export const SUMMARY_LIMITS = { packetRows: 10_000, flows: 10_000 };

/** The row that stands for every flow past SUMMARY_LIMITS.flows. */
export const OTHER_FLOWS = '(other flows)';

/** verdictFirst: each verdict's first packet, so that outcomes list alike whatever order packets finish in. */
type FlowTally = FlowRow & { firstId: number; verdictFirst: Map<string, number> };
type ReasonTally = ReasonCount & { firstId: number };

/**
 * Builds a summary as a trace goes, so that a long trace need not keep every
 * step of every packet: a finished packet is reduced to its row at once, and
 * its row to counts (verdicts, flows, drop reasons); only the first rows are
 * kept.
 */
export class SummaryBuilder {
  private readonly rows: PacketRow[] = [];
  /** The drop event of each dropped packet's row: its culprit may come after the row is made. */
  private readonly drops = new WeakMap<PacketRow, TraceEvent>();
  /** Where each kept row's packet was: its program runs may come after the row is made. */
  private readonly spans = new WeakMap<PacketRow, PacketSpan>();
  /** The flow tally and verdict group each kept row was counted in (a row that continues is counted again). */
  private readonly counted = new WeakMap<PacketRow, { flow: string; group: string; count: number }>();
  private readonly funcs = new Map<string, number>();
  private readonly flows = new Map<string, FlowTally>();
  private readonly reasons = new Map<string, ReasonTally>();
  private readonly verdicts: Record<Verdict['kind'], number> = {
    dropped: 0,
    delivered: 0,
    sent: 0,
    consumed: 0,
    continued: 0,
    'in-flight': 0,
  };
  private packets = 0;
  private events = 0;
  private normalDrops = 0;

  constructor(private readonly limits = SUMMARY_LIMITS) {}

  /** A step; count: of as many packets of one shape (--emit text|wide, helper/packet_book.c). */
  step(s: Step, count = 1): void {
    this.events += count;
    // Counted by the probe's own name (one lookup per event), by function at the end.
    const fn = s.event.func;
    this.funcs.set(fn, (this.funcs.get(fn) ?? 0) + count);
  }

  /** A packet whose path is complete (freed), or every packet at the end; count: as many of its shape. */
  packet(p: Packet, count = 1): PacketRow {
    const row = this.row(p);
    this.tally(row, p, count);
    return row;
  }

  private row(p: Packet): PacketRow {
    const row = packetRow(p);
    const drop = row.verdict.kind === 'dropped' ? p.steps[row.verdict.step]?.event : undefined;
    if (drop) this.drops.set(row, drop);
    return row;
  }

  private tally(row: PacketRow, p: Packet, count = 1): void {
    this.packets += count;
    if (this.rows.length < this.limits.packetRows) {
      this.rows.push(row);
      this.spans.set(row, spanOf(p));
    }
    this.verdicts[row.verdict.kind] += count;
    if (row.verdict.kind === 'dropped' && row.verdict.noFailure) this.normalDrops += count;
    let key = `${row.node ?? ''}\u0000${row.flow}`;
    if (!this.flows.has(key) && this.flows.size >= this.limits.flows) key = OTHER_FLOWS;
    let f = this.flows.get(key);
    if (!f) {
      const flow = key === OTHER_FLOWS ? OTHER_FLOWS : row.flow;
      f = {
        flow,
        packets: 0,
        first: row.first,
        last: row.last,
        verdicts: {},
        firstId: row.id,
        verdictFirst: new Map(),
      };
      if (row.node !== undefined && key !== OTHER_FLOWS) f.node = row.node;
      this.flows.set(key, f);
    } else if (row.id < f.firstId) {
      // A flow is shown by its first packet's path, whatever order packets finish in.
      f.first = row.first;
      f.last = row.last;
      f.firstId = row.id;
    }
    f.packets += count;
    // Grouped by what happened, not by which packet: "replaced by a copy", not "… #17".
    const group =
      row.verdict.kind === 'consumed' && row.verdict.replacedBy ? 'replaced by a copy' : row.label;
    f.verdicts[group] = (f.verdicts[group] ?? 0) + count;
    if (this.rows.at(-1) === row) this.counted.set(row, { flow: key, group, count });
    f.verdictFirst.set(group, Math.min(f.verdictFirst.get(group) ?? row.id, row.id));
    if (row.verdict.kind === 'dropped') {
      const name = row.verdict.reason;
      let r = this.reasons.get(name);
      if (!r) {
        const info = explainDropReason(name);
        r = { reason: name, count: 0, text: info.text, known: info.known, at: {}, firstId: row.id };
        this.reasons.set(name, r);
      }
      r.firstId = Math.min(r.firstId, row.id);
      r.count += count;
      r.at[row.verdict.func] = (r.at[row.verdict.func] ?? 0) + count;
    }
  }

  /**
   * Native XDP on veth: a program's run on the skb veth built from a sent one
   * names that skb and its data buffer (`from`; the kernel copied it there
   * and consumed it). The sent packet's row then continues as the new one's:
   * not an end, and not a packet of its own in the counts (one datagram is
   * one packet). Only between kept rows, and only when the row at `from` had
   * that skb and buffer before the run and the row at the run's skb holds the
   * run: nothing is linked by guess.
   */
  private linkContinuations(rows: PacketRow[], progs: ProgRunBook): void {
    const bySkb = new Map<string, PacketRow[]>();
    for (const row of rows) {
      const span = this.spans.get(row);
      for (const skb of span?.skbs ?? []) {
        const k = `${row.node ?? ''}\u0000${skb}`;
        const list = bySkb.get(k);
        if (list) list.push(row);
        else bySkb.set(k, [row]);
      }
    }
    for (const run of progs.continuations()) {
      if (!run.from) continue;
      const at = (skb: string) => bySkb.get(`${run.node ?? ''}\u0000${skb}`) ?? [];
      const head = run.from.head;
      // Its run is between its first and last steps (at the first, with a tie).
      const into = at(run.skb).find((r) => {
        const span = this.spans.get(r);
        return span && tsBefore(span.first, run.ts) && tsBefore(run.ts, span.last);
      });
      // The last packet at that skb and buffer that ended before the run.
      const from = at(run.from.skb)
        .filter((r) => {
          const span = this.spans.get(r);
          return span?.heads?.has(head) && !tsBefore(run.ts, span.last);
        })
        .at(-1);
      if (!into || !from || from === into || this.counted.get(from)?.count !== 1) continue;
      if (from.verdict.kind === 'dropped' || from.verdict.kind === 'continued') continue;
      this.uncount(from);
      const step = from.steps - 1;
      from.verdict = {
        kind: 'continued',
        func: from.last,
        step,
        as: into.id,
        skb: run.skb,
        run: progRunPhrase(run),
      };
      from.label = verdictLabel(from.verdict);
      from.text = describeVerdict(from.verdict);
      into.continues = from.id;
      into.text = `${into.text}; it began as packet #${from.id} (skb ${from.skb})`;
    }
  }

  /** A row that continues as another: counted as that one, not as a packet of its own. */
  private uncount(row: PacketRow): void {
    const c = this.counted.get(row);
    if (!c) return;
    this.counted.delete(row);
    this.packets -= c.count;
    this.verdicts[row.verdict.kind] -= c.count;
    this.verdicts.continued += c.count;
    const f = this.flows.get(c.flow);
    if (!f) return;
    f.packets -= c.count;
    const left = (f.verdicts[c.group] ?? 0) - c.count;
    if (left > 0) f.verdicts[c.group] = left;
    else {
      delete f.verdicts[c.group];
      f.verdictFirst.delete(c.group);
    }
    if (f.packets <= 0) this.flows.delete(c.flow);
  }

  /** Steps per function, most first (probe names that differ only in a suffix count as one function). */
  private functionCounts(): { func: string; count: number }[] {
    const byFunc = new Map<string, number>();
    for (const [name, count] of this.funcs) {
      const func = baseFunc(name);
      byFunc.set(func, (byFunc.get(func) ?? 0) + count);
    }
    return [...byFunc.entries()].map(([func, count]) => ({ func, count })).sort((a, b) => b.count - a.count);
  }

  /** The summary, with the packets still open when the trace ended. */
  build(open: Packet[], stats: TraceStats[] = [], culprits?: CulpritBook, progs?: ProgRunBook): TraceSummary {
    for (const p of open) this.tally(this.row(p), p);
    const rows = [...this.rows].sort((a, b) => a.id - b.id);
    if (progs) this.linkContinuations(rows, progs);
    for (const row of rows) {
      const span = this.spans.get(row);
      const runs = span && progs ? progs.of(span) : [];
      if (runs.length && !row.programs) row.programs = runs.map(describeProgRun);
      const c = culprits?.of(this.drops.get(row));
      if (!c || row.culprit) continue;
      row.culprit = { method: c.method, text: describeCulprit(c), ...(c.rule ? { rule: c.rule } : {}) };
      row.text = `${row.text}; ${row.culprit.text}`;
    }
    const byFirst = <T extends { firstId: number }>(a: T, b: T) => a.firstId - b.firstId;
    const { lost, discarded } = lostEvents(stats);
    return {
      type: 'summary',
      v: TRACE_SCHEMA_VERSION,
      packets: rows,
      packetCount: this.packets,
      flows: [...this.flows.values()].sort(byFirst).map(({ firstId: _, verdictFirst, ...f }) => {
        // Outcomes in order of their first packet (the table then sorts them by count, ties kept so).
        const order = [...verdictFirst.entries()].sort((a, b) => a[1] - b[1]);
        return { ...f, verdicts: Object.fromEntries(order.map(([v]) => [v, f.verdicts[v]])) };
      }),
      dropReasons: [...this.reasons.values()]
        .sort((a, b) => b.count - a.count || a.firstId - b.firstId)
        .map(({ firstId: _, ...r }) => r),
      functions: this.functionCounts(),
      verdicts: { ...this.verdicts },
      ...(this.normalDrops ? { normalDrops: this.normalDrops } : {}),
      events: this.events,
      lost,
      ...(discarded ? { discarded } : {}),
      ...skippedEvents(stats),
    };
  }
}

/** --max-rate: events the kernel program skipped, per node from its last stats line (absent without the cap). */
function skippedEvents(stats: TraceStats[]): { skipped?: number } {
  const lastByNode = new Map<string, TraceStats>();
  for (const s of stats) lastByNode.set(s.node ?? '', s);
  const capped = [...lastByNode.values()].filter((s) => s.skipped !== undefined);
  return capped.length ? { skipped: capped.reduce((n, s) => n + (s.skipped ?? 0), 0) } : {};
}

/** Per node, the last stats line is the final word on lost and discarded events. */
function lostEvents(stats: TraceStats[]): { lost: number; discarded: number } {
  const lastByNode = new Map<string, TraceStats>();
  for (const s of stats) lastByNode.set(s.node ?? '', s);
  let lost = 0;
  let discarded = 0;
  for (const s of lastByNode.values()) {
    lost += s.lost;
    discarded += s.discarded ?? 0;
  }
  return { lost, discarded };
}

/**
 * What the helper's counts say when it wrote the JSON lines itself: packets,
 * drops by reason and place, events. Each packet's path and verdict are in
 * the lines (`show --summary FILE` reads them back).
 */
export interface DigestSummary {
  packets: number;
  dropped: number;
  /** Of dropped, the drops on normal paths by their reason and place (src/reading/drop-rules.ts). */
  normalDrops?: number;
  dropReasons: ReasonCount[];
  events: number;
  lost: number;
  /** Events after the stop (past --max-events, or while detaching): read, not shown, not lost. */
  discarded?: number;
  /** --max-rate: events the kernel program skipped. */
  skipped?: number;
}

export function summarizeDigest(d: TraceDigest, stats: TraceStats[] = []): DigestSummary {
  const reasons = new Map<string, ReasonCount>();
  let dropped = 0;
  let normal = 0;
  for (const drop of d.drops) {
    dropped += drop.count;
    if (noFailureByPlace(drop.reason, drop.at) !== undefined) normal += drop.count;
    let r = reasons.get(drop.reason);
    if (!r) {
      const info = explainDropReason(drop.reason);
      r = { reason: drop.reason, count: 0, text: info.text, known: info.known, at: {} };
      reasons.set(drop.reason, r);
    }
    r.count += drop.count;
    const at = baseFunc(drop.at);
    r.at[at] = (r.at[at] ?? 0) + drop.count;
  }
  return {
    packets: d.packets,
    dropped,
    ...(normal ? { normalDrops: normal } : {}),
    dropReasons: [...reasons.values()].sort((a, b) => b.count - a.count),
    events: d.events,
    ...lostEvents(stats),
    ...skippedEvents(stats),
  };
}

export function summarize(packets: Packet[], stats: TraceStats[] = []): TraceSummary {
  const b = new SummaryBuilder();
  for (const p of packets) {
    for (const s of p.steps) b.step(s);
    b.packet(p);
  }
  return b.build([], stats);
}

/** "3 packets: 2 delivered, 1 dropped. 41 events, 0 lost." */
export function totalsLine(s: TraceSummary | DigestSummary): string {
  const n = 'packetCount' in s ? s.packetCount : s.packets;
  const counts: [string, number][] =
    'verdicts' in s ? Object.entries(s.verdicts) : [['dropped', (s as DigestSummary).dropped]];
  const normal = 'normalDrops' in s ? (s.normalDrops ?? 0) : 0;
  const parts = counts
    .flatMap(([k, c]): [string, number][] =>
      k === 'dropped' && normal
        ? [
            [k, c - normal],
            ['freed on normal paths (not failures)', normal],
          ]
        : [[k, c]],
    )
    .filter(([k, c]) => c > 0 && k !== 'continued')
    .map(([k, c]) => `${c} ${k === 'consumed' ? 'freed' : k}`);
  const continued = 'verdicts' in s ? s.verdicts.continued : 0;
  if (continued) parts.push(`${continued} of them began as another skb (veth's copy for its XDP program)`);
  const lost =
    s.lost > 0
      ? `, ${s.lost} LOST (ring buffer full, or not delivered before the stop: some packets' paths are incomplete)`
      : ', 0 lost';
  const discarded = s.discarded ? `, ${s.discarded} after the stop not shown` : '';
  const skipped = s.skipped
    ? `, ${s.skipped} skipped (over --max-rate: some packets' paths are incomplete)`
    : '';
  return `${n} packet${n === 1 ? '' : 's'}${parts.length ? `: ${parts.join(', ')}` : ''}. ${s.events} events${lost}${discarded}${skipped}.`;
}
