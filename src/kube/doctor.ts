/**
 * `kubectl pwru doctor [node/NAME]`: what a node offers and whether this user
 * can trace there, found out before an incident needs it. The user's rights
 * (SelfSubjectAccessReviews of every rule in manifests/rbac.yaml), whether
 * admission lets the debug pod into the namespace (a server-side dry run),
 * and, through the same debug pod a trace uses, the node's kernel, BTF, the
 * backends that really attach there and the drop reasons its kernel knows.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { type CheckResult, CONTROL, type NodeFacts, type RunnerRequest } from '../../runner/runner';
import { BadInput } from '../errors';
import { type ReadyInfo, RecordDecoder } from '../record/decode';
import { BACKENDS } from '../trace/request';
import { AbortedError } from './api';
import { AttachChannel } from './attach-channel';
import { buildBundle, CLIENT_GRACE_SEC, checkArch } from './bundle';
import { type Cluster, call, connect, explain, isPodSecurityRefusal, k8sLib, paths } from './client';
import {
  buildDebugPod,
  CONTAINER,
  DEFAULT_IMAGE,
  loadPodPatch,
  newSessionId,
  packageRoot,
} from './debug-pod';
import { PodLife } from './pod-life';
import type { DebugPodOptions, KubePlaceOptions, KubeTraceOptions } from './run';

export type Verdict = 'ok' | 'warn' | 'fail';

export interface DoctorRow {
  check: string;
  verdict: Verdict;
  detail: string;
}

export type DoctorOptions = Pick<
  KubePlaceOptions,
  'namespace' | 'context' | 'kubeconfig' | 'requestTimeoutMs' | 'as' | 'asGroups'
> &
  Pick<DebugPodOptions, 'image' | 'profile' | 'imagePullSecrets' | 'podPatch'> &
  Pick<KubeTraceOptions, 'signal'> & {
    /** node/NAME or NAME; absent: the first Ready node. */
    node?: string;
    progress(message: string): void;
  };

/** The backends doctor tries, each for a moment, on functions every kernel has. */
const PROBE_BACKENDS = BACKENDS.filter((b) => b !== 'auto');
const KPROBE_FUNCS = '^(ip_rcv|ip_output|__dev_queue_xmit|__netif_receive_skb_core|kfree_skb_reason)$';
/** An address that never carries traffic (TEST-NET-1): the checks attach and see nothing. */
const NO_TRAFFIC = 'host 192.0.2.1';

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** Rights a trace cannot do without; the other rules of manifests/rbac.yaml are comforts. */
const NEEDED = new Set([
  'get pods',
  'watch pods',
  'list pods',
  'create pods',
  'delete pods',
  'create pods/attach',
  'create jobs',
  'delete jobs',
  'get nodes',
]);

async function checkRights(cluster: Cluster, namespace: string): Promise<DoctorRow[]> {
  const docs = k8sLib().loadAllYaml(
    readFileSync(join(packageRoot(), 'manifests', 'rbac.yaml'), 'utf8'),
  ) as k8s.V1ClusterRole[];
  const asks: { what: string; attrs: k8s.V1ResourceAttributes }[] = [];
  for (const doc of docs) {
    for (const rule of (doc.rules ?? []) as Rule[]) {
      for (const res of rule.resources) {
        for (const verb of rule.verbs) {
          const [resource, subresource] = res.split('/');
          const clusterScoped = resource === 'nodes' || resource === 'namespaces';
          asks.push({
            what: `${verb} ${res}`,
            attrs: {
              verb,
              group: rule.apiGroups[0] ?? '',
              resource,
              subresource,
              namespace: clusterScoped ? undefined : namespace,
            },
          });
        }
      }
    }
  }
  const answers = await Promise.all(
    asks.map(({ attrs }) =>
      call(cluster, { verb: 'create', resource: 'selfsubjectaccessreviews.authorization.k8s.io' }, (api) =>
        api.request<k8s.V1SelfSubjectAccessReview>(
          'POST',
          '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
          {
            body: {
              apiVersion: 'authorization.k8s.io/v1',
              kind: 'SelfSubjectAccessReview',
              spec: { resourceAttributes: attrs },
            },
          },
        ),
      ),
    ),
  );
  const missing = asks.filter((_, i) => !answers[i].status?.allowed).map((a) => a.what);
  const missingNeeded = missing.filter((m) => NEEDED.has(m));
  const rows: DoctorRow[] = [];
  rows.push({
    check: 'rights',
    verdict: missingNeeded.length ? 'fail' : missing.length ? 'warn' : 'ok',
    detail: missing.length
      ? `missing in namespace ${namespace}: ${missing.join(', ')}${missingNeeded.length ? '' : ' (comforts only: the trace runs)'}; manifests/rbac.yaml has them`
      : `every rule of manifests/rbac.yaml, in namespace ${namespace}`,
  });
  return rows;
}

async function pickNode(cluster: Cluster, name?: string): Promise<k8s.V1Node> {
  if (name) {
    const n = name.replace(/^(node|nodes|no)\//, '');
    return call(cluster, { verb: 'get', resource: 'nodes', name: n }, (api) =>
      api.request<k8s.V1Node>('GET', paths.nodes(n)),
    );
  }
  const list = await call(cluster, { verb: 'list', resource: 'nodes' }, (api) =>
    api.request<k8s.V1NodeList>('GET', paths.nodes()),
  );
  const ready = list.items.find((n) =>
    n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
  if (!ready) throw new BadInput('no Ready node to check: name one with doctor node/NAME');
  return ready;
}

export async function runDoctor(o: DoctorOptions): Promise<DoctorRow[]> {
  if (o.node && !/^((node|nodes|no)\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(o.node))
    throw new BadInput(`doctor takes node/NAME, not "${o.node}"`);
  const cluster = connect(o);
  const ns = cluster.namespace;
  const node = await pickNode(cluster, o.node);
  const name = node.metadata?.name ?? '';
  const arch = node.status?.nodeInfo?.architecture ?? '';
  const rows: DoctorRow[] = [
    {
      check: 'node',
      verdict: 'ok',
      detail: `${name} (${arch}, ${node.status?.nodeInfo?.osImage ?? '?'}, kubelet ${node.status?.nodeInfo?.kubeletVersion ?? '?'})`,
    },
  ];
  rows.push(...(await checkRights(cluster, ns)));

  const patch = o.podPatch ? loadPodPatch(o.podPatch) : undefined;
  const pod = buildDebugPod({
    node: name,
    namespace: ns,
    image: o.image || DEFAULT_IMAGE,
    session: newSessionId(),
    target: `doctor node/${name}`,
    filter: '',
    durationSec: 10,
    profile: o.profile,
    imagePullSecrets: o.imagePullSecrets,
    kernelVersion: node.status?.nodeInfo?.kernelVersion,
    patch,
  });
  try {
    await cluster.api.request('POST', paths.core('pods', ns), { query: { dryRun: 'All' }, body: pod });
    rows.push({ check: 'admission', verdict: 'ok', detail: `the debug pod is admitted in namespace ${ns}` });
  } catch (err) {
    if (err instanceof AbortedError) throw err;
    const why = isPodSecurityRefusal(err)
      ? `Pod Security refuses it in namespace ${ns}: ${(err as Error).message}; use -n with a namespace labelled pod-security.kubernetes.io/enforce=privileged`
      : explain(err, { verb: 'create', resource: 'pods', namespace: ns }, cluster.server).message.split(
          '\n',
        )[0];
    rows.push({ check: 'admission', verdict: 'fail', detail: why });
    rows.push({ check: 'node checks', verdict: 'fail', detail: 'not run: the debug pod cannot be created' });
    return rows;
  }
  checkArch(name, arch);
  rows.push(...(await nodeChecks(cluster, name, arch, pod, o)));
  return rows;
}

/** The debug pod runs each backend for a moment, and reports what the node has. */
async function nodeChecks(
  cluster: Cluster,
  node: string,
  arch: string,
  pod: k8s.V1Pod,
  o: DoctorOptions,
): Promise<DoctorRow[]> {
  const checks = PROBE_BACKENDS.map((b) => [
    '--backend',
    b,
    '--duration',
    '1',
    ...(b === 'tracepoint' ? [] : ['--filter-func', KPROBE_FUNCS]),
    '--',
    NO_TRAFFIC,
  ]);
  const request: RunnerRequest = { args: [], clientGraceSec: CLIENT_GRACE_SEC, checks };
  const bundle = await buildBundle(arch, request);
  const life = new PodLife({
    cluster,
    node,
    pod,
    progress: o.progress,
    warning: (m) => o.progress(`warning: ${m}`),
    signal: o.signal ?? new AbortController().signal,
  });
  const lines: string[] = [];
  let rest = '';
  try {
    await life.create();
    await life.waitRunning();
    const channel = await AttachChannel.open(
      cluster,
      life.namespace,
      life.podName ?? '',
      CONTAINER,
      {
        stdout: (d) => {
          rest += d.toString('utf8');
          const parts = rest.split('\n');
          rest = parts.pop() ?? '';
          lines.push(...parts.filter(Boolean));
        },
        stderr: () => {},
      },
      o.signal,
    );
    void channel.sendBundle([bundle]);
    const onAbort = () => channel.sendLine(CONTROL.stop);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    await channel.closed;
    o.signal?.removeEventListener('abort', onAbort);
    if (o.signal?.aborted) throw new AbortedError();
  } finally {
    await life.delete();
    await life.waitGone();
  }
  return readChecks(lines, checks.length);
}

/** The runner's lines → rows: BTF, kernel, each backend, drop reasons. */
export function readChecks(lines: string[], count: number): DoctorRow[] {
  let facts: NodeFacts['facts'] | undefined;
  const results: CheckResult[] = [];
  for (const l of lines) {
    const v = JSON.parse(l) as NodeFacts | CheckResult;
    if ('facts' in v) facts = v.facts;
    else results.push(v);
  }
  const rows: DoctorRow[] = [];
  let kernel = '';
  let dropReasons = 0;
  const backendRows: DoctorRow[] = [];
  for (let i = 0; i < count; i++) {
    const backend = PROBE_BACKENDS[i];
    const r = results.find((x) => x.check === i);
    if (!r) {
      backendRows.push({
        check: `backend ${backend}`,
        verdict: 'fail',
        detail: 'no answer from the debug pod',
      });
      continue;
    }
    let ready: ReadyInfo | undefined;
    let error = '';
    const decoder = new RecordDecoder({
      hello: (h) => {
        kernel = h.kernel;
      },
      ready: (x) => {
        ready = x;
      },
      error: (e) => {
        error = `${e.code}: ${e.message}`;
      },
    });
    try {
      decoder.push(Buffer.from(r.stream, 'base64'));
      decoder.finish();
    } catch {}
    if (ready) {
      dropReasons = Math.max(dropReasons, Object.keys(ready.drop_reasons ?? {}).length);
      backendRows.push({
        check: `backend ${backend}`,
        verdict: 'ok',
        detail: `works: ${ready.attached} probes attached in ${ready.attach_ms} ms`,
      });
    } else {
      backendRows.push({
        check: `backend ${backend}`,
        verdict: backend === 'tracepoint' ? 'fail' : 'warn',
        detail: error || r.stderr.trim().split('\n').pop() || `the helper exited ${r.exitCode}`,
      });
    }
  }
  rows.push({ check: 'kernel', verdict: kernel ? 'ok' : 'warn', detail: kernel || 'unknown' });
  rows.push({
    check: 'BTF',
    verdict: facts?.btf ? 'ok' : 'fail',
    detail: facts?.btf
      ? '/sys/kernel/btf/vmlinux'
      : 'no /sys/kernel/btf/vmlinux: the helper cannot find what to probe',
  });
  if (facts?.lockdown && !/\[none\]/.test(facts.lockdown))
    rows.push({ check: 'lockdown', verdict: 'warn', detail: `kernel lockdown ${facts.lockdown}` });
  rows.push(...backendRows);
  if (!backendRows.some((r) => r.verdict === 'ok'))
    rows.push({ check: 'tracing', verdict: 'fail', detail: 'no backend works on this node' });
  rows.push({
    check: 'drop reasons',
    verdict: dropReasons > 0 ? 'ok' : 'warn',
    detail:
      dropReasons > 0
        ? `${dropReasons} reasons known to this kernel (skb:kfree_skb says why a packet died)`
        : 'the kernel names no drop reasons (before 5.17): drops are shown without a reason',
  });
  return rows;
}

/** 0: a trace can run there; 1: something stops it (docs/kubernetes.md). */
export function doctorExitCode(rows: DoctorRow[]): number {
  return rows.some((r) => r.verdict === 'fail') ||
    !rows.some((r) => r.check.startsWith('backend') && r.verdict === 'ok')
    ? 1
    : 0;
}
