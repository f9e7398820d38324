/**
 * 9. Kubernetes mode through the real API server (../shared/k8s, or
 * PWRU_E2E_KUBECONFIG): the pipeline ramp of section 2, with the CLI tracing
 * node/NODE — this machine, whose kernel the cluster's node shares — from a
 * debug pod, its record stream carried by the runner, the container runtime,
 * the kubelet and the API server over the attach stream: the highest
 * loss-free events/s per node to -o json and -o text files, the memory of the
 * CLI and of the runner during the flood, and the CPU of every process on the
 * way at the first loss.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context';
import { cpuShare, describe, type Ramp, ramp } from './pipeline';
import { mib } from './report';
import { type KubeRun, type Match, startPwru } from './tracers';

/** The cluster of the end-to-end stage: PWRU_E2E_KUBECONFIG, else the one ../shared/k8s started. */
export function clusterKubeconfig(): string {
  return (
    process.env.PWRU_E2E_KUBECONFIG ?? join(process.env.K8S_HOME ?? '/var/tmp/k8s-kit', 'admin.kubeconfig')
  );
}

const SECTION = '9 kubernetes';
const GOAL = 300_000;
const CLI_MIB = 64;
const RUNNER_MIB = 48;

function ppid(pid: number): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^PPid:\s+(\d+)/m);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Processes on this machine whose command name is one of names (the cluster's own, run here). */
function byName(names: string[]): Map<string, number> {
  const found = new Map<string, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const name = readFileSync(`/proc/${e}/comm`, 'utf8').trim();
      if (names.includes(name) && !found.has(name)) found.set(name, Number(e));
    } catch {}
  }
  return found;
}

export async function kube(ctx: BenchContext): Promise<void> {
  const kubeconfig = clusterKubeconfig();
  if (!existsSync(kubeconfig)) {
    ctx.report.notMeasured(SECTION, 'Kubernetes mode', `no cluster (${kubeconfig}; set PWRU_E2E_KUBECONFIG)`);
    return;
  }
  const { adminApi, helperProcesses } = await import('../test/e2e/cluster/world');
  const api = adminApi(kubeconfig);
  const namespace = `k8s-bench-flood-${process.pid}`;
  await api.request('POST', '/api/v1/namespaces', {
    body: { metadata: { name: namespace, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } },
  });
  try {
    const nodes = await api.request<{ items: { metadata: { name: string } }[] }>('GET', '/api/v1/nodes');
    const k: KubeRun = {
      node: nodes.items[0].metadata.name,
      namespace,
      kubeconfig,
      podProcesses() {
        const helper = helperProcesses(namespace)[0];
        const runner = helper !== undefined ? ppid(helper) : undefined;
        const carriers = byName(['kube-apiserver', 'kubelet', 'containerd']);
        const shim = runner !== undefined ? ppid(runner) : undefined;
        if (shim !== undefined) carriers.set('containerd-shim (the pod)', shim);
        return { runner, carriers };
      },
    };
    // The same routed UDP load as section 2.
    const match: Match = { proto: 'udp', host: ctx.net.farIp };
    for (const format of ['json', 'text'] as const) {
      const r = await ramp(ctx, `kube-${format}`, (f) =>
        startPwru({ match, format, outFile: f, memory: true, kube: k, readyTimeoutMs: 180_000 }),
      );
      const best = r.best?.eventsPerSec ?? 0;
      ctx.report.add({
        section: SECTION,
        what: `node/NAME -o ${format} > file, through the real API server: highest loss-free rate per node`,
        value: describe(r),
        goal: `≥ ${GOAL / 1000}k ev/s`,
        met: best >= GOAL,
      });
      const at = r.firstLoss ?? r.best;
      if (at)
        ctx.report.add({
          section: SECTION,
          what: `-o ${format}: CPU at ${Math.round(at.sentPps)} pkt/s, along the way`,
          value: cpuShare(at),
        });
      const peak = peaks(r);
      const cli = peak.get('kubectl-pwru (node)') ?? 0;
      const runner = peak.get('runner (node, in the pod)') ?? 0;
      ctx.report.add({
        section: SECTION,
        what: `-o ${format}: peak memory during the ramp (the 2× step is the flood): CLI / runner / helper`,
        value: `${mib(cli)} / ${mib(runner)} / ${mib(peak.get('pwru-helper') ?? 0)}`,
        goal: `CLI ≤ ${CLI_MIB} MiB, runner ≤ ${RUNNER_MIB} MiB`,
        met: cli > 0 && runner > 0 && cli <= CLI_MIB * 1024 && runner <= RUNNER_MIB * 1024,
      });
    }
  } finally {
    await api.request('DELETE', `/api/v1/namespaces/${namespace}`).catch(() => undefined);
  }
}

/** The highest peak of each process over every step of a ramp. */
function peaks(r: Ramp): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of [...r.steps, ...(r.double ? [r.double] : [])])
    for (const [name, kib] of s.outcome.memory ?? []) out.set(name, Math.max(out.get(name) ?? 0, kib));
  return out;
}
