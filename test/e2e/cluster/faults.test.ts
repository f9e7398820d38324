/**
 * How runs end on a real cluster, and the faults a real cluster showed: each
 * of these failed before its fix (issue 13). Ctrl-C/SIGTERM while tracing
 * and while the pod starts, SIGKILL (nothing may remain a minute after the
 * runner's grace for the client, with nobody doing anything), the pod deleted mid-trace, `cleanup` from a
 * second terminal, Pod Security, RBAC with exactly manifests/rbac.yaml (and
 * less), an image that cannot be pulled, --print-manifest without a cluster.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import { CLIENT_GRACE_SEC } from '../../../src/kube/bundle';
import { k8sLib } from '../../../src/kube/client';
import {
  adminApi,
  api,
  BIN,
  BUSYBOX,
  createNamespace,
  debugObjects,
  deleteNamespace,
  flood,
  helperProcesses,
  KUBECONFIG,
  MANAGED,
  makeUser,
  makeWorld,
  podIp,
  podName,
  REPO,
  runCli,
  startCli,
  traffic,
  until,
  type World,
} from './world';

const skip = KUBECONFIG ? false : 'no cluster (scripts/run-tests.js says why)';
let world: World;
let flow: { stop(): void } | undefined;
const TRACE = ['--backend', 'tracepoint', '--proto', 'udp'];

async function debugPods(ns: string): Promise<k8s.V1Pod[]> {
  const l = await api.request<k8s.V1PodList>('GET', `/api/v1/namespaces/${ns}/pods`, {
    query: { labelSelector: MANAGED },
  });
  return l.items;
}

/**
 * The CLI with its stdout taken at most bytesPerSec: a reader slower than the trace, so that the stream falls
 * behind (the runner keeps 4 MiB compressed, the API server and the CLI their buffers) and a stop finds a
 * backlog. Counts the JSON event lines, keeps the last line, and the bytes that came after mark().
 */
function startSlowReader(args: string[], bytesPerSec: number) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, KUBECONFIG, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run = { child, stderr: '', events: 0, last: '', bytes: 0, marked: 0 };
  let rest = '';
  let budget = 0;
  const tick = setInterval(() => {
    budget = bytesPerSec / 20;
    child.stdout.resume();
  }, 50);
  child.stdout.on('data', (c: Buffer) => {
    run.bytes += c.length;
    budget -= c.length;
    if (budget <= 0) child.stdout.pause();
    const lines = (rest + c.toString('utf8')).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('{"type":"event"')) run.events++;
      if (line) run.last = line;
    }
  });
  child.stderr.on('data', (c: Buffer) => {
    run.stderr += c.toString();
  });
  const done = new Promise<number | string>((res) =>
    child.once('close', (code, signal) => {
      clearInterval(tick);
      res(code ?? signal ?? -1);
    }),
  );
  return {
    run,
    done,
    /** From now on, count the bytes that come. */
    mark: () => {
      run.marked = run.bytes;
    },
    async waitForStderr(re: RegExp, ms = 120_000) {
      await until(`stderr matching ${re}`, () => re.test(run.stderr) || undefined, ms);
    },
  };
}

describe('ends and faults on a real cluster', { skip }, () => {
  const extraNamespaces: string[] = [];
  const clusterRoles: string[] = [];
  before(async () => {
    world = await makeWorld();
    flow = traffic(world.pods.deploy.map(podIp));
  });
  after(async () => {
    flow?.stop();
    for (const ns of [world?.ns, ...extraNamespaces]) if (ns) await deleteNamespace(ns);
    for (const r of clusterRoles) {
      const path = r.startsWith('binding:') ? `clusterrolebindings/${r.slice(8)}` : `clusterroles/${r}`;
      await api.request('DELETE', `/apis/rbac.authorization.k8s.io/v1/${path}`).catch(() => {});
    }
  });
  afterEach(async () => {
    assert.deepEqual(await debugObjects(world.ns), [], 'a debug Job or pod is left after the CLI exited');
    await until(
      'no pwru-helper process',
      () => (helperProcesses(world.ns).length === 0 ? true : undefined),
      10_000,
    );
  });
  const web0 = () => `pod/${podName(world.pods.deploy[0])}`;

  test('Ctrl-C while tracing: the helper detaches, the pod is deleted and gone, exit 0', async () => {
    const run = startCli([web0(), '-n', world.ns, ...TRACE]);
    await run.waitForStdout(new RegExp(podIp(world.pods.deploy[0]).replace(/\./g, '\\.')));
    run.child.kill('SIGINT');
    assert.equal(await run.done, 0, run.stderr);
    assert.match(run.stderr, /detaching probes/);
  });

  test('Ctrl-C while the helper cannot answer (stopped, then killed): its last records never come, exit 1, never 0', async () => {
    const run = startCli([web0(), '-n', world.ns, ...TRACE, '-o', 'json']);
    await run.waitForStderr(/tracing with/);
    const [helper] = helperProcesses(world.ns);
    assert.ok(helper, run.stderr);
    process.kill(helper, 'SIGSTOP');
    run.child.kill('SIGINT');
    await run.waitForStderr(/stopping/);
    process.kill(helper, 'SIGKILL');
    assert.equal(await run.done, 1, run.stderr);
    assert.match(
      run.stderr,
      /was stopped, but the helper's last records \(its final counts\) did not arrive/,
    );
    assert.ok(!run.stdout.includes('"final":true'), 'no final stats line was made up');
  });

  test('Ctrl-C during a flood, the stream far behind (a slow reader): the backlog is read to its end, the final counts and END arrive, exit 0, the pod gone', async () => {
    // Before: the pod was deleted 1.5 s after the stop and the runner killed the helper 5 s after it, so a
    // backlog that outlasted them lost the final counts and END (exit 1).
    const target = world.pods.deploy[1];
    const rate = 10 * 1024 * 1024;
    const cli = startSlowReader(
      [
        `pod/${podName(target)}`,
        '-n',
        world.ns,
        '--backend',
        'tracepoint',
        '--proto',
        'udp',
        '--port',
        '9999',
        '-o',
        'json',
      ],
      rate,
    );
    let sender: { stop(): void } | undefined;
    try {
      await cli.waitForStderr(/tracing with/);
      sender = flood(podIp(target), 9999);
      await new Promise((r) => setTimeout(r, 4000));
      cli.mark();
      cli.run.child.kill('SIGINT');
      await cli.waitForStderr(/stopping/);
    } finally {
      sender?.stop();
    }
    const code = await cli.done;
    const { run } = cli;
    const tail = run.stderr.slice(-1500);
    // What the test is about: the stop found seconds of stream still to come.
    assert.ok(
      run.bytes - run.marked > 3 * rate,
      `only ${run.bytes - run.marked} bytes came after the stop: no backlog\n${tail}`,
    );
    assert.equal(code, 0, tail);
    const stats = JSON.parse(run.last) as { type: string; final?: boolean; events: number; lost: number };
    assert.equal(stats.type, 'stats', `the last line is not the final stats: ${run.last.slice(0, 200)}`);
    assert.equal(stats.final, true);
    // The client's count of what it wrote is every event line the reader got, and the helper's END agreed.
    const summary = /(\d+) events, (?:0 lost|\d+ LOST)/.exec(run.stderr);
    assert.ok(summary, tail);
    assert.equal(Number(summary[1]), run.events, tail);
    assert.ok(
      run.events > 0 && run.events <= stats.events,
      `${run.events} event lines, ${stats.events} in the final stats`,
    );
    assert.doesNotMatch(run.stderr, /did not arrive/);
  });

  test('Ctrl-C twice during a flood, the stream far behind: exit 130 at once, the pod already being deleted, gone soon after with nobody doing anything', async () => {
    const target = world.pods.deploy[1];
    const cli = startSlowReader(
      [
        `pod/${podName(target)}`,
        '-n',
        world.ns,
        '--backend',
        'tracepoint',
        '--proto',
        'udp',
        '--port',
        '9999',
        '-o',
        'json',
      ],
      10 * 1024 * 1024,
    );
    let sender: { stop(): void } | undefined;
    try {
      await cli.waitForStderr(/tracing with/);
      sender = flood(podIp(target), 9999);
      await new Promise((r) => setTimeout(r, 4000));
      cli.run.child.kill('SIGINT');
      await cli.waitForStderr(/stopping/);
      await new Promise((r) => setTimeout(r, 500));
      cli.run.child.kill('SIGINT');
    } finally {
      sender?.stop();
    }
    const forced = Date.now();
    assert.equal(await cli.done, 130, cli.run.stderr.slice(-1500));
    assert.ok(Date.now() - forced < 10_000, `exited ${Date.now() - forced} ms after the second Ctrl-C`);
    // The CLI is gone: what it started must go by itself (the pod's grace, the runner's wait for a client).
    await until(
      'no debug Job or pod',
      async () => ((await debugObjects(world.ns)).length === 0 ? true : undefined),
      30_000,
    );
  });

  test('SIGTERM does the same', async () => {
    const run = startCli(['svc/web', '-n', world.ns, ...TRACE]);
    await run.waitForStderr(/tracing with/);
    run.child.kill('SIGTERM');
    assert.equal(await run.done, 0, run.stderr);
  });

  test('Ctrl-C while the debug pod starts: deleted, exit 130 within seconds (not 120 s and 0)', async () => {
    // An init container that waits keeps the pod starting for as long as the test needs.
    const patch = join(world.dir, 'slow-start.yaml');
    writeFileSync(
      patch,
      `spec:\n  initContainers:\n    - name: wait\n      image: ${BUSYBOX}\n      imagePullPolicy: IfNotPresent\n      command: [sleep, "300"]\n`,
    );
    const run = startCli([web0(), '-n', world.ns, ...TRACE, '--pod-patch', patch]);
    await until(
      'the debug pod exists',
      async () => ((await debugPods(world.ns)).length > 0 ? true : undefined),
      30_000,
    );
    const started = Date.now();
    run.child.kill('SIGINT');
    const code = await run.done;
    assert.equal(code, 130, run.stderr);
    assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
    assert.match(run.stderr, /interrupted before the trace started; the debug pods were deleted/);
  });

  test('SIGKILL of the CLI: after the grace for a client to come back, no probes, no container, no Job, no pod — nobody doing anything', async () => {
    const run = startCli([web0(), '-n', world.ns, ...TRACE]);
    await run.waitForStderr(/tracing with/);
    const killed = Date.now();
    run.child.kill('SIGKILL');
    await run.done;
    // The runner waits CLIENT_GRACE_SEC for the client to attach again, then stops the helper and exits;
    // the Job's TTL removes the rest.
    const grace = CLIENT_GRACE_SEC * 1000;
    await until(
      'the helper gone',
      () => (helperProcesses(world.ns).length === 0 ? true : undefined),
      grace + 30_000,
    );
    await until(
      'no debug Job or pod',
      async () => ((await debugObjects(world.ns)).length === 0 ? true : undefined),
      grace + 60_000,
    );
    process.stderr.write(`# SIGKILL: everything gone ${Date.now() - killed} ms after the kill\n`);
  });

  test('a pod that is still terminating when the wait ends: said, not hidden', async () => {
    // A finalizer (by --pod-patch) holds the deleted pod: the CLI waits its 30 s, then says so.
    const patch = join(world.dir, 'hold.yaml');
    writeFileSync(patch, 'metadata:\n  finalizers: [kubectl-pwru.e2e/hold]\n');
    const run = startCli([web0(), '-n', world.ns, ...TRACE, '--max-events', '2', '--pod-patch', patch]);
    try {
      assert.equal(await run.done, 0, run.stderr);
      assert.match(
        run.stderr,
        /warning: debug pod [\w-]+\/pwru-[\w-]+ on node .* is still terminating after 30 s/,
      );
    } finally {
      for (const pod of await debugPods(world.ns)) {
        await api.request('PATCH', `/api/v1/namespaces/${world.ns}/pods/${pod.metadata?.name}`, {
          body: { metadata: { finalizers: null } },
          contentType: 'application/merge-patch+json',
        });
      }
      await until(
        'the held pod gone',
        async () => ((await debugPods(world.ns)).length === 0 ? true : undefined),
        30_000,
      );
    }
  });

  test('the debug pod deleted mid-trace (kubectl delete): said, exit 1 — not a silent 0', async () => {
    const run = startCli([web0(), '-n', world.ns, ...TRACE, '--fail-on-drop']);
    await run.waitForStderr(/tracing with/);
    const [pod] = await debugPods(world.ns);
    await api.request('DELETE', `/api/v1/namespaces/${world.ns}/pods/${pod.metadata?.name}`);
    assert.equal(await run.done, 1, run.stderr);
    assert.match(
      run.stderr,
      new RegExp(
        `error: debug pod ${world.ns}/${pod.metadata?.name} on node ${world.node} was deleted during the trace`,
      ),
    );
  });

  test('cleanup from a second terminal keeps a running trace (same user@host); --all ends it, and the trace says so', async () => {
    // A finished debug pod nobody deleted (as an older kubectl-pwru or a cluster without the TTL controller leaves).
    const done = await api.request<k8s.V1Pod>('POST', `/api/v1/namespaces/${world.ns}/pods`, {
      body: {
        metadata: { generateName: 'pwru-old-', labels: { 'app.kubernetes.io/managed-by': 'kubectl-pwru' } },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 0,
          containers: [{ name: 'pwru', image: BUSYBOX, imagePullPolicy: 'IfNotPresent', command: ['true'] }],
        },
      },
    });
    await until(
      'the old pod finished',
      async () =>
        (await api.request<k8s.V1Pod>('GET', `/api/v1/namespaces/${world.ns}/pods/${done.metadata?.name}`))
          .status?.phase === 'Succeeded' || undefined,
      60_000,
    );
    const run = startCli([web0(), '-n', world.ns, ...TRACE]);
    await run.waitForStderr(/tracing with/);
    const [live] = (await debugPods(world.ns)).filter((p) => p.metadata?.name !== done.metadata?.name);
    const kept = await runCli(['cleanup', '-n', world.ns]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(
      kept.stdout,
      new RegExp(`kept \\(its trace is running; --all deletes it\\) pod ${world.ns}/${live.metadata?.name}`),
    );
    assert.match(
      kept.stdout,
      new RegExp(`deleted pod ${world.ns}/${done.metadata?.name} \\(node ${world.node}, Succeeded`),
    );
    assert.equal(run.child.exitCode, null, 'the trace goes on');
    // -A looks in every namespace (a dry run: other traces on this cluster are not this test's to end).
    const everywhere = await runCli(['cleanup', '-A', '--dry-run']);
    assert.equal(everywhere.code, 0, everywhere.stderr);
    assert.match(
      everywhere.stdout,
      new RegExp(`kept \\(its trace is running; --all deletes it\\) pod ${world.ns}/${live.metadata?.name}`),
    );
    const all = await runCli(['cleanup', '-n', world.ns, '--all']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, new RegExp(`deleted pod ${world.ns}/${live.metadata?.name}`));
    assert.equal(await run.done, 1, run.stderr);
    assert.match(run.stderr, /was deleted during the trace/);
  });

  test('Pod Security refuses the privileged pod: said before anything exists, exit 1', async () => {
    const ns = `${world.ns}-baseline`;
    extraNamespaces.push(ns);
    await createNamespace(ns, 'baseline');
    const r = await runCli([web0(), '-n', world.ns, '--debug-namespace', ns]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /Pod Security admission rejected the privileged debug pod in namespace "k8s-e2e-\w+-baseline": .*violates PodSecurity "baseline:latest"/,
    );
    assert.match(r.stderr, /--debug-namespace/);
    assert.deepEqual(await debugObjects(ns), [], 'the dry run refused it: no Job was created');
  });

  test("an image that cannot be pulled: the kubelet's reason, exit 1, nothing left", async () => {
    const r = await runCli([web0(), '-n', world.ns, '--image', 'localhost/kubectl-pwru-e2e/none:1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot start: (ErrImagePull|ImagePullBackOff): .*\n.*pass --image/);
  });

  test('RBAC: a user with exactly manifests/rbac.yaml traces; with less, the refused verb and resource are named', async () => {
    // The roles as shipped, under names of this run's own (other runs may use the cluster at the same time).
    const suffix = world.ns.slice(-6);
    const shipped = k8sLib().loadAllYaml(
      readFileSync(join(REPO, 'manifests', 'rbac.yaml'), 'utf8'),
    ) as k8s.V1ClusterRole[];
    for (const doc of shipped) {
      const name = `${doc.metadata?.name}-${suffix}`;
      clusterRoles.push(name);
      await api.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
        body: { ...doc, metadata: { ...doc.metadata, name } },
      });
    }
    const user = `k8s-e2e-alice-${world.ns.slice(-6)}`;
    const kubeconfig = makeUser(world.dir, user);
    const bind = async (name: string, role: string, ns?: string) =>
      api.request(
        'POST',
        `/apis/rbac.authorization.k8s.io/v1${ns ? `/namespaces/${ns}` : ''}/${ns ? 'rolebindings' : 'clusterrolebindings'}`,
        {
          body: {
            metadata: { name },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: ns ? 'Role' : 'ClusterRole', name: role },
            subjects: [{ kind: 'User', name: user, apiGroup: 'rbac.authorization.k8s.io' }],
          },
        },
      );
    // Less first: a Role with everything but pods/attach, in the namespace.
    const rules = shipped[0].rules ?? [];
    await api.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${world.ns}/roles`, {
      body: {
        metadata: { name: 'no-attach' },
        rules: rules.filter((r) => !r.resources?.includes('pods/attach')),
      },
    });
    await bind('no-attach', 'no-attach', world.ns);
    clusterRoles.push(`binding:k8s-e2e-pwru-nodes-${suffix}`);
    await bind(`k8s-e2e-pwru-nodes-${suffix}`, `kubectl-pwru-nodes-${suffix}`);
    const less = await runCli([
      web0(),
      '-n',
      world.ns,
      ...TRACE,
      '--max-events',
      '2',
      '--kubeconfig',
      kubeconfig,
    ]);
    assert.equal(less.code, 1, less.stderr);
    assert.match(
      less.stderr,
      new RegExp(
        `forbidden: you may not create pods/attach "pwru-[\\w-]+" in namespace "${world.ns}"[^]*manifests/rbac.yaml`,
      ),
    );
    // Exactly the shipped role, bound in the namespace.
    await api.request(
      'DELETE',
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${world.ns}/rolebindings/no-attach`,
    );
    await api.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${world.ns}/rolebindings`, {
      body: {
        metadata: { name: 'pwru' },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: `kubectl-pwru-${suffix}`,
        },
        subjects: [{ kind: 'User', name: user, apiGroup: 'rbac.authorization.k8s.io' }],
      },
    });
    const exact = await until(
      'the binding in effect',
      async () => {
        const r = await runCli([
          web0(),
          '-n',
          world.ns,
          ...TRACE,
          '--max-events',
          '2',
          '--kubeconfig',
          kubeconfig,
        ]);
        return /forbidden/.test(r.stderr) ? undefined : r;
      },
      20_000,
    );
    assert.equal(exact.code, 0, exact.stderr);
    assert.ok(exact.stdout.includes(podIp(world.pods.deploy[0])));
    // The admin's view of it: the user could not have left anything either.
    assert.deepEqual(await debugObjects(world.ns), []);
    void adminApi;
  });

  test('--print-manifest without a reachable cluster: the Job, with placeholders where the cluster would say', async () => {
    const kubeconfig = join(world.dir, 'nowhere.kubeconfig');
    writeFileSync(
      kubeconfig,
      'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u, namespace: shop}}]\ncurrent-context: c\n',
    );
    const r = await runCli(['pod/web-0', '--port', '443', '--print-manifest', '--kubeconfig', kubeconfig]);
    assert.equal(r.code, 0, r.stderr);
    const [job] = k8sLib().loadAllYaml(r.stdout) as k8s.V1Job[];
    assert.equal(job.kind, 'Job');
    assert.equal(job.spec?.template.spec?.nodeName, '<NODE OF pod/web-0>');
    assert.equal(job.metadata?.namespace, 'shop');
    assert.match(
      job.metadata?.annotations?.['pwru.kubectl.io/filter'] ?? '',
      /host <ADDRESSES OF pod\/web-0>\) and \(.*443/,
    );
    assert.match(r.stderr, /placeholders/);
    const none = await runCli(['node/n1', '--print-manifest'], {
      KUBECONFIG: join(world.dir, 'missing'),
      HOME: world.dir,
    });
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /nodeName: n1/);
  });
});
