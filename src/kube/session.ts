/**
 * One node's trace: the debug pod's life (src/kube/pod-life.ts) around the
 * attach channel (src/kube/attach-channel.ts) that carries the bundle in and
 * the helper's records out into a HelperStream. The pod is deleted, and
 * waited for, on every way out.
 */
import type * as k8s from '@kubernetes/client-node';
import { UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { HelperStream } from '../trace/helper-stream';
import { AbortedError } from './api';
import { AttachChannel } from './attach-channel';
import { HEARTBEAT_TIMEOUT_SEC } from './bundle';
import type { Cluster } from './client';
import { CONTAINER } from './debug-pod';
import { GONE_WAIT_MS, PodLife } from './pod-life';

/** After asking the runner to stop, wait this long for its last records. */
const STOP_WAIT_MS = 6000;
/** After asking the runner to stop, delete the pod anyway after this long (its SIGTERM stops the helper too). */
const EARLY_DELETE_MS = 1500;

export { AbortedError } from './api';

export interface NodeSessionOptions {
  cluster: Cluster;
  node: string;
  pod: k8s.V1Pod;
  /** Packed while the pod starts. */
  bundle: Promise<Buffer>;
  sink: TraceSink;
  /** Set when several nodes are traced: prefixes progress and tags every line. */
  label?: string;
  signal: AbortSignal;
}

export class NodeSession {
  readonly life: PodLife;
  readonly stream: HelperStream;
  /** The attach stream opened: the trace itself began. */
  tracing = false;
  private stderrTail: string[] = [];
  private readonly where: string;

  constructor(private readonly o: NodeSessionOptions) {
    this.where = o.label ? `${o.label}: ` : '';
    this.stream = new HelperStream(o.sink, { node: o.node, prefix: o.label });
    this.life = new PodLife({
      cluster: o.cluster,
      node: o.node,
      pod: o.pod,
      progress: (m) => o.sink.progress(`${this.where}${m}`),
      warning: (m) => o.sink.warning(`${this.where}${m}`),
      signal: o.signal,
    });
  }

  /** Runs the trace to its end; the pod is gone (or said to be still terminating) when this settles. */
  async run(): Promise<void> {
    try {
      if (this.o.signal.aborted) throw new AbortedError();
      await this.life.create();
      await this.life.waitRunning();
      this.life.watchWhileTracing();
      await this.trace();
    } finally {
      await this.life.delete();
      if (!(await this.life.waitGone())) {
        this.o.sink.warning(
          `${this.where}${this.life.id} is still terminating after ${GONE_WAIT_MS / 1000} s; the cluster removes it (its Job is deleted)`,
        );
      }
    }
  }

  private async trace(): Promise<void> {
    const { cluster, signal } = this.o;
    const bundle = await this.o.bundle;
    const channel: AttachChannel = await AttachChannel.open(
      cluster,
      this.life.namespace,
      this.life.podName ?? '',
      CONTAINER,
      {
        // A corrupt stream (or a sink that cannot write): stop this node's trace, keep the reason.
        stdout: (payload) => {
          if (!this.stream.feed(payload, channel)) channel.terminate();
        },
        stderr: (payload) => this.stderr(payload),
      },
      signal,
    );
    this.tracing = true;
    channel.sendBundle(bundle);

    let stopTimer: NodeJS.Timeout | undefined;
    let deleteTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      // Closing its stdin asks the runner to stop the helper, which writes its final stats and END.
      channel.closeStdin();
      stopTimer = setTimeout(() => channel.terminate(), STOP_WAIT_MS);
      // A second Ctrl-C exits 3 s after the first: by then the pod's deletion must be under way,
      // with a grace period that leaves the helper time to detach and report.
      deleteTimer = setTimeout(() => void this.life.delete(10), EARLY_DELETE_MS);
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });

    const end = await channel.closed;
    clearTimeout(stopTimer);
    clearTimeout(deleteTimer);
    signal.removeEventListener('abort', stop);
    // A cut-off last frame after an interrupt is expected; the records before it were shown.
    this.stream.finish({ cutOffExpected: true });
    if (this.stream.readError) {
      throw new UserError(
        `the trace from node ${this.o.node} could not be read: ${this.stream.readError.message}${this.tail()}`,
      );
    }
    // The helper's own words, verbatim (prefixed with the node when several are traced).
    const error = this.stream.helperError(this.where);
    if (error) throw error;
    const outcome = this.stream.outcome;
    if (signal.aborted) return;
    // Not our stop: someone deleted or evicted the pod (kubectl delete, a drain, another cleanup).
    const lost = await this.life.lost();
    if (lost) {
      throw new UserError(
        `${this.life.id} was ${lost} during the trace (kubectl delete, an eviction or node drain, or kubectl pwru cleanup --all): ` +
          'the trace ended early; what it saw until then is above',
      );
    }
    if (outcome.endReason) return;
    if (end.status?.status === 'Success' || end.status?.status === 'Failure') {
      // The container ended without the helper's END frame: the pod says why.
      throw new UserError(
        `the runner on node ${this.o.node} ended before the trace did${await this.life.termination()}${this.tail()}`,
      );
    }
    throw new UserError(
      `the connection to the API server dropped during the trace on node ${this.o.node} (websocket closed, code ${end.code}); ` +
        `the debug pod stops its probes by itself within ${HEARTBEAT_TIMEOUT_SEC} s${this.tail()}`,
    );
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
}
