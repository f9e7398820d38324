/**
 * pwru-compatible text lines: SKB CPU PROCESS NETNS MARK/x IFACE PROTO MTU LEN
 * TUPLE FUNC, laid out as cilium/pwru does with --output-meta --output-tuple,
 * so that habits and scripts built on pwru carry over. What pwru does not
 * have goes at the end of the line, in brackets: what NAT or forwarding
 * changed at this step, and on a drop line what the reason means.
 */

import { describeChanges } from '../reading/changes';
import { explainDropReason } from '../reading/drop-reasons';
import { noFailureByPlace } from '../reading/drop-rules';
import type { Observed } from '../reading/packet-tracker';
import { formatTunnel, formatTuple } from '../reading/tuple-format';
import { dropLocation } from '../reading/verdicts';
import type { TraceEvent } from '../record/event';
import type { Painter } from './ansi';

/** pwru's PROTO column is the EtherType in hex. */
const ETHERTYPES: Record<string, number> = { IPv4: 0x0800, IPv6: 0x86dd, ARP: 0x0806, '802.1Q': 0x8100 };

export function etherType(l3proto: string): string {
  const n = ETHERTYPES[l3proto];
  if (n !== undefined) return `0x${n.toString(16).padStart(4, '0')}`;
  return /^0x[0-9a-f]+$/i.test(l3proto) ? l3proto : l3proto || '0x0000';
}

function center(s: string, width: number): string {
  if (s.length >= width) return s;
  const left = Math.floor((width - s.length) / 2);
  return ' '.repeat(left) + s + ' '.repeat(width - s.length - left);
}

export function formatFunc(e: TraceEvent): string {
  return e.drop ? `${e.func}(${e.drop.reason})` : e.func;
}

export function ifaceLabel(e: { iface: string; ifindex: number }): string {
  if (!e.ifindex) return e.iface;
  return `${e.iface}:${e.ifindex}`;
}

function dropPlace(o: Observed): string {
  return dropLocation(o.packet, o.step.index);
}

/** The bracketed notes after FUNC: the inner packet of a tunnel, changes at this step, and a drop's meaning. */
export function annotations(o: Observed, paint: Painter): string {
  let out = '';
  const tunnel = o.step.event.tunnel;
  if (tunnel) out += `  ${paint.paint(`[${formatTunnel(tunnel)}]`, 'cyan')}`;
  if (o.step.changes.length) out += `  ${paint.paint(`[${describeChanges(o.step.changes)}]`, 'yellow')}`;
  const drop = o.step.event.drop;
  if (drop) {
    // A drop on a normal path (src/reading/drop-rules.ts) says so as it happens.
    const normal = noFailureByPlace(drop.reason, dropPlace(o));
    if (normal) out += `  ${paint.paint(`[not a failure: ${normal}]`, 'dim')}`;
    else out += `  ${paint.paint(`[${explainDropReason(drop.reason).text}]`, 'red')}`;
  }
  return out;
}

/**
 * A column's text per value, padded: a trace repeats a few CPUs, processes,
 * devices and lengths in every line, and at hundreds of thousands of lines a
 * second making them again is most of a line's cost. Bounded: cleared when full.
 */
export class ColumnTexts<K> {
  private readonly texts = new Map<K, string>();

  constructor(private readonly make: (key: K) => string) {}

  get(key: K): string {
    let text = this.texts.get(key);
    if (text === undefined) {
      if (this.texts.size >= 4096) this.texts.clear();
      text = this.make(key);
      this.texts.set(key, text);
    }
    return text;
  }
}

/** The columns text and wide share, of fixed width. */
export class Columns {
  readonly cpu = new ColumnTexts((n: number) => String(n).padEnd(3));
  readonly netns = new ColumnTexts((n: number) => String(n).padEnd(10));
  readonly mark = new ColumnTexts((n: number) => n.toString(16).padEnd(8));
  readonly proto = new ColumnTexts((l3: string) => etherType(l3).padEnd(6));
  /** MTU and LEN. */
  readonly size = new ColumnTexts((n: number) => String(n).padEnd(5));
}

/** Widths that grow with what has been seen, like pwru's tuple column; and the columns' texts. */
export class TextLayout {
  tupleWidth = 40;
  readonly processWidth = 16;
  readonly columns = new Columns();
  /** IFACE: the name and index, centred. */
  private readonly ifaces = new Map<string, ColumnTexts<number>>();
  readonly process = new ColumnTexts((p: string) => `[${p}]`.padEnd(this.processWidth));

  iface(e: TraceEvent): string {
    let byIndex = this.ifaces.get(e.iface);
    if (!byIndex) {
      if (this.ifaces.size >= 4096) this.ifaces.clear();
      const iface = e.iface;
      byIndex = new ColumnTexts((ifindex: number) => center(ifaceLabel({ iface, ifindex }), 16));
      this.ifaces.set(iface, byIndex);
    }
    return byIndex.get(e.ifindex);
  }
}

export function textHeader(layout: TextLayout, showNode: boolean): string {
  const cols = [
    'SKB'.padEnd(18),
    'CPU',
    'PROCESS'.padEnd(layout.processWidth),
    'NETNS'.padEnd(10),
    'MARK/x'.padEnd(8),
    center('IFACE', 16),
    'PROTO '.padEnd(6),
    'MTU'.padEnd(5),
    'LEN'.padEnd(5),
    'TUPLE'.padEnd(layout.tupleWidth),
    'FUNC',
  ];
  const line = cols.join(' ');
  return showNode ? `${'NODE'.padEnd(16)} ${line}` : line;
}

export function formatTextLine(o: Observed, layout: TextLayout, showNode: boolean, paint: Painter): string {
  const e = o.step.event;
  const tuple = formatTuple(e.tuple, true);
  if (tuple.length > layout.tupleWidth) layout.tupleWidth = tuple.length;
  const c = layout.columns;
  let line =
    `${paint.packet(o.packet.id, e.skb.padEnd(18))} ${c.cpu.get(e.cpu)} ${layout.process.get(e.process)} ` +
    `${c.netns.get(e.netns)} ${c.mark.get(e.mark)} ${layout.iface(e)} ${c.proto.get(e.l3proto)} ` +
    `${c.size.get(e.mtu)} ${c.size.get(e.len)} ${tuple.padEnd(layout.tupleWidth)} ` +
    (e.drop ? paint.paint(formatFunc(e), 'red', 'bold') : e.func);
  if (e.tunnel || o.step.changes.length || e.drop) line += annotations(o, paint);
  if (showNode) line = `${(e.node ?? '').padEnd(16)} ${line}`;
  // --output-stack: the kernel stack under the line, innermost first, as pwru prints it
  if (e.stack?.length) line += `\n${e.stack.map((f) => `    ${f}`).join('\n')}`;
  return line;
}
