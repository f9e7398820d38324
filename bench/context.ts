/** What every benchmark section gets: the network, where to put files, how long to run, the report. */
import type { BenchNet } from './net';
import type { Report } from './report';

export interface BenchContext {
  net: BenchNet;
  report: Report;
  /** Scratch folder for trace files and scripts (removed at the end). */
  work: string;
  /** Seconds of traffic per measurement (BENCH_SECONDS). */
  seconds: number;
  /** Paired baseline/traced runs per throughput figure (BENCH_REPEAT). */
  repeat: number;
  /** Names of the tracepoints kubectl-pwru attaches here, from the helper's READY frame. */
  tracepoints: string[];
}
