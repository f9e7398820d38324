/**
 * The world the end-to-end tests run in: a stand-in API server with two
 * "nodes", a namespace "shop" with pods web-0 (node-a) and web-1 (node-b)
 * whose addresses live in real network namespaces, a service "web" over both,
 * and a way to run the real CLI (bin/kubectl-pwru) as a child process.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Obj, StandInApiServer } from '../k8s-apiserver/server';
import { createPodNet, deletePodNet, linksUnder, type PodNet, processesUnder } from './net';

export const REPO = resolve(__dirname, '..', '..', '..');
export const BIN = join(REPO, 'bin', 'kubectl-pwru');
export const HELPER = join(REPO, 'helper', 'build', 'amd64', 'pwru-helper');
export const DEBUG_LABEL = 'app.kubernetes.io/managed-by';

export interface World {
  server: StandInApiServer;
  kubeconfig: string;
  a: PodNet;
  b: PodNet;
  dir: string;
  close(): Promise<void>;
}

export function podObject(
  name: string,
  node: string | undefined,
  ip: string | undefined,
  extra: Obj = {},
): Obj {
  return {
    metadata: { name, namespace: 'shop', labels: { app: 'web' } },
    spec: { ...(node ? { nodeName: node } : {}), containers: [{ name: 'web', image: 'nginx:1.27' }] },
    status: ip ? { phase: 'Running', podIP: ip, podIPs: [{ ip }] } : { phase: 'Pending' },
    ...extra,
  };
}

export async function makeWorld(): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'pwru-e2e-'));
  const server = new StandInApiServer({ user: 'alice' });
  await server.listen();
  const kubeconfig = server.writeKubeconfig(join(dir, 'kubeconfig'));
  const nets: PodNet[] = [];
  try {
    nets.push(createPodNet('a', 1));
    nets.push(createPodNet('b', 2));
  } catch (err) {
    // A listening server would keep the test file's process, and the whole suite, waiting forever.
    await server.close();
    for (const net of nets) deletePodNet(net);
    throw err;
  }
  const [a, b] = nets;
  for (const ns of ['default', 'shop', 'locked']) server.put('namespaces', { metadata: { name: ns } });
  for (const node of ['node-a', 'node-b']) {
    server.put('nodes', { metadata: { name: node }, status: { nodeInfo: { architecture: 'amd64' } } });
  }
  server.put('pods', podObject('web-0', 'node-a', a.podIp));
  server.put('pods', podObject('web-1', 'node-b', b.podIp));
  server.put('services', {
    metadata: { name: 'web', namespace: 'shop' },
    spec: { clusterIP: '10.96.7.7', clusterIPs: ['10.96.7.7'], selector: { app: 'web' } },
  });
  server.put('endpointslices', {
    metadata: { name: 'web-x1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [
      {
        addresses: [a.podIp],
        nodeName: 'node-a',
        conditions: { ready: true },
        targetRef: { kind: 'Pod', name: 'web-0', namespace: 'shop' },
      },
      {
        addresses: [b.podIp],
        nodeName: 'node-b',
        conditions: { ready: true },
        targetRef: { kind: 'Pod', name: 'web-1', namespace: 'shop' },
      },
    ],
  });
  server.put('deployments', {
    metadata: { name: 'web', namespace: 'shop' },
    spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } } } },
  });
  return {
    server,
    kubeconfig,
    a,
    b,
    dir,
    async close() {
      await server.close();
      deletePodNet(a);
      deletePodNet(b);
    },
  };
}

export interface CliRun {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (or the signal's name) when the CLI ends. */
  done: Promise<number | string>;
  /** Resolves when stderr matches re; rejects after timeoutMs or if the CLI ends first. */
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<void>;
  /** The same for stdout: trace lines must show while the trace runs, not at its end. */
  waitForStdout(re: RegExp, timeoutMs?: number): Promise<void>;
}

export function startCli(world: World, args: string[], env: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: world.dir,
    env: { ...process.env, KUBECONFIG: world.kubeconfig, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: CliRun = {
    child,
    stdout: '',
    stderr: '',
    done: new Promise((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? -1))),
    waitForStderr: (re, timeoutMs = 15000) => waitFor('stderr', re, timeoutMs),
    waitForStdout: (re, timeoutMs = 15000) => waitFor('stdout', re, timeoutMs),
  };
  function waitFor(which: 'stdout' | 'stderr', re: RegExp, timeoutMs: number): Promise<void> {
    const stream = which === 'stdout' ? child.stdout : child.stderr;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(run[which])) {
          clearTimeout(timer);
          stream?.off('data', check);
          resolve();
        }
      };
      const timer = setTimeout(
        () => reject(new Error(`${which} never matched ${re} within ${timeoutMs} ms:\n${run.stderr}`)),
        timeoutMs,
      );
      stream?.on('data', check);
      run.done.then(() =>
        setTimeout(() => reject(new Error(`CLI ended before ${which} matched ${re}:\n${run.stderr}`)), 50),
      );
      check();
    });
  }
  child.stdout?.on('data', (c: Buffer) => {
    run.stdout += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    run.stderr += c.toString();
  });
  return run;
}

export async function runCli(
  world: World,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30000,
): Promise<{ code: number | string; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const run = startCli(world, args, env);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), timeoutMs);
  const code = await run.done;
  clearTimeout(timer);
  return { code, stdout: run.stdout, stderr: run.stderr, ms: Date.now() - started };
}

export function debugPods(world: World): Obj[] {
  return world.server.pods().filter((p) => p.metadata.labels?.[DEBUG_LABEL] === 'kubectl-pwru');
}

/** Nothing of any debug pod is left: no pod object, no process, no BPF link. */
export function leftovers(world: World): string[] {
  const found = debugPods(world).map(
    (p) => `pod ${p.metadata.namespace}/${p.metadata.name} (${p.status?.phase})`,
  );
  found.push(...processesUnder(world.server.podRoots));
  found.push(...linksUnder(world.server.podRoots));
  return found;
}

export async function eventually(check: () => string[], timeoutMs: number): Promise<string[]> {
  const until = Date.now() + timeoutMs;
  let last = check();
  while (last.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    last = check();
  }
  return last;
}

/** JSON lines of -o json output. */
export function jsonLines(stdout: string): Obj[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Obj);
}

/**
 * A process in a netns, inside a cgroup whose path names a container ID, the
 * way a container runtime lays it out: what the runner looks for with
 * --pod-netns-only.
 */
export function fakeContainer(netns: string, containerId: string): { stop(): void } {
  // cgroup v1 (a pids hierarchy) or v2 (unified at the root): either way the path names the container.
  const base = existsSync('/sys/fs/cgroup/pids/cgroup.procs') ? '/sys/fs/cgroup/pids' : '/sys/fs/cgroup';
  const cgroup = `${base}/pwru-e2e/pod-test/${containerId}`;
  mkdirSync(cgroup, { recursive: true });
  const child = spawn('ip', ['netns', 'exec', netns, 'sleep', '600'], { stdio: 'ignore' });
  writeFileSync(join(cgroup, 'cgroup.procs'), String(child.pid));
  return {
    stop() {
      child.kill('SIGKILL');
      // The cgroup can be removed once its last process is gone.
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(cgroup);
          break;
        } catch {
          execFileSync('sleep', ['0.1']);
        }
      }
      for (const dir of [`${base}/pwru-e2e/pod-test`, `${base}/pwru-e2e`]) {
        try {
          rmdirSync(dir);
        } catch {}
      }
    },
  };
}
