import { Args, Command, Flags } from '@oclif/core';
import { EXIT_DROPPED, reportError } from '../errors';
import { shouldColor } from '../output/ansi';
import { createSink, type ReadingSink } from '../output/create-sink';
import { createOnDropSink } from '../output/on-drop-sink';
import { exitQuietlyOnClosedPipe, feed } from '../reading/replay';
import { readTraceFile } from '../reading/trace-file';

export default class Show extends Command {
  static override summary = 'Re-render a saved trace: lines, wide lines, JSON, or the verdict summary.';

  static override description =
    'Reads a trace saved with --output-file (or -o json redirected to a file) and shows it offline with the same views as a live trace: pwru-style lines with NAT markers, -o wide, -o json, or --summary (one row per packet with its verdict, counts per drop reason and per function).';

  static override examples = [
    'kubectl pwru show trace.jsonl',
    'kubectl pwru show trace.jsonl --summary',
    'kubectl pwru show trace.jsonl -o wide | less -R',
    'kubectl pwru show trace.jsonl --fail-on-drop >/dev/null || echo "a packet was dropped"',
    'kubectl pwru show trace.jsonl --pcapng trace.pcapng >/dev/null && wireshark trace.pcapng',
  ];

  static override args = {
    file: Args.string({ description: 'saved trace (JSON lines)', required: true }),
  };

  static override flags = {
    output: Flags.string({
      char: 'o',
      description:
        'view: pwru-style text, wide (timestamps, packet ids, caller), or json (one object per line)',
      options: ['text', 'wide', 'json'],
      default: 'text',
    }),
    summary: Flags.boolean({ description: 'only the verdict per packet and the counts, not every step' }),
    pcapng: Flags.string({
      description:
        "also write the packets' bytes to this pcapng file (a trace saved with --snaplen or --pcapng)",
    }),
    'fail-on-drop': Flags.boolean({
      description: `exit with ${EXIT_DROPPED} when any packet in the trace was dropped`,
    }),
    'no-color': Flags.boolean({ description: 'no colours even on a terminal (NO_COLOR works too)' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Show);
    exitQuietlyOnClosedPipe();
    // Streamed: a saved trace of any size renders in bounded memory. The
    // first line (a header, in Kubernetes mode naming its node) says whether
    // lines need a NODE column.
    let sink: ReadingSink | undefined;
    try {
      await this.render(args.file, flags, (s) => {
        sink = s;
      });
    } finally {
      // A damaged line ends the file: what came before it is still shown.
      sink?.flush?.();
    }
    if (!sink) return;
    await sink.close();
    if (flags['fail-on-drop'] && sink.dropped()) this.exit(EXIT_DROPPED);
  }

  private async render(
    file: string,
    flags: { output: string; summary: boolean; 'no-color': boolean; pcapng?: string },
    started: (sink: ReadingSink) => void,
  ): Promise<void> {
    let sink: ReadingSink | undefined;
    let outputFailed = false;
    for await (const line of readTraceFile(file)) {
      // stdout failed (a full disk): the rest would go nowhere; close() says why (exit 5).
      if (outputFailed) break;
      if (!sink && line.type === 'header' && line.onDrop) {
        sink = createOnDropSink({
          json: flags.output === 'json',
          color: shouldColor(process.stdout, flags['no-color']),
          stdout: process.stdout,
          stderr: process.stderr,
          replay: true,
          columns: process.stdout.columns,
        });
        started(sink);
      }
      if (!sink) {
        sink = createSink({
          format: flags.output as 'text' | 'wide' | 'json',
          summary: flags.summary,
          pcapng: flags.pcapng,
          color: shouldColor(process.stdout, flags['no-color']),
          showNode: line.type !== 'stats' && line.node !== undefined,
          stdout: process.stdout,
          stderr: process.stderr,
          replay: true,
          onOutputFault: () => {
            outputFailed = true;
          },
        });
        started(sink);
      }
      feed(sink, line);
      // A reader slower than the file (`| less`): wait for it rather than hold the file in memory.
      const drained = sink.waitForDrain?.();
      if (drained) await drained;
    }
  }

  protected override async catch(err: Error): Promise<unknown> {
    return reportError(this, err);
  }
}
