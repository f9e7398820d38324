/**
 * One node's trace: the debug pod's life (src/kube/pod-life.ts) around the
 * link to its runner (src/kube/runner-link.ts) that carries the bundle in and
 * the helper's records out into a HelperStream, attached again when the API
 * connection drops. The pod is deleted, and waited for, on every way out.
 */
import type * as k8s from '@kubernetes/client-node';
import { STOP_LIMIT_MS } from '../../runner/runner';
import { UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { HelperStream } from '../trace/helper-stream';
import { AbortedError } from './api';
import type { ChannelEnd } from './attach-channel';
import { CLIENT_GRACE_SEC } from './bundle';
import type { Cluster } from './client';
import { GONE_WAIT_MS, PodLife } from './pod-life';
import { RunnerLink } from './runner-link';

/**
 * After asking the runner to stop, the stream is read to its end (the helper's END, then the runner exits) and
 * only then is the pod deleted: deleting it sooner cut a flood's backlog, final counts and END included. The
 * stream is given up when it brings nothing for this long while we read it (the helper did not answer)...
 */
const STOP_QUIET_MS = 6000;
/** ...or, a backlog still coming, this long after the stop: the runner kills a helper still writing at STOP_LIMIT_MS. */
const STOP_GIVE_UP_MS = STOP_LIMIT_MS + 2000;
/** A second Ctrl-C exits 3 s later (src/run-trace.ts): the pod is deleted at once, with this grace to detach. */
const FORCED_GRACE_SEC = 10;

export { AbortedError } from './api';

export interface NodeSessionOptions {
  cluster: Cluster;
  node: string;
  pod: k8s.V1Pod;
  /** The bundle, packed as it is sent (src/kube/bundle.ts); asked for once the pod runs. */
  bundle: () => Promise<AsyncIterable<Buffer>>;
  sink: TraceSink;
  /** The runner was asked to compress its stream (RunnerRequest.deflate). */
  deflate?: boolean;
  /** Set when several nodes are traced: prefixes progress and tags every line. */
  label?: string;
  signal: AbortSignal;
  /** A second Ctrl-C/SIGTERM: the run exits soon, the pod must be on its way out by then. */
  force?: AbortSignal;
}

export class NodeSession {
  readonly life: PodLife;
  readonly stream: HelperStream;
  /** The attach stream opened: the trace itself began. */
  tracing = false;
  private stderrTail: string[] = [];
  private readonly where: string;
  private readonly o: Omit<NodeSessionOptions, 'bundle'>;
  private readonly bundle: () => Promise<AsyncIterable<Buffer>>;

  constructor({ bundle, ...o }: NodeSessionOptions) {
    this.o = o;
    this.bundle = bundle;
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
    const { signal } = this.o;
    const bundle = await this.bundle();
    let endSaid = false;
    const link: RunnerLink = new RunnerLink({
      cluster: this.o.cluster,
      namespace: this.life.namespace,
      pod: this.life.podName ?? '',
      // A corrupt stream (or a sink that cannot write): stop this node's trace, keep the reason.
      stdout: (payload) => {
        if (!this.stream.feed(payload, link)) return false;
        // After END the runner waits until we say we have it all, then exits.
        if (this.stream.outcome.endReason !== undefined && !endSaid) {
          endSaid = true;
          setImmediate(() => link.ack());
        }
        return true;
      },
      stderr: (payload) => this.stderr(payload),
      deflate: this.o.deflate,
      corrupt: (err) => {
        this.stream.readError ??= err;
      },
    });
    await link.attach(signal);
    this.tracing = true;
    // Sent while the stream is read, a piece at a time: nothing below waits for it (the stream's end, a
    // stop), so a send that never completes cannot hold the trace, and one that fails ends it.
    link.sendBundle(bundle).catch((err: Error) => {
      this.stream.readError ??= new Error(`sending the helper and the runner: ${err.message}`);
      link.terminate();
    });

    let stopTimer: NodeJS.Timeout | undefined;
    /** Why the stream was given up after the stop, before its end. */
    let gaveUp: string | undefined;
    const stop = () => {
      // The runner stops the helper, which writes what fired before the stop, its final stats and END; the
      // backlog before them is read to its end, and the pod deleted after it (run()'s finally).
      link.stop();
      const since = Date.now();
      stopTimer = setInterval(() => {
        const now = Date.now();
        if (link.quietMs(now) > STOP_QUIET_MS)
          gaveUp = `the stream brought nothing for ${STOP_QUIET_MS / 1000} s after the stop: the helper did not answer it`;
        else if (now - since > STOP_GIVE_UP_MS)
          gaveUp = `the stream was still bringing the backlog ${STOP_GIVE_UP_MS / 1000} s after the stop, and a stop waits no longer`;
        else return;
        clearInterval(stopTimer);
        link.terminate();
      }, 250);
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    // A second Ctrl-C: the run exits 3 s later; the pod's deletion starts now, with a grace period that leaves
    // the helper time to detach.
    const force = () => {
      gaveUp ??= 'a second Ctrl-C ended the wait for them';
      void this.life.delete(FORCED_GRACE_SEC);
      link.terminate();
    };
    const forced = this.o.force;
    if (forced?.aborted) force();
    else forced?.addEventListener('abort', force, { once: true });

    let end: ChannelEnd;
    try {
      for (;;) {
        end = await link.closed;
        // What came before the close is read first (the inflater works in turns of its own).
        await link.drained();
        // Dropped (no status from the container, not cut by us): attach again, go on where it was cut. After
        // a stop too: the runner keeps what we have not acknowledged, the final counts among it.
        const dropped =
          end.status === undefined &&
          gaveUp === undefined &&
          !forced?.aborted &&
          !this.stream.readError &&
          this.stream.outcome.endReason === undefined &&
          !this.life.lostReason;
        if (!dropped) break;
        await this.attachAgain(link, end);
      }
    } finally {
      link.done();
      clearInterval(stopTimer);
      signal.removeEventListener('abort', stop);
      forced?.removeEventListener('abort', force);
    }
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
    if (signal.aborted) {
      // Stopped, but the helper's END never came: its last records (the final counts) are missing, and
      // a file without its final stats line must not pass for a whole trace (exit 1, not 0).
      if (outcome.ready && outcome.endReason === undefined) {
        throw new UserError(
          `the trace on node ${this.o.node} was stopped, but the helper's last records (its final counts) did not ` +
            `arrive (${gaveUp ?? 'the runner ended without them'}): what arrived is above, without the final stats${this.tail()}`,
        );
      }
      return;
    }
    // Not our stop: someone deleted or evicted the pod (kubectl delete, a drain, another cleanup).
    const lost = await this.life.lost();
    if (lost) {
      throw new UserError(
        `${this.life.id} was ${lost} during the trace (kubectl delete, an eviction or node drain, or kubectl pwru cleanup --all): ` +
          'the trace ended early; what it saw until then is above',
      );
    }
    if (outcome.endReason) return;
    throw new UserError(
      `the runner on node ${this.o.node} ended before the trace did${await this.life.termination()}${this.tail()}`,
    );
  }

  /**
   * The API connection dropped mid-trace: attach again until the runner's
   * grace (counted from our last word) runs out. The runner kept what we
   * have not acknowledged, so nothing traced meanwhile is lost.
   */
  private async attachAgain(link: RunnerLink, end: ChannelEnd): Promise<void> {
    // Once stopped, only a second Ctrl-C ends the attempts (the stop's own limits end the wait otherwise).
    const stopped = this.o.signal.aborted;
    const signal = stopped ? (this.o.force ?? new AbortController().signal) : this.o.signal;
    const started = Date.now();
    const until = link.lastWord + CLIENT_GRACE_SEC * 1000;
    this.o.sink.progress(
      `${this.where}the connection to the API server dropped (websocket closed, code ${end.code}); attaching again ` +
        (stopped
          ? `for the trace's last records (the debug pod keeps them, and waits ${CLIENT_GRACE_SEC} s for us)`
          : `(the debug pod keeps tracing, and waits ${CLIENT_GRACE_SEC} s for us)`),
    );
    for (let wait = 250; ; wait = Math.min(wait * 2, 4000)) {
      try {
        await link.attach(signal);
        break;
      } catch (err) {
        if (err instanceof AbortedError) throw err;
        if (this.life.lostReason || Date.now() + wait > until) {
          throw new UserError(
            `the connection to the API server dropped during the trace on node ${this.o.node}, and attaching again failed ` +
              `for ${Math.round((Date.now() - started) / 1000)} s (${(err as Error).message}); the trace ends here: ` +
              `what it saw until then is above, and the debug pod stops its probes by itself within ${CLIENT_GRACE_SEC} s${this.tail()}`,
          );
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
      if (signal.aborted) throw new AbortedError();
    }
    // The stop may have been lost with the connection: said again (the runner takes it once).
    if (stopped) link.stop();
    this.o.sink.progress(
      `${this.where}attached again after ${((Date.now() - started) / 1000).toFixed(1)} s: the trace goes on from where it was cut`,
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
