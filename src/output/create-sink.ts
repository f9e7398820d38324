/** Builds the sink for the chosen view: text or JSON lines, optionally a file too. */
import { createWriteStream } from 'node:fs';
import type { TraceEvent, TraceHeader, TraceStats } from '../record/event';
import type { TraceSink } from './sink';
import { formatTextLine, TEXT_HEADER } from './text';

export interface SinkOptions {
  format: 'text' | 'wide' | 'json';
  summary: boolean;
  outputFile?: string;
  color: boolean;
  showNode: boolean;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export function createSink(opts: SinkOptions): TraceSink & { dropped(): boolean } {
  const file = opts.outputFile ? createWriteStream(opts.outputFile) : undefined;
  let anyDropped = false;
  let headerPrinted = false;
  let last: TraceStats | undefined;
  const json = opts.format === 'json';
  return {
    progress(message: string) {
      opts.stderr.write(`${message}\n`);
    },
    header(h: TraceHeader) {
      const line = JSON.stringify(h);
      file?.write(`${line}\n`);
      if (json) opts.stdout.write(`${line}\n`);
      opts.stderr.write(
        `tracing with ${h.backend}: ${h.probes} probes attached in ${h.attachMs} ms${h.node ? ` on ${h.node}` : ''}\n`,
      );
      if (!json && !headerPrinted) {
        opts.stdout.write(`${TEXT_HEADER}\n`);
        headerPrinted = true;
      }
    },
    event(e: TraceEvent) {
      if (e.drop) anyDropped = true;
      if (json || file) {
        const line = JSON.stringify(e);
        file?.write(`${line}\n`);
        if (json) {
          opts.stdout.write(`${line}\n`);
          return;
        }
      }
      opts.stdout.write(`${formatTextLine(e, opts.showNode)}\n`);
    },
    stats(s: TraceStats) {
      last = s;
      if (s.final) {
        const line = JSON.stringify(s);
        file?.write(`${line}\n`);
        if (json) opts.stdout.write(`${line}\n`);
      }
    },
    warning(message: string) {
      opts.stderr.write(`warning: ${message}\n`);
    },
    async close() {
      if (last) opts.stderr.write(`${last.events} events, ${last.lost} lost (ring buffer full)\n`);
      if (file) await new Promise<void>((resolve) => file.end(resolve));
    },
    dropped: () => anyDropped,
  };
}
