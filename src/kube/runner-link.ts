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
import { CONTROL } from '../../runner/runner';
import { AttachChannel, type ChannelEnd } from './attach-channel';
import { HEARTBEAT_MS } from './bundle';
import type { Cluster } from './client';
import { CONTAINER } from './debug-pod';

/** Acknowledge at least this often in bytes too: the runner keeps everything not acknowledged. */
const ACK_BYTES = 512 * 1024;
/** An open stream that brings nothing, not even a pong, for this long is dead (no FIN ever came). */
const SILENT_MS = 30_000;

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
  private paused = false;
  /** After a re-attach: the marker before which everything is skipped, and the tail kept to find it across pieces. */
  private marker?: Buffer;
  private skipped = Buffer.alloc(0);
  private lastHeard = Date.now();
  /** When the runner's output last brought something (its stderr and pongs do not count). */
  lastData = Date.now();

  /** The one inflater of the whole run: a resumed stream goes on where the last left it. */
  private readonly inflater?: InflateRaw;

  constructor(private readonly o: RunnerLinkOptions) {
    if (!o.deflate) return;
    this.inflater = createInflateRaw();
    this.inflater.on('data', (data: Buffer) => {
      if (!o.stdout(data)) this.channel?.terminate();
    });
    this.inflater.on('error', (err) => {
      o.corrupt?.(new Error(`the runner's compressed stream: ${err.message}`));
      this.channel?.terminate();
    });
  }

  /** Resolves once everything received has been inflated and passed on. */
  drained(): Promise<void> {
    const inflater = this.inflater;
    if (!inflater || inflater.writableEnded || inflater.destroyed) return Promise.resolve();
    return new Promise((resolve) => inflater.flush(() => resolve()));
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
    if (this.paused) channel.pause();
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

  sendBundle(bundle: Buffer): void {
    this.channel?.sendBundle(bundle);
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
    this.channel?.pause();
  }

  resume(): void {
    this.paused = false;
    this.lastHeard = Date.now();
    this.channel?.resume();
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
    if (!this.paused && Date.now() - this.lastHeard > SILENT_MS) this.channel?.terminate();
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
