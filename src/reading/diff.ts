/**
 * Lines up the path of a working packet against a failing one and says where
 * and how they part ways. Steps are aligned by function (a longest common
 * subsequence, as diff(1) does with lines); steps both packets pass are then
 * compared on what changed there (NAT source or destination, device, mark),
 * because the story this tool exists for is exactly that: same path, but
 * masquerade picked another source address, and the reverse-path filter
 * dropped the packet two hops later.
 */

import type { Tuple } from '../record/event';
import { type Change, describeChanges } from './changes';
import { type CulpritBook, culpritPhrase, type ProgRunBook, progRunPhrase, spanOf } from './culprits';
import { droppedBy, explainDropReason } from './drop-reasons';
import { baseFunc } from './kernel-functions';
import type { Packet, Step } from './packet-tracker';
import { describeVerdict } from './verdict-words';
import { isLoss, type Verdict, verdictOf } from './verdicts';

export type RowKind = 'same' | 'differs' | 'good-only' | 'bad-only' | 'replaced';

export interface DiffRow {
  kind: RowKind;
  good?: Step;
  bad?: Step;
}

export interface PathDiff {
  good: Packet;
  bad: Packet;
  goodVerdict: Verdict;
  badVerdict: Verdict;
  rows: DiffRow[];
  /** Index in rows of the first row that is not 'same'; -1 when the paths agree. */
  divergence: number;
  /** The difference in one sentence. */
  sentence: string;
  /** Who dropped each, when the traces say (src/reading/culprits.ts): "`-A … -j DROP` in filter/FORWARD". */
  goodCulprit?: string;
  badCulprit?: string;
  /** The tc and XDP programs that handled each, where they could be traced: "out (id 12) at tc egress of veth1:2: TC_ACT_OK". */
  goodPrograms?: string[];
  badPrograms?: string[];
}

/** What identifies a step for alignment: the function, whether it dropped, and in a flow, the direction. */
export function stepKey(s: Step): string {
  const f = baseFunc(s.event.func);
  const key = s.event.drop ? `${f}(drop:${s.event.drop.reason})` : f;
  return s.reply ? `reply:${key}` : key;
}

/**
 * Longest-common-subsequence alignment of two key sequences. Returns pairs of
 * indices; -1 on one side marks a step only the other path has.
 */
export function align(a: string[], b: string[]): [number, number][] {
  const n = a.length;
  const m = b.length;
  // lcs[i][j] = LCS length of a[i..] and b[j..]
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out: [number, number][] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push([i++, j++]);
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      out.push([i++, -1]);
    } else {
      out.push([-1, j++]);
    }
  }
  while (i < n) out.push([i++, -1]);
  while (j < m) out.push([-1, j++]);
  return out;
}

/**
 * Changes that matter when comparing two packets at the same step: which
 * fields were rewritten, and for addresses, devices and marks, to what.
 * Port numbers and namespace inodes legitimately differ between two
 * recordings, so only their presence counts.
 */
function changeSignature(changes: Change[]): string {
  return changes
    .map((c) =>
      c.field === 'sport' || c.field === 'dport' || c.field === 'netns' ? c.field : `${c.field}=${c.to}`,
    )
    .sort()
    .join(' ');
}

/** Pairs runs of one-sided rows so that side-by-side output reads as "this instead of that". */
function pairRuns(rows: DiffRow[]): DiffRow[] {
  const out: DiffRow[] = [];
  let i = 0;
  while (i < rows.length) {
    if (rows[i].kind !== 'good-only' && rows[i].kind !== 'bad-only') {
      out.push(rows[i++]);
      continue;
    }
    const goods: Step[] = [];
    const bads: Step[] = [];
    while (i < rows.length && (rows[i].kind === 'good-only' || rows[i].kind === 'bad-only')) {
      const r = rows[i++];
      if (r.good) goods.push(r.good);
      if (r.bad) bads.push(r.bad);
    }
    const n = Math.max(goods.length, bads.length);
    for (let k = 0; k < n; k++) {
      const g = goods[k];
      const b = bads[k];
      if (g && b) out.push({ kind: 'replaced', good: g, bad: b });
      else if (g) out.push({ kind: 'good-only', good: g });
      else out.push({ kind: 'bad-only', bad: b });
    }
  }
  return out;
}

const FIELD_WORDS: Record<string, string> = {
  src: 'source',
  dst: 'destination',
  iface: 'device',
  mark: 'mark',
  proto: 'protocol',
  l3proto: 'protocol',
};

/** "has source 192.168.50.1 instead of 10.0.0.1" for the first field that differs. */
function explainChangeDifference(good: Change[], bad: Change[]): string {
  for (const field of ['src', 'dst', 'proto', 'l3proto', 'iface', 'mark'] as const) {
    const g = good.find((c) => c.field === field);
    const b = bad.find((c) => c.field === field);
    const word = FIELD_WORDS[field];
    if (g && b && g.to !== b.to) return `leaves with ${word} ${b.to} instead of ${g.to}`;
    if (b && !g) return `is rewritten to ${word} ${b.to} where the working one is not`;
    if (g && !b) return `keeps ${word} ${g.from} where the working one gets ${g.to}`;
  }
  const gd = describeChanges(good) || 'no rewrite';
  const bd = describeChanges(bad) || 'no rewrite';
  return `shows ${bd} where the working one shows ${gd}`;
}

function verdictPhrase(v: Verdict, culprit?: string): string {
  if (v.kind === 'dropped' && culprit) return `is dropped by ${culprit} at ${v.func} (${v.reason})`;
  if (v.kind === 'dropped' && explainDropReason(v.reason).by)
    return `is dropped by ${droppedBy(v.reason)} at ${v.func} (${v.reason})`;
  return `is ${describeVerdict(v)}`;
}

function sentenceFor(d: Omit<PathDiff, 'sentence'>): string {
  return pathSentence(d) + programsDiffer(d);
}

function pathSentence(d: Omit<PathDiff, 'sentence'>): string {
  const { rows, divergence, goodVerdict: gv, badVerdict: bv } = d;
  const goodEnd = verdictPhrase(gv, d.goodCulprit);
  const badEnd = verdictPhrase(bv, d.badCulprit);
  const fn = (s?: Step) => (s ? baseFunc(s.event.func) : '');
  if (divergence < 0) {
    const same = gv.kind === bv.kind;
    return same
      ? `Both packets take the same ${rows.length}-step path and both ${goodEnd.replace(/^is /, 'are ')}.`
      : `Both packets take the same path, but the working one ${goodEnd} and the failing one ${badEnd}.`;
  }
  const lastSame = [...rows.slice(0, divergence)]
    .reverse()
    .find((r) => r.kind === 'same' || r.kind === 'differs');
  const row = rows[divergence];
  let what: string;
  let lead: string;
  if (row.kind === 'differs' && row.good && row.bad) {
    lead = `both pass ${fn(row.good)}`;
    what = `the failing one ${explainChangeDifference(row.good.changes, row.bad.changes)}`;
  } else {
    lead = lastSame ? `both pass ${fn(lastSame.good)}` : 'the paths differ from the first step';
    if (row.kind === 'replaced')
      what = `then the failing one goes to ${fn(row.bad)} instead of ${fn(row.good)}`;
    else if (row.kind === 'bad-only') what = `then the failing one also passes ${fn(row.bad)}`;
    else {
      const badGoesOn = rows.slice(divergence).some((r) => r.bad);
      what = badGoesOn
        ? `then the failing one skips ${fn(row.good)}`
        : `then the failing one stops where the working one goes on to ${fn(row.good)}`;
    }
  }
  const verdictsDiffer =
    gv.kind !== bv.kind || (gv.kind === 'dropped' && bv.kind === 'dropped' && gv.reason !== bv.reason);
  const end = verdictsDiffer ? ` and ${badEnd}` : `; both ${goodEnd.replace(/^is /, 'are ')}`;
  const s = `${lead}; ${what}${end}.`;
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** When the programs that handled them differ: " The failing one was handled by …; the working one by …." */
function programsDiffer(d: Omit<PathDiff, 'sentence'>): string {
  const g = d.goodPrograms ?? [];
  const b = d.badPrograms ?? [];
  if (g.join('\n') === b.join('\n')) return '';
  const list = (l: string[]) => (l.length ? l.join('; ') : 'no traced program');
  return ` The failing one was handled by ${list(b)}; the working one by ${list(g)}.`;
}

/** The culprit of a packet's drop, in the words of a sentence. */
function culpritOf(p: Packet, v: Verdict, book?: CulpritBook): string | undefined {
  return v.kind === 'dropped' ? culpritPhrase(book?.of(p.steps[v.step]?.event)) : undefined;
}

export function diffPackets(
  good: Packet,
  bad: Packet,
  culprits: { good?: CulpritBook; bad?: CulpritBook } = {},
  progs: { good?: ProgRunBook; bad?: ProgRunBook } = {},
): PathDiff {
  const pairs = align(good.steps.map(stepKey), bad.steps.map(stepKey));
  const raw: DiffRow[] = pairs.map(([i, j]) => {
    const g = i >= 0 ? good.steps[i] : undefined;
    const b = j >= 0 ? bad.steps[j] : undefined;
    if (g && b) {
      const same = changeSignature(g.changes) === changeSignature(b.changes);
      return { kind: same ? 'same' : 'differs', good: g, bad: b };
    }
    return g ? { kind: 'good-only', good: g } : { kind: 'bad-only', bad: b };
  });
  const rows = pairRuns(raw);
  const divergence = rows.findIndex((r) => r.kind !== 'same');
  const goodVerdict = verdictOf(good);
  const badVerdict = verdictOf(bad);
  const goodCulprit = culpritOf(good, goodVerdict, culprits.good);
  const badCulprit = culpritOf(bad, badVerdict, culprits.bad);
  const goodPrograms = progs.good?.of(spanOf(good)).map(progRunPhrase);
  const badPrograms = progs.bad?.of(spanOf(bad)).map(progRunPhrase);
  const partial = {
    good,
    bad,
    goodVerdict,
    badVerdict,
    rows,
    divergence,
    ...(goodCulprit ? { goodCulprit } : {}),
    ...(badCulprit ? { badCulprit } : {}),
    ...(goodPrograms?.length ? { goodPrograms } : {}),
    ...(badPrograms?.length ? { badPrograms } : {}),
  };
  return { ...partial, sentence: sentenceFor(partial) };
}

/**
 * Which packet a diff compares, offered one packet at a time (so that `diff`
 * can stream a file past it): number n when given; else from a working trace,
 * of those not lost, the one with the longest path (the first of equals), so
 * that a lone free of an earlier packet at the start of a trace is not taken
 * for the flow; from a failing trace, the first one lost. Failing that, the
 * first packet.
 */
export class PacketPick {
  private chosen?: Packet;
  private first?: Packet;

  constructor(
    private readonly side: 'good' | 'bad',
    private readonly n?: number,
  ) {}

  offer(p: Packet): void {
    if (!this.first || p.id < this.first.id) this.first = p;
    if (this.better(p, this.chosen)) this.chosen = p;
  }

  private better(p: Packet, than: Packet | undefined): boolean {
    if (this.n !== undefined) return p.id === this.n;
    const lost = isLoss(verdictOf(p));
    if (this.side === 'bad') return lost && (!than || p.id < than.id);
    if (lost) return false;
    return (
      !than || p.steps.length > than.steps.length || (p.steps.length === than.steps.length && p.id < than.id)
    );
  }

  /** The packet chosen; with n, undefined when there is no packet n. */
  get packet(): Packet | undefined {
    return this.n !== undefined ? this.chosen : (this.chosen ?? this.first);
  }
}

function pick(side: 'good' | 'bad', packets: Packet[]): Packet | undefined {
  const k = new PacketPick(side);
  for (const p of packets) k.offer(p);
  return k.packet;
}

/** The packet to compare from a working trace (PacketPick's rule). */
export function pickGood(packets: Packet[]): Packet | undefined {
  return pick('good', packets);
}

/** The packet to compare from a failing trace: the first one lost. */
export function pickBad(packets: Packet[]): Packet | undefined {
  return pick('bad', packets);
}

function endpoints(t: Tuple): string {
  return `${t.proto} ${t.src}:${t.sport ?? ''} ${t.dst}:${t.dport ?? ''}`;
}

function reversed(t: Tuple): string {
  return `${t.proto} ${t.dst}:${t.dport ?? ''} ${t.src}:${t.sport ?? ''}`;
}

/**
 * A whole flow as one path, for `diff --flow`: every packet with the seed
 * packet's tuple, and every reply (a packet whose tuple is the reverse of
 * any tuple the flow had, so replies to a NATed address count), their steps
 * merged in time order. Reply steps are marked so that alignment never pairs
 * a request step with a reply step.
 *
 * Packets are shown to it twice, all of them each time (the replies are
 * known once every forward packet's tuples are): a saved trace can be
 * streamed past it instead of held. It keeps the first maxSteps steps in
 * time order, so that what it holds, and the alignment after it, stay
 * bounded whatever the flow's length; stepsSeen says how many there were.
 */
export class FlowCollector {
  private readonly forward = new Set<string>();
  private readonly seedKey: string | undefined;
  private steps: Step[] = [];
  private freed = true;
  stepsSeen = 0;

  constructor(
    private readonly seed: Packet,
    private readonly maxSteps = Number.POSITIVE_INFINITY,
  ) {
    this.seedKey = seed.tuple && endpoints(seed.tuple);
  }

  // A packet seen only being freed (its path happened before the trace, or
  // out of the filter's sight) says nothing about the flow's path.
  private onlyFreed(p: Packet): boolean {
    return p.id !== this.seed.id && p.steps.length === 1 && p.freed;
  }

  private isForward(p: Packet): boolean {
    if (this.onlyFreed(p)) return false;
    return (
      p.id === this.seed.id ||
      (this.seedKey !== undefined && p.tuple !== undefined && endpoints(p.tuple) === this.seedKey)
    );
  }

  /** First showing: the packets of the flow itself. */
  forwardPacket(p: Packet): void {
    if (!this.isForward(p)) return;
    for (const s of p.steps) if (s.event.tuple) this.forward.add(reversed(s.event.tuple));
    this.keep(p, false);
  }

  /** Second showing: the replies. */
  replyPacket(p: Packet): void {
    if (this.isForward(p) || !p.tuple || this.onlyFreed(p)) return;
    if (this.forward.has(endpoints(p.tuple))) this.keep(p, true);
  }

  private keep(p: Packet, reply: boolean): void {
    this.freed &&= p.freed;
    this.stepsSeen += p.steps.length;
    for (const s of p.steps) this.steps.push({ ...s, packet: p.id, ...(reply ? { reply: true } : {}) });
    if (this.steps.length >= 2 * this.maxSteps) this.trim();
  }

  /** The earliest maxSteps steps (a stable sort: steps of one time keep their order). */
  private trim(): void {
    this.steps.sort((a, b) => {
      const d = BigInt(a.event.ts) - BigInt(b.event.ts);
      return d < 0n ? -1 : d > 0n ? 1 : 0;
    });
    if (this.steps.length > this.maxSteps) this.steps.length = this.maxSteps;
  }

  path(): Packet {
    this.trim();
    this.steps.forEach((s, i) => {
      s.index = i;
    });
    const seed = this.seed;
    const flow: Packet = { id: seed.id, skb: seed.skb, steps: this.steps, freed: this.freed };
    if (seed.node !== undefined) flow.node = seed.node;
    if (seed.tuple) flow.tuple = seed.tuple;
    // The packets whose steps are compared (all of the flow's, unless it was longer than maxSteps).
    flow.packets = [...new Set(this.steps.map((s) => s.packet as number))];
    if (!flow.packets.includes(seed.id)) flow.packets.unshift(seed.id);
    flow.seed = seed;
    return flow;
  }
}

/** flowPath over packets held in memory (tests, small traces). */
export function flowPath(packets: Packet[], seed: Packet): Packet {
  const c = new FlowCollector(seed);
  for (const p of packets) c.forwardPacket(p);
  for (const p of packets) c.replyPacket(p);
  return c.path();
}
