/**
 * 6. Memory of reading saved traces: `show` (lines, --summary, -o json) and
 * `diff --flow` on a generated trace of BENCH_TRACE_MB (default 300) MB, one
 * flow of every packet with its replies (bench/big-trace.ts): the CLI's peak
 * RSS, against the bound docs/reading-traces.md gives (256 MiB, any file
 * size). A 200 MB trace of one flow once made `diff --flow` grow to 23.6 GB.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { writeFlowTrace } from './big-trace';
import type { BenchContext } from './context';
import { BIN } from './tracers';

const BOUND_MIB = 256;

/** Peak RSS (MiB) and seconds of one CLI run, its stdout thrown away. */
function measure(args: string[]): { mib: number; seconds: number; code: number | null; stderr: string } {
  const t0 = Date.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'peak-rss-kib %M', process.execPath, BIN, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  const kib = Number(/peak-rss-kib (\d+)/.exec(r.stderr)?.[1] ?? Number.NaN);
  return { mib: kib / 1024, seconds: (Date.now() - t0) / 1000, code: r.status, stderr: r.stderr };
}

export async function memory(ctx: BenchContext): Promise<void> {
  const mb = Number(process.env.BENCH_TRACE_MB ?? 300);
  const file = join(ctx.work, 'big-trace.jsonl');
  const packets = writeFlowTrace(file, mb * 1e6);
  ctx.report.notes.push(
    `Memory: a generated ${mb} MB trace, ${packets} packets of one UDP flow and its replies (bench/big-trace.ts).`,
  );
  for (const [what, args] of [
    ['show (lines)', ['show', file]],
    ['show --summary', ['show', '--summary', file]],
    ['show -o json', ['show', '-o', 'json', file]],
    ['diff --flow (the file against itself)', ['diff', '--flow', file, file]],
  ] as const) {
    const r = measure([...args]);
    if (r.code !== 0 || Number.isNaN(r.mib)) {
      ctx.report.notMeasured('6 memory', what, `exit ${r.code}: ${r.stderr.trim().slice(-300)}`);
      continue;
    }
    ctx.report.add({
      section: '6 memory',
      what: `${what}, ${mb} MB trace: peak RSS`,
      value: `${Math.round(r.mib)} MiB (${r.seconds.toFixed(1)} s)`,
      goal: `≤ ${BOUND_MIB} MiB`,
      met: r.mib <= BOUND_MIB,
    });
  }
}
