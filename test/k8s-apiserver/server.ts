/**
 * A stand-in Kubernetes API server for end-to-end tests: small, but it speaks
 * the real wire protocol — REST with Status errors (403, 404, 409, 422), watch
 * streams (chunked JSON lines of {type, object}), and the attach WebSocket
 * channel protocol (v5.channel.k8s.io, falling back to v4). Pods are run by a
 * built-in "kubelet" as real local processes (their command and args, in a
 * per-pod temp root with workingDir under it), so the real runner and helper
 * trace real packets. Pod specs are validated against the real Kubernetes
 * OpenAPI schema (kubernetes-models, generated from the upstream spec).
 *
 * Plain http; tests point a kubeconfig at it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pod } from 'kubernetes-models/v1/Pod';
import { type WebSocket, WebSocketServer } from 'ws';

// biome-ignore lint/suspicious/noExplicitAny: API objects are free-form JSON here.
export type Obj = Record<string, any>;

export interface StandInConfig {
  /** The user named in Forbidden messages. */
  user?: string;
  /** RBAC: "VERB RESOURCE" pairs that are refused, e.g. "create pods", "create pods/attach". */
  forbid?: string[];
  /** Pod Security admission level enforced per namespace. */
  podSecurity?: Record<string, 'baseline' | 'restricted'>;
  /** Images the "kubelet" cannot pull. */
  unpullable?: string[];
  /** Images that have no `node` on their PATH: a container running node there fails to start. */
  withoutNode?: string[];
  /** How long the "kubelet" takes to pick up a new pod (default 20 ms). */
  kubeletDelayMs?: number;
  /** End every watch this long after it starts (real servers end them after a timeout). */
  watchTimeoutMs?: number;
  /**
   * Refuse watches of pods as a real API server does when its watch cache is behind etcd:
   * 504 "Timeout: Too large resource version" (seen on the test cluster under load).
   */
  podWatchBehind?: boolean;
  /** Attach subprotocols offered, best first (default v5 then v4). */
  channelProtocols?: string[];
  /** Cut every attach connection right after passing on a stdin line that starts with this (e.g. the client's "stop"). */
  dropAfterStdin?: string;
}

interface Watcher {
  resource: string;
  namespace?: string;
  match: (o: Obj) => boolean;
  res: ServerResponse;
}

interface Running {
  proc: ChildProcess;
  root: string;
  attached: Set<WebSocket>;
  deadline?: NodeJS.Timeout;
  exited: Promise<void>;
}

const CLUSTER_SCOPED = new Set(['nodes', 'namespaces']);
const KINDS: Record<string, string> = {
  pods: 'Pod',
  services: 'Service',
  events: 'Event',
  nodes: 'Node',
  namespaces: 'Namespace',
  endpointslices: 'EndpointSlice',
  deployments: 'Deployment',
  daemonsets: 'DaemonSet',
  statefulsets: 'StatefulSet',
  jobs: 'Job',
};
const GROUPS: Record<string, string> = {
  endpointslices: 'discovery.k8s.io',
  deployments: 'apps',
  daemonsets: 'apps',
  statefulsets: 'apps',
  jobs: 'batch',
};

/** kubectl's label selector syntax: a=b, a!=b, a, !a, a in (x,y), a notin (x,y). */
export function matchLabels(selector: string, labels: Record<string, string> = {}): boolean {
  const terms = selector
    .split(/,(?![^(]*\))/)
    .map((t) => t.trim())
    .filter(Boolean);
  return terms.every((t) => {
    let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(t);
    if (m) {
      const values = m[3].split(',').map((v) => v.trim());
      const has = m[1] in labels && values.includes(labels[m[1]]);
      return m[2] === 'in' ? has : !has;
    }
    m = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(t);
    if (m) return m[2] === '!=' ? labels[m[1]] !== m[3] : labels[m[1]] === m[3];
    if (t.startsWith('!')) return !(t.slice(1) in labels);
    return t in labels;
  });
}

function fieldValue(o: Obj, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Obj)[k] : undefined), o);
}

export function matchFields(selector: string, o: Obj): boolean {
  return selector
    .split(',')
    .filter(Boolean)
    .every((t) => {
      const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(t);
      if (!m) return false;
      const v = String(fieldValue(o, m[1]) ?? '');
      return m[2] === '!=' ? v !== m[3] : v === m[3];
    });
}

function killGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (proc.pid) process.kill(-proc.pid, signal);
  } catch {
    // The group is gone already.
  }
}

export class StandInApiServer {
  readonly server: Server;
  private readonly objects = new Map<string, Obj>();
  private readonly watchers = new Set<Watcher>();
  private readonly running = new Map<string, Running>();
  private readonly wss: WebSocketServer;
  private rv = 1;
  private readonly sockets = new Set<Socket>();
  /** Every request, "VERB path": tests look at what the client asked for. */
  readonly requests: string[] = [];
  /** Every pod created, as received (after defaulting the name). */
  readonly createdPods: Obj[] = [];
  /** The temp root of every pod run so far: tests look for leftovers under them. */
  readonly podRoots: string[] = [];
  url = '';

  constructor(readonly config: StandInConfig = {}) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => this.status(res, 500, 'InternalError', String(err?.stack ?? err)));
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (offered) =>
        (this.config.channelProtocols ?? ['v5.channel.k8s.io', 'v4.channel.k8s.io']).find((p) =>
          offered.has(p),
        ) ?? false,
    });
    this.server.on('upgrade', (req, socket, head) => this.upgrade(req, socket as Socket, head));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  /** A kubeconfig file that points at this server, with context "standin". */
  writeKubeconfig(path: string, namespace = 'default'): string {
    const text = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: standin',
      `  cluster: {server: "${this.url}", insecure-skip-tls-verify: true}`,
      'users:',
      `- name: ${this.config.user ?? 'alice'}`,
      '  user: {token: "stand-in-token"}',
      'contexts:',
      '- name: standin',
      `  context: {cluster: standin, user: ${this.config.user ?? 'alice'}, namespace: ${namespace}}`,
      'current-context: standin',
      '',
    ].join('\n');
    writeFileSync(path, text);
    return path;
  }

  async close(): Promise<void> {
    for (const key of [...this.running.keys()]) this.kill(key, 'SIGKILL');
    await Promise.all([...this.running.values()].map((r) => r.exited));
    for (const w of this.watchers) w.res.end();
    for (const c of this.wss.clients) c.terminate();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- store ----------------------------------------------------------------

  private key(resource: string, namespace: string | undefined, name: string): string {
    return `${resource}/${CLUSTER_SCOPED.has(resource) ? '' : namespace}/${name}`;
  }

  get(resource: string, namespace: string | undefined, name: string): Obj | undefined {
    return this.objects.get(this.key(resource, namespace, name));
  }

  list(resource: string, namespace?: string): Obj[] {
    return [...this.objects.entries()]
      .filter(([k]) => k.startsWith(`${resource}/`))
      .map(([, o]) => o)
      .filter(
        (o) => namespace === undefined || CLUSTER_SCOPED.has(resource) || o.metadata.namespace === namespace,
      );
  }

  /** Adds or replaces an object (tests seed the cluster with this). */
  put(resource: string, obj: Obj): Obj {
    const meta = obj.metadata ?? {};
    obj.metadata = meta;
    if (!CLUSTER_SCOPED.has(resource)) meta.namespace ??= 'default';
    const key = this.key(resource, meta.namespace, meta.name);
    const existed = this.objects.has(key);
    meta.uid ??= randomUUID();
    meta.creationTimestamp ??= new Date().toISOString();
    meta.resourceVersion = String(this.rv++);
    obj.apiVersion ??= GROUPS[resource] ? `${GROUPS[resource]}/v1` : 'v1';
    obj.kind ??= KINDS[resource];
    this.objects.set(key, obj);
    this.notify(resource, existed ? 'MODIFIED' : 'ADDED', obj);
    return obj;
  }

  private remove(resource: string, obj: Obj): void {
    this.objects.delete(this.key(resource, obj.metadata.namespace, obj.metadata.name));
    obj.metadata.resourceVersion = String(this.rv++);
    this.notify(resource, 'DELETED', obj);
  }

  private notify(resource: string, type: string, obj: Obj): void {
    for (const w of this.watchers) {
      if (w.resource !== resource) continue;
      if (w.namespace !== undefined && obj.metadata.namespace !== w.namespace) continue;
      if (!w.match(obj)) continue;
      w.res.write(`${JSON.stringify({ type, object: obj })}\n`);
    }
  }

  pods(): Obj[] {
    return this.list('pods');
  }

  // ---- HTTP -----------------------------------------------------------------

  private status(res: ServerResponse, code: number, reason: string, message: string, details?: Obj): void {
    if (res.headersSent) {
      res.end();
      return;
    }
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message,
        reason,
        ...(details ? { details } : {}),
        code,
      }),
    );
  }

  private send(res: ServerResponse, code: number, obj: Obj): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(obj));
  }

  /** /api/v1/... or /apis/GROUP/v1/... → resource, namespace, name, subresource. */
  private route(
    pathname: string,
  ): { resource: string; namespace?: string; name?: string; sub?: string } | undefined {
    const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
    let rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
    else if (parts[0] === 'apis' && parts.length >= 3) rest = parts.slice(3);
    else return undefined;
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [resource, name, sub] = rest;
    if (!resource || !KINDS[resource]) return undefined;
    return { resource, namespace, name, sub };
  }

  private forbidden(verb: string, resource: string, namespace?: string, name?: string): string | undefined {
    if (!(this.config.forbid ?? []).includes(`${verb} ${resource}`)) return undefined;
    const [res, sub] = resource.split('/');
    const group = GROUPS[res] ?? '';
    const obj = name ? `${res} "${name}"` : res;
    return (
      `${obj} is forbidden: User "${this.config.user ?? 'alice'}" cannot ${verb} resource "${resource}" in API group "${group}"` +
      (namespace ? ` in the namespace "${namespace}"` : ' at the cluster scope') +
      (sub ? '' : '')
    );
  }

  private async body(req: IncomingMessage): Promise<Obj | undefined> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? (JSON.parse(text) as Obj) : undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const r = this.route(url.pathname);
    if (!r) return this.status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const q = url.searchParams;
    const isWatch = q.get('watch') === '1' || q.get('watch') === 'true';
    const verb =
      req.method === 'GET'
        ? r.name
          ? 'get'
          : isWatch
            ? 'watch'
            : 'list'
        : req.method === 'POST'
          ? 'create'
          : req.method === 'DELETE'
            ? 'delete'
            : 'update';
    const resourceName = r.sub ? `${r.resource}/${r.sub}` : r.resource;
    const denied = this.forbidden(verb, resourceName, r.namespace, r.name);
    if (denied) return this.status(res, 403, 'Forbidden', denied, { name: r.name, kind: r.resource });

    if (
      r.namespace &&
      r.resource !== 'namespaces' &&
      !this.get('namespaces', undefined, r.namespace) &&
      verb === 'create'
    ) {
      return this.status(res, 404, 'NotFound', `namespaces "${r.namespace}" not found`, {
        name: r.namespace,
        kind: 'namespaces',
      });
    }

    if (verb === 'get') {
      const o = this.get(r.resource, r.namespace, r.name ?? '');
      if (!o) {
        return this.status(res, 404, 'NotFound', `${r.resource} "${r.name}" not found`, {
          name: r.name,
          kind: r.resource,
        });
      }
      return this.send(res, 200, o);
    }
    if (verb === 'list' || verb === 'watch') {
      const labelSel = q.get('labelSelector') ?? '';
      const fieldSel = q.get('fieldSelector') ?? '';
      const match = (o: Obj) => matchLabels(labelSel, o.metadata?.labels) && matchFields(fieldSel, o);
      const items = this.list(r.resource, r.namespace).filter(match);
      if (verb === 'list') {
        return this.send(res, 200, {
          apiVersion: GROUPS[r.resource] ? `${GROUPS[r.resource]}/v1` : 'v1',
          kind: `${KINDS[r.resource]}List`,
          metadata: { resourceVersion: String(this.rv) },
          items,
        });
      }
      if (this.config.podWatchBehind && r.resource === 'pods') {
        return this.send(res, 504, {
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          message: `Timeout: Too large resource version: ${this.rv + 2}, current: ${this.rv}`,
          reason: 'Timeout',
          details: { retryAfterSeconds: 1 },
          code: 504,
        });
      }
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      const w: Watcher = { resource: r.resource, namespace: r.namespace, match, res };
      this.watchers.add(w);
      // No resourceVersion: the current state first, as ADDED events.
      if (!q.get('resourceVersion'))
        for (const o of items) res.write(`${JSON.stringify({ type: 'ADDED', object: o })}\n`);
      req.on('close', () => this.watchers.delete(w));
      if (this.config.watchTimeoutMs !== undefined) {
        setTimeout(() => {
          this.watchers.delete(w);
          res.end();
        }, this.config.watchTimeoutMs);
      }
      return;
    }
    if (verb === 'create' && r.resource === 'pods' && r.namespace) {
      return this.createPod(r.namespace, (await this.body(req)) ?? {}, res, q.get('dryRun') === 'All');
    }
    if (verb === 'create' && r.resource === 'jobs' && r.namespace) {
      return this.createJob(r.namespace, (await this.body(req)) ?? {}, res);
    }
    if (verb === 'delete' && r.resource === 'jobs' && r.namespace && r.name) {
      const job = this.get('jobs', r.namespace, r.name);
      if (!job)
        return this.status(res, 404, 'NotFound', `jobs.batch "${r.name}" not found`, {
          name: r.name,
          kind: 'jobs',
        });
      this.remove('jobs', job);
      // The garbage collector, at once: the Job's pods go with it.
      for (const pod of this.list('pods', r.namespace)) {
        if (pod.metadata.ownerReferences?.some((o: Obj) => o.uid === job.metadata.uid))
          this.deletePod(pod, pod.spec.terminationGracePeriodSeconds ?? 30);
      }
      return this.send(res, 200, job);
    }
    if (verb === 'delete' && r.resource === 'pods' && r.namespace && r.name) {
      const pod = this.get('pods', r.namespace, r.name);
      if (!pod)
        return this.status(res, 404, 'NotFound', `pods "${r.name}" not found`, {
          name: r.name,
          kind: 'pods',
        });
      const body = await this.body(req).catch(() => undefined);
      const grace = Number(
        q.get('gracePeriodSeconds') ??
          body?.gracePeriodSeconds ??
          pod.spec.terminationGracePeriodSeconds ??
          30,
      );
      this.deletePod(pod, grace);
      return this.send(res, 200, pod);
    }
    return this.status(
      res,
      405,
      'MethodNotAllowed',
      `${req.method} is not supported by the stand-in on ${url.pathname}`,
    );
  }

  // ---- pods: admission, the "kubelet" -----------------------------------------

  /** The Job controller, at once: one pod from the template, owned by the Job. */
  private createJob(namespace: string, job: Obj, res: ServerResponse) {
    job.metadata ??= {};
    job.metadata.namespace = namespace;
    if (!job.metadata.name && job.metadata.generateName)
      job.metadata.name = `${job.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
    job.status = {};
    this.put('jobs', job);
    const template = structuredClone(job.spec?.template ?? {});
    const pod: Obj = {
      metadata: {
        ...template.metadata,
        name: `${job.metadata.name}-${randomBytes(3).toString('hex').slice(0, 5)}`,
        namespace,
        labels: { ...template.metadata?.labels, 'job-name': job.metadata.name },
        ownerReferences: [
          {
            apiVersion: 'batch/v1',
            kind: 'Job',
            name: job.metadata.name,
            uid: job.metadata.uid,
            controller: true,
          },
        ],
      },
      spec: template.spec,
    };
    const sink = { status: 0, body: undefined as unknown };
    this.createPod(namespace, pod, undefined, false, sink);
    if (sink.status >= 300) {
      const message = (sink.body as Obj)?.message ?? 'cannot create pod';
      this.event(
        { metadata: job.metadata, spec: {} },
        'Warning',
        'FailedCreate',
        `Error creating: ${message}`,
        'Job',
      );
    }
    this.send(res, 201, job);
  }

  private createPod(
    namespace: string,
    pod: Obj,
    res: ServerResponse | undefined,
    dryRun = false,
    sink?: { status: number; body: unknown },
  ) {
    if (!res) {
      // From the "Job controller": what would be the answer is kept instead.
      res = {
        writeHead: (code: number) => {
          if (sink) sink.status = code;
          return res;
        },
        end: (text: string) => {
          if (sink) sink.body = JSON.parse(text);
        },
      } as unknown as ServerResponse;
    }
    pod.metadata ??= {};
    pod.metadata.namespace ??= namespace;
    if (!pod.metadata.name && pod.metadata.generateName) {
      pod.metadata.name = `${pod.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
    }
    const name = pod.metadata.name;
    try {
      new Pod(pod as never).validate();
    } catch (err) {
      return this.status(res, 422, 'Invalid', `Pod "${name}" is invalid: ${(err as Error).message}`, {
        name,
        kind: 'Pod',
      });
    }
    if (!name)
      return this.status(
        res,
        422,
        'Invalid',
        'Pod "" is invalid: metadata.name: Required value: name or generateName is required',
      );
    if (this.get('pods', namespace, name)) {
      return this.status(res, 409, 'AlreadyExists', `pods "${name}" already exists`, { name, kind: 'pods' });
    }
    const level = this.config.podSecurity?.[namespace];
    if (level) {
      const spec = pod.spec ?? {};
      const problems: string[] = [];
      const hostNs = ['hostNetwork', 'hostPID', 'hostIPC'].filter((k) => spec[k]).map((k) => `${k}=true`);
      if (hostNs.length) problems.push(`host namespaces (${hostNs.join(', ')})`);
      const priv = (spec.containers ?? [])
        .filter((c: Obj) => c.securityContext?.privileged)
        .map((c: Obj) => `container "${c.name}" must not set securityContext.privileged=true`);
      if (priv.length) problems.push(`privileged (${priv.join(', ')})`);
      if (problems.length) {
        return this.status(
          res,
          403,
          'Forbidden',
          `pods "${name}" is forbidden: violates PodSecurity "${level}:latest": ${problems.join(', ')}`,
          {
            name,
            kind: 'pods',
          },
        );
      }
    }
    if (dryRun) return this.send(res, 201, pod);
    pod.status = { phase: 'Pending', qosClass: 'Burstable' };
    this.createdPods.push(structuredClone(pod));
    this.put('pods', pod);
    this.send(res, 201, pod);
    setTimeout(() => this.kubelet(pod), this.config.kubeletDelayMs ?? 20);
  }

  private event(pod: Obj, type: 'Normal' | 'Warning', reason: string, message: string, kind = 'Pod'): void {
    this.put('events', {
      metadata: {
        name: `${pod.metadata.name}.${randomBytes(8).toString('hex')}`,
        namespace: pod.metadata.namespace,
      },
      involvedObject: {
        kind,
        namespace: pod.metadata.namespace,
        name: pod.metadata.name,
        uid: pod.metadata.uid,
        apiVersion: 'v1',
      },
      reason,
      message,
      type,
      count: 1,
      source: { component: 'kubelet', host: pod.spec.nodeName },
      firstTimestamp: new Date().toISOString(),
      lastTimestamp: new Date().toISOString(),
    });
  }

  private live(pod: Obj): boolean {
    return (
      this.get('pods', pod.metadata.namespace, pod.metadata.name) === pod && !pod.metadata.deletionTimestamp
    );
  }

  private kubelet(pod: Obj): void {
    if (!this.live(pod)) return;
    const node = pod.spec.nodeName;
    if (!node || !this.get('nodes', undefined, node)) return; // no kubelet will ever pick it up
    const c = pod.spec.containers[0];
    const base = { name: c.name, image: c.image, imageID: '', ready: false, restartCount: 0, started: false };
    pod.status = {
      ...pod.status,
      hostIP: this.get('nodes', undefined, node)?.status?.addresses?.[0]?.address ?? '127.0.0.1',
      startTime: new Date().toISOString(),
    };
    this.event(pod, 'Normal', 'Pulling', `Pulling image "${c.image}"`);
    if ((this.config.unpullable ?? []).includes(c.image)) {
      const msg = `Failed to pull image "${c.image}": rpc error: code = NotFound desc = failed to pull and unpack image "${c.image}": failed to resolve reference "${c.image}": not found`;
      setTimeout(() => {
        if (!this.live(pod)) return;
        this.event(pod, 'Warning', 'Failed', msg);
        pod.status.containerStatuses = [
          { ...base, state: { waiting: { reason: 'ErrImagePull', message: msg } } },
        ];
        this.put('pods', pod);
      }, 50);
      return;
    }
    this.event(pod, 'Normal', 'Pulled', `Container image "${c.image}" already present on machine`);
    const containerId = `containerd://${randomBytes(32).toString('hex')}`;
    const root = mkdtempSync(join(tmpdir(), `standin-pod-${pod.metadata.name}-`));
    this.podRoots.push(root);
    for (const m of c.volumeMounts ?? []) mkdirSync(join(root, m.mountPath), { recursive: true });
    const cwd = join(root, c.workingDir ?? '/');
    mkdirSync(cwd, { recursive: true });
    const command: string[] = [...(c.command ?? []), ...(c.args ?? [])];
    const exe = command[0] === 'node' ? process.execPath : command[0];
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOSTNAME: node };
    for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    this.event(pod, 'Normal', 'Created', `Created container ${c.name}`);
    if ((this.config.withoutNode ?? []).includes(c.image) && command[0] === 'node') {
      // What containerd reports when the image lacks the command.
      const message =
        'failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: ' +
        'unable to start container process: exec: "node": executable file not found in $PATH: unknown';
      rmSync(root, { recursive: true, force: true });
      this.event(pod, 'Warning', 'Failed', `Error: ${message}`);
      pod.status = {
        ...pod.status,
        phase: 'Failed',
        containerStatuses: [
          {
            ...base,
            containerID: containerId,
            state: { terminated: { exitCode: 128, reason: 'StartError', message, containerID: containerId } },
          },
        ],
      };
      this.put('pods', pod);
      return;
    }
    const proc = spawn(exe, command.slice(1), {
      cwd,
      env,
      stdio: [c.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      // Its own process group: SIGKILL reaches every process of the "container", as the runtime's does.
      detached: true,
    });
    const run: Running = {
      proc,
      root,
      attached: new Set(),
      exited: new Promise((resolve) => proc.once('close', () => resolve())),
    };
    this.running.set(pod.metadata.uid, run);
    proc.stdin?.on('error', () => {});
    const fanOut = (channel: number) => (chunk: Buffer) => {
      for (const ws of run.attached) ws.send(Buffer.concat([Buffer.from([channel]), chunk]));
    };
    proc.stdout?.on('data', fanOut(1));
    proc.stderr?.on('data', fanOut(2));
    proc.once('error', (err) => {
      this.event(
        pod,
        'Warning',
        'Failed',
        `Error: failed to create containerd task: exec: "${command[0]}": ${err.message}`,
      );
    });
    proc.once('close', (code, signal) => {
      if (run.deadline) clearTimeout(run.deadline);
      const exitCode = code ?? (signal === 'SIGKILL' ? 137 : 143);
      for (const ws of run.attached) {
        ws.send(
          Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' }))]),
        );
        ws.close(1000);
      }
      this.running.delete(pod.metadata.uid);
      rmSync(root, { recursive: true, force: true });
      if (this.get('pods', pod.metadata.namespace, pod.metadata.name) !== pod) return;
      if (pod.metadata.deletionTimestamp) {
        this.remove('pods', pod);
        return;
      }
      const deadline = pod.status.reason === 'DeadlineExceeded';
      pod.status = {
        ...pod.status,
        phase: exitCode === 0 && !deadline ? 'Succeeded' : 'Failed',
        containerStatuses: [
          {
            ...base,
            containerID: containerId,
            state: {
              terminated: {
                exitCode,
                reason: exitCode === 0 ? 'Completed' : 'Error',
                finishedAt: new Date().toISOString(),
                containerID: containerId,
              },
            },
          },
        ],
      };
      this.put('pods', pod);
    });
    if (pod.spec.activeDeadlineSeconds) {
      run.deadline = setTimeout(() => {
        pod.status.reason = 'DeadlineExceeded';
        pod.status.message = `Pod was active on the node longer than the specified deadline`;
        this.event(pod, 'Normal', 'DeadlineExceeded', pod.status.message);
        killGroup(proc, 'SIGKILL');
      }, pod.spec.activeDeadlineSeconds * 1000);
    }
    this.event(pod, 'Normal', 'Started', `Started container ${c.name}`);
    pod.status = {
      ...pod.status,
      phase: 'Running',
      podIP: pod.status.hostIP,
      podIPs: [{ ip: pod.status.hostIP }],
      containerStatuses: [
        {
          ...base,
          ready: true,
          started: true,
          containerID: containerId,
          state: { running: { startedAt: new Date().toISOString() } },
        },
      ],
    };
    this.put('pods', pod);
  }

  /** The network drops: every attach connection is cut without a close handshake. */
  dropConnections(): void {
    for (const ws of this.wss.clients) ws.terminate();
  }

  private kill(uid: string, signal: NodeJS.Signals): void {
    const run = this.running.get(uid);
    if (run) killGroup(run.proc, signal);
  }

  private deletePod(pod: Obj, grace: number): void {
    const run = this.running.get(pod.metadata.uid);
    if (!run) {
      this.remove('pods', pod);
      return;
    }
    if (pod.metadata.deletionTimestamp) return;
    pod.metadata.deletionTimestamp = new Date().toISOString();
    pod.metadata.deletionGracePeriodSeconds = grace;
    this.put('pods', pod);
    run.proc.kill('SIGTERM');
    // SIGTERM goes to the container's main process; at the end of the grace period every process gets SIGKILL.
    setTimeout(() => killGroup(run.proc, 'SIGKILL'), Math.max(grace, 0) * 1000).unref();
  }

  // ---- attach ---------------------------------------------------------------

  private reject(socket: Socket, code: number, reason: string, message: string): void {
    const body = JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      code,
    });
    socket.end(
      `HTTP/1.1 ${code} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer) {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push(`UPGRADE ${url.pathname}${url.search}`);
    const r = this.route(url.pathname);
    if (r?.resource !== 'pods' || r.sub !== 'attach' || !r.name || !r.namespace) {
      return this.reject(socket, 404, 'NotFound', 'the server could not find the requested resource');
    }
    const denied = this.forbidden('create', 'pods/attach', r.namespace, r.name);
    if (denied) return this.reject(socket, 403, 'Forbidden', denied);
    const pod = this.get('pods', r.namespace, r.name);
    if (!pod) return this.reject(socket, 404, 'NotFound', `pods "${r.name}" not found`);
    const run = this.running.get(pod.metadata.uid);
    if (!run || pod.status.phase !== 'Running') {
      return this.reject(
        socket,
        400,
        'BadRequest',
        `pod ${r.name} is not running (phase ${pod.status.phase})`,
      );
    }
    const container = url.searchParams.get('container') ?? pod.spec.containers[0].name;
    const spec = pod.spec.containers.find((c: Obj) => c.name === container);
    if (!spec)
      return this.reject(socket, 400, 'BadRequest', `container ${container} is not valid for pod ${r.name}`);
    if (url.searchParams.get('stdin') === 'true' && !spec.stdin) {
      return this.reject(
        socket,
        400,
        'BadRequest',
        `stdin is not enabled for container ${container} of pod ${r.name}`,
      );
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const v5 = ws.protocol === 'v5.channel.k8s.io';
      run.attached.add(ws);
      const stdin = run.proc.stdin;
      // As containerd does: the end of this session's stdin (closed alone, or with the stream) closes the
      // container's stdin for good with stdinOnce; without it, only this session's output stops.
      const stdinOnce = pod.spec.containers[0].stdinOnce;
      ws.on('message', (data: Buffer) => {
        if (data.length === 0) return;
        if (data[0] === 0) {
          stdin?.write(data.subarray(1));
          const word = this.config.dropAfterStdin;
          if (word && data.subarray(1).toString().startsWith(word)) {
            this.config.dropAfterStdin = undefined;
            this.dropConnections();
          }
        } else if (v5 && data[0] === 255 && data[1] === 0) {
          if (stdinOnce) stdin?.end();
          else run.attached.delete(ws);
        }
      });
      ws.on('close', () => {
        run.attached.delete(ws);
        if (stdinOnce) stdin?.end();
      });
    });
  }
}
