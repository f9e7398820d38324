/**
 * Connection to the cluster the kubectl way: KUBECONFIG or ~/.kube/config or
 * the in-cluster service account (loadFromDefault), or --kubeconfig FILE, then
 * --context, then the namespace from -n or the context. And the one place
 * that turns the API's Status errors into messages the user can act on.
 */
import type * as k8s from '@kubernetes/client-node';
import { UserError } from '../errors';

export type K8s = typeof k8s;

let loaded: K8s | undefined;
/** client-node takes ~0.5 s to load: only Kubernetes mode pays for it. */
export function k8sLib(): K8s {
  loaded ??= require('@kubernetes/client-node') as K8s;
  return loaded;
}

export interface ConnectOptions {
  namespace?: string;
  context?: string;
  kubeconfig?: string;
}

export interface Cluster {
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  discovery: k8s.DiscoveryV1Api;
  /** -n, else the context's namespace, else "default". */
  namespace: string;
  server: string;
}

export function connect(opts: ConnectOptions): Cluster {
  const lib = k8sLib();
  const kc = new lib.KubeConfig();
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new UserError(
      `cannot read the kubeconfig${opts.kubeconfig ? ` ${opts.kubeconfig}` : ''}: ${(err as Error).message}`,
    );
  }
  if (opts.context) {
    if (!kc.getContextObject(opts.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new UserError(
        `context "${opts.context}" is not in the kubeconfig (known: ${known.join(', ') || 'none'})`,
      );
    }
    kc.setCurrentContext(opts.context);
  }
  const cluster = kc.getCurrentCluster();
  // loadFromDefault's last resort when it found no kubeconfig and is not in a pod.
  if (
    !opts.kubeconfig &&
    cluster?.server === 'http://localhost:8080' &&
    kc.getCurrentContext() === 'loaded-context'
  ) {
    throw new UserError(
      'no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a pod: pass --kubeconfig or set KUBECONFIG',
    );
  }
  if (!cluster) {
    throw new UserError(
      'no cluster configured: set KUBECONFIG, pass --kubeconfig, or run inside a pod with a service account',
    );
  }
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return {
    kc,
    core: kc.makeApiClient(lib.CoreV1Api),
    apps: kc.makeApiClient(lib.AppsV1Api),
    discovery: kc.makeApiClient(lib.DiscoveryV1Api),
    namespace: opts.namespace || ctx?.namespace || 'default',
    server: cluster.server,
  };
}

/** The Status object of a failed API call, when the server sent one. */
export interface ApiStatus {
  code: number;
  reason?: string;
  message: string;
}

export function apiStatus(err: unknown): ApiStatus | undefined {
  if (!err || typeof err !== 'object' || !('code' in err) || typeof err.code !== 'number') return undefined;
  const e = err as { code: number; body?: unknown; message?: string };
  let body = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {}
  }
  if (body && typeof body === 'object' && 'message' in body) {
    const b = body as { message?: string; reason?: string };
    return { code: e.code, reason: b.reason, message: b.message ?? '' };
  }
  return { code: e.code, message: typeof body === 'string' ? body : (e.message ?? '') };
}

const RBAC_HINT =
  'ask a cluster admin to grant the role in manifests/rbac.yaml (kubectl apply -f manifests/rbac.yaml, then a RoleBinding or ClusterRoleBinding to you)';

/** What we were doing when a call failed: used to say which verb on which resource. */
export interface Step {
  verb: string;
  resource: string;
  namespace?: string;
  name?: string;
}

function describe(step: Step): string {
  const obj = step.name ? `${step.resource} "${step.name}"` : step.resource;
  return `${step.verb} ${obj}${step.namespace ? ` in namespace "${step.namespace}"` : ''}`;
}

/** Turns an API failure into a UserError that names the step; anything else passes through. */
export function explain(err: unknown, step: Step, server?: string): Error {
  if (err instanceof UserError) return err;
  const status = apiStatus(err);
  if (!status && /HTTP protocol is not allowed/.test((err as Error)?.message ?? '')) {
    return new UserError(
      `the kubeconfig's server ${server ?? ''} is plain http: allow it with insecure-skip-tls-verify: true in its cluster entry, or use https`,
    );
  }
  if (!status) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const code = e?.code ?? e?.cause?.code;
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ECONNRESET' || code === 'ETIMEDOUT') {
      return new UserError(
        `cannot reach the Kubernetes API${server ? ` at ${server}` : ''} (${code}) while trying to ${describe(step)}: check the cluster and your --context`,
      );
    }
    return err instanceof Error ? err : new Error(String(err));
  }
  if (status.code === 403 && /PodSecurity/.test(status.message)) {
    return new UserError(
      `Pod Security admission rejected the privileged debug pod in namespace "${step.namespace}": ${status.message}\n` +
        'kubectl-pwru needs a privileged pod with hostPID and hostNetwork. Pick a namespace whose ' +
        'pod-security.kubernetes.io/enforce label is "privileged" with --debug-namespace ' +
        '(for example kube-system, or: kubectl label namespace NAME pod-security.kubernetes.io/enforce=privileged)',
    );
  }
  if (status.code === 403) {
    return new UserError(`forbidden: you may not ${describe(step)} (${status.message})\n${RBAC_HINT}`);
  }
  if (status.code === 401) {
    return new UserError(`unauthorized: the API server did not accept your credentials (${status.message})`);
  }
  if (status.code === 404 && /^namespaces "/.test(status.message)) {
    return new UserError(
      `${status.message.replace(/^namespaces "/, 'namespace "')}: check -n/--namespace and --debug-namespace`,
    );
  }
  if (status.code === 404) {
    return new UserError(
      `${step.resource} ${step.name ? `"${step.name}" ` : ''}not found${step.namespace ? ` in namespace "${step.namespace}"` : ''}`,
    );
  }
  return new UserError(`cannot ${describe(step)}: ${status.message || `HTTP ${status.code}`}`);
}

/** Runs one API call; a failure becomes a UserError naming the step. */
export async function call<T>(step: Step, fn: () => Promise<T>, server?: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw explain(err, step, server);
  }
}
