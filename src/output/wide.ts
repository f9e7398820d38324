/**
 * `-o wide`: the text columns plus when (wall clock, and time since the
 * packet's first step), which packet (#n, stable per skb lifetime), the
 * process id, the packet type, and the caller (the drop location on a drop).
 */
import type { Observed } from '../reading/packet-tracker';
import { formatTuple } from '../reading/tuple-format';
import type { Painter } from './ansi';
import { annotations, Columns, formatFunc, ifaceLabel } from './text';

export class WideLayout {
  tupleWidth = 40;
  funcWidth = 28;
  processWidth = 20;
  ifaceWidth = 14;
  readonly columns = new Columns();
  /** The last event's time and its column: events come in bursts within one millisecond. */
  private time = '';
  private clockText = clock('');

  clock(time: string): string {
    if (time !== this.time) {
      this.time = time;
      this.clockText = clock(time);
    }
    return this.clockText;
  }
}

function clock(time: string): string {
  // ISO 8601 → HH:MM:SS.mmm; saved traces from hand-written fixtures may lack it.
  const m = /T(\d\d:\d\d:\d\d(?:\.\d+)?)/.exec(time);
  return (m ? m[1] : '').slice(0, 12).padEnd(12);
}

/** Microseconds since the packet's first step: "+0.0" for the first. */
export function sinceFirst(o: Observed): string {
  const first = o.packet.steps[0].event.ts;
  const now = o.step.event.ts;
  // Nanoseconds as doubles are exact below 2^53 (104 days of uptime); BigInt beyond, as the decoder does.
  const a = Number(first);
  const b = Number(now);
  if (Number.isSafeInteger(a) && Number.isSafeInteger(b)) return `+${((b - a) / 1000).toFixed(1)}µs`;
  try {
    return `+${(Number(BigInt(now) - BigInt(first)) / 1000).toFixed(1)}µs`;
  } catch {
    return '';
  }
}

export function wideHeader(layout: WideLayout, showNode: boolean): string {
  const cols = [
    'TIME'.padEnd(12),
    'SINCE'.padEnd(10),
    'PKT'.padEnd(5),
    'SKB'.padEnd(18),
    'CPU',
    'PROCESS'.padEnd(layout.processWidth),
    'NETNS'.padEnd(10),
    'MARK/x'.padEnd(8),
    'IFACE'.padEnd(layout.ifaceWidth),
    'PROTO '.padEnd(6),
    'MTU'.padEnd(5),
    'LEN'.padEnd(5),
    'TYPE'.padEnd(9),
    'TUPLE'.padEnd(layout.tupleWidth),
    'FUNC'.padEnd(layout.funcWidth),
    'CALLER',
  ];
  const line = cols.join(' ');
  return showNode ? `${'NODE'.padEnd(16)} ${line}` : line;
}

export function formatWideLine(o: Observed, layout: WideLayout, showNode: boolean, paint: Painter): string {
  const e = o.step.event;
  const tuple = formatTuple(e.tuple, true);
  const func = formatFunc(e);
  const process = `${e.process}:${e.pid}`;
  const iface = ifaceLabel(e);
  layout.tupleWidth = Math.max(layout.tupleWidth, tuple.length);
  layout.funcWidth = Math.max(layout.funcWidth, func.length);
  layout.processWidth = Math.max(layout.processWidth, process.length);
  layout.ifaceWidth = Math.max(layout.ifaceWidth, iface.length);
  const c = layout.columns;
  const fields = [
    layout.clock(e.time),
    sinceFirst(o).padEnd(10),
    paint.packet(o.packet.id, `#${o.packet.id}`.padEnd(5)),
    paint.packet(o.packet.id, e.skb.padEnd(18)),
    c.cpu.get(e.cpu),
    process.padEnd(layout.processWidth),
    c.netns.get(e.netns),
    c.mark.get(e.mark),
    iface.padEnd(layout.ifaceWidth),
    c.proto.get(e.l3proto),
    c.size.get(e.mtu),
    c.size.get(e.len),
    e.pktType.padEnd(9),
    tuple.padEnd(layout.tupleWidth),
    e.drop ? paint.paint(func.padEnd(layout.funcWidth), 'red', 'bold') : func.padEnd(layout.funcWidth),
    e.caller ?? '',
  ];
  let line = fields.join(' ').trimEnd() + annotations(o, paint);
  if (showNode) line = `${(e.node ?? '').padEnd(16)} ${line}`;
  if (e.stack?.length) line += `\n${e.stack.map((f) => `    ${f}`).join('\n')}`;
  return line;
}
