/**
 * TARGET (and -l) → the nodes to trace on, with the addresses that belong to
 * the target and the containers whose netns --pod-netns-only restricts to.
 * Complete step: reads the API, creates nothing.
 */
import { isIP } from 'node:net';
import type * as k8s from '@kubernetes/client-node';
import { BadInput, UserError } from '../errors';
import { type Cluster, call, explain, isNotFound, paths, type Step } from './client';

export type TargetKind = 'pod' | 'node' | 'svc' | 'deploy' | 'ds' | 'sts' | 'selector';

export interface TargetPod {
  namespace: string;
  name: string;
  ips: string[];
  containerIds: string[];
}

export interface NodeTarget {
  node: string;
  /** Target pods running on this node (empty for node/NAME). */
  pods: TargetPod[];
}

export interface ResolvedTarget {
  kind: TargetKind;
  /** As the user would write it, with the namespace: "pod/shop/web-0", "node/worker-3". */
  display: string;
  nodes: NodeTarget[];
  /** Every address of the target (pods, cluster IPs, endpoints): joins the pcap filter. Empty for a node. */
  ips: string[];
  /** Things the user should know: pods skipped because not running, and so on. */
  warnings: string[];
}

const KIND_ALIASES: Record<string, TargetKind> = {
  pod: 'pod',
  pods: 'pod',
  po: 'pod',
  node: 'node',
  nodes: 'node',
  no: 'node',
  svc: 'svc',
  service: 'svc',
  services: 'svc',
  deploy: 'deploy',
  deployment: 'deploy',
  deployments: 'deploy',
  ds: 'ds',
  daemonset: 'ds',
  daemonsets: 'ds',
  sts: 'sts',
  statefulset: 'sts',
  statefulsets: 'sts',
};

/** DNS-1123 subdomain: what Kubernetes accepts as an object name. */
const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function parseTarget(
  target: string | undefined,
  selector: string | undefined,
): { kind: TargetKind; name: string } {
  if (!target) {
    if (!selector)
      throw new UserError(
        'nothing to trace: give a TARGET (pod/NAME, node/NAME, svc/NAME, deploy/NAME, ds/NAME, sts/NAME) or -l SELECTOR',
      );
    return { kind: 'selector', name: '' };
  }
  const slash = target.indexOf('/');
  const kindText = slash >= 0 ? target.slice(0, slash).toLowerCase() : 'pod';
  const name = slash >= 0 ? target.slice(slash + 1) : target;
  const kind = KIND_ALIASES[kindText];
  if (!kind) {
    throw new BadInput(
      `unknown target kind "${kindText}" in "${target}": use pod/NAME, node/NAME, svc/NAME, deploy/NAME, ds/NAME or sts/NAME`,
    );
  }
  if (!NAME_RE.test(name))
    throw new BadInput(`"${name}" is not a valid Kubernetes object name (in target "${target}")`);
  if (selector && (kind === 'pod' || kind === 'node' || kind === 'svc')) {
    throw new BadInput(
      `-l selects pods of a workload: use it alone or with deploy/, ds/ or sts/, not with ${kind}/`,
    );
  }
  return { kind, name };
}

/** A pod that can be traced: scheduled and not finished. Returns why not, otherwise. */
function podProblem(pod: k8s.V1Pod): string | undefined {
  const id = `pod "${pod.metadata?.name}" in namespace "${pod.metadata?.namespace}"`;
  if (!pod.spec?.nodeName)
    return `${id} is not scheduled to a node yet (phase ${pod.status?.phase ?? 'Pending'}): wait for it, then trace`;
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed')
    return `${id} has already finished (phase ${phase}): nothing is left to trace`;
  return undefined;
}

function podIps(pod: k8s.V1Pod): string[] {
  const ips = new Set<string>();
  for (const p of pod.status?.podIPs ?? []) if (p.ip) ips.add(p.ip);
  if (pod.status?.podIP) ips.add(pod.status.podIP);
  return [...ips].filter((ip) => isIP(ip) !== 0);
}

function targetPod(pod: k8s.V1Pod): TargetPod {
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    ips: podIps(pod),
    containerIds: (pod.status?.containerStatuses ?? [])
      .map((c) => c.containerID ?? '')
      .filter((id) => id !== ''),
  };
}

function groupByNode(pods: k8s.V1Pod[]): NodeTarget[] {
  const byNode = new Map<string, TargetPod[]>();
  for (const pod of pods) {
    const node = pod.spec?.nodeName ?? '';
    const list = byNode.get(node) ?? [];
    list.push(targetPod(pod));
    byNode.set(node, list);
  }
  return [...byNode.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([node, p]) => ({ node, pods: p }));
}

/** kubectl's label selector syntax from a LabelSelector object. */
export function selectorString(sel: k8s.V1LabelSelector | undefined): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) parts.push(`${k}=${v}`);
  for (const e of sel?.matchExpressions ?? []) {
    const values = (e.values ?? []).join(',');
    if (e.operator === 'In') parts.push(`${e.key} in (${values})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${values})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.join(',');
}

/** Throws "namespace not found" when it is; says nothing when it exists or we may not look. */
async function checkNamespace(cluster: Cluster, namespace: string): Promise<void> {
  try {
    await cluster.api.request('GET', paths.namespaces(namespace));
  } catch (err) {
    if (isNotFound(err)) throw new BadInput(`namespace "${namespace}" not found: check -n/--namespace`);
  }
}

/** A read whose 404 may really mean a wrong namespace. */
async function get<T>(cluster: Cluster, step: Step, path: string): Promise<T> {
  try {
    return await cluster.api.request<T>('GET', path);
  } catch (err) {
    if (isNotFound(err) && step.namespace) await checkNamespace(cluster, step.namespace);
    throw explain(err, step, cluster.server);
  }
}

async function podsBySelector(cluster: Cluster, namespace: string, selector: string): Promise<k8s.V1Pod[]> {
  const list = await call(cluster, { verb: 'list', resource: 'pods', namespace }, (api) =>
    api.request<k8s.V1PodList>('GET', paths.core('pods', namespace), { query: { labelSelector: selector } }),
  );
  return list.items;
}

function fromPods(kind: TargetKind, display: string, pods: k8s.V1Pod[], what: string): ResolvedTarget {
  const warnings: string[] = [];
  const live = pods.filter((p) => {
    const problem = podProblem(p);
    if (problem) warnings.push(`skipping ${problem}`);
    return !problem;
  });
  if (live.length === 0) {
    throw new BadInput(
      pods.length === 0 ? `${what} selects no pods` : `${what}: no pod is running (${warnings.join('; ')})`,
    );
  }
  const nodes = groupByNode(live);
  return {
    kind,
    display,
    nodes,
    ips: [...new Set(nodes.flatMap((n) => n.pods.flatMap((p) => p.ips)))],
    warnings,
  };
}

export async function resolveTarget(
  cluster: Cluster,
  target: string | undefined,
  selector: string | undefined,
): Promise<ResolvedTarget> {
  const { kind, name } = parseTarget(target, selector);
  const namespace = cluster.namespace;
  switch (kind) {
    case 'pod': {
      const pod = await get<k8s.V1Pod>(
        cluster,
        { verb: 'get', resource: 'pods', namespace, name },
        paths.core('pods', namespace, name),
      );
      const problem = podProblem(pod);
      if (problem) throw new BadInput(problem);
      return fromPods('pod', `pod/${namespace}/${name}`, [pod], `pod "${name}"`);
    }
    case 'node': {
      // The node itself is read when the run plans its pod (src/kube/run.ts): not twice.
      return { kind, display: `node/${name}`, nodes: [{ node: name, pods: [] }], ips: [], warnings: [] };
    }
    case 'svc': {
      const svc = await get<k8s.V1Service>(
        cluster,
        { verb: 'get', resource: 'services', namespace, name },
        paths.core('services', namespace, name),
      );
      return resolveService(cluster, svc);
    }
    case 'deploy':
    case 'ds':
    case 'sts': {
      const resource = { deploy: 'deployments', ds: 'daemonsets', sts: 'statefulsets' }[kind];
      const workload = await get<k8s.V1Deployment | k8s.V1DaemonSet | k8s.V1StatefulSet>(
        cluster,
        { verb: 'get', resource: `${resource}.apps`, namespace, name },
        paths.group('apps/v1', resource, namespace, name),
      );
      const own = selectorString(workload.spec?.selector);
      const sel = [own, selector].filter(Boolean).join(',');
      const pods = await podsBySelector(cluster, namespace, sel);
      return fromPods(kind, `${kind}/${namespace}/${name}`, pods, `${kind}/${name} (selector ${sel})`);
    }
    case 'selector': {
      const pods = await podsBySelector(cluster, namespace, selector ?? '');
      // An empty list from a missing namespace is the more likely mistake.
      if (pods.length === 0) await checkNamespace(cluster, namespace);
      return fromPods(
        'selector',
        `pods/${namespace} -l ${selector}`,
        pods,
        `-l ${selector} in namespace "${namespace}"`,
      );
    }
  }
}

async function resolveService(cluster: Cluster, svc: k8s.V1Service): Promise<ResolvedTarget> {
  const namespace = svc.metadata?.namespace ?? cluster.namespace;
  const name = svc.metadata?.name ?? '';
  const ips = new Set<string>();
  for (const ip of svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])) {
    if (isIP(ip)) ips.add(ip);
  }
  for (const ip of svc.spec?.externalIPs ?? []) if (isIP(ip)) ips.add(ip);
  for (const ing of svc.status?.loadBalancer?.ingress ?? []) if (ing.ip && isIP(ing.ip)) ips.add(ing.ip);

  const slices = await call(
    cluster,
    { verb: 'list', resource: 'endpointslices.discovery.k8s.io', namespace },
    (api) =>
      api.request<k8s.V1EndpointSliceList>(
        'GET',
        paths.group('discovery.k8s.io/v1', 'endpointslices', namespace),
        {
          query: { labelSelector: `kubernetes.io/service-name=${name}` },
        },
      ),
  );
  const byNode = new Map<string, Map<string, TargetPod>>();
  const warnings: string[] = [];
  for (const slice of slices.items) {
    // A slice with no endpoints has `endpoints: null` on the wire, whatever the type says.
    for (const ep of slice.endpoints ?? []) {
      if (ep.conditions?.ready === false && ep.conditions?.serving !== true) continue;
      const addrs = (ep.addresses ?? []).filter((a) => isIP(a));
      for (const a of addrs) ips.add(a);
      let node = ep.nodeName;
      const ref = ep.targetRef;
      let pod: TargetPod = {
        namespace: ref?.namespace ?? namespace,
        name: ref?.name ?? addrs[0] ?? '',
        ips: addrs,
        containerIds: [],
      };
      if (ref?.kind === 'Pod' && ref.name) {
        try {
          const p = await cluster.api.request<k8s.V1Pod>(
            'GET',
            paths.core('pods', ref.namespace ?? namespace, ref.name),
          );
          node ??= p.spec?.nodeName;
          pod = targetPod(p);
        } catch {
          // The endpoint is enough to trace by address; the pod was only for its netns.
        }
      }
      if (!node) {
        warnings.push(
          `endpoint ${addrs.join(', ')} of service "${name}" has no node: not traced on its node`,
        );
        continue;
      }
      const pods = byNode.get(node) ?? new Map<string, TargetPod>();
      pods.set(`${pod.namespace}/${pod.name}`, pod);
      byNode.set(node, pods);
    }
  }
  if (byNode.size === 0) {
    const selector = svc.spec?.selector ? selectorString({ matchLabels: svc.spec.selector }) : '';
    throw new BadInput(
      `service "${name}" in namespace "${namespace}" has no ready endpoints` +
        (selector ? ` (no running, ready pod matches its selector ${selector})` : ' (it has no selector)') +
        `: nothing to trace on a node for it. To see where its clients' packets go, trace a client's node: kubectl pwru node/NODE 'host ${[...ips][0] ?? 'CLUSTER-IP'}'`,
    );
  }
  const nodes = [...byNode.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([node, pods]) => ({ node, pods: [...pods.values()] }));
  return { kind: 'svc', display: `svc/${namespace}/${name}`, nodes, ips: [...ips], warnings };
}
