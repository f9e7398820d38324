/**
 * npm run bench: what kubectl-pwru costs its users next to tcpdump and
 * bpftrace, measured in one run on this machine, printed as a table of
 * figures beside their goals and written into BENCHMARKS.md.
 *
 * It exits non-zero only when the benchmark itself could not run (not root,
 * no network namespaces, a tool missing); a figure that misses its goal is
 * a finding, reported in the table.
 *
 * BENCH_SECONDS (default 3): traffic per measurement.
 * BENCH_REPEAT (default 5): baseline/traced pairs per throughput ratio.
 * BENCH_ONLY=overhead,pipeline,bytes,ready,scaling,memory,ondrop,longrun,floor,functions,kube: run some sections.
 * BENCH_TRACE_MB (default 300): size of the generated trace `memory` reads.
 * BENCH_STEADY_SECONDS (default 1800), BENCH_STEADY_MODES (default on-drop; json, text),
 * BENCH_SAMPLE_SECONDS (default 10), BENCH_STEADY_TRACE_PPS (default 2000): section 7b, bench/long-run.ts.
 */
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './context';
import { tcpFloor } from './floor';
import { functions } from './functions';
import { helperReady } from './helper';
import { kube } from './kube';
import { longRun } from './long-run';
import { memory } from './memory';
import { BenchNet } from './net';
import { onDrop } from './on-drop';
import { overhead } from './overhead';
import { pipeline, pipelineWithBytes } from './pipeline';
import { killStarted, run, sleep } from './proc';
import { ready } from './ready';
import { Report, writeResults } from './report';
import { scaling } from './scaling';
import { BUILT_HELPER, REPO } from './tracers';

const SECTIONS: [string, string, (ctx: BenchContext) => Promise<void>][] = [
  ['ready', '3 ready', ready],
  ['overhead', '1 overhead', overhead],
  ['pipeline', '2 pipeline', pipeline],
  ['bytes', '2b pipeline with bytes', pipelineWithBytes],
  ['scaling', '5 scaling', scaling],
  ['memory', '6 memory', memory],
  ['ondrop', '7 on-drop', onDrop],
  ['longrun', '7b long run', longRun],
  ['floor', '1 tcp floor', tcpFloor],
  ['functions', '8 functions', functions],
  ['kube', '9 kubernetes', kube],
];

async function main(): Promise<number> {
  const startedAt = new Date();
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (BPF, network namespaces)\n');
    return 2;
  }
  run('sh', [join(REPO, 'bench', 'setup.sh')]);
  const only = process.env.BENCH_ONLY?.split(',');
  const seconds = Number(process.env.BENCH_SECONDS ?? 3);
  const repeat = Number(process.env.BENCH_REPEAT ?? 5);
  const report = new Report();
  const net = new BenchNet();
  const work = mkdtempSync(join(tmpdir(), 'pwru-bench-'));
  const cleanup = () => {
    killStarted();
    net.destroy();
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    // Others may rebuild the helper while this runs: measure one binary throughout.
    const helper = join(work, 'pwru-helper');
    for (let i = 0; !existsSync(BUILT_HELPER) && i < 120; i++) await sleep(500); // being rebuilt
    copyFileSync(BUILT_HELPER, helper);
    chmodSync(helper, 0o755);
    process.env.PWRU_HELPER = helper;
    const treeAtStart = describeTree();
    report.notes.push(`Tree: ${treeAtStart}.`);
    await net.create();
    const probe = await helperReady(['--backend', 'tracepoint', '--', `udp and host ${net.absentIp}`]);
    const ctx: BenchContext = {
      net,
      report,
      work,
      seconds,
      repeat,
      tracepoints: probe.ready.probes.map((p) => p.name),
    };
    for (const [key, section, fn] of SECTIONS) {
      if (only && !only.includes(key)) continue;
      process.stderr.write(`bench: ${section}\n`);
      try {
        await fn(ctx);
      } catch (err) {
        report.notMeasured(section, 'the rest of this section', (err as Error).message.slice(0, 400));
      }
    }
  } catch (err) {
    process.stderr.write(`bench: could not run: ${(err as Error).stack ?? err}\n`);
    cleanup();
    return 1;
  }
  cleanup();
  const treeAtEnd = describeTree();
  if (!report.notes.includes(`Tree: ${treeAtEnd}.`)) {
    report.notes.push(
      `The tree changed during the run (others commit here): at the end, ${treeAtEnd}. The helper measured is the one copied at the start; the CLI is whatever dist/ held when each process started.`,
    );
  }
  const elapsed = (Date.now() - startedAt.getTime()) / 1000;
  const command = `npm run bench${only ? ` (BENCH_ONLY=${only.join(',')})` : ''}${
    process.env.BENCH_SECONDS ? ` (BENCH_SECONDS=${seconds})` : ''
  }${process.env.BENCH_REPEAT ? ` (BENCH_REPEAT=${repeat})` : ''}`;
  process.stdout.write(`${report.table()}\n`);
  writeResults(join(REPO, 'BENCHMARKS.md'), report.markdown(command, startedAt, elapsed));
  process.stdout.write('results written to BENCHMARKS.md\n');
  return 0;
}

/** The commit measured, and whether the product's files differ from it. */
function describeTree(): string {
  try {
    const head = run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']).trim();
    const dirty = run('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'helper', 'bpf', 'runner'])
      .split('\n')
      .filter(Boolean).length;
    return `commit ${head}${dirty ? `, with ${dirty} uncommitted changes in src/ helper/ bpf/ runner/` : ''}`;
  } catch {
    return 'not a git checkout';
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    killStarted();
    process.exit(1);
  },
);
