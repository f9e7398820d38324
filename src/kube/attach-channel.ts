/**
 * The attach stream to a debug pod's container, nothing else: the
 * Kubernetes channel protocol over a WebSocket (v5 or v4: the runner is told
 * to stop in words on stdin, so neither needs to close stdin), stdout/stderr
 * handed to the caller, the bundle and the runner's control lines sent on
 * stdin, the container's exit status from the error channel. The opening handshake is bound by --request-timeout and ended by
 * the run's signal; a refusal before the upgrade is read as a Status, so a
 * 403 says which verb on which resource.
 */
import WebSocket from 'ws';
import { AbortedError, ApiError, RequestTimeout } from './api';
import { type Cluster, explain, paths, type Step } from './client';

const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, error: 3, close: 255 } as const;

/** Protocols we speak, best first (what differs, closing stdin alone, is not used). */
export const CHANNEL_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

/** What the API server sends on the error channel when the container's stream ends. */
export interface ChannelStatus {
  status?: string;
  message?: string;
  reason?: string;
}

export interface ChannelEnd {
  code: number;
  status?: ChannelStatus;
}

export interface ChannelHandlers {
  stdout(data: Buffer): void;
  stderr(data: Buffer): void;
  /** Anything came: a message or a pong. */
  heard?(): void;
}

/** Bundles go in pieces the API server passes on without fuss. */
const PIECE = 256 * 1024;

export class AttachChannel {
  /** Resolves when the stream has closed, whichever side closed it. */
  readonly closed: Promise<ChannelEnd>;
  private status?: ChannelStatus;

  private constructor(
    private readonly ws: WebSocket,
    handlers: ChannelHandlers,
  ) {
    ws.on('pong', () => handlers.heard?.());
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      handlers.heard?.();
      const data = isBinary ? raw : Buffer.from(raw);
      if (data.length === 0) return;
      const payload = data.subarray(1);
      if (data[0] === CHANNEL.stdout) handlers.stdout(payload);
      else if (data[0] === CHANNEL.stderr) handlers.stderr(payload);
      else if (data[0] === CHANNEL.error) {
        try {
          this.status = JSON.parse(payload.toString('utf8')) as ChannelStatus;
        } catch {
          this.status = { status: 'Failure', message: payload.toString('utf8') };
        }
      }
    });
    ws.on('error', () => {});
    this.closed = new Promise((resolve) => {
      ws.on('close', (code) => {
        resolve({ code, status: this.status });
      });
    });
  }

  /** Attaches to the debug container's stdin, stdout and stderr. */
  static async open(
    cluster: Cluster,
    namespace: string,
    pod: string,
    container: string,
    handlers: ChannelHandlers,
    signal?: AbortSignal,
  ): Promise<AttachChannel> {
    const path = `${paths.core('pods', namespace, pod)}/attach?container=${encodeURIComponent(container)}&stdin=true&stdout=true&stderr=true&tty=false`;
    const step: Step = { verb: 'create', resource: 'pods/attach', namespace, name: pod };
    const ws = await openWebSocket(cluster, path, step, signal);
    return new AttachChannel(ws, handlers);
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  private send(channel: number, data: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const frame = Buffer.allocUnsafe(data.length + 1);
    frame[0] = channel;
    data.copy(frame, 1);
    this.ws.send(frame);
  }

  /**
   * The bundle, in pieces of PIECE, each sent once the last is out (the socket took it): its copies for
   * the WebSocket's mask and for TLS then exist a piece at a time, not 2.3 MiB of each at once.
   */
  async sendBundle(bundle: Iterable<Buffer> | AsyncIterable<Buffer>, sentPiece?: () => void): Promise<void> {
    let parts: Buffer[] = [];
    let size = 0;
    const flush = async () => {
      const piece = parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
      parts = [];
      size = 0;
      for (let off = 0; off < piece.length; off += PIECE) {
        await this.sent(CHANNEL.stdin, piece.subarray(off, off + PIECE));
        sentPiece?.();
      }
    };
    for await (const chunk of bundle) {
      parts.push(chunk);
      size += chunk.length;
      if (size >= PIECE) await flush();
    }
    if (size > 0) await flush();
  }

  /** Sends, and resolves once the socket has taken the frame (or the stream is closed). */
  private sent(channel: number, data: Buffer): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.resolve();
    const frame = Buffer.allocUnsafe(data.length + 1);
    frame[0] = channel;
    data.copy(frame, 1);
    return new Promise((resolve) => this.ws.send(frame, () => resolve()));
  }

  /** One line to the runner (runner/runner.ts, CONTROL); dropped when the stream is closed. */
  sendLine(line: string): void {
    this.send(CHANNEL.stdin, Buffer.from(`${line}\n`));
  }

  /** Asks for a pong: the API server answers pings on its own, so a stream that brings nothing is dead. */
  ping(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Opens an exec/attach WebSocket; a refusal before the upgrade becomes the Status's message. */
export async function openWebSocket(
  cluster: Cluster,
  path: string,
  step: Step,
  signal?: AbortSignal,
): Promise<WebSocket> {
  const url = `${cluster.server.replace(/^http/, 'ws')}${path}`;
  const opts = (await cluster.api.connectionOptions()) as WebSocket.ClientOptions;
  const timeoutMs = cluster.api.options.timeoutMs;
  if (timeoutMs > 0) opts.handshakeTimeout = timeoutMs;
  if (signal?.aborted) throw new AbortedError();
  return new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url, CHANNEL_PROTOCOLS, opts);
    const onAbort = () => {
      ws.terminate();
      fail(new AbortedError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    };
    ws.once('open', () => {
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      resolve(ws);
    });
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let message = body;
        let reason: string | undefined;
        try {
          const s = JSON.parse(body) as { message?: string; reason?: string };
          message = s.message ?? body;
          reason = s.reason;
        } catch {}
        fail(explain(new ApiError(res.statusCode ?? 0, reason, message), step, cluster.server));
      });
      res.on('error', (err) => fail(err));
    });
    ws.once('error', (err) => {
      const timedOut = /timed out/i.test(err.message);
      fail(explain(timedOut ? new RequestTimeout(timeoutMs) : err, step, cluster.server));
    });
  });
}
