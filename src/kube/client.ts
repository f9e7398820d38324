/**
 * Connection to the cluster the kubectl way: --kubeconfig FILE, else
 * KUBECONFIG, else ~/.kube/config, else the in-cluster service account; then
 * --context, then the namespace from -n or the context. And the one place
 * that turns the API's failures into messages the user can act on.
 */
import { BadInput, UserError } from '../errors';
import {
  AbortedError,
  Api,
  ApiError,
  type ApiOptions,
  DEFAULT_REQUEST_TIMEOUT_MS,
  RequestTimeout,
  type Step,
} from './api';
import type { KubeConfigLite } from './kubeconfig';

export type { Step } from './api';
/**
 * What kubectl-pwru uses of client-node: its kubeconfig reading (through
 * src/kube/kubeconfig.ts, which loads only the small modules it needs) and
 * YAML (js-yaml, as client-node uses it, loaded as CommonJS).
 */
export interface K8sLib {
  KubeConfig: typeof KubeConfigLite;
  loadYaml(text: string): unknown;
  loadAllYaml(text: string): unknown[];
  dumpYaml(value: unknown, opts?: { lineWidth?: number; noRefs?: boolean }): string;
}
let loaded: K8sLib | undefined;
export function k8sLib(): K8sLib {
  if (!loaded) {
    const yaml = require('js-yaml') as typeof import('js-yaml');
    loaded = {
      KubeConfig: (require('./kubeconfig') as typeof import('./kubeconfig')).KubeConfigLite,
      loadYaml: (text) => yaml.load(text),
      loadAllYaml: (text) => yaml.loadAll(text),
      dumpYaml: (value, opts) => yaml.dump(value, opts),
    };
  }
  return loaded;
}

export interface ConnectOptions {
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  /** --request-timeout in ms (0: none); default 30 s. */
  requestTimeoutMs?: number;
  /** --as, --as-group */
  as?: string;
  asGroups?: string[];
  /** Ends every call and watch (Ctrl-C). */
  signal?: AbortSignal;
}

export interface Cluster {
  kc: KubeConfigLite;
  api: Api;
  /** -n, else the context's namespace, else "default". */
  namespace: string;
  server: string;
}

export function loadKubeConfig(opts: ConnectOptions): KubeConfigLite {
  const kc = new (k8sLib().KubeConfig)();
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    // One line: a YAML error's own text goes on with an excerpt of the file.
    const why = (err as Error).message.split('\n')[0];
    throw new UserError(
      `cannot read the kubeconfig${opts.kubeconfig ? ` ${opts.kubeconfig}` : ''}: ${why}: is it a kubeconfig (kubectl config view --kubeconfig FILE)?`,
    );
  }
  if (opts.context) {
    if (!kc.getContextObject(opts.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new BadInput(
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
      opts.kubeconfig
        ? `the kubeconfig ${opts.kubeconfig} names no cluster (is it empty?): pass one that kubectl can use`
        : 'no cluster configured: set KUBECONFIG, pass --kubeconfig, or run inside a pod with a service account',
    );
  }
  return kc;
}

export function connect(opts: ConnectOptions): Cluster {
  const kc = loadKubeConfig(opts);
  const ctx = kc.getContextObject(kc.getCurrentContext());
  const apiOptions: ApiOptions = {
    timeoutMs: opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    asUser: opts.as,
    asGroups: opts.asGroups,
  };
  const api = new Api(kc, apiOptions, opts.signal);
  return { kc, api, namespace: opts.namespace || ctx?.namespace || 'default', server: api.server };
}

/** The Status of a failed API call, when the server sent one. */
export function apiStatus(err: unknown): ApiError | undefined {
  return err instanceof ApiError ? err : undefined;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiError && err.code === 404;
}

export const RBAC_HINT =
  'ask a cluster admin to grant the role in manifests/rbac.yaml (kubectl apply -f manifests/rbac.yaml, then a RoleBinding or ClusterRoleBinding to you)';

export function describeStep(step: Step): string {
  const obj = step.name ? `${step.resource} "${step.name}"` : step.resource;
  return `${step.verb} ${obj}${step.namespace ? ` in namespace "${step.namespace}"` : ''}`;
}

/** True when the API server said Pod Security admission refuses the pod. */
export function isPodSecurityRefusal(err: unknown): boolean {
  return err instanceof ApiError && err.code === 403 && /PodSecurity|pod security/i.test(err.message);
}

/** Turns an API failure into a UserError that names the step; aborts pass through. */
export function explain(err: unknown, step: Step, server?: string): Error {
  if (err instanceof UserError || err instanceof AbortedError) return err;
  if (err instanceof RequestTimeout) {
    return new UserError(
      `the Kubernetes API${server ? ` at ${server}` : ''} did not answer within ${err.ms / 1000} s while trying to ${describeStep(step)}: ` +
        'check the cluster and your --context, or raise --request-timeout',
    );
  }
  if (!(err instanceof ApiError)) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const code = e?.code ?? e?.cause?.code;
    if (
      code &&
      /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE)$/.test(code)
    ) {
      return new UserError(
        `cannot reach the Kubernetes API${server ? ` at ${server}` : ''} (${code}) while trying to ${describeStep(step)}: check the cluster and your --context`,
      );
    }
    if (code && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
      return new UserError(
        `the Kubernetes API${server ? ` at ${server}` : ''} failed the TLS check (${code}: ${e.message}): check the kubeconfig's certificate-authority`,
      );
    }
    return err instanceof Error ? err : new Error(String(err));
  }
  if (isPodSecurityRefusal(err)) {
    return new UserError(
      `Pod Security admission rejected the privileged debug pod in namespace "${step.namespace}": ${err.message}\n` +
        'kubectl-pwru needs a privileged pod with hostPID and hostNetwork. Pick a namespace whose ' +
        'pod-security.kubernetes.io/enforce label is "privileged" with --debug-namespace ' +
        '(for example kube-system, or: kubectl label namespace NAME pod-security.kubernetes.io/enforce=privileged)',
    );
  }
  if (err.code === 403) {
    return new UserError(`forbidden: you may not ${describeStep(step)} (${err.message})\n${RBAC_HINT}`);
  }
  if (err.code === 401) {
    return new UserError(`unauthorized: the API server did not accept your credentials (${err.message})`);
  }
  if (err.code === 404 && /^namespaces "/.test(err.message)) {
    return new BadInput(
      `${err.message.replace(/^namespaces "/, 'namespace "')}: check -n/--namespace and --debug-namespace`,
    );
  }
  if (err.code === 404) {
    return new BadInput(
      `${step.resource} ${step.name ? `"${step.name}" ` : ''}not found${step.namespace ? ` in namespace "${step.namespace}"` : ''}`,
    );
  }
  return new UserError(`cannot ${describeStep(step)}: ${err.message || `HTTP ${err.code}`}`);
}

/** Runs one API call; a failure becomes a UserError naming the step. */
export async function call<T>(cluster: Cluster, step: Step, fn: (api: Api) => Promise<T>): Promise<T> {
  try {
    return await fn(cluster.api);
  } catch (err) {
    throw explain(err, step, cluster.server);
  }
}

/** REST paths of the objects kubectl-pwru reads and writes. */
export const paths = {
  nodes: (name?: string) => `/api/v1/nodes${name ? `/${enc(name)}` : ''}`,
  namespaces: (name?: string) => `/api/v1/namespaces${name ? `/${enc(name)}` : ''}`,
  core: (resource: string, namespace?: string, name?: string) =>
    `/api/v1${namespace ? `/namespaces/${enc(namespace)}` : ''}/${resource}${name ? `/${enc(name)}` : ''}`,
  group: (group: string, resource: string, namespace?: string, name?: string) =>
    `/apis/${group}${namespace ? `/namespaces/${enc(namespace)}` : ''}/${resource}${name ? `/${enc(name)}` : ''}`,
};

function enc(s: string): string {
  return encodeURIComponent(s);
}
