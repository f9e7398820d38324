/**
 * Who dropped a packet: the CULPRIT lines the helper writes after a drop
 * (docs/json-schema.md, "culprit") — a netfilter rule, or the tc/XDP programs
 * attached where the kernel dropped it — put into words and matched back to the
 * drop they name. A culprit arrives after its drop's event (the helper reads
 * the namespace's rules after the drop), so views look it up by the drop
 * event's identity: node, skb address and timestamp.
 */
import type {
  CulpritChain,
  CulpritProgram,
  CulpritRule,
  TraceCulprit,
  TraceEvent,
  TraceProgRun,
} from '../record/event';
import type { Packet } from './packet-tracker';

function key(node: string | undefined, skb: string, ts: string): string {
  return `${node ?? ''}\u0000${skb}\u0000${ts}`;
}

/** Where a rule is: "filter/FORWARD" (table and the hook it was on), or nft's "inet mine/in". */
export function ruleWhere(r: CulpritRule): string {
  if (r.tool === 'nft') return `${r.family} ${r.table}/${r.chain}`;
  return `${r.table}/${r.hook || r.chain}`;
}

/** Which one it is in its chain, and who printed it: "rule 2 of INPUT, iptables-nft". */
function ruleDetail(r: CulpritRule): string {
  const parts: string[] = [];
  if (r.tool === 'nft') {
    if (r.policy) parts.push(`policy of chain ${r.chain}`);
    else if (r.handle !== undefined) parts.push(`handle ${r.handle}`);
    if (r.hook) parts.push(`hook ${r.hook}`);
  } else if (r.policy) {
    parts.push(`policy of ${r.chain}`);
  } else {
    parts.push(`rule ${r.position} of ${r.chain}`);
    // iptables-nft's rule named exactly: nft's handle of it.
    if (r.handle !== undefined) parts.push(`handle ${r.handle}`);
  }
  parts.push(r.tool);
  return parts.join(', ');
}

/** "`-A INPUT -p udp -m udp --dport 7001 -j DROP` in filter/INPUT (rule 2 of INPUT, iptables-nft)". */
export function describeRule(r: CulpritRule): string {
  return `\`${r.text}\` in ${ruleWhere(r)} (${ruleDetail(r)})`;
}

/** "pwru_tc_drop (id 16365, tag 16eac7fc5d88876c, clsact filter drop.o:[tc] pref 49152 handle 0x1)". */
export function describeProgram(p: CulpritProgram): string {
  const how = p.detail ? `${p.attach} ${p.detail}` : p.attach;
  return `${p.name || '(no name)'} (id ${p.id}, tag ${p.tag || '?'}, ${how})`;
}

/** "tc ingress of eth0:2", "XDP of eth0:2". */
function hookWhere(c: Pick<TraceCulprit, 'kind' | 'iface' | 'ifindex' | 'direction'>): string {
  const dev = c.ifindex ? `${c.iface ?? ''}:${c.ifindex}` : (c.iface ?? '?');
  return c.kind === 'xdp' ? `XDP of ${dev}` : `tc ${c.direction ?? ''} of ${dev}`;
}

function describeProgramCulprit(c: TraceCulprit): string {
  const progs = c.programs ?? [];
  const returned = c.verdict ? `, which returned ${c.verdict}` : '';
  // Programs are traced in this run, but not this drop's: why, program by program.
  const notExact = c.why ? ` (not known exactly: ${c.why})` : '';
  if (c.method === 'exact' && progs.length === 1)
    return `dropped by BPF program ${describeProgram(progs[0])} at ${hookWhere(c)}${returned}; known exactly (the program traced as it returned)`;
  if (c.method === 'attached' && progs.length === 1)
    return `dropped by BPF program ${describeProgram(progs[0])} at ${hookWhere(c)}${returned}; known because it is the one program attached there${notExact}`;
  if (c.method === 'attached' && progs.length > 1)
    return `dropped at ${hookWhere(c)}${returned ? ` (${c.verdict})` : ''} by one of the BPF programs attached there, in the order they run: ${progs.map(describeProgram).join('; ')}${notExact}`;
  return `dropped at ${hookWhere(c)}${returned ? ` (${c.verdict})` : ''}; which program: could not tell (${c.why ?? 'no reason given'})`;
}

/** "ip filter/INPUT, exactly (ipt_do_table returned NF_DROP)", or undefined when the kernel did not say. */
export function chainWhere(ch: CulpritChain | undefined): string | undefined {
  if (ch?.method !== 'exact') return undefined;
  const hook = ch.hook && ch.hook !== ch.chain ? `, hook ${ch.hook}` : '';
  return `${ch.family} ${ch.table}/${ch.chain}${hook}, exactly (${ch.by} returned NF_DROP)`;
}

/** The culprit in words, for a line under the drop and for the verdict table. */
export function describeCulprit(c: TraceCulprit): string {
  if (c.kind === 'tc' || c.kind === 'xdp') return describeProgramCulprit(c);
  const exact = chainWhere(c.chain);
  const chainNote =
    c.chain?.method === 'none' ? ` (the chain: could not tell: ${c.chain.why ?? 'no reason given'})` : '';
  if (c.method === 'exact' && c.rule)
    return `dropped by ${describeRule(c.rule)}; known exactly (its drop verdict ran, and ${c.chain?.method === 'exact' ? c.chain.by : 'nft_do_chain'} returned NF_DROP)`;
  if (c.method !== 'none' && c.rule) {
    const how = c.method === 'counters' ? 'its counter moved' : c.method;
    if (exact) return `dropped in ${exact}; the rule, by counters: ${describeRule(c.rule)}, since ${how}`;
    return `dropped by ${describeRule(c.rule)}; known because ${how}${chainNote}`;
  }
  const cands = c.candidates?.length ? `; it was one of: ${c.candidates.map(describeRule).join('; ')}` : '';
  const rule = `which rule: could not tell (${c.why ?? 'no reason given'})${cands}`;
  if (exact) return `dropped in ${exact}; ${rule}`;
  return `which rule dropped it: could not tell (${c.why ?? 'no reason given'})${cands}${chainNote}`;
}

/**
 * Short, for a sentence: "`-A KUBE-FORWARD … -j DROP` in filter/FORWARD", "BPF program drop_all
 * (id 7) at tc ingress of eth0:2", or undefined when not known.
 */
export function culpritPhrase(c: TraceCulprit | undefined): string | undefined {
  if (!c) return undefined;
  const progs = c.programs ?? [];
  if (c.method === 'none') {
    // The rule is not known, but the kernel may have named its table and chain.
    const ch = c.chain;
    return ch?.method === 'exact' ? `a rule of ${ch.family} ${ch.table}/${ch.chain}` : undefined;
  }
  if (c.kind !== 'netfilter') {
    if (progs.length === 1) return `BPF program ${progs[0].name} (id ${progs[0].id}) at ${hookWhere(c)}`;
    if (progs.length > 1)
      return `one of the BPF programs ${progs.map((p) => `${p.name} (id ${p.id})`).join(', ')} at ${hookWhere(c)}`;
    return undefined;
  }
  return c.rule ? `\`${c.rule.text}\` in ${ruleWhere(c.rule)}` : undefined;
}

/** A program's run on a packet: "handled by tc ingress program foo (id 42, tag …) of veth0:3: TC_ACT_REDIRECT". */
export function describeProgRun(p: TraceProgRun): string {
  const prog = `${p.program.name || '(no name)'} (id ${p.program.id}, tag ${p.program.tag || '?'})`;
  const from = p.from ? `; continues skb ${p.from.skb}, which veth copied into the program's buffer` : '';
  return `handled by BPF program ${prog} at ${hookWhere(p)}: ${p.verdict}${from}`;
}

/** Decimal timestamps compared without BigInt: the longer is later, else the text decides (a tie is before). */
export function tsBefore(a: string, b: string): boolean {
  return a.length !== b.length ? a.length < b.length : a <= b;
}

/** Where a packet's steps are: its skbs, and its first and last steps' times. */
export interface PacketSpan {
  node?: string;
  skbs: Set<string>;
  /** Its data buffers (a run's `from` names the skb and buffer a packet had). */
  heads?: Set<string>;
  first: string;
  last: string;
}

/** Where a packet is, for finding its program runs. */
export function spanOf(p: Packet): PacketSpan {
  const span: PacketSpan = {
    skbs: new Set(p.steps.map((s) => s.event.skb)),
    heads: new Set(p.steps.flatMap((s) => (s.event.head ? [s.event.head] : []))),
    first: p.steps[0].event.ts,
    last: p.steps[p.steps.length - 1].event.ts,
  };
  if (p.node !== undefined) span.node = p.node;
  return span;
}

/** A run, short, for a sentence: "pwru_tc_out (id 12) at tc egress of veth1:2: TC_ACT_REDIRECT". */
export function progRunPhrase(p: TraceProgRun): string {
  return `${p.program.name || '(no name)'} (id ${p.program.id}) at ${hookWhere(p)}: ${p.verdict}`;
}

/**
 * The program runs of a trace, found by the packet they belong to: a run on
 * one of its skbs between its first and last steps (an skb's address is
 * another packet's before and after). Bounded: past `limit` runs the oldest
 * skbs' are forgotten.
 */
export class ProgRunBook {
  private readonly bySkb = new Map<string, TraceProgRun[]>();
  /** The runs that say which skb their packet was before (`from`), in the order they came. */
  private readonly linking: TraceProgRun[] = [];
  private count = 0;

  constructor(private readonly limit = 65536) {}

  add(p: TraceProgRun): void {
    if (p.from && this.linking.length < this.limit) this.linking.push(p);
    const k = `${p.node ?? ''}\u0000${p.skb}`;
    const runs = this.bySkb.get(k);
    if (runs) runs.push(p);
    else this.bySkb.set(k, [p]);
    if (++this.count <= this.limit) return;
    const oldest = this.bySkb.keys().next().value;
    if (oldest === undefined) return;
    this.count -= this.bySkb.get(oldest)?.length ?? 0;
    this.bySkb.delete(oldest);
  }

  /** The runs on a copy veth made of a packet (native XDP), each naming the skb it was made from. */
  continuations(): readonly TraceProgRun[] {
    return this.linking;
  }

  /** The runs on a packet, in the order they came. */
  of(span: PacketSpan): TraceProgRun[] {
    const out: TraceProgRun[] = [];
    for (const skb of span.skbs)
      for (const r of this.bySkb.get(`${span.node ?? ''}\u0000${skb}`) ?? [])
        if (tsBefore(span.first, r.ts) && tsBefore(r.ts, span.last)) out.push(r);
    return out;
  }
}

/** The culprits of a trace, found by the drop they name. */
export class CulpritBook {
  private readonly byDrop = new Map<string, TraceCulprit>();

  add(c: TraceCulprit): void {
    this.byDrop.set(key(c.node, c.skb, c.ts), c);
  }

  /** The culprit of a drop event, if the helper named one. */
  of(e: TraceEvent | undefined): TraceCulprit | undefined {
    return e?.drop ? this.byDrop.get(key(e.node, e.skb, e.ts)) : undefined;
  }

  get size(): number {
    return this.byDrop.size;
  }
}

/**
 * Drops and their culprits as they come, in either order (a tc or XDP
 * program's culprit comes right after its drop, a rule's once its counters
 * are read again; --on-drop's report may come after either): paired() is
 * called once both are there. Bounded: past `limit` waiting on each side, the
 * oldest are forgotten (a culprit of a drop that is never reported, one that
 * is no failure, waits for nothing).
 */
export class CulpritPairing<T> {
  private readonly drops = new Map<string, T>();
  private readonly culprits = new Map<string, TraceCulprit>();

  constructor(
    private readonly paired: (drop: T, culprit: TraceCulprit) => void,
    private readonly limit = 4096,
  ) {}

  /** A drop event (the last step of a dropped packet), and what to hand back with its culprit. */
  drop(e: TraceEvent, value: T): void {
    const k = key(e.node, e.skb, e.ts);
    const c = this.culprits.get(k);
    if (!c) {
      remember(this.drops, k, value, this.limit);
      return;
    }
    this.culprits.delete(k);
    this.paired(value, c);
  }

  culprit(c: TraceCulprit): void {
    const k = key(c.node, c.skb, c.ts);
    const d = this.drops.get(k);
    if (d === undefined) {
      remember(this.culprits, k, c, this.limit);
      return;
    }
    this.drops.delete(k);
    this.paired(d, c);
  }
}

function remember<V>(m: Map<string, V>, k: string, v: V, limit: number): void {
  m.set(k, v);
  if (m.size <= limit) return;
  const oldest = m.keys().next().value;
  if (oldest !== undefined) m.delete(oldest);
}
