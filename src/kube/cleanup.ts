/**
 * Finds and deletes what interrupted runs left behind, by the label every
 * debug Job and pod carries (manifests/debug-pod.yaml). A debug pod whose
 * container still runs is a trace in progress — this user's, from another
 * terminal, or someone else's — and is left alone unless --all. The Job TTL
 * removes finished runs by itself; this is for the rest (a cluster without
 * the TTL controller, a pod from an older kubectl-pwru, a Job that could not
 * make its pod).
 */
import type * as k8s from '@kubernetes/client-node';
import { type Cluster, type ConnectOptions, call, connect, isNotFound, paths } from './client';
import { ANNOTATIONS, CONTAINER, MANAGED_BY_SELECTOR } from './debug-pod';
import { GONE_WAIT_MS } from './pod-life';

export interface CleanupOptions extends ConnectOptions {
  /** -A: every namespace; otherwise -n or the context's namespace. */
  allNamespaces: boolean;
  dryRun: boolean;
  /** Also delete debug pods whose trace is still running. */
  all: boolean;
}

export interface CleanedPod {
  namespace: string;
  name: string;
  kind: 'pod' | 'job';
  node: string;
  phase: string;
  startedBy: string;
  target: string;
  /** Left alone: its trace is still running. */
  skipped: boolean;
  /** Deleted, but still terminating when the wait ended. */
  terminating?: boolean;
}

/** A trace in progress: the debug container runs, or is about to. */
function live(pod: k8s.V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  const phase = pod.status?.phase;
  if (phase === 'Pending') return true;
  if (phase !== 'Running') return false;
  const cs = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER);
  return !cs || Boolean(cs.state?.running);
}

export async function cleanupDebugPods(opts: CleanupOptions): Promise<CleanedPod[]> {
  const cluster = connect(opts);
  const ns = opts.allNamespaces ? undefined : cluster.namespace;
  const where = ns ?? '(all namespaces)';
  const query = { labelSelector: MANAGED_BY_SELECTOR };
  const [pods, jobs] = await Promise.all([
    call(cluster, { verb: 'list', resource: 'pods', namespace: where }, (api) =>
      api.request<k8s.V1PodList>('GET', paths.core('pods', ns), { query }),
    ),
    call(cluster, { verb: 'list', resource: 'jobs.batch', namespace: where }, (api) =>
      api.request<k8s.V1JobList>('GET', paths.group('batch/v1', 'jobs', ns), { query }),
    ),
  ]);
  const cleaned: CleanedPod[] = [];
  const deleted: CleanedPod[] = [];
  const jobsWithPods = new Set<string>();
  for (const pod of pods.items) {
    const meta = pod.metadata ?? {};
    const namespace = meta.namespace ?? '';
    const job = meta.ownerReferences?.find((r) => r.kind === 'Job')?.name;
    if (job) jobsWithPods.add(`${namespace}/${job}`);
    const skipped = live(pod) && !opts.all;
    const entry: CleanedPod = {
      namespace,
      name: meta.name ?? '',
      kind: 'pod',
      node: pod.spec?.nodeName ?? '',
      phase: meta.deletionTimestamp ? 'Terminating' : (pod.status?.phase ?? ''),
      startedBy: meta.annotations?.[ANNOTATIONS.startedBy] ?? '',
      target: meta.annotations?.[ANNOTATIONS.target] ?? '',
      skipped,
    };
    cleaned.push(entry);
    if (skipped || opts.dryRun) continue;
    // The Job first (its controller would otherwise replace nothing, but its TTL would wait), then the pod.
    if (job)
      await remove(cluster, 'jobs.batch', paths.group('batch/v1', 'jobs', namespace, job), {
        propagationPolicy: 'Background',
      });
    await remove(cluster, 'pods', paths.core('pods', namespace, entry.name), { gracePeriodSeconds: 1 });
    deleted.push(entry);
  }
  // Jobs without a pod: the controller could not make one (quota, a webhook), or it is already gone.
  for (const job of jobs.items) {
    const meta = job.metadata ?? {};
    const namespace = meta.namespace ?? '';
    if (jobsWithPods.has(`${namespace}/${meta.name}`)) continue;
    const finished = job.status?.conditions?.some(
      (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
    );
    // A Job seconds old may be making its pod right now: a trace starting.
    const young = Date.now() - new Date(meta.creationTimestamp ?? 0).getTime() < 60_000;
    const skipped = !finished && young && !opts.all;
    cleaned.push({
      namespace,
      name: meta.name ?? '',
      kind: 'job',
      node: job.spec?.template?.spec?.nodeName ?? '',
      phase: finished ? 'Finished' : 'NoPod',
      startedBy: meta.annotations?.[ANNOTATIONS.startedBy] ?? '',
      target: meta.annotations?.[ANNOTATIONS.target] ?? '',
      skipped,
    });
    if (!skipped && !opts.dryRun)
      await remove(cluster, 'jobs.batch', paths.group('batch/v1', 'jobs', namespace, meta.name ?? ''), {
        propagationPolicy: 'Background',
      });
  }
  // Exit once they are gone, or say which are still going.
  const until = Date.now() + GONE_WAIT_MS;
  for (const entry of deleted) {
    entry.terminating = true;
    while (Date.now() < until) {
      try {
        await cluster.api.request('GET', paths.core('pods', entry.namespace, entry.name));
      } catch (err) {
        if (isNotFound(err)) {
          entry.terminating = false;
          break;
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return cleaned;
}

async function remove(
  cluster: Cluster,
  resource: string,
  path: string,
  query: Record<string, string | number>,
): Promise<void> {
  try {
    await call(cluster, { verb: 'delete', resource, name: path.split('/').pop() }, (api) =>
      api.request('DELETE', path, { query }),
    );
  } catch (err) {
    if (!/not found/.test((err as Error).message)) throw err;
  }
}
