/**
 * Feeds a saved trace into a sink, exactly as a live session would: that is
 * how `show` renders every view of a file with the code that renders it live.
 */
import type { TraceSink } from '../output/sink';
import type { TraceEvent, TraceLine } from '../record/event';
import { type Packet, PacketTracker } from './packets';
import { readTraceFile } from './trace-file';

export async function replay(
  lines: AsyncIterable<TraceLine> | Iterable<TraceLine>,
  sink: TraceSink,
): Promise<void> {
  for await (const l of lines) {
    if (l.type === 'header') sink.header(l);
    else if (l.type === 'event') sink.event(l);
    else sink.stats(l);
  }
}

/** Does any event carry a node name (a Kubernetes-mode trace)? */
export function hasNodes(lines: TraceLine[]): boolean {
  return lines.some((l) => l.type !== 'stats' && l.node !== undefined);
}

/** The packets of a saved trace. */
export async function loadPackets(file: string): Promise<Packet[]> {
  const tracker = new PacketTracker();
  for await (const l of readTraceFile(file)) if (l.type === 'event') tracker.observe(l as TraceEvent);
  return tracker.packets();
}
