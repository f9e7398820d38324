/**
 * Kubernetes mode, kubectl style: Complete and Validate (resolveKubePlace:
 * connect, resolve the target, read each node; reject what cannot work before
 * anything is created), then Run with the request built from that place (the
 * target's addresses are in its filter): one NodeSession per node, all at
 * once; every pod deleted on the way out.
 */
import type * as k8s from '@kubernetes/client-node';
import type { RunnerRequest } from '../../runner/runner';
import { BadInput, EXIT_INTERRUPTED, UserError } from '../errors';
import type { LinesFormat, TraceSink } from '../output/sink';
import { textNotes } from '../output/text-notes';
import { TX_START_FUNCS } from '../reading/kernel-functions';
import type { TracePlace } from '../trace/place';
import { helperArgs, type TraceRequest } from '../trace/request';
import { AbortedError, parseRequestTimeout } from './api';
import { bundleStream, CLIENT_GRACE_SEC, checkArch } from './bundle';
import { type Cluster, type ConnectOptions, call, connect, k8sLib, paths } from './client';
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
import { lookupNames, namesFile, nodeNames, withNames } from './names';
import { checkBackendOnKernel } from './node-kernel';
import { innerFilter, nodeOverlay } from './overlay';
import { NodeSession } from './session';
import { type NodeTarget, parseTarget, type ResolvedTarget, resolveTarget } from './targets';

/** Where to trace: the target and how to reach the cluster. */
export interface KubePlaceOptions extends ConnectOptions {
  /** 'pod/NAME' | 'NAME' | 'node/NAME' | 'svc/NAME' | 'deploy/NAME' | 'ds/NAME' | 'sts/NAME'; absent when only a selector. */
  target?: string;
  /** -l */
  selector?: string;
  podNetnsOnly: boolean;
  /** --filter-netns, which --pod-netns-only replaces. */
  filterNetns?: string;
}

/** What a node says about itself. */
interface NodeFacts {
  arch: string;
  kernel: string;
  /** The overlay its annotations say it runs, if any. */
  overlay?: string;
}

/** A Kubernetes target resolved: its nodes, read, and its addresses. */
export interface KubePlace extends TracePlace {
  cluster: Cluster;
  resolved: ResolvedTarget;
  /** Each node's facts, in the order of resolved.nodes. */
  facts: NodeFacts[];
  /** The nodes' own addresses, for naming them in the lines. */
  nodeAddresses: Map<string, string>;
  podNetnsOnly: boolean;
}

/** How the debug pods are made. */
export interface DebugPodOptions {
  image?: string;
  profile?: Profile;
  imagePullSecrets?: string[];
  /** --pod-patch FILE */
  podPatch?: string;
  debugNamespace?: string;
}

export interface KubeTraceOptions extends DebugPodOptions {
  place: KubePlace;
  /** The final request: the target's addresses are in its filter. */
  request: TraceRequest;
  sink: TraceSink;
  /** Aborted on Ctrl-C/SIGTERM. */
  signal: AbortSignal;
  /** Aborted on a second Ctrl-C/SIGTERM: the run exits 3 s later. */
  force?: AbortSignal;
}

interface PlannedNode {
  target: NodeTarget;
  arch: string;
  pod: k8s.V1Pod;
  runner: RunnerRequest;
}

/**
 * With one node, a view that has nothing to add per event (the sink's acceptsLines) gets its lines from the
 * helper in the pod, inside the record stream (--lines-stream), naming the node (JSON) and the addresses'
 * owners (NAMES_FILE) itself; the client copies them to its outputs. Decoding and formatting every event
 * here capped a trace at ~100k events/s (BENCHMARKS.md, section 9). Several nodes keep binary events: the
 * client numbers packets across them and adds the NODE column.
 */
const NAMES_FILE = 'names.txt';
/** How long the bundles wait for the names of pods and services (the lines name none without them). */
const NAMES_WAIT_MS = 3000;

/** Complete + Validate: connect, resolve the target, read its nodes; nothing created. */
export async function resolveKubePlace(opts: KubePlaceOptions): Promise<KubePlace> {
  try {
    return await resolve(opts);
  } catch (err) {
    if (err instanceof AbortedError) throw interrupted(false);
    throw err;
  }
}

async function resolve(opts: KubePlaceOptions): Promise<KubePlace> {
  const cluster = connect(opts);
  const resolved = await resolveTarget(cluster, opts.target, opts.selector);
  const warnings = [...resolved.warnings];

  if (opts.podNetnsOnly) {
    if (resolved.kind === 'node') {
      throw new UserError('--pod-netns-only needs a pod target: a node has no pod netns');
    }
    if (opts.filterNetns) {
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

  const nodeAddresses = new Map<string, string>();
  // Nodes are read in parallel: a service may span many.
  const facts = await Promise.all(
    resolved.nodes.map(async (target): Promise<NodeFacts> => {
      const node = await call(cluster, { verb: 'get', resource: 'nodes', name: target.node }, (api) =>
        api.request<k8s.V1Node>('GET', paths.nodes(target.node)),
      );
      nodeNames(node, nodeAddresses);
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      if (ready && ready.status !== 'True') {
        // Still worth a try: a node whose pod network is down runs host-network pods like ours.
        warnings.push(
          `node ${target.node} is NotReady (${ready.reason ?? 'no reason given'}: ${ready.message ?? ''}): the debug pod may not start`,
        );
      }
      const arch = node.status?.nodeInfo?.architecture ?? '';
      checkArch(target.node, arch);
      return { arch, kernel: node.status?.nodeInfo?.kernelVersion ?? '', overlay: nodeOverlay(node) };
    }),
  );
  return {
    nodes: resolved.nodes.map((n) => n.node),
    addresses: resolved.ips,
    kubernetes: true,
    warnings,
    cluster,
    resolved,
    facts,
    nodeAddresses,
    podNetnsOnly: opts.podNetnsOnly,
  };
}

/** The debug pod and the runner's request for each node; nothing created. */
function planNodes(
  opts: Omit<KubeTraceOptions, 'sink' | 'signal'>,
  sink?: TraceSink,
  emit?: LinesFormat,
): PlannedNode[] {
  const { place, request } = opts;
  const patch = opts.podPatch ? loadPodPatch(opts.podPatch) : undefined;
  const debugNamespace = opts.debugNamespace || place.cluster.namespace;
  const session = newSessionId();
  const template = loadTemplate();
  return place.resolved.nodes.map((target, i) => {
    const { arch, kernel, overlay } = place.facts[i];
    checkBackendOnKernel(target.node, request.backend, kernel);
    const tunnelFilter = innerFilter(place.addresses, request, overlay !== undefined);
    if (overlay && !request.tunnelFilter && tunnelFilter)
      sink?.progress(
        `${target.node}: ${overlay} overlay: the target's packets are also matched inside the tunnel`,
      );
    const args = helperArgs(
      { ...request, tunnelFilter },
      emit && {
        emit,
        ...(emit === 'json' ? { node: target.node } : { textNotes: textNotes() }),
        packetStarts: [...TX_START_FUNCS],
        to: 'stream',
        addrNames: NAMES_FILE,
      },
    );
    const pod = buildDebugPod(
      {
        node: target.node,
        namespace: debugNamespace,
        image: opts.image || DEFAULT_IMAGE,
        session,
        target: place.resolved.display,
        filter: request.pcapFilter,
        durationSec: request.durationSec,
        profile: opts.profile,
        imagePullSecrets: opts.imagePullSecrets,
        kernelVersion: kernel,
        patch,
      },
      template,
    );
    const runner: RunnerRequest = { args, clientGraceSec: CLIENT_GRACE_SEC, deflate: true };
    if (place.podNetnsOnly) runner.netnsContainerIds = target.pods.flatMap((p) => p.containerIds);
    return { target, arch, pod, runner };
  });
}

export async function runKubeTrace(opts: KubeTraceOptions): Promise<void> {
  const { cluster, resolved } = opts.place;
  // Names are looked up while the pods start: listing a big cluster takes a while.
  const names = new Map(opts.place.nodeAddresses);
  const lookup = lookupNames(cluster).then((found) => {
    for (const [ip, name] of found) if (!names.has(ip) || !name.startsWith('node/')) names.set(ip, name);
  });
  const emit =
    resolved.nodes.length === 1 && opts.request.snaplen === undefined && opts.sink.lines
      ? opts.sink.acceptsLines
      : undefined;
  if (emit) opts.sink.linesFromStream?.();
  const nodes = planNodes(opts, opts.sink, emit);
  const sink = withNames(opts.sink, names);
  // The helper's own lines name addresses from the names found by the time its bundle goes.
  const namesFound = emit
    ? Promise.race([lookup, new Promise((r) => setTimeout(r, NAMES_WAIT_MS).unref())])
    : Promise.resolve();
  const bundle = (n: PlannedNode) => () =>
    namesFound.then(() => bundleStream(n.arch, n.runner, emit ? { [NAMES_FILE]: namesFile(names) } : {}));

  // One node failing stops them all: a partial trace would mislead.
  const stopAll = new AbortController();
  const onAbort = () => stopAll.abort();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  if (opts.signal.aborted) stopAll.abort();
  const many = nodes.length > 1;
  if (many)
    opts.sink.progress(
      `tracing ${resolved.display} on ${nodes.length} nodes: ${nodes.map((n) => n.target.node).join(', ')}`,
    );
  const sessions = nodes.map(
    (n) =>
      new NodeSession({
        cluster,
        node: n.target.node,
        pod: n.pod,
        bundle: bundle(n),
        sink,
        deflate: n.runner.deflate,
        label: many ? n.target.node : undefined,
        signal: stopAll.signal,
        force: opts.force,
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

/** The Jobs a run would create, as YAML (one document per node); creates nothing. */
export function printManifest(opts: Omit<KubeTraceOptions, 'sink' | 'signal'>): string {
  return dumpJobs(planNodes(opts).map((n) => n.pod));
}

function dumpJobs(pods: k8s.V1Pod[]): string {
  const lib = k8sLib();
  return pods.map((pod) => lib.dumpYaml(buildDebugJob(pod), { lineWidth: -1, noRefs: true })).join('---\n');
}

/**
 * The Job a run would create when no cluster answers (or there is no
 * kubeconfig): the values only the cluster knows are placeholders, <NODE OF
 * pod/web-0> and <ADDRESSES OF pod/web-0>. The request is built for a target
 * with one stand-in address (0.0.0.0), shown as that placeholder.
 */
export function printManifestWithoutCluster(
  where: Pick<KubePlaceOptions, 'target' | 'selector' | 'namespace' | 'context' | 'kubeconfig'>,
  buildRequest: (place: TracePlace) => TraceRequest,
  opts: DebugPodOptions,
): string {
  const patch = opts.podPatch ? loadPodPatch(opts.podPatch) : undefined;
  const { kind, name } = parseTarget(where.target, where.selector);
  const what = where.target ?? `-l ${where.selector}`;
  const node = kind === 'node' ? name : `<NODE OF ${what}>`;
  const request = buildRequest({
    nodes: [node],
    addresses: kind === 'node' ? [] : ['0.0.0.0'],
    kubernetes: true,
    warnings: [],
  });
  const pod = buildDebugPod({
    node,
    namespace: opts.debugNamespace || where.namespace || kubeconfigNamespace(where) || 'default',
    image: opts.image || DEFAULT_IMAGE,
    session: newSessionId(),
    target: what,
    filter: request.pcapFilter.replace('host 0.0.0.0', `host <ADDRESSES OF ${what}>`),
    durationSec: request.durationSec,
    profile: opts.profile,
    imagePullSecrets: opts.imagePullSecrets,
    patch,
  });
  return dumpJobs([pod]);
}

/** The namespace of the kubeconfig's context, if there is a kubeconfig (nothing is asked of a cluster). */
function kubeconfigNamespace(where: Pick<KubePlaceOptions, 'context' | 'kubeconfig'>): string | undefined {
  try {
    return connect(where).namespace;
  } catch {
    return undefined;
  }
}

/** No cluster to ask: no kubeconfig, or no answer. Refusals and bad input are real errors still. */
export function unreachable(err: unknown): boolean {
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

/** Validate: those flags as options; a bad value is exit 2 before anything is created. */
export function kubeFlagOptions(
  flags: KubeFlags,
): Pick<KubePlaceOptions, 'requestTimeoutMs' | 'as' | 'asGroups'> & DebugPodOptions {
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
