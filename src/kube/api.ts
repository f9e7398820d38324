/**
 * Every request to the API server goes through here: JSON over HTTP(S) with
 * the kubeconfig's credentials (KubeConfig.applyToHTTPSOptions: certificates,
 * tokens, exec plugins), kubectl's --request-timeout on each call, --as and
 * --as-group as impersonation headers, and one AbortSignal that ends any call
 * or watch at once (Ctrl-C). An API server that accepts the connection and
 * never answers is a timeout, never a hang.
 */
import { setMaxListeners } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import { BadInput, UserError } from '../errors';

export interface ApiOptions {
  /** Per request: no answer (headers) within this long is an error; 0: wait forever (kubectl's 0). */
  timeoutMs: number;
  /** --as */
  asUser?: string;
  /** --as-group */
  asGroups?: string[];
}

/** What we were doing when a call failed: used to say which verb on which resource. */
export interface Step {
  verb: string;
  resource: string;
  namespace?: string;
  name?: string;
}

/** A failed call with the Status the API server sent (or the HTTP code alone). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The call did not get an answer within --request-timeout. */
export class RequestTimeout extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${ms / 1000} s`);
    this.name = 'RequestTimeout';
  }
}

/** The run's signal fired (Ctrl-C, SIGTERM, another node failed). */
export class AbortedError extends Error {
  constructor() {
    super('interrupted');
    this.name = 'AbortedError';
  }
}

export interface RequestInit {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** Ends this call early, as well as the Api's own signal. */
  signal?: AbortSignal;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export function queryString(query: RequestInit['query']): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The kubeconfig as the Api needs it (src/kube/kubeconfig.ts). */
export interface Credentials {
  getCurrentCluster(): { server: string } | null;
  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void>;
}

export class Api {
  readonly server: string;
  constructor(
    readonly kc: Credentials,
    readonly options: ApiOptions,
    /** The run's signal: aborting it ends every call and watch of this Api. */
    readonly signal?: AbortSignal,
    /** Connections are kept and reused: a TLS handshake per call is most of a call's cost. */
    private readonly agents = {
      'https:': new https.Agent({ keepAlive: true }),
      'http:': new http.Agent({ keepAlive: true }),
    },
  ) {
    this.server = (kc.getCurrentCluster()?.server ?? '').replace(/\/+$/, '');
    // Every call in flight listens to it: a service over many nodes makes many at once.
    if (signal) setMaxListeners(0, signal);
  }

  /** The same connection without the run's signal: for cleaning up after an interrupt. */
  withoutSignal(): Api {
    return new Api(this.kc, this.options, undefined, this.agents);
  }

  /** The same connection with another per-request timeout. */
  withTimeout(timeoutMs: number): Api {
    return new Api(this.kc, { ...this.options, timeoutMs }, this.signal, this.agents);
  }

  /** Options for https.request / ws: credentials, TLS, impersonation. */
  async connectionOptions(): Promise<https.RequestOptions> {
    const opts: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    const headers = { ...(opts.headers as http.OutgoingHttpHeaders | undefined) };
    if (this.options.asUser) headers['Impersonate-User'] = this.options.asUser;
    if (this.options.asGroups?.length) headers['Impersonate-Group'] = this.options.asGroups;
    opts.headers = headers;
    return opts;
  }

  private signals(extra?: AbortSignal): AbortSignal[] {
    return [this.signal, extra].filter((s): s is AbortSignal => s !== undefined);
  }

  /**
   * Sends one request; resolves with the response once its headers are in
   * (within the timeout), or rejects with ApiError, RequestTimeout, AbortedError
   * or the network's error.
   */
  private async open(method: string, path: string, init: RequestInit): Promise<http.IncomingMessage> {
    const signals = this.signals(init.signal);
    if (signals.some((s) => s.aborted)) throw new AbortedError();
    const base = await this.connectionOptions();
    const url = new URL(`${this.server}${path}${queryString(init.query)}`);
    const body = init.body === undefined ? undefined : Buffer.from(JSON.stringify(init.body));
    const headers: http.OutgoingHttpHeaders = {
      ...(base.headers as http.OutgoingHttpHeaders | undefined),
      Accept: 'application/json',
    };
    if (body) {
      headers['Content-Type'] = init.contentType ?? 'application/json';
      headers['Content-Length'] = body.length;
    }
    const lib = url.protocol === 'https:' ? https : http;
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new UserError(`the kubeconfig's server ${this.server} is not an http(s) URL`);
    return new Promise((resolve, reject) => {
      let settled = false;
      const done = (err?: Error, res?: http.IncomingMessage) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        for (const s of signals) s.removeEventListener('abort', onAbort);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(res as http.IncomingMessage);
      };
      const onAbort = () => done(new AbortedError());
      const agent = this.agents[url.protocol as 'https:' | 'http:'];
      const req = lib.request(url, { ...base, agent, method, headers }, (res) => done(undefined, res));
      req.on('error', (err) => done(err));
      const timer =
        this.options.timeoutMs > 0
          ? setTimeout(() => done(new RequestTimeout(this.options.timeoutMs)), this.options.timeoutMs)
          : undefined;
      for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
      req.end(body);
    });
  }

  /** One call, its JSON answer; the whole answer must arrive within the timeout. */
  async request<T>(method: string, path: string, init: RequestInit = {}): Promise<T> {
    const started = Date.now();
    const res = await this.open(method, path, init);
    const left = this.options.timeoutMs > 0 ? this.options.timeoutMs - (Date.now() - started) : 0;
    const text = await readBody(res, this.signals(init.signal), left, this.options.timeoutMs);
    const code = res.statusCode ?? 0;
    if (code >= 200 && code < 300) return (text ? JSON.parse(text) : {}) as T;
    throw statusError(code, text);
  }

  /**
   * Follows a watch: calls onEvent for every event until the server ends the
   * stream (resolves), or it fails (rejects), or a signal fires (rejects with
   * AbortedError). Only the answer's start is bound by the timeout.
   */
  async watch<T>(
    path: string,
    query: RequestInit['query'],
    onEvent: (e: WatchEvent<T>) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const res = await this.open('GET', path, { query: { ...query, watch: 1 }, signal });
    const code = res.statusCode ?? 0;
    if (code < 200 || code >= 300) {
      throw statusError(code, await readBody(res, this.signals(signal), this.options.timeoutMs, 0));
    }
    const signals = this.signals(signal);
    await new Promise<void>((resolve, reject) => {
      let rest = '';
      const onAbort = () => finish(new AbortedError());
      const finish = (err?: Error) => {
        for (const s of signals) s.removeEventListener('abort', onAbort);
        res.destroy();
        if (err) reject(err);
        else resolve();
      };
      for (const s of signals) {
        if (s.aborted) return finish(new AbortedError());
        s.addEventListener('abort', onAbort, { once: true });
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        rest += chunk;
        let nl = rest.indexOf('\n');
        while (nl >= 0) {
          const line = rest.slice(0, nl).trim();
          rest = rest.slice(nl + 1);
          nl = rest.indexOf('\n');
          if (!line) continue;
          let event: WatchEvent<T>;
          try {
            event = JSON.parse(line) as WatchEvent<T>;
          } catch {
            return finish(
              new Error(`the API server sent a watch event that is not JSON: ${line.slice(0, 200)}`),
            );
          }
          if (event.type === 'ERROR') {
            const s = event.object as { code?: number; reason?: string; message?: string };
            return finish(new ApiError(s.code ?? 500, s.reason, s.message ?? 'watch failed'));
          }
          onEvent(event);
        }
      });
      res.on('end', () => finish());
      res.on('error', (err) => finish(err));
      res.on('close', () => finish());
    });
  }
}

function readBody(
  res: http.IncomingMessage,
  signals: AbortSignal[],
  leftMs: number,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const finish = (err?: Error) => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener('abort', onAbort);
      if (err) {
        res.destroy();
        reject(err);
      } else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onAbort = () => finish(new AbortedError());
    for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
    const timer =
      timeoutMs > 0
        ? setTimeout(() => finish(new RequestTimeout(timeoutMs)), Math.max(leftMs, 1))
        : undefined;
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => finish());
    res.on('error', (err) => finish(err));
  });
}

function statusError(code: number, text: string): ApiError {
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    return new ApiError(code, s.reason, s.message ?? `HTTP ${code}`);
  } catch {
    return new ApiError(code, undefined, text.trim() || `HTTP ${code}`);
  }
}

/** kubectl's --request-timeout: "0" (none), "30", "30s", "2m", "1h", "500ms". */
export function parseRequestTimeout(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (!m) {
    throw new BadInput(
      `--request-timeout ${text}: expected a duration like 30s, 2m or 0 (no timeout), as kubectl takes it`,
    );
  }
  return Math.round(Number(m[1]) * unit[m[2] ?? 's']);
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
