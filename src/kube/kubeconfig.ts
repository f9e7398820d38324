/**
 * The kubeconfig, read the way kubectl and client-node read it (KUBECONFIG's
 * list merged, first one wins; else ~/.kube/config; else the pod's service
 * account), with client-node's own parsers and authenticators (config_types,
 * exec and token-file credentials) — but without its KubeConfig class, whose
 * module loads the whole generated API (ESM, ~0.3 s on an idle machine, well over
 * a second on a busy one) before the first request could go out. The other
 * auth providers (oidc, azure, gcp) are handed to client-node's KubeConfig,
 * loaded only then.
 */
import { existsSync, readFileSync } from 'node:fs';
import type * as https from 'node:https';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import * as yaml from 'js-yaml';

type Cluster = k8s.Cluster;
type User = k8s.User;
type Context = k8s.Context;

interface Authenticator {
  isAuthProvider(user: User): boolean;
  applyAuthentication(user: User, opts: https.RequestOptions): Promise<void>;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

function configTypes(): {
  newClusters(a: unknown): Cluster[];
  newUsers(a: unknown): User[];
  newContexts(a: unknown): Context[];
} {
  return require('@kubernetes/client-node/dist/config_types.js');
}

export class KubeConfigLite {
  clusters: Cluster[] = [];
  users: User[] = [];
  contexts: Context[] = [];
  currentContext = '';
  private authenticators?: Authenticator[];
  private full?: k8s.KubeConfig;

  loadFromString(text: string, root?: string): void {
    const obj = (yaml.load(text) ?? {}) as Record<string, unknown>;
    const t = configTypes();
    this.clusters = t.newClusters(obj.clusters);
    this.users = t.newUsers(obj.users);
    this.contexts = t.newContexts(obj.contexts);
    this.currentContext = (obj['current-context'] as string) ?? '';
    if (root) {
      const abs = (f: string) => (isAbsolute(f) ? f : join(root, f));
      for (const c of this.clusters) if (c.caFile) (c as { caFile?: string }).caFile = abs(c.caFile);
      for (const u of this.users) {
        if (u.certFile) (u as { certFile?: string }).certFile = abs(u.certFile);
        if (u.keyFile) (u as { keyFile?: string }).keyFile = abs(u.keyFile);
      }
    }
  }

  loadFromFile(file: string): void {
    this.loadFromString(readFileSync(file, 'utf8'), dirname(file));
  }

  /** KUBECONFIG (a list, merged: the first file that names a thing wins), ~/.kube/config, the service account. */
  loadFromDefault(): void {
    const list = (process.env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
    if (list.length > 0) {
      this.loadFromFile(list[0]);
      for (const file of list.slice(1)) {
        const other = new KubeConfigLite();
        other.loadFromFile(file);
        const merge = <T extends { name: string }>(mine: T[], theirs: T[]) => {
          for (const x of theirs) if (!mine.some((m) => m.name === x.name)) mine.push(x);
        };
        merge(this.clusters, other.clusters);
        merge(this.users, other.users);
        merge(this.contexts, other.contexts);
        this.currentContext ||= other.currentContext;
      }
      return;
    }
    const home = join(process.env.HOME || homedir(), '.kube', 'config');
    if (existsSync(home)) {
      this.loadFromFile(home);
      return;
    }
    if (existsSync(join(SA_DIR, 'token')) && process.env.KUBERNETES_SERVICE_HOST) {
      this.loadFromCluster();
      return;
    }
    // What client-node's loadFromDefault falls back to; src/kube/client.ts says "no kubeconfig found".
    this.clusters = [{ name: 'cluster', server: 'http://localhost:8080', skipTLSVerify: false }];
    this.users = [{ name: 'user' }];
    this.contexts = [{ name: 'loaded-context', cluster: 'cluster', user: 'user' }];
    this.currentContext = 'loaded-context';
  }

  private loadFromCluster(): void {
    const host = process.env.KUBERNETES_SERVICE_HOST ?? '';
    const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
    const h = isIPv6(host) ? `[${host}]` : host;
    this.clusters = [
      {
        name: 'inCluster',
        server: `https://${h}:${port}`,
        caFile: join(SA_DIR, 'ca.crt'),
        skipTLSVerify: false,
      },
    ];
    this.users = [
      {
        name: 'inClusterUser',
        authProvider: { name: 'tokenFile', config: { tokenFile: join(SA_DIR, 'token') } },
      },
    ];
    const nsFile = join(SA_DIR, 'namespace');
    const namespace = existsSync(nsFile) ? readFileSync(nsFile, 'utf8').trim() : undefined;
    this.contexts = [{ name: 'inClusterContext', cluster: 'inCluster', user: 'inClusterUser', namespace }];
    this.currentContext = 'inClusterContext';
  }

  getContexts(): Context[] {
    return this.contexts;
  }

  getCurrentContext(): string {
    return this.currentContext;
  }

  setCurrentContext(name: string): void {
    this.currentContext = name;
  }

  getContextObject(name: string): Context | null {
    return this.contexts.find((c) => c.name === name) ?? null;
  }

  getCurrentCluster(): Cluster | null {
    const ctx = this.getContextObject(this.currentContext);
    return (ctx && this.clusters.find((c) => c.name === ctx.cluster)) ?? null;
  }

  getCurrentUser(): User | null {
    const ctx = this.getContextObject(this.currentContext);
    return (ctx && this.users.find((u) => u.name === ctx.user)) ?? null;
  }

  /** TLS material and credentials for a request, as client-node's applyToHTTPSOptions sets them. */
  async applyToHTTPSOptions(opts: https.RequestOptions): Promise<void> {
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    const headers = { ...(opts.headers as Record<string, string> | undefined) };
    opts.headers = headers;
    if (cluster?.skipTLSVerify) opts.rejectUnauthorized = false;
    if (cluster?.tlsServerName) opts.servername = cluster.tlsServerName;
    const ca = fileOrData(cluster?.caFile, cluster?.caData);
    if (ca) opts.ca = ca;
    if (!user) return;
    const cert = fileOrData(user.certFile, user.certData);
    const key = fileOrData(user.keyFile, user.keyData);
    if (cert) opts.cert = cert;
    if (key) opts.key = key;
    if (user.username) opts.auth = `${user.username}:${user.password ?? ''}`;
    if (
      user.authProvider &&
      !(
        user.authProvider.config?.tokenFile ||
        user.authProvider.name === 'exec' ||
        user.authProvider.config?.exec
      )
    ) {
      // oidc, azure, gcp: client-node's own, loaded only for them.
      return this.fullConfig().applyToHTTPSOptions(opts as never);
    }
    this.authenticators ??= [
      new (require('@kubernetes/client-node/dist/exec_auth.js').ExecAuth)(),
      new (require('@kubernetes/client-node/dist/file_auth.js').FileAuth)(),
    ];
    const auth = this.authenticators.find((a) => a.isAuthProvider(user));
    if (auth) await auth.applyAuthentication(user, opts);
    if (user.token) headers.Authorization = `Bearer ${user.token}`;
  }

  private fullConfig(): k8s.KubeConfig {
    if (!this.full) {
      const { KubeConfig } = require('@kubernetes/client-node/dist/config.js') as typeof k8s;
      this.full = new KubeConfig();
      this.full.loadFromOptions({
        clusters: this.clusters,
        users: this.users,
        contexts: this.contexts,
        currentContext: this.currentContext,
      });
    }
    return this.full;
  }
}

function fileOrData(file?: string, data?: string): Buffer | undefined {
  if (file) return readFileSync(file);
  if (data) return Buffer.from(data, 'base64');
  return undefined;
}
