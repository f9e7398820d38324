import { Args, Command, Flags } from '@oclif/core';
import { reportError, UserError } from '../errors';
import { Painter, shouldColor } from '../output/ansi';
import { diffJson, renderDiff } from '../output/diff-view';
import { loadCaughtDrops } from '../reading/caught-drops';
import { diffPackets } from '../reading/diff';
import {
  DIFF_MAX_STEPS,
  type DiffSide,
  loadBooks,
  NoSuchPacket,
  readDiffSide,
} from '../reading/diff-sources';
import { exitQuietlyOnClosedPipe } from '../reading/replay';

export default class Diff extends Command {
  static override summary =
    'Line up a working packet path against a failing one and show where they part ways.';

  static override description =
    'Takes two saved traces (--output-file, or -o json redirected to a file) and picks a packet from each: from GOOD the longest one that was not dropped, from BAD the first dropped one (or the ones you name). It aligns their steps function by function, prints them side by side with the first difference marked, and states the difference in one sentence: a different path, a different NAT rewrite at the same step, or a different ending. With --flow it compares whole flows, replies included.';

  static override examples = [
    'kubectl pwru diff good.jsonl bad.jsonl',
    'kubectl pwru diff good.jsonl bad.jsonl --bad-packet 3',
    'kubectl pwru diff good.jsonl bad.jsonl --flow',
    'kubectl pwru diff good.jsonl bad.jsonl -o json | jq -r .sentence',
    'kubectl pwru diff caught.jsonl --report 2   # a drop --on-drop caught, beside the last good packet',
  ];

  static override args = {
    good: Args.string({ description: 'trace of the working flow', required: true }),
    bad: Args.string({
      description: 'trace of the failing flow; leave out to compare a drop --on-drop caught in GOOD',
    }),
  };

  static override flags = {
    'good-packet': Flags.integer({
      description: 'packet number in GOOD (as `show --summary` lists them)',
      min: 1,
    }),
    'bad-packet': Flags.integer({
      description: 'packet number in BAD (as `show --summary` lists them)',
      min: 1,
    }),
    report: Flags.integer({
      description: 'with one file of --on-drop: which caught drop to compare (default the first)',
      min: 1,
    }),
    flow: Flags.boolean({
      description:
        "compare whole flows: the chosen packet's flow (same tuple) and its replies, all their steps in time order",
    }),
    output: Flags.string({
      char: 'o',
      options: ['text', 'json'],
      default: 'text',
      description: 'side by side, or JSON',
    }),
    'max-steps': Flags.integer({
      description:
        'the most steps of a packet or flow to align (memory grows with its square); a longer one is compared on its first steps in time order',
      min: 1,
      default: DIFF_MAX_STEPS,
    }),
    'no-color': Flags.boolean({ description: 'no colours even on a terminal (NO_COLOR works too)' }),
  };

  private async side(
    file: string,
    side: 'good' | 'bad',
    packet: number | undefined,
    flags: { flow: boolean; 'max-steps': number },
  ): Promise<DiffSide> {
    let read: DiffSide | undefined;
    try {
      read = await readDiffSide(file, side, { packet, flow: flags.flow, maxSteps: flags['max-steps'] });
    } catch (err) {
      if (err instanceof NoSuchPacket)
        throw new UserError(`${file} has packets #1 to #${err.count}; there is no #${err.n}`, 2);
      throw err;
    }
    if (!read) throw new UserError(`${file}: no packets in this trace (did the filter match anything?)`);
    if (read.stepsSeen > read.path.steps.length) {
      const what = flags.flow ? 'flow' : `packet #${read.path.id}`;
      process.stderr.write(
        `note: ${file}: the ${what} has ${read.stepsSeen} steps; its first ${read.path.steps.length} in time order are compared (--max-steps)\n`,
      );
    }
    return read;
  }

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Diff);
    exitQuietlyOnClosedPipe();
    if (args.bad === undefined) return this.caughtDrop(args.good, flags);
    // Streamed, one side at a time: memory stays bounded whatever the files' size.
    const good = await this.side(args.good, 'good', flags['good-packet'], flags);
    const bad = await this.side(args.bad, 'bad', flags['bad-packet'], flags);
    const [g, b] = [await loadBooks(args.good), await loadBooks(args.bad)];
    const d = diffPackets(
      good.path,
      bad.path,
      { good: g.culprits, bad: b.culprits },
      { good: g.progs, bad: b.progs },
    );
    if (flags.output === 'json') {
      process.stdout.write(`${JSON.stringify(diffJson(d, args.good, args.bad))}\n`);
      return;
    }
    process.stdout.write(
      renderDiff(d, {
        paint: new Painter(shouldColor(process.stdout, flags['no-color'])),
        goodFile: args.good,
        badFile: args.bad,
        goodCount: good.count,
        badCount: bad.count,
        columns: process.stdout.columns,
      }),
    );
  }

  /** One file of --on-drop: a caught drop's last good packet against its dropped one. */
  private async caughtDrop(file: string, flags: { report?: number; output: string; 'no-color': boolean }) {
    const drops = await loadCaughtDrops(file);
    if (drops.length === 0)
      throw new UserError(`${file} holds no drop caught with --on-drop: give two traces, GOOD and BAD`, 2);
    const n = flags.report ?? 1;
    const c = drops.find((d) => d.line.n === n);
    if (!c) throw new UserError(`${file} has drops #1 to #${drops.length}; there is no #${n}`, 2);
    if (!c.diff || !c.good)
      throw new UserError(
        `drop #${n} in ${file} has no earlier good packet of its flow to compare with: ${c.line.sentence}`,
        1,
      );
    const label = `${file} drop #${n}`;
    if (flags.output === 'json') {
      process.stdout.write(`${JSON.stringify(diffJson(c.diff, label, label))}\n`);
      return;
    }
    process.stdout.write(
      renderDiff(c.diff, {
        paint: new Painter(shouldColor(process.stdout, flags['no-color'])),
        goodFile: label,
        badFile: label,
        goodCount: 1,
        badCount: 1,
        columns: process.stdout.columns,
      }),
    );
  }

  protected override async catch(err: Error): Promise<unknown> {
    return reportError(this, err);
  }
}
