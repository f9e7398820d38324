/**
 * Kubernetes mode, kubectl style: Complete (connect, resolve the target,
 * compose the filter, read each node's architecture, build the pods and
 * bundles), Validate (reject what cannot work before anything is created),
 * Run (one NodeSession per node, all at once; every pod deleted on the way
 * out).
 */
import type * as k8s from '@kubernetes/client-node';
import type { RunnerRequest } from '../../runner/runner';
import { BadInput, EXIT_INTERRUPTED, UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { helperArgs, type TraceRequest } from '../trace/request';
import { AbortedError, parseRequestTimeout } from './api';
import { buildBundle, checkArch, HEARTBEAT_TIMEOUT_SEC } from './bundle';
import { type Cluster, call, connect, k8sLib, paths } from './client';
import {
  buildDebugJob,
  buildDebugPod,
  DEFAULT_IMAGE,
  loadPodPatch,
  loadTemplate,
  newSessionId,
  PROFILES,
  type Profile,
} from './debug-pod';
import { lookupNames, nodeNames, withNames } from './names';
import { innerFilter, nodeOverlay } from './overlay';
import { NodeSession } from './session';
import { composeFilter, type NodeTarget, parseTarget, type ResolvedTarget, resolveTarget } from './targets';

export interface KubeTraceOptions {
  /** 'pod/NAME' | 'NAME' | 'node/NAME' | 'svc/NAME' | 'deploy/NAME' | 'ds/NAME' | 'sts/NAME'; absent when only a selector. */
  target?: string;
  /** -l */
  selector?: string;
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  /** --request-timeout, ms (0: none). */
  requestTimeoutMs?: number;
  as?: string;
  asGroups?: string[];
  image?: string;
  profile?: Profile;
  imagePullSecrets?: string[];
  /** --pod-patch FILE */
  podPatch?: string;
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

/** Complete + Validate: everything derived, nothing created. `names` gets the nodes' addresses. */
async function plan(opts: KubeTraceOptions, cluster: Cluster, names?: Map<string, string>): Promise<Plan> {
  const patch = opts.podPatch ? loadPodPatch(opts.podPatch) : undefined;
  const resolved = await resolveTarget(cluster, opts.target, opts.selector);
  for (const w of resolved.warnings) opts.sink.warning(w);

  if (opts.podNetnsOnly) {
    if (resolved.kind === 'node') {
      throw new UserError('--pod-netns-only needs a pod target: a node has no pod netns');
    }
    if (opts.request.filterNetns) {
      throw new BadInput(
        '--pod-netns-only picks the netns itself: drop --filter-netns, or drop --pod-netns-only',
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
  const debugNamespace = opts.debugNamespace || cluster.namespace;
  const session = newSessionId();
  const template = loadTemplate();
  const nodes: PlannedNode[] = [];
  const kernels = new Map<string, string>();
  // Nodes are read in parallel: a service may span many.
  const archs = await Promise.all(
    resolved.nodes.map(async (target) => {
      const node = await call(cluster, { verb: 'get', resource: 'nodes', name: target.node }, (api) =>
        api.request<k8s.V1Node>('GET', paths.nodes(target.node)),
      );
      if (names) nodeNames(node, names);
      kernels.set(target.node, node.status?.nodeInfo?.kernelVersion ?? '');
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      if (ready && ready.status !== 'True') {
        // Still worth a try: a node whose pod network is down runs host-network pods like ours.
        opts.sink.warning(
          `node ${target.node} is NotReady (${ready.reason ?? 'no reason given'}: ${ready.message ?? ''}): the debug pod may not start`,
        );
      }
      return { arch: node.status?.nodeInfo?.architecture ?? '', overlay: nodeOverlay(node) };
    }),
  );
  resolved.nodes.forEach((target, i) => {
    const { arch, overlay } = archs[i];
    const tunnelFilter = innerFilter(resolved.ips, opts.request, overlay !== undefined);
    if (overlay && !opts.request.tunnelFilter && tunnelFilter)
      opts.sink.progress(
        `${target.node}: ${overlay} overlay: the target's packets are also matched inside the tunnel`,
      );
    const args = helperArgs({ ...opts.request, pcapFilter: filter, tunnelFilter });
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
        profile: opts.profile,
        imagePullSecrets: opts.imagePullSecrets,
        kernelVersion: kernels.get(target.node),
        patch,
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
    for (const [ip, name] of found) if (!names.has(ip) || !name.startsWith('node/')) names.set(ip, name);
  });
  let p: Plan;
  try {
    p = await plan(opts, cluster, names);
  } catch (err) {
    if (err instanceof AbortedError) throw interrupted(false);
    throw err;
  }
  const sink = withNames(opts.sink, names);
  // Bundles are packed while the pods start: they are needed only once a pod runs.
  const bundles = new Map<string, Promise<Buffer>>();
  for (const n of p.nodes) {
    const key = `${n.arch}\n${JSON.stringify(n.runner)}`;
    if (bundles.has(key)) continue;
    const bundle = buildBundle(n.arch, n.runner);
    bundle.catch(() => {}); // awaited (and reported) by the session that sends it
    bundles.set(key, bundle);
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
        bundle: bundles.get(`${n.arch}\n${JSON.stringify(n.runner)}`) as Promise<Buffer>,
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
  await Promise.race([lookup, new Promise((r) => setTimeout(r, 1000).unref())]);
  const failures = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => r.reason as Error)
    .filter((e) => !(e instanceof AbortedError));
  if (failures.length > 0) throw failures[0];
  // Ctrl-C before any trace began: nothing was traced, and that is not a success.
  if (opts.signal.aborted && !sessions.some((s) => s.tracing)) throw interrupted(true);
}

/** Exit 130, as a shell reports an interrupted command (docs/kubernetes.md). */
function interrupted(created: boolean): UserError {
  return new UserError(
    `interrupted before the trace started${created ? '; the debug pods were deleted' : '; nothing was created'}`,
    EXIT_INTERRUPTED,
  );
}

/**
 * The Jobs a run would create, as YAML (one document per node); creates
 * nothing. Without a reachable cluster (or kubeconfig), the values only the
 * cluster knows are placeholders: <NODE OF pod/web-0>, <ADDRESSES OF pod/web-0>.
 */
export async function printManifest(opts: KubeTraceOptions): Promise<string> {
  const lib = k8sLib();
  const dump = (pods: k8s.V1Pod[]) =>
    pods.map((pod) => lib.dumpYaml(buildDebugJob(pod), { lineWidth: -1, noRefs: true })).join('---\n');
  let cluster: Cluster | undefined;
  try {
    cluster = connect({ ...opts, requestTimeoutMs: Math.min(opts.requestTimeoutMs || 5000, 5000) });
    const p = await plan(opts, cluster);
    return dump(p.nodes.map((n) => n.pod));
  } catch (err) {
    if (!unreachable(err)) throw err;
    opts.sink.warning(
      `${(err as Error).message.split('\n')[0]}\nprinting the manifest with placeholders where the cluster would say`,
    );
  }
  const patch = opts.podPatch ? loadPodPatch(opts.podPatch) : undefined;
  const { kind, name } = parseTarget(opts.target, opts.selector);
  const what = opts.target ?? `-l ${opts.selector}`;
  const node = kind === 'node' ? name : `<NODE OF ${what}>`;
  const filter = composeFilter(kind === 'node' ? [] : ['0.0.0.0'], opts.request.pcapFilter).replace(
    'host 0.0.0.0',
    `host <ADDRESSES OF ${what}>`,
  );
  const pod = buildDebugPod({
    node,
    namespace: opts.debugNamespace || opts.namespace || cluster?.namespace || 'default',
    image: opts.image || DEFAULT_IMAGE,
    session: newSessionId(),
    target: what,
    filter,
    durationSec: opts.request.durationSec,
    profile: opts.profile,
    imagePullSecrets: opts.imagePullSecrets,
    patch,
  });
  return dump([pod]);
}

/** No cluster to ask: no kubeconfig, or no answer. Refusals and bad input are real errors still. */
function unreachable(err: unknown): boolean {
  const m = (err as Error)?.message ?? '';
  return /no kubeconfig found|no cluster configured|cannot reach the Kubernetes API|did not answer within|cannot read the kubeconfig/.test(
    m,
  );
}

/** The trace command's Kubernetes-only flags that shape the connection and the debug pod. */
export interface KubeFlags {
  'request-timeout'?: string;
  as?: string;
  'as-group'?: string[];
  profile?: string;
  'image-pull-secret'?: string[];
  'pod-patch'?: string;
}

/** Validate: those flags as KubeTraceOptions fields; a bad value is exit 2 before anything is created. */
export function kubeFlagOptions(flags: KubeFlags): Partial<KubeTraceOptions> {
  const profile = flags.profile;
  if (profile !== undefined && !(PROFILES as readonly string[]).includes(profile)) {
    throw new BadInput(`--profile ${profile}: expected one of ${PROFILES.join(', ')}`);
  }
  for (const s of flags['image-pull-secret'] ?? []) {
    if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(s))
      throw new BadInput(`--image-pull-secret ${s}: not a valid Secret name`);
  }
  if (flags['pod-patch'] !== undefined) loadPodPatch(flags['pod-patch']);
  return {
    requestTimeoutMs:
      flags['request-timeout'] !== undefined ? parseRequestTimeout(flags['request-timeout']) : undefined,
    as: flags.as,
    asGroups: flags['as-group'],
    profile: profile as Profile | undefined,
    imagePullSecrets: flags['image-pull-secret'],
    podPatch: flags['pod-patch'],
  };
}
