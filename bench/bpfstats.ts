/**
 * What the BPF programs themselves cost in the kernel, per run: with
 * kernel.bpf_stats_enabled the kernel times every program run, and the
 * fdinfo of each program fd a process holds says run_time_ns and run_cnt.
 * This figure does not depend on how busy the rest of the machine is, which
 * throughput ratios on a shared machine do.
 */
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';

const SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

/** Turns the kernel's BPF run-time statistics on; returns how to put the setting back. */
export function enableBpfStats(): () => void {
  const before = readFileSync(SYSCTL, 'utf8').trim();
  writeFileSync(SYSCTL, '1');
  return () => writeFileSync(SYSCTL, before);
}

export interface ProgStats {
  programs: number;
  runs: number;
  ns: number;
}

/** Sums run time and run count over the BPF programs whose fds the process holds. */
export function progStats(pid: number): ProgStats {
  const seen = new Set<number>();
  const out: ProgStats = { programs: 0, runs: 0, ns: 0 };
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      if (!readlinkSync(`/proc/${pid}/fd/${fd}`).includes('bpf-prog')) continue;
      const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      const id = Number(info.match(/^prog_id:\s+(\d+)/m)?.[1]);
      if (!id || seen.has(id)) continue;
      seen.add(id);
      out.programs++;
      out.runs += Number(info.match(/^run_cnt:\s+(\d+)/m)?.[1] ?? 0);
      out.ns += Number(info.match(/^run_time_ns:\s+(\d+)/m)?.[1] ?? 0);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}
