/**
 * Kubernetes mode, kubectl style: Complete (connect, resolve the target,
 * compose the filter, read each node's architecture, build the pods and
 * bundles), Validate (reject what cannot work before anything is created),
 * Run (one NodeSession per node, all at once; every pod deleted on the way
 * out).
 */
import type * as k8s from '@kubernetes/client-node';
import type { RunnerRequest } from '../../runner/runner';
import { UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { helperArgs, type TraceRequest } from '../trace/request';
import { buildBundle, checkArch, HEARTBEAT_TIMEOUT_SEC } from './bundle';
import { type Cluster, call, connect, k8sLib } from './client';
import { buildDebugPod, DEFAULT_IMAGE, loadTemplate, newSessionId } from './debug-pod';
import { lookupNames, withNames } from './names';
import { AbortedError, NodeSession } from './session';
import { composeFilter, type NodeTarget, type ResolvedTarget, resolveTarget } from './targets';

export interface KubeTraceOptions {
  /** 'pod/NAME' | 'NAME' | 'node/NAME' | 'svc/NAME' | 'deploy/NAME' | 'ds/NAME' | 'sts/NAME'; absent when only a selector. */
  target?: string;
  /** -l */
  selector?: string;
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  image?: string;
  debugNamespace?: string;
  podNetnsOnly: boolean;
  /** pcapFilter = the user's filter from flags + positional; the target's addresses are added here. */
  request: TraceRequest;
  sink: TraceSink;
  /** Aborted on Ctrl-C/SIGTERM. */
  signal: AbortSignal;
}

interface PlannedNode {
  target: NodeTarget;
  arch: string;
  pod: k8s.V1Pod;
  runner: RunnerRequest;
}

interface Plan {
  cluster: Cluster;
  resolved: ResolvedTarget;
  filter: string;
  nodes: PlannedNode[];
}

/** Complete + Validate: everything derived, nothing created. */
async function plan(opts: KubeTraceOptions, cluster: Cluster): Promise<Plan> {
  const resolved = await resolveTarget(cluster, opts.target, opts.selector);
  for (const w of resolved.warnings) opts.sink.warning(w);

  if (opts.podNetnsOnly) {
    if (resolved.kind === 'node') {
      throw new UserError('--pod-netns-only needs a pod target: a node has no pod netns');
    }
    if (opts.request.filterNetns) {
      throw new UserError(
        '--pod-netns-only picks the netns itself: drop --filter-netns, or drop --pod-netns-only',
        2,
      );
    }
    for (const n of resolved.nodes) {
      const withIds = n.pods.filter((p) => p.containerIds.length > 0);
      if (withIds.length === 0) {
        throw new UserError(
          `--pod-netns-only: no running container of the target on node ${n.node} (no container IDs in its status)`,
        );
      }
      if (n.pods.length > 1) {
        throw new UserError(
          `--pod-netns-only traces one pod's netns per node, but node ${n.node} hosts ${n.pods.length} target pods ` +
            `(${n.pods.map((p) => p.name).join(', ')}): pick one with pod/NAME, or drop --pod-netns-only`,
        );
      }
    }
  }

  const filter = composeFilter(resolved.ips, opts.request.pcapFilter);
  const args = helperArgs({ ...opts.request, pcapFilter: filter });
  const debugNamespace = opts.debugNamespace || cluster.namespace;
  const session = newSessionId();
  const template = loadTemplate();
  const nodes: PlannedNode[] = [];
  // Nodes are read in parallel: a service may span many.
  const archs = await Promise.all(
    resolved.nodes.map(async (target) => {
      const node = await call(
        { verb: 'get', resource: 'nodes', name: target.node },
        () => cluster.core.readNode({ name: target.node }),
        cluster.server,
      );
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      if (ready && ready.status !== 'True') {
        // Still worth a try: a node whose pod network is down runs host-network pods like ours.
        opts.sink.warning(
          `node ${target.node} is NotReady (${ready.reason ?? 'no reason given'}: ${ready.message ?? ''}): the debug pod may not start`,
        );
      }
      return node.status?.nodeInfo?.architecture ?? '';
    }),
  );
  resolved.nodes.forEach((target, i) => {
    const arch = archs[i];
    checkArch(target.node, arch);
    const pod = buildDebugPod(
      {
        node: target.node,
        namespace: debugNamespace,
        image: opts.image || DEFAULT_IMAGE,
        session,
        target: resolved.display,
        filter,
        durationSec: opts.request.durationSec,
      },
      template,
    );
    const runner: RunnerRequest = { args, heartbeatTimeoutSec: HEARTBEAT_TIMEOUT_SEC };
    if (opts.podNetnsOnly) runner.netnsContainerIds = target.pods.flatMap((p) => p.containerIds);
    nodes.push({ target, arch, pod, runner });
  });
  return { cluster, resolved, filter, nodes };
}

export async function runKubeTrace(opts: KubeTraceOptions): Promise<void> {
  const cluster = connect(opts);
  // Names are looked up while the pods start: listing a big cluster takes a while.
  const names = new Map<string, string>();
  const lookup = lookupNames(cluster).then((found) => {
    for (const [ip, name] of found) names.set(ip, name);
  });
  const p = await plan(opts, cluster);
  const sink = withNames(opts.sink, names);
  const bundles = new Map<string, Buffer>();
  for (const n of p.nodes) {
    const key = `${n.arch}\n${JSON.stringify(n.runner)}`;
    if (!bundles.has(key)) bundles.set(key, await buildBundle(n.arch, n.runner));
  }

  // One node failing stops them all: a partial trace would mislead.
  const stopAll = new AbortController();
  const onAbort = () => stopAll.abort();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  if (opts.signal.aborted) stopAll.abort();
  const many = p.nodes.length > 1;
  if (many)
    opts.sink.progress(
      `tracing ${p.resolved.display} on ${p.nodes.length} nodes: ${p.nodes.map((n) => n.target.node).join(', ')}`,
    );
  const sessions = p.nodes.map(
    (n) =>
      new NodeSession({
        cluster: p.cluster,
        node: n.target.node,
        pod: n.pod,
        bundle: bundles.get(`${n.arch}\n${JSON.stringify(n.runner)}`) as Buffer,
        sink,
        label: many ? n.target.node : undefined,
        signal: stopAll.signal,
      }),
  );
  const results = await Promise.allSettled(
    sessions.map((s) =>
      s.run().catch((err) => {
        stopAll.abort();
        throw err;
      }),
    ),
  );
  opts.signal.removeEventListener('abort', onAbort);
  await lookup;
  const failures = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => r.reason as Error)
    .filter((e) => !(e instanceof AbortedError));
  if (failures.length > 0) throw failures[0];
}

/** The pods a run would create, as YAML (one document per node); creates nothing. */
export async function printManifest(opts: KubeTraceOptions): Promise<string> {
  const p = await plan(opts, connect(opts));
  const lib = k8sLib();
  return p.nodes.map((n) => lib.dumpYaml(n.pod, { lineWidth: -1, noRefs: true })).join('---\n');
}
