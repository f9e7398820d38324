/**
 * Finds and deletes debug pods that a killed run left behind, by the label
 * every debug pod carries (manifests/debug-pod.yaml). A pod that is still
 * running and was started by someone else may be a colleague's trace in
 * progress: it is left alone unless --all says otherwise.
 */
import type * as k8s from '@kubernetes/client-node';
import { type ConnectOptions, call, connect } from './client';
import { ANNOTATIONS, MANAGED_BY_SELECTOR, startedBy } from './debug-pod';

export interface CleanupOptions extends ConnectOptions {
  /** Only this namespace; otherwise all namespaces. */
  namespaceOnly: boolean;
  dryRun: boolean;
  /** Also delete running pods that someone else started. */
  all: boolean;
}

export interface CleanedPod {
  namespace: string;
  name: string;
  node: string;
  phase: string;
  startedBy: string;
  target: string;
  /** Left alone: running, and started by someone else. */
  skipped: boolean;
}

export async function cleanupDebugPods(opts: CleanupOptions): Promise<CleanedPod[]> {
  const cluster = connect(opts);
  const ns = cluster.namespace;
  const list: k8s.V1PodList = opts.namespaceOnly
    ? await call(
        { verb: 'list', resource: 'pods', namespace: ns },
        () => cluster.core.listNamespacedPod({ namespace: ns, labelSelector: MANAGED_BY_SELECTOR }),
        cluster.server,
      )
    : await call(
        { verb: 'list', resource: 'pods (all namespaces)' },
        () => cluster.core.listPodForAllNamespaces({ labelSelector: MANAGED_BY_SELECTOR }),
        cluster.server,
      );
  const cleaned: CleanedPod[] = [];
  const me = startedBy();
  for (const pod of list.items) {
    const name = pod.metadata?.name ?? '';
    const namespace = pod.metadata?.namespace ?? ns;
    const a = pod.metadata?.annotations ?? {};
    const running = pod.status?.phase === 'Running' || pod.status?.phase === 'Pending';
    const skipped = running && !opts.all && a[ANNOTATIONS.startedBy] !== me;
    if (!opts.dryRun && !skipped) {
      try {
        await call(
          { verb: 'delete', resource: 'pods', namespace, name },
          () => cluster.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 1 }),
          cluster.server,
        );
      } catch (err) {
        if (!/not found/.test((err as Error).message)) throw err;
      }
    }
    cleaned.push({
      namespace,
      name,
      node: pod.spec?.nodeName ?? '',
      phase: pod.status?.phase ?? '',
      startedBy: a[ANNOTATIONS.startedBy] ?? '',
      target: a[ANNOTATIONS.target] ?? '',
      skipped,
    });
  }
  return cleaned;
}
