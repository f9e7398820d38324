/**
 * Feeds a saved trace into a sink, exactly as a live session would: that is
 * how `show` renders every view of a file with the code that renders it live.
 */
import type { TraceSink } from '../output/sink';
import type { TraceLine } from '../record/event';

export function feed(sink: TraceSink, l: TraceLine): void {
  if (l.type === 'header') sink.header(l);
  else if (l.type === 'event') sink.event(l);
  else if (l.type === 'culprit') sink.culprit?.(l);
  else if (l.type === 'prog') sink.prog?.(l);
  else if (l.type === 'drop') sink.dropLine?.(l);
  else sink.stats(l);
}

export async function replay(
  lines: AsyncIterable<TraceLine> | Iterable<TraceLine>,
  sink: TraceSink,
): Promise<void> {
  for await (const l of lines) feed(sink, l);
}

/** `show … | head`: a reader that stops early is not an error. */
export function exitQuietlyOnClosedPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

/** Does any event carry a node name (a Kubernetes-mode trace)? */
export function hasNodes(lines: TraceLine[]): boolean {
  return lines.some((l) => l.type !== 'stats' && l.node !== undefined);
}
