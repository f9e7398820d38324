/**
 * 2. (continued) What the client spends per event in each view, apart from
 * the machine's load: a record stream the helper wrote in the pipeline's
 * ramp is replayed through the same sink a live trace uses (decode, packets
 * and summary, the lines, written to a file), and the CLI's CPU time per
 * event is read. On this shared machine the loss-free rate swings with the
 * other work; CPU time per event much less, so it says where a change helped.
 * The replay runs in a process of its own that starts as the CLI does (its V8
 * flags, src/cli.ts), so the figure is the CLI's.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, readFileSync, rmSync } from 'node:fs';
import { boundHeap } from '../src/cli';
import { createSink } from '../src/output/create-sink';
import { HelperStream } from '../src/trace/helper-stream';

export interface ClientCost {
  events: number;
  /** CPU µs per event, the least of the runs. */
  usPerEvent: number;
}

type Format = 'text' | 'wide' | 'json';

/** The stream replayed `runs` times in `format`, in a process started as the CLI; the output goes to outFile. */
export function clientCost(stream: string, format: Format, outFile: string, runs = 3): ClientCost {
  const r = spawnSync(process.execPath, [__filename, stream, format, outFile, String(runs)], {
    encoding: 'utf8',
  });
  if (r.status !== 0)
    throw new Error(`the replay of ${stream} failed (${r.status}): ${r.stderr.slice(-400)}`);
  return JSON.parse(r.stdout) as ClientCost;
}

async function replay(stream: string, format: Format, outFile: string, runs: number): Promise<ClientCost> {
  const data = readFileSync(stream);
  let best = Number.POSITIVE_INFINITY;
  let events = 0;
  for (let i = 0; i < runs; i++) {
    const stdout = createWriteStream(outFile);
    await once(stdout, 'open');
    const stderr = createWriteStream('/dev/null');
    const sink = createSink({ format, summary: false, color: false, showNode: false, stdout, stderr });
    const helper = new HelperStream(sink);
    const source = { pause() {}, resume() {} };
    const before = process.cpuUsage();
    // Chunks the size a pipe hands over.
    for (let at = 0; at < data.length; at += 65536) {
      helper.feed(data.subarray(at, at + 65536), source);
      const drained = sink.waitForDrain?.();
      if (drained) await drained;
    }
    helper.finish({ cutOffExpected: true });
    await sink.close();
    const used = process.cpuUsage(before);
    stdout.close();
    stderr.close();
    events = helper.outcome.events;
    if (events > 0) best = Math.min(best, (used.user + used.system) / events);
  }
  rmSync(outFile, { force: true });
  return { events, usPerEvent: best };
}

if (require.main === module) {
  const [stream, format, outFile, runs] = process.argv.slice(2);
  boundHeap();
  replay(stream, format as Format, outFile, Number(runs)).then((cost) =>
    process.stdout.write(JSON.stringify(cost)),
  );
}
