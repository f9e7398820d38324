/**
 * One debug pod's life, apart from the trace it carries: checked by the
 * API server before anything exists (a server-side dry run of the pod, so that
 * Pod Security and other admission refusals come first), created as a
 * one-shot Job, waited for with watches (its scheduling and image-pull events
 * shown as they happen, each once), watched while the trace runs (so that a
 * pod deleted by someone else is said, not mistaken for a normal end), and
 * deleted with a bounded wait until it is gone.
 */
import type * as k8s from '@kubernetes/client-node';
import { UserError } from '../errors';
import { AbortedError, type Api, ApiError } from './api';
import { type Cluster, call, explain, isNotFound, paths } from './client';
import { buildDebugJob, CONTAINER } from './debug-pod';

/** Give up waiting for the pod to run after this long. */
export const START_TIMEOUT_MS = 120_000;
/** After the deletion, wait at most this long for the pod to be gone. */
export const GONE_WAIT_MS = 30_000;
/** After an interrupt, API calls that clean up get this long each. */
const INTERRUPTED_CALL_MS = 5000;

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

export interface PodLifeOptions {
  cluster: Cluster;
  node: string;
  /** The filled-in debug pod (src/kube/debug-pod.ts); the Job is built around it. */
  pod: k8s.V1Pod;
  progress(message: string): void;
  warning(message: string): void;
  /** Ctrl-C, SIGTERM, another node failing. */
  signal: AbortSignal;
}

export class PodLife {
  readonly namespace: string;
  jobName?: string;
  podName?: string;
  /** Set when the pod was deleted or evicted by someone else while we used it. */
  lostReason?: string;
  private deletedByUs = false;
  /** A deletion failed (and was said): waiting for the pod to go would only wait on the same fault. */
  private deleteFailed = false;
  private readonly shown = new Set<string>();
  private readonly watches = new AbortController();

  constructor(private readonly o: PodLifeOptions) {
    this.namespace = o.pod.metadata?.namespace ?? 'default';
  }

  get id(): string {
    return `debug pod ${this.namespace}/${this.podName ?? this.jobName ?? '?'} on node ${this.o.node}`;
  }

  /** An event or warning, once per text: the kubelet repeats itself. */
  private showOnce(text: string, warning: boolean): void {
    if (this.shown.has(text)) return;
    this.shown.add(text);
    this.o.progress(`${warning ? 'warning: ' : ''}${text}`);
  }

  /** Dry run of the pod, then the Job. */
  async create(): Promise<void> {
    const { cluster, signal } = this.o;
    const ns = this.namespace;
    this.o.progress(`creating debug pod on node ${this.o.node} in namespace ${ns}`);
    // Admission (Pod Security, policies, quotas) judges pods, not Jobs: ask about the pod itself first.
    await call(cluster, { verb: 'create', resource: 'pods', namespace: ns }, (api) =>
      api.request('POST', paths.core('pods', ns), { query: { dryRun: 'All' }, body: this.o.pod, signal }),
    );
    const job = buildDebugJob(this.o.pod);
    const created = await call(cluster, { verb: 'create', resource: 'jobs.batch', namespace: ns }, (api) =>
      api.request<k8s.V1Job>('POST', paths.group('batch/v1', 'jobs', ns), { body: job, signal }),
    );
    this.jobName = created.metadata?.name;
    this.followEvents(this.jobName ?? '');
  }

  /** Events of one object, shown once each; a comfort: a user who may not watch them still gets the trace. */
  private followEvents(name: string): void {
    const ns = this.namespace;
    void this.o.cluster.api
      .watch<k8s.CoreV1Event>(
        paths.core('events', ns),
        { fieldSelector: `involvedObject.name=${name}` },
        ({ object: ev }) => {
          if (ev.reason === 'SuccessfulCreate' || ev.reason === 'Scheduled') return;
          this.showOnce(`${ev.reason}: ${ev.message}`, ev.type === 'Warning');
          // The Job controller could not make the pod (quota, a webhook): it will not appear.
          if (ev.reason === 'FailedCreate' && !this.podName)
            this.failStart?.(new UserError(`${this.id} cannot be created: ${ev.message}`));
        },
        this.watches.signal,
      )
      .catch(() => {});
  }

  private failStart?: (err: Error) => void;

  /** Resolves once the pod's container runs; rejects with why it never will. */
  async waitRunning(): Promise<void> {
    const { cluster, signal } = this.o;
    const ns = this.namespace;
    const job = this.jobName ?? '';
    const stop = new AbortController();
    try {
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        const settle = (err?: Error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          clearInterval(poll);
          signal.removeEventListener('abort', onAbort);
          this.failStart = undefined;
          if (err) reject(err);
          else resolve();
        };
        this.failStart = settle;
        const onAbort = () => settle(new AbortedError());
        if (signal.aborted) return settle(new AbortedError());
        signal.addEventListener('abort', onAbort, { once: true });
        const timer = setTimeout(
          () =>
            settle(
              new UserError(
                `${this.id} did not start within ${START_TIMEOUT_MS / 1000} s${this.lastShown()}`,
              ),
            ),
          START_TIMEOUT_MS,
        );
        const onPod = (type: string, pod: k8s.V1Pod) => {
          if (!this.podName && pod.metadata?.name) {
            this.podName = pod.metadata.name;
            this.followEvents(this.podName);
          }
          if (type === 'DELETED' || pod.metadata?.deletionTimestamp) {
            return settle(new UserError(`${this.id} was deleted before it started`));
          }
          const verdict = this.verdict(pod);
          if (verdict === 'running') settle();
          else if (verdict instanceof Error) settle(verdict);
        };
        const selector = { labelSelector: `job-name=${job}` };
        // The watch, and a poll beside it: a proxy may end watches early, and a missed event must not hang the run.
        let poll: NodeJS.Timeout | undefined;
        const startPolling = () => {
          poll ??= setInterval(() => {
            cluster.api
              .request<k8s.V1PodList>('GET', paths.core('pods', ns), { query: selector, signal: stop.signal })
              .then(
                (list) => {
                  for (const p of list.items) onPod('MODIFIED', p);
                },
                () => {},
              );
          }, 1000);
        };
        cluster.api
          .watch<k8s.V1Pod>(paths.core('pods', ns), selector, (e) => onPod(e.type, e.object), stop.signal)
          .then(startPolling, (err) => {
            if (err instanceof AbortedError) return;
            // The API server's watch cache is behind (504 "Too large resource version") or the watch expired
            // (410): not the pod's fault, and polling sees the same pod.
            if (err instanceof ApiError && (err.code === 504 || err.code === 410)) return startPolling();
            settle(explain(err, { verb: 'watch', resource: 'pods', namespace: ns }, cluster.server));
          });
      });
    } finally {
      stop.abort();
    }
    this.o.progress(
      `${this.id.replace(/ on node .*/, '')} is running; sending the helper and attaching probes`,
    );
  }

  private lastShown(): string {
    const last = [...this.shown].pop();
    return last ? ` (last event: ${last})` : '';
  }

  /** 'running', 'waiting', or the error that says why the pod will never run. */
  private verdict(pod: k8s.V1Pod): 'running' | 'waiting' | Error {
    const status = pod.status;
    const cs = status?.containerStatuses?.find((c) => c.name === CONTAINER);
    const image = pod.spec?.containers.find((c) => c.name === CONTAINER)?.image ?? '';
    const waiting = cs?.state?.waiting;
    if (waiting?.reason && FATAL_WAITING.has(waiting.reason)) {
      const pull = /Image/.test(waiting.reason);
      return new UserError(
        `${this.id} cannot start: ${waiting.reason}: ${waiting.message ?? ''}` +
          (pull
            ? `\nthe node cannot pull ${image}: pass --image with an image that has node and that the node can pull (a mirror, or a digest it has), and --image-pull-secret if the registry needs one`
            : ''),
      );
    }
    const terminated = cs?.state?.terminated;
    if (status?.phase === 'Failed' || status?.phase === 'Succeeded' || terminated) {
      const why = terminated
        ? `${terminated.reason ?? 'terminated'} (exit code ${terminated.exitCode})${terminated.message ? `: ${terminated.message}` : ''}`
        : `${status?.reason ?? status?.phase}${status?.message ? `: ${status.message}` : ''}`;
      const noNode = terminated?.reason === 'StartError' || terminated?.exitCode === 127;
      return new UserError(
        `${this.id} ended before the trace started: ${why}` +
          (noNode ? `\nthe image ${image} must have node on its PATH: pass --image with one that does` : ''),
      );
    }
    if (status?.phase === 'Running' && cs?.state?.running) return 'running';
    return 'waiting';
  }

  /** While the trace runs: notice the pod being deleted or evicted by someone else. */
  watchWhileTracing(): void {
    const ns = this.namespace;
    const name = this.podName ?? '';
    void this.o.cluster.api
      .watch<k8s.V1Pod>(
        paths.core('pods', ns),
        { fieldSelector: `metadata.name=${name}` },
        ({ type, object }) => {
          if (this.deletedByUs) return;
          if (type === 'DELETED' || object.metadata?.deletionTimestamp) this.lostReason ??= 'deleted';
        },
        this.watches.signal,
      )
      .catch(() => {});
  }

  /**
   * After the attach stream ended without us stopping it: was the pod (or its
   * Job) deleted by someone else? Undefined when it was not.
   */
  async lost(): Promise<string | undefined> {
    if (this.deletedByUs) return undefined;
    if (this.lostReason) return this.lostReason;
    try {
      const pod = await this.o.cluster.api.request<k8s.V1Pod>(
        'GET',
        paths.core('pods', this.namespace, this.podName ?? ''),
      );
      if (pod.metadata?.deletionTimestamp) return 'deleted';
      const evicted = pod.status?.conditions?.find(
        (c) => c.type === 'DisruptionTarget' && c.status === 'True',
      );
      if (evicted) return `evicted (${evicted.reason ?? ''}${evicted.message ? `: ${evicted.message}` : ''})`;
    } catch (err) {
      if (isNotFound(err)) return 'deleted';
    }
    return undefined;
  }

  /** The container's end, " (exit code N: reason)", when it has ended; "" otherwise. */
  async termination(): Promise<string> {
    for (let i = 0; i < 10; i++) {
      try {
        const pod = await this.o.cluster.api.request<k8s.V1Pod>(
          'GET',
          paths.core('pods', this.namespace, this.podName ?? ''),
        );
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

  private deleting?: Promise<void>;
  /**
   * Deletes the Job and its pod; never throws: a failure is said with what to
   * do about it. graceSec: the pod's grace period (the runner stops the helper on SIGTERM).
   */
  delete(graceSec = 1): Promise<void> {
    this.deleting ??= this.deleteOnce(graceSec);
    return this.deleting;
  }

  private api(): Api {
    // After an interrupt each cleanup call gets a short bound: the user is waiting.
    const api = this.o.cluster.api.withoutSignal();
    return this.o.signal.aborted ? api.withTimeout(INTERRUPTED_CALL_MS) : api;
  }

  private async deleteOnce(graceSec: number): Promise<void> {
    this.watches.abort();
    if (!this.jobName) return;
    this.deletedByUs = true;
    const ns = this.namespace;
    const api = this.api();
    const attempt = async (what: string, path: string, query: Record<string, string | number>) => {
      try {
        await api.request('DELETE', path, { query });
      } catch (err) {
        if (isNotFound(err)) return;
        this.deleteFailed = true;
        const e = explain(err, { verb: 'delete', resource: what, namespace: ns }, this.o.cluster.server);
        this.o.warning(
          `could not delete ${this.id}: ${e.message}\nthe cluster deletes it ${'by itself'} once it ends (its Job's ttlSecondsAfterFinished); or run: kubectl pwru cleanup -n ${ns}`,
        );
      }
    };
    // The Job first, so that its controller makes no new pod; then its pods themselves, without waiting for the
    // garbage collector. The pod may exist before our watch told us its name: ask by the Job's label.
    await attempt('jobs.batch', paths.group('batch/v1', 'jobs', ns, this.jobName), {
      propagationPolicy: 'Background',
    });
    const names = new Set(this.podName ? [this.podName] : []);
    try {
      for (const p of await this.jobPods(api)) names.add(p.metadata?.name ?? '');
    } catch {}
    for (const name of names) {
      if (name) await attempt('pods', paths.core('pods', ns, name), { gracePeriodSeconds: graceSec });
    }
  }

  private async jobPods(api: Api): Promise<k8s.V1Pod[]> {
    const list = await api.request<k8s.V1PodList>('GET', paths.core('pods', this.namespace), {
      query: { labelSelector: `job-name=${this.jobName}` },
    });
    return list.items;
  }

  /** Waits (bounded) until the Job's pods are gone; false when one is still terminating. */
  async waitGone(timeoutMs = GONE_WAIT_MS): Promise<boolean> {
    if (!this.jobName || this.deleteFailed) return true;
    const api = this.api().withTimeout(Math.min(5000, timeoutMs));
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      try {
        if ((await this.jobPods(api)).length === 0) return true;
      } catch {}
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  }
}
