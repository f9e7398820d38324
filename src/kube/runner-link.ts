/**
 * The conversation with one debug pod's runner (runner/runner.ts, CONTROL),
 * over as many attach streams as the run needs: the bundle once; then an
 * acknowledgement of the bytes passed on at least every HEARTBEAT_MS (the
 * client's heartbeat, and what lets the runner forget what it kept); `stop`
 * to end the trace. When the API connection drops, attach() again asks for
 * the stream from the last byte passed on: the runner writes a marker only
 * this attach knows, then what it kept from that byte on, so what reaches the
 * new attach before the marker (it joined the runner's output mid-write) is
 * skipped, and the reader sees one unbroken stream.
 */
import { randomBytes } from 'node:crypto';
import { createInflateRaw, type InflateRaw } from 'node:zlib';
import { CONTROL, Collector } from '../../runner/runner';
import { AttachChannel, type ChannelEnd } from './attach-channel';
import { HEARTBEAT_MS } from './bundle';
import type { Cluster } from './client';
import { CONTAINER } from './debug-pod';
import { exposedGc } from './gc';

/** Acknowledge at least this often in bytes too: the runner keeps everything not acknowledged. */
const ACK_BYTES = 512 * 1024;
/** An open stream that brings nothing, not even a pong, for this long is dead (no FIN ever came). */
const SILENT_MS = 30_000;
/**
 * Compressed bytes waiting for the inflater past which the stream is paused: the socket, then the API
 * server, the kubelet, the runtime and the runner wait, and the helper's ring buffer takes the excess,
 * counted as lost; not this process's memory (this queue had no bound before: 2.7 MB under a flood on
 * the loaded test machine). ~100k events: a paused chain (API server, kubelet, runtime) is slow to start
 * again, so it pauses only when the client is seconds behind.
 */
const INFLATE_QUEUE = 1024 * 1024;
/**
 * Bytes an inflated piece holds at most, each decoded in one go: every piece is a round trip to the thread
 * pool and a Buffer for the collector. At 64 KiB (~130 JSON lines) a flood's client spent ~0.7 µs an event
 * in the collector and ~0.5 in zlib's callbacks (node --cpu-prof, 12k pkt/s); at 256 KiB ~0.4 and ~0.25.
 */
const INFLATE_CHUNK = 256 * 1024;
/**
 * Compressed bytes given to the inflater at once: zlib passes on all of a write's output before it takes
 * the next, whatever the sink says, and JSON lines inflate ~25 times (1 MiB waiting was ~25 MiB of lines
 * queued for the file at once: the CLI's peak memory under a flood). ~0.8 MiB of lines a write.
 */
const INFLATE_BATCH = 32 * 1024;

/**
 * The runner's stream inflated in batches: zlib inflates on the thread pool, one write at a time, and
 * each write is a round trip between threads. The runner sends small pieces (one per turn of its loop),
 * and on a loaded machine each round trip waited for a CPU: the client decoded ~15-30k events/s using a
 * third of a core. What arrives while one batch is being inflated goes, joined, as the next.
 */
export class BatchedInflater {
  private readonly inflater: InflateRaw;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private busy = false;
  /** The sink is behind: no new batch until it has caught up. */
  private held = false;
  private idle: (() => void)[] = [];

  constructor(
    out: (data: Buffer) => void,
    fail: (err: Error) => void,
    /** More than INFLATE_QUEUE is waiting (true), or all of it has been inflated (false). */
    private readonly behind: (behind: boolean) => void,
  ) {
    this.inflater = createInflateRaw({ chunkSize: INFLATE_CHUNK });
    this.inflater.on('data', out);
    this.inflater.on('error', (err) => {
      this.pending = [];
      this.pendingBytes = 0;
      fail(err);
    });
  }

  /** Bytes received and not yet inflated. */
  get waiting(): number {
    return this.pendingBytes;
  }

  write(data: Buffer): void {
    if (this.inflater.destroyed) return;
    this.pending.push(data);
    this.pendingBytes += data.length;
    if (this.pendingBytes > INFLATE_QUEUE) this.behind(true);
    if (!this.busy) this.next();
  }

  /** While the sink is behind (true), what waits stays compressed: the batch under way is the last. */
  hold(held: boolean): void {
    this.held = held;
    if (!held && !this.busy) this.next();
  }

  /** Resolves once everything written has been inflated and passed on. */
  drained(): Promise<void> {
    const inflater = this.inflater;
    if (inflater.writableEnded || inflater.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const flush = () => inflater.flush(() => resolve());
      if (this.busy) this.idle.push(flush);
      else flush();
    });
  }

  private next(): void {
    if (this.pending.length === 0 || this.inflater.destroyed) {
      this.busy = false;
      this.behind(false);
      for (const f of this.idle.splice(0)) f();
      return;
    }
    if (this.held) {
      this.busy = false;
      return;
    }
    // The first INFLATE_BATCH bytes waiting (the pieces that fit joined, a large one cut).
    let n = 0;
    let size = 0;
    while (n < this.pending.length && size + this.pending[n].length <= INFLATE_BATCH)
      size += this.pending[n++].length;
    let batch: Buffer;
    if (n === 0) {
      batch = this.pending[0].subarray(0, INFLATE_BATCH);
      this.pending[0] = this.pending[0].subarray(INFLATE_BATCH);
    } else batch = n === 1 ? this.pending[0] : Buffer.concat(this.pending.slice(0, n), size);
    if (n > 0) this.pending.splice(0, n);
    this.pendingBytes -= batch.length;
    this.busy = true;
    // Called once the batch is inflated and its output passed on ('data' comes first).
    this.inflater.write(batch, () => this.next());
  }
}

export interface RunnerLinkOptions {
  cluster: Cluster;
  namespace: string;
  pod: string;
  /** The runner's output, in order, each byte once. False: stop reading (the stream is closed). */
  stdout(data: Buffer): boolean;
  stderr(data: Buffer): void;
  /** The runner compresses its output (RunnerRequest.deflate): inflate it here. */
  deflate?: boolean;
  /** The compressed stream could not be read. */
  corrupt?(err: Error): void;
}

export class RunnerLink {
  /** Bytes of the runner's output passed on: where a resumed stream starts. */
  passed = 0;
  /** Times the stream was attached again. */
  reattached = 0;
  /** When we last said anything to the runner: its grace runs from there. */
  lastWord = Date.now();
  private channel?: AttachChannel;
  private acked = 0;
  private timer?: NodeJS.Timeout;
  /** The sink asked to wait. */
  private paused = false;
  /** The inflater has INFLATE_QUEUE waiting. */
  private inflaterBehind = false;
  /** After a re-attach: the marker before which everything is skipped, and the tail kept to find it across pieces. */
  private marker?: Buffer;
  private skipped = Buffer.alloc(0);
  private lastHeard = Date.now();
  /** When the runner's output last brought something (its stderr and pongs do not count). */
  lastData = Date.now();
  /** When the runner's output last brought something, or we last started reading it again. */
  private readFrom = Date.now();

  /** The one inflater of the whole run: a resumed stream goes on where the last left it. */
  private readonly inflater?: BatchedInflater;
  /** What came in is collected every few MiB (src/kube/gc.ts): its pieces are Buffers, few objects. */
  private readonly collector = new Collector(exposedGc());

  constructor(private readonly o: RunnerLinkOptions) {
    if (!o.deflate) return;
    this.inflater = new BatchedInflater(
      (data) => {
        this.collector.readBytes(data.length);
        if (!o.stdout(data)) this.channel?.terminate();
      },
      (err) => {
        o.corrupt?.(new Error(`the runner's compressed stream: ${err.message}`));
        this.channel?.terminate();
      },
      (behind) => {
        if (behind === this.inflaterBehind) return;
        this.inflaterBehind = behind;
        this.flow();
      },
    );
  }

  /** Resolves once everything received has been inflated and passed on. */
  drained(): Promise<void> {
    return this.inflater?.drained() ?? Promise.resolve();
  }

  /** Attaches (again, after a drop: the stream goes on from `passed`). */
  async attach(signal: AbortSignal): Promise<void> {
    const channel = await AttachChannel.open(
      this.o.cluster,
      this.o.namespace,
      this.o.pod,
      CONTAINER,
      {
        stdout: (data) => this.stdout(channel, data),
        stderr: (data) => this.o.stderr(data),
        heard: () => {
          this.lastHeard = Date.now();
        },
      },
      signal,
    );
    const again = this.channel !== undefined;
    this.channel = channel;
    this.lastHeard = Date.now();
    if (this.held) channel.pause();
    if (again) {
      this.reattached++;
      this.marker = randomBytes(16);
      this.skipped = Buffer.alloc(0);
      this.say(`${CONTROL.resume} ${this.passed} ${this.marker.toString('hex')}`);
    }
    clearInterval(this.timer);
    this.timer = setInterval(() => this.beat(), HEARTBEAT_MS);
  }

  /** The current stream's end. */
  get closed(): Promise<ChannelEnd> {
    return this.channel?.closed ?? Promise.resolve({ code: 0 });
  }

  /** The bundle, its pieces' copies collected as they go out (src/kube/gc.ts). */
  async sendBundle(bundle: AsyncIterable<Buffer>): Promise<void> {
    await this.channel?.sendBundle(bundle, () => this.collector.all('minor'));
    this.collector.all();
  }

  /** Asks the runner to stop the helper; its last records still come, and are acknowledged. */
  stop(): void {
    this.say(CONTROL.stop);
  }

  /** Says what has been passed on now (after END: the runner waits for it before it exits). */
  ack(): void {
    this.acked = this.passed;
    this.say(`${CONTROL.ack} ${this.passed}`);
  }

  pause(): void {
    this.paused = true;
    this.inflater?.hold(true);
    this.flow();
  }

  resume(): void {
    this.paused = false;
    this.inflater?.hold(false);
    this.flow();
  }

  /** Not reading: the sink or the inflater is behind (a held stream brings no pongs either). */
  private get held(): boolean {
    return this.paused || this.inflaterBehind;
  }

  private flow(): void {
    if (this.held) this.channel?.pause();
    else {
      this.lastHeard = Date.now();
      this.readFrom = this.lastHeard;
      this.channel?.resume();
    }
  }

  /** How long the stream has brought nothing while we read it (0 while we hold it: its silence is ours). */
  quietMs(now = Date.now()): number {
    return this.held ? 0 : now - Math.max(this.lastData, this.readFrom);
  }

  terminate(): void {
    this.channel?.terminate();
  }

  /** No more attaches: the heartbeat stops. */
  done(): void {
    clearInterval(this.timer);
  }

  private say(line: string): void {
    if (!this.channel?.open) return;
    this.channel.sendLine(line);
    this.lastWord = Date.now();
  }

  private beat(): void {
    this.ack();
    this.channel?.ping();
    // A stream held open by a network that dropped without a word: end it, so that it is attached again.
    if (!this.held && Date.now() - this.lastHeard > SILENT_MS) this.channel?.terminate();
  }

  private stdout(channel: AttachChannel, data: Buffer): void {
    if (channel !== this.channel) return; // an old stream's last words: the new one repeats them
    this.lastHeard = Date.now();
    this.lastData = this.lastHeard;
    if (this.marker) {
      const seen = Buffer.concat([this.skipped, data]);
      const at = seen.indexOf(this.marker);
      if (at < 0) {
        this.skipped = seen.subarray(Math.max(0, seen.length - this.marker.length + 1));
        return;
      }
      data = seen.subarray(at + this.marker.length);
      this.marker = undefined;
      this.skipped = Buffer.alloc(0);
      if (data.length === 0) return;
    }
    if (this.inflater) this.inflater.write(data);
    else if (!this.o.stdout(data)) {
      channel.terminate();
      return;
    }
    this.passed += data.length;
    if (this.passed - this.acked >= ACK_BYTES) this.ack();
  }
}
