/**
 * The real-cluster stage's world: a real Kubernetes (../shared/k8s, started by
 * scripts/run-tests.js, or the cluster PWRU_E2E_KUBECONFIG names), a namespace
 * of this run's own (k8s-e2e-…, Pod Security "privileged") with real pods
 * that serve TCP and UDP — a Deployment, a StatefulSet and a DaemonSet, a
 * Service over the Deployment and one that selects nothing — and the real CLI
 * run as a child process against them. Only local images are used
 * (busybox, node), pulled IfNotPresent.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { Api } from '../../../src/kube/api';
import { k8sLib } from '../../../src/kube/client';

export const REPO = resolve(__dirname, '..', '..', '..', '..');
export const BIN = join(REPO, 'bin', 'kubectl-pwru');
export const BUSYBOX = 'docker.io/library/busybox:latest';
export const MANAGED = 'app.kubernetes.io/managed-by=kubectl-pwru';

/** The cluster's kubeconfig: run-tests.js sets this when it found or started one. */
export const KUBECONFIG = process.env.PWRU_E2E_KUBECONFIG ?? '';

export function adminApi(kubeconfig = KUBECONFIG): Api {
  const kc = new (k8sLib().KubeConfig)();
  kc.loadFromFile(kubeconfig);
  return new Api(kc, { timeoutMs: 30_000 });
}

export const api = KUBECONFIG ? adminApi() : (undefined as unknown as Api);

export async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function ignore404<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export async function createNamespace(name: string, enforce: string): Promise<void> {
  await api.request('POST', '/api/v1/namespaces', {
    body: { metadata: { name, labels: { 'pod-security.kubernetes.io/enforce': enforce } } },
  });
}

export async function deleteNamespace(name: string): Promise<void> {
  await ignore404(api.request('DELETE', `/api/v1/namespaces/${name}`, { query: { gracePeriodSeconds: 0 } }));
}

/** A server in every pod: TCP 8080 answers "hi", UDP 9999 swallows datagrams. */
function serverPod(labels: Record<string, string>): k8s.V1PodTemplateSpec {
  return {
    metadata: { labels },
    spec: {
      terminationGracePeriodSeconds: 0,
      enableServiceLinks: false,
      containers: [
        {
          name: 'srv',
          image: BUSYBOX,
          imagePullPolicy: 'IfNotPresent',
          command: [
            'sh',
            '-c',
            'while true; do echo hi | nc -l -p 8080 >/dev/null 2>&1; done & while true; do nc -u -l -p 9999 >/dev/null 2>&1; done',
          ],
          // Once ready, stay so: the one-connection-at-a-time server above is briefly closed between connections.
          readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1, failureThreshold: 1000 },
        },
      ],
    },
  };
}

export interface World {
  ns: string;
  dir: string;
  /** Pods of each workload, Running and ready. */
  pods: { deploy: k8s.V1Pod[]; sts: k8s.V1Pod[]; ds: k8s.V1Pod[] };
  node: string;
  nodeIp: string;
}

export async function makeWorld(): Promise<World> {
  const ns = `k8s-e2e-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'pwru-cluster-e2e-'));
  await createNamespace(ns, 'privileged');
  const apps = (r: string) => `/apis/apps/v1/namespaces/${ns}/${r}`;
  await api.request('POST', apps('deployments'), {
    body: {
      metadata: { name: 'web' },
      spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: serverPod({ app: 'web' }) },
    },
  });
  await api.request('POST', `/api/v1/namespaces/${ns}/services`, {
    body: {
      metadata: { name: 'db' },
      spec: { clusterIP: 'None', selector: { app: 'db' }, ports: [{ port: 8080 }] },
    },
  });
  await api.request('POST', apps('statefulsets'), {
    body: {
      metadata: { name: 'db' },
      spec: {
        replicas: 2,
        serviceName: 'db',
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: { app: 'db' } },
        template: serverPod({ app: 'db' }),
      },
    },
  });
  await api.request('POST', apps('daemonsets'), {
    body: {
      metadata: { name: 'agent' },
      spec: { selector: { matchLabels: { app: 'agent' } }, template: serverPod({ app: 'agent' }) },
    },
  });
  await api.request('POST', `/api/v1/namespaces/${ns}/services`, {
    body: {
      metadata: { name: 'web' },
      spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    },
  });
  // A Service whose selector matches nothing: its EndpointSlice has `endpoints: null`.
  await api.request('POST', `/api/v1/namespaces/${ns}/services`, {
    body: { metadata: { name: 'empty' }, spec: { selector: { app: 'nothing' }, ports: [{ port: 80 }] } },
  });
  const ready = async (app: string, n: number) =>
    until(
      `${n} ready ${app} pods`,
      async () => {
        const list = await api.request<k8s.V1PodList>('GET', `/api/v1/namespaces/${ns}/pods`, {
          query: { labelSelector: `app=${app}` },
        });
        const ok = list.items.filter(
          (p) =>
            !p.metadata?.deletionTimestamp &&
            p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ok.length === n
          ? ok.sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))
          : undefined;
      },
      120_000,
    );
  const [deploy, sts, ds] = await Promise.all([ready('web', 2), ready('db', 2), ready('agent', 1)]);
  await until(
    'the EndpointSlice of svc/web',
    async () => {
      const l = await api.request<k8s.V1EndpointSliceList>(
        'GET',
        `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
        {
          query: { labelSelector: 'kubernetes.io/service-name=web' },
        },
      );
      return (
        l.items.flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions?.ready).length === 2 || undefined
      );
    },
    60_000,
  );
  const node = deploy[0].spec?.nodeName ?? '';
  const nodeObj = await api.request<k8s.V1Node>('GET', `/api/v1/nodes/${node}`);
  const nodeIp = nodeObj.status?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '';
  return { ns, dir, pods: { deploy, sts, ds }, node, nodeIp };
}

export function podIp(p: k8s.V1Pod): string {
  return p.status?.podIP ?? '';
}

export function podName(p: k8s.V1Pod): string {
  return p.metadata?.name ?? '';
}

/** TCP connections (8080) and UDP datagrams (9999) from this host to the pods, every gapMs. */
export function traffic(ips: string[], gapMs = 200): { stop(): void } {
  const sock = createSocket('udp4');
  const timer = setInterval(() => {
    for (const ip of ips) {
      sock.send(Buffer.from('pwru-e2e'), 9999, ip);
      const c = tcpConnect(8080, ip);
      c.on('error', () => {});
      c.on('data', () => c.end());
      c.setTimeout(1000, () => c.destroy());
    }
  }, gapMs);
  return {
    stop() {
      clearInterval(timer);
      sock.close();
    },
  };
}

/**
 * UDP datagrams (64 bytes) from this host to ip:port as fast as a child process can send them, until stop():
 * tens of thousands a second, each several events on its way to the pod.
 */
export function flood(ip: string, port: number): { stop(): void } {
  const script = `
    const s = require('node:dgram').createSocket('udp4');
    const b = Buffer.alloc(64);
    let inFlight = 0;
    const pump = () => {
      while (inFlight < 512) {
        inFlight++;
        s.send(b, () => {
          if (--inFlight === 256) setImmediate(pump);
        });
      }
    };
    s.connect(${port}, '${ip}', pump);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  return {
    stop() {
      child.kill('SIGKILL');
    },
  };
}

export interface CliRun {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  done: Promise<number | string>;
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<void>;
  waitForStdout(re: RegExp, timeoutMs?: number): Promise<void>;
}

export function startCli(args: string[], env: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, KUBECONFIG, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: CliRun = {
    child,
    stdout: '',
    stderr: '',
    done: new Promise((res) => child.once('close', (code, signal) => res(code ?? signal ?? -1))),
    waitForStderr: (re, ms = 60_000) => waitFor('stderr', re, ms),
    waitForStdout: (re, ms = 60_000) => waitFor('stdout', re, ms),
  };
  function waitFor(which: 'stdout' | 'stderr', re: RegExp, ms: number): Promise<void> {
    return new Promise((res, rej) => {
      const timer = setInterval(() => {
        if (re.test(run[which])) {
          clearInterval(timer);
          clearTimeout(limit);
          res();
        }
      }, 20);
      const limit = setTimeout(() => {
        clearInterval(timer);
        rej(new Error(`${which} never matched ${re} within ${ms} ms:\n${run.stderr}`));
      }, ms);
      run.done.then(() =>
        setTimeout(() => {
          if (re.test(run[which])) return;
          clearInterval(timer);
          clearTimeout(limit);
          rej(new Error(`the CLI ended before ${which} matched ${re}:\n${run.stderr}`));
        }, 100),
      );
    });
  }
  child.stdout?.on('data', (c: Buffer) => {
    run.stdout += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    run.stderr += c.toString();
  });
  return run;
}

export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 90_000,
): Promise<{ code: number | string; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const run = startCli(args, env);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), timeoutMs);
  const code = await run.done;
  clearTimeout(timer);
  return { code, stdout: run.stdout, stderr: run.stderr, ms: Date.now() - started };
}

/** Debug Jobs and pods of kubectl-pwru in a namespace, as "job/NAME" and "pod/NAME (PHASE)". */
export async function debugObjects(ns: string): Promise<string[]> {
  const query = { labelSelector: MANAGED };
  const [pods, jobs] = await Promise.all([
    api.request<k8s.V1PodList>('GET', `/api/v1/namespaces/${ns}/pods`, { query }),
    api.request<k8s.V1JobList>('GET', `/apis/batch/v1/namespaces/${ns}/jobs`, { query }),
  ]);
  return [
    ...jobs.items.map((j) => `job/${j.metadata?.name}`),
    ...pods.items.map(
      (p) => `pod/${p.metadata?.name} (${p.metadata?.deletionTimestamp ? 'Terminating' : p.status?.phase})`,
    ),
  ];
}

/**
 * pwru-helper processes of debug pods in a namespace (the cluster's node shares this kernel and PID
 * space; the debug pod's environment names its namespace). Others may be tracing on the same node.
 */
export function helperProcesses(ns: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmd.startsWith('./pwru-helper')) continue;
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      if (env.includes(`PWRU_POD_NAMESPACE=${ns}`)) found.push(Number(entry));
    } catch {}
  }
  return found;
}

/** A user of the cluster, from its CA (openssl): a kubeconfig for CN=user. */
export function makeUser(dir: string, user: string, adminKubeconfig = KUBECONFIG): string {
  const kc = new (k8sLib().KubeConfig)();
  kc.loadFromFile(adminKubeconfig);
  const cluster = kc.getCurrentCluster();
  const caDir = process.env.PWRU_E2E_CA_DIR ?? join(process.env.K8S_HOME ?? '/var/tmp/k8s-kit', 'pki');
  const key = join(dir, `${user}.key`);
  const csr = join(dir, `${user}.csr`);
  const crt = join(dir, `${user}.crt`);
  execFileSync(
    'openssl',
    ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', `/CN=${user}`, '-out', csr],
    { stdio: 'ignore' },
  );
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      join(caDir, 'ca.crt'),
      '-CAkey',
      join(caDir, 'ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-out',
      crt,
    ],
    { stdio: 'ignore' },
  );
  const b64 = (f: string) => readFileSync(f).toString('base64');
  const caData = cluster?.caData ?? b64(join(caDir, 'ca.crt'));
  const file = join(dir, `${user}.kubeconfig`);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: cluster?.server, 'certificate-authority-data': caData } }],
      users: [{ name: user, user: { 'client-certificate-data': b64(crt), 'client-key-data': b64(key) } }],
      contexts: [{ name: user, context: { cluster: 'c', user } }],
      'current-context': user,
    }),
  );
  return file;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON lines are free-form here.
export type Line = Record<string, any>;

/** The JSON lines of -o json output. */
export function jsonLines(stdout: string): Line[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

/**
 * A TCP proxy between the CLI and the API server that the test can cut: down()
 * ends every connection through it (as a network that dropped) and refuses new
 * ones until up(). `kubeconfig` is the cluster's, pointed at the proxy (the
 * server's certificate names 127.0.0.1).
 */
export async function apiProxy(dir: string): Promise<{
  kubeconfig: string;
  down(): void;
  up(): void;
  close(): void;
  /** Connections cut by down(). */
  cut: number;
}> {
  const text = readFileSync(KUBECONFIG, 'utf8');
  const server = /server:\s*(https:\/\/[^\s]+)/.exec(text)?.[1] ?? '';
  const target = new URL(server);
  const open = new Set<Socket>();
  let isDown = false;
  const proxy = createServer((client) => {
    client.on('error', () => {});
    if (isDown) return void client.destroy();
    const upstream = tcpConnect(Number(target.port || 443), target.hostname);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    open.add(client);
    client.on('close', () => open.delete(client));
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const port = (proxy.address() as { port: number }).port;
  const kubeconfig = join(dir, `proxied-${port}.kubeconfig`);
  writeFileSync(kubeconfig, text.replace(server, `https://127.0.0.1:${port}`));
  const state = {
    kubeconfig,
    cut: 0,
    down() {
      isDown = true;
      for (const c of open) {
        c.destroy();
        state.cut++;
      }
    },
    up() {
      isDown = false;
    },
    close() {
      for (const c of open) c.destroy();
      proxy.close();
    },
  };
  return state;
}
