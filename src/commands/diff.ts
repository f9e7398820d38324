import { Args, Command, Flags } from '@oclif/core';
import { UserError } from '../errors';
import { Painter, shouldColor } from '../output/ansi';
import { diffJson, renderDiff } from '../output/diff-view';
import { reportError } from '../reading/command-errors';
import { loadCulprits } from '../reading/culprits';
import { diffPackets, flowPath, pickBad, pickGood } from '../reading/diff';
import type { Packet } from '../reading/packet-tracker';
import { exitQuietlyOnClosedPipe, loadPackets } from '../reading/replay';

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
  ];

  static override args = {
    good: Args.string({ description: 'trace of the working flow', required: true }),
    bad: Args.string({ description: 'trace of the failing flow', required: true }),
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
    'no-color': Flags.boolean({ description: 'no colours even on a terminal (NO_COLOR works too)' }),
  };

  private async load(file: string): Promise<Packet[]> {
    const packets = await loadPackets(file);
    if (packets.length === 0)
      throw new UserError(`${file}: no packets in this trace (did the filter match anything?)`);
    return packets;
  }

  private pick(
    file: string,
    packets: Packet[],
    n: number | undefined,
    auto: (p: Packet[]) => Packet | undefined,
  ) {
    if (n === undefined) return auto(packets) as Packet;
    const p = packets.find((x) => x.id === n);
    if (!p) throw new UserError(`${file} has packets #1 to #${packets.length}; there is no #${n}`, 2);
    return p;
  }

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Diff);
    exitQuietlyOnClosedPipe();
    const goods = await this.load(args.good);
    const bads = await this.load(args.bad);
    const good = this.pick(args.good, goods, flags['good-packet'], pickGood);
    const bad = this.pick(args.bad, bads, flags['bad-packet'], pickBad);
    const culprits = { good: await loadCulprits(args.good), bad: await loadCulprits(args.bad) };
    const d = flags.flow
      ? diffPackets(flowPath(goods, good), flowPath(bads, bad), culprits)
      : diffPackets(good, bad, culprits);
    if (flags.output === 'json') {
      process.stdout.write(`${JSON.stringify(diffJson(d, args.good, args.bad))}\n`);
      return;
    }
    process.stdout.write(
      renderDiff(d, {
        paint: new Painter(shouldColor(process.stdout, flags['no-color'])),
        goodFile: args.good,
        badFile: args.bad,
        goodCount: goods.length,
        badCount: bads.length,
        columns: process.stdout.columns,
      }),
    );
  }

  protected override async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    return reportError(this, err);
  }
}
