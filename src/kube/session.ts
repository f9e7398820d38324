/**
 * One node's trace: create the debug pod, wait for it with a Watch (showing
 * scheduling and image-pull events as they happen), attach, send the bundle,
 * stream the helper's records into a HelperStream, and delete the pod on
 * every way out.
 */
import type * as k8s from '@kubernetes/client-node';
import WebSocket from 'ws';
import { UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { HelperStream, helperExitCode } from '../trace/helper-stream';
import { HEARTBEAT_MS, HEARTBEAT_TIMEOUT_SEC } from './bundle';
import { apiStatus, type Cluster, call, explain, k8sLib, type Step } from './client';
import { CONTAINER } from './debug-pod';

/** Give up waiting for the pod to run after this long. */
export const START_TIMEOUT_MS = 120_000;
/** After asking the runner to stop, wait this long for its last records. */
const STOP_WAIT_MS = 6000;
/** After asking the runner to stop, delete the pod anyway after this long (its SIGTERM stops the helper too). */
const EARLY_DELETE_MS = 1500;

const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, error: 3, close: 255 } as const;

/** Container states in which the pod will not get further without help. */
const FATAL_WAITING = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
  'CrashLoopBackOff',
]);

/**
 * Helper ERROR codes that mean the request cannot work as given: exit code 2,
 * as in local mode (src/local/session.ts keeps the same list).
 */

/** What the API server sends on the error channel when the container's stream ends. */
interface ChannelStatus {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/** Protocols we speak, best first: v5 can half-close stdin, v4 cannot (closing stdin closes all). */
export const CHANNEL_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

/**
 * Opens an exec/attach stream. A refusal before the upgrade comes back as a
 * plain HTTP Status: read it, so a 403 says which verb on which resource.
 */
export async function openChannel(cluster: Cluster, path: string, step: Step): Promise<WebSocket> {
  const url = `${cluster.server.replace(/^http/, 'ws').replace(/\/+$/, '')}${path}`;
  const opts: WebSocket.ClientOptions = {};
  await cluster.kc.applyToHTTPSOptions(opts);
  return new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url, CHANNEL_PROTOCOLS, opts);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        reject(explain({ code: res.statusCode ?? 0, body }, step, cluster.server));
      });
      res.on('error', reject);
    });
    ws.once('error', (err) => reject(explain(err, step, cluster.server)));
  });
}

export class AbortedError extends Error {
  constructor() {
    super('interrupted');
  }
}

export interface NodeSessionOptions {
  cluster: Cluster;
  node: string;
  pod: k8s.V1Pod;
  bundle: Buffer;
  sink: TraceSink;
  /** Set when several nodes are traced: prefixes progress and tags every line. */
  label?: string;
  signal: AbortSignal;
}

export class NodeSession {
  podName?: string;
  readonly namespace: string;
  readonly stream: HelperStream;
  private stderrTail: string[] = [];
  private readonly where: string;

  constructor(private readonly o: NodeSessionOptions) {
    this.namespace = o.pod.metadata?.namespace ?? 'default';
    this.where = o.label ? `${o.label}: ` : '';
    this.stream = new HelperStream(o.sink, o.label);
  }

  private progress(message: string): void {
    this.o.sink.progress(`${this.where}${message}`);
  }

  /** Runs the trace to its end; the pod is gone (or its deletion was asked for) when this settles. */
  async run(): Promise<void> {
    try {
      if (this.o.signal.aborted) throw new AbortedError();
      await this.create();
      await this.waitRunning();
      await this.attach();
    } finally {
      await this.delete();
    }
  }

  private async create(): Promise<void> {
    const { cluster, pod } = this.o;
    this.progress(`creating debug pod on node ${this.o.node} in namespace ${this.namespace}`);
    const created = await call(
      { verb: 'create', resource: 'pods', namespace: this.namespace },
      () => cluster.core.createNamespacedPod({ namespace: this.namespace, body: pod }),
      cluster.server,
    );
    this.podName = created.metadata?.name;
  }

  private async waitRunning(): Promise<void> {
    const lib = k8sLib();
    const watch = new lib.Watch(this.o.cluster.kc);
    const name = this.podName ?? '';
    const ns = this.namespace;
    const aborts: AbortController[] = [];
    let finished = false;
    // A watch that opens after we stopped waiting must be closed at once, or it keeps the process alive.
    const keep = (a: AbortController) => (finished ? a.abort() : aborts.push(a));
    const seenEvents = new Set<string>();
    let lastEvent = '';
    if (this.o.signal.aborted) throw new AbortedError();
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new UserError(
              `debug pod ${ns}/${name} on node ${this.o.node} did not start within ${START_TIMEOUT_MS / 1000} s${lastEvent ? ` (last event: ${lastEvent})` : ''}`,
            ),
          );
        }, START_TIMEOUT_MS);
        const onAbort = () => reject(new AbortedError());
        this.o.signal.addEventListener('abort', onAbort, { once: true });
        const settle = () => {
          clearTimeout(timer);
          this.o.signal.removeEventListener('abort', onAbort);
        };
        const ok = () => {
          settle();
          resolve();
        };
        const fail = (e: Error) => {
          settle();
          reject(e);
        };

        const onPod = (type: string, pod: k8s.V1Pod) => {
          if (type === 'DELETED')
            return fail(new UserError(`debug pod ${ns}/${name} was deleted before it started`));
          const verdict = this.podVerdict(pod);
          if (verdict === 'running') ok();
          else if (verdict instanceof Error) fail(verdict);
        };
        const onEvent = (_type: string, ev: k8s.CoreV1Event) => {
          const key = `${ev.metadata?.uid}/${ev.count ?? 1}`;
          if (seenEvents.has(key)) return;
          seenEvents.add(key);
          lastEvent = `${ev.reason}: ${ev.message}`;
          this.progress(`${ev.type === 'Warning' ? 'warning: ' : ''}${ev.reason}: ${ev.message}`);
        };
        const onDone = (err: unknown) => {
          if (finished || this.o.signal.aborted) return;
          if (err) {
            if ((err as Error).name === 'AbortError') return;
            fail(
              explain(err, { verb: 'watch', resource: 'pods', namespace: ns, name }, this.o.cluster.server),
            );
            return;
          }
          // The server (or a proxy) ended the watch early: look every second instead.
          const poll = setInterval(() => {
            if (finished) {
              clearInterval(poll);
              return;
            }
            this.o.cluster.core.readNamespacedPod({ name, namespace: ns }).then(
              (pod) => onPod('MODIFIED', pod),
              (e) => {
                if (apiStatus(e)?.code === 404) onPod('DELETED', {});
              },
            );
          }, 1000);
        };
        watch
          .watch(`/api/v1/namespaces/${ns}/pods`, { fieldSelector: `metadata.name=${name}` }, onPod, onDone)
          .then(keep, fail);
        // Events are a comfort, not a need: a user who may not watch them still gets the trace.
        watch
          .watch(
            `/api/v1/namespaces/${ns}/events`,
            { fieldSelector: `involvedObject.name=${name}` },
            onEvent,
            () => {},
          )
          .then(keep, () => {});
      });
    } finally {
      finished = true;
      for (const a of aborts) a.abort();
    }
    this.progress(`debug pod ${ns}/${name} is running; sending the helper and attaching probes`);
  }

  /** 'running', 'waiting', or the error that says why the pod will never run. */
  private podVerdict(pod: k8s.V1Pod): 'running' | 'waiting' | Error {
    const id = `debug pod ${this.namespace}/${this.podName} on node ${this.o.node}`;
    const status = pod.status;
    const cs = status?.containerStatuses?.find((c) => c.name === CONTAINER);
    const waiting = cs?.state?.waiting;
    if (waiting?.reason && FATAL_WAITING.has(waiting.reason)) {
      const image = pod.spec?.containers.find((c) => c.name === CONTAINER)?.image ?? '';
      const pull = /Image/.test(waiting.reason);
      return new UserError(
        `${id} cannot start: ${waiting.reason}: ${waiting.message ?? ''}` +
          (pull
            ? `\nthe node cannot pull ${image}: pass --image with an image that has node and that the node can pull`
            : ''),
      );
    }
    const terminated = cs?.state?.terminated;
    if (status?.phase === 'Failed' || status?.phase === 'Succeeded' || terminated) {
      const why = terminated
        ? `${terminated.reason ?? 'terminated'} (exit code ${terminated.exitCode})${terminated.message ? `: ${terminated.message}` : ''}`
        : `${status?.reason ?? status?.phase}${status?.message ? `: ${status.message}` : ''}`;
      const image = pod.spec?.containers.find((c) => c.name === CONTAINER)?.image ?? '';
      const noNode = terminated?.reason === 'StartError' || terminated?.exitCode === 127;
      return new UserError(
        `${id} ended before the trace started: ${why}` +
          (noNode ? `\nthe image ${image} must have node on its PATH: pass --image with one that does` : ''),
      );
    }
    if (status?.phase === 'Running' && cs?.state?.running) return 'running';
    return 'waiting';
  }

  private async attach(): Promise<void> {
    const ns = this.namespace;
    const name = this.podName ?? '';
    let status: ChannelStatus | undefined;
    let readError: Error | undefined;
    const path =
      `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}/attach` +
      `?container=${CONTAINER}&stdin=true&stdout=true&stderr=true&tty=false`;
    const ws = await openChannel(this.o.cluster, path, {
      verb: 'create',
      resource: 'pods/attach',
      namespace: ns,
      name,
    });
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      const data = isBinary ? raw : Buffer.from(raw);
      if (data.length === 0) return;
      const channel = data[0];
      const payload = data.subarray(1);
      if (channel === CHANNEL.stdout) {
        if (readError) return;
        try {
          this.stream.push(payload);
        } catch (err) {
          // A corrupt stream (or a sink that cannot write): stop this node's trace, keep the reason.
          readError = err as Error;
          ws.terminate();
          return;
        }
        // Output slower than the node: stop reading; the runner's pipe, then the kernel's ring buffer, absorb it.
        const drained = this.o.sink.waitForDrain?.();
        if (drained) {
          ws.pause();
          drained.then(() => ws.resume());
        }
      } else if (channel === CHANNEL.stderr) this.stderr(payload);
      else if (channel === CHANNEL.error) {
        try {
          status = JSON.parse(payload.toString('utf8')) as ChannelStatus;
        } catch {
          status = { status: 'Failure', message: payload.toString('utf8') };
        }
      }
    });
    ws.on('error', () => {});

    const v5 = ws.protocol === 'v5.channel.k8s.io';
    const send = (channel: number, data: Buffer) => {
      if (ws.readyState !== ws.OPEN) return;
      const frame = Buffer.allocUnsafe(data.length + 1);
      frame[0] = channel;
      data.copy(frame, 1);
      ws.send(frame);
    };
    const closed = new Promise<{ code: number; reason: string }>((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });

    // The bundle, in pieces the API server passes on without fuss; then heartbeats.
    for (let off = 0; off < this.o.bundle.length; off += 256 * 1024) {
      send(CHANNEL.stdin, this.o.bundle.subarray(off, off + 256 * 1024));
    }
    const heartbeat = setInterval(() => send(CHANNEL.stdin, Buffer.from('.')), HEARTBEAT_MS);

    let stopTimer: NodeJS.Timeout | undefined;
    let deleteTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      // Ask the runner to stop by closing its stdin; it stops the helper, which
      // writes its final stats and END before the stream closes.
      clearInterval(heartbeat);
      if (v5) send(CHANNEL.close, Buffer.from([CHANNEL.stdin]));
      else ws.close(1000);
      stopTimer = setTimeout(() => ws.terminate(), STOP_WAIT_MS);
      // A second Ctrl-C exits 3 s after the first: by then the pod's deletion
      // must be under way even if the helper is still detaching.
      // The grace period leaves the helper time to detach and report.
      deleteTimer = setTimeout(() => void this.delete(10), EARLY_DELETE_MS);
    };
    if (this.o.signal.aborted) stop();
    else this.o.signal.addEventListener('abort', stop, { once: true });

    const { code } = await closed;
    clearInterval(heartbeat);
    if (stopTimer) clearTimeout(stopTimer);
    if (deleteTimer) clearTimeout(deleteTimer);
    this.o.signal.removeEventListener('abort', stop);
    try {
      this.stream.decoder.finish();
    } catch {
      // A cut-off last frame after an interrupt is expected; the records before it were shown.
    }

    if (readError) {
      throw new UserError(
        `the trace from node ${this.o.node} could not be read: ${readError.message}${this.tail()}`,
      );
    }
    const outcome = this.stream.outcome;
    if (outcome.error) {
      // The helper's own words, verbatim (prefixed with the node when several are traced).
      throw new UserError(`${this.where}${outcome.error.message}`, helperExitCode(outcome.error.code));
    }
    if (this.o.signal.aborted) return;
    if (outcome.endReason) return;
    if (status?.status === 'Success' || status?.status === 'Failure') {
      // The container ended without the helper's END frame: the pod says why.
      throw new UserError(
        `the runner on node ${this.o.node} ended before the trace did${await this.termination()}${this.tail()}`,
      );
    }
    throw new UserError(
      `the connection to the API server dropped during the trace on node ${this.o.node} (websocket closed, code ${code}); ` +
        `the debug pod stops its probes by itself within ${HEARTBEAT_TIMEOUT_SEC} s${this.tail()}`,
    );
  }

  /** " (exit code N: reason)" from the pod's container status, when it has ended; "" otherwise. */
  private async termination(): Promise<string> {
    const name = this.podName ?? '';
    for (let i = 0; i < 10; i++) {
      try {
        const pod = await this.o.cluster.core.readNamespacedPod({ name, namespace: this.namespace });
        const t = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER)?.state?.terminated;
        if (t)
          return ` (exit code ${t.exitCode}${t.reason ? `, ${t.reason}` : ''}${t.message ? `: ${t.message}` : ''})`;
      } catch {
        return '';
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    return '';
  }

  private stderr(data: Buffer): void {
    for (const line of data.toString('utf8').split('\n')) {
      if (line.trim()) this.stderrTail.push(line);
    }
    if (this.stderrTail.length > 20) this.stderrTail.splice(0, this.stderrTail.length - 20);
  }

  private tail(): string {
    return this.stderrTail.length ? `\n${this.stderrTail.map((l) => `  ${l}`).join('\n')}` : '';
  }

  private deleting?: Promise<void>;
  /** Deletes the pod; never throws: a failure is reported with what to do about it. */
  delete(graceSec = 1): Promise<void> {
    this.deleting ??= this.deleteOnce(graceSec).finally(() => {
      this.deleting = undefined;
    });
    return this.deleting;
  }

  private async deleteOnce(graceSec: number): Promise<void> {
    if (!this.podName) return;
    const name = this.podName;
    try {
      await this.o.cluster.core.deleteNamespacedPod({
        name,
        namespace: this.namespace,
        gracePeriodSeconds: graceSec,
      });
      this.podName = undefined;
    } catch (err) {
      const e = explain(
        err,
        { verb: 'delete', resource: 'pods', namespace: this.namespace, name },
        this.o.cluster.server,
      );
      if (/not found/.test(e.message)) {
        this.podName = undefined;
        return;
      }
      this.o.sink.warning(
        `could not delete debug pod ${this.namespace}/${name}: ${e.message}\nit ends by itself at its deadline; or run: kubectl pwru cleanup`,
      );
    }
  }
}
