/**
 * Kubernetes mode end to end: the real CLI against the stand-in API server,
 * whose "kubelet" runs the debug pod's real command (node + the bootstrap),
 * which unpacks the real runner and helper and traces real packets sent into
 * network namespaces that stand for the target pods.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { Pod } from 'kubernetes-models/v1/Pod';
import { k8sLib } from '../../src/kube/client';
import {
  debugPods,
  eventually,
  fakeContainer,
  jsonLines,
  leftovers,
  makeWorld,
  podObject,
  runCli,
  startCli,
  type World,
} from './harness';
import { udpStream } from './net';

let world: World;
let traffic: { stop(): void }[] = [];

before(async () => {
  world = await makeWorld();
  // Steady traffic into both "pods": every trace has something to see.
  traffic = [udpStream(world.a.podIp, 9999, 100), udpStream(world.b.podIp, 9999, 100)];
});

after(async () => {
  for (const t of traffic) t.stop();
  await world.close();
});

afterEach(async () => {
  world.server.config.forbid = [];
  world.server.config.podSecurity = {};
  world.server.config.unpullable = [];
  world.server.config.withoutNode = [];
  world.server.config.watchTimeoutMs = undefined;
  world.server.config.kubeletDelayMs = undefined;
  world.server.config.channelProtocols = undefined;
  // Every run, whatever its ending, must leave nothing behind.
  const left = await eventually(() => leftovers(world), 15000);
  assert.deepEqual(left, [], 'a debug pod, process or BPF link was left behind');
});

const TRACE = ['--backend', 'tracepoint', '--proto', 'udp'];

describe('targets', () => {
  test('pod/NAME: traces the pod on its node, shows progress, deletes the pod', async () => {
    const before = world.server.createdPods.length;
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', ...TRACE, '--max-events', '5']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /10\.213\.1\.1:\d+->10\.213\.1\.2:9999\(udp\)/);
    assert.doesNotMatch(r.stdout, /10\.213\.2\.2/, 'the filter must keep other pods out');
    assert.match(r.stderr, /creating debug pod on node node-a in namespace shop/);
    assert.match(r.stderr, /Pulling image "node:20-bookworm-slim"/);
    assert.match(r.stderr, /tracing with tracepoint/);
    const created = world.server.createdPods.slice(before);
    assert.equal(created.length, 1);
    const spec = created[0].spec;
    assert.equal(spec.nodeName, 'node-a');
    assert.equal(spec.hostPID, true);
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.restartPolicy, 'Never');
    assert.equal(spec.automountServiceAccountToken, false);
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.equal(spec.containers[0].securityContext.privileged, true);
    assert.equal(created[0].metadata.annotations['pwru.kubectl.io/target'], 'pod/shop/web-0');
  });

  test('bare NAME, -o json: the filter carries the pod IP, addresses are named', async () => {
    const r = await runCli(world, ['web-1', '-n', 'shop', ...TRACE, '--max-events', '4', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    const header = lines.find((l) => l.type === 'header');
    assert.ok(header, r.stdout);
    assert.equal(header.filter, '(host 10.213.2.2) and (udp)');
    const events = lines.filter((l) => l.type === 'event');
    assert.ok(events.length >= 4, r.stdout);
    for (const e of events) {
      assert.equal(e.tuple.dst, '10.213.2.2');
      assert.equal(e.tuple.dstName, 'shop/web-1');
    }
  });

  test('svc/NAME fans out to every node with an endpoint, lines carry the node', async () => {
    const before = world.server.createdPods.length;
    const r = await runCli(world, ['svc/web', '-n', 'shop', ...TRACE, '--max-events', '6', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const created = world.server.createdPods.slice(before);
    assert.deepEqual(created.map((p) => p.spec.nodeName).sort(), ['node-a', 'node-b']);
    const lines = jsonLines(r.stdout);
    const headers = lines.filter((l) => l.type === 'header');
    assert.deepEqual(headers.map((h) => h.node).sort(), ['node-a', 'node-b']);
    for (const h of headers) {
      assert.equal(h.filter, '(host 10.96.7.7 or host 10.213.1.2 or host 10.213.2.2) and (udp)');
    }
    const nodes = new Set(lines.filter((l) => l.type === 'event').map((e) => e.node));
    assert.deepEqual([...nodes].sort(), ['node-a', 'node-b']);
    assert.match(r.stderr, /node-a: creating debug pod/);
    assert.match(r.stderr, /node-b: creating debug pod/);
  });

  test('node/NAME: the user filter alone, the debug pod in the current namespace', async () => {
    const before = world.server.createdPods.length;
    const r = await runCli(world, [
      'node/node-b',
      `udp and host ${world.b.podIp}`,
      '--backend',
      'tracepoint',
      '--max-events',
      '3',
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const header = jsonLines(r.stdout).find((l) => l.type === 'header');
    assert.equal(header?.filter, `udp and host ${world.b.podIp}`);
    const created = world.server.createdPods.slice(before);
    assert.equal(created[0].metadata.namespace, 'default');
    assert.equal(created[0].spec.nodeName, 'node-b');
  });

  test('deploy/NAME with -l: pods of the workload, grouped by node', async () => {
    const r = await runCli(world, [
      'deploy/web',
      '-n',
      'shop',
      '-l',
      'app=web',
      ...TRACE,
      '--max-events',
      '4',
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const headers = jsonLines(r.stdout).filter((l) => l.type === 'header');
    assert.deepEqual(headers.map((h) => h.node).sort(), ['node-a', 'node-b']);
    assert.equal(headers[0].filter, '(host 10.213.1.2 or host 10.213.2.2) and (udp)');
  });

  test('--duration: the helper stops itself, the pod gets a matching deadline', async () => {
    const before = world.server.createdPods.length;
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', ...TRACE, '--duration', '2s', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.ms < 15000, `took ${r.ms} ms`);
    const stats = jsonLines(r.stdout).filter((l) => l.type === 'stats' && l.final);
    assert.equal(stats.length, 1, r.stdout);
    assert.ok(stats[0].events > 0, 'traffic flowed during the 2 s');
    assert.equal(world.server.createdPods[before].spec.activeDeadlineSeconds, 122);
  });

  test('-l SELECTOR alone: matching pods in the namespace', async () => {
    const r = await runCli(world, [
      '-l',
      'app in (web)',
      '-n',
      'shop',
      ...TRACE,
      '--max-events',
      '4',
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const headers = jsonLines(r.stdout).filter((l) => l.type === 'header');
    assert.deepEqual(headers.map((h) => h.node).sort(), ['node-a', 'node-b']);
    const none = await runCli(world, ['-l', 'app=nothing', '-n', 'shop', ...TRACE]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /-l app=nothing in namespace "shop" selects no pods/);
  });

  test('watches that the server ends early: the wait for the pod goes on by polling', async () => {
    world.server.config.watchTimeoutMs = 0;
    world.server.config.kubeletDelayMs = 1500; // still Pending when the watches end
    const seen = world.server.requests.length;
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', ...TRACE, '--max-events', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /10\.213\.1\.2:9999/);
    const polls = world.server.requests
      .slice(seen)
      .filter((q) => /^GET \/api\/v1\/namespaces\/shop\/pods\/pwru-/.test(q));
    assert.ok(polls.length >= 1, 'the debug pod was polled');
  });

  test('--kubeconfig and --context select the cluster; KUBECONFIG is not needed', async () => {
    const r = await runCli(
      world,
      [
        'pod/web-0',
        '-n',
        'shop',
        '--kubeconfig',
        world.kubeconfig,
        '--context',
        'standin',
        ...TRACE,
        '--max-events',
        '2',
      ],
      { KUBECONFIG: '/nonexistent' },
    );
    assert.equal(r.code, 0, r.stderr);
    const bad = await runCli(world, ['pod/web-0', '-n', 'shop', '--context', 'nope', ...TRACE]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /context "nope" is not in the kubeconfig \(known: standin\)/);
  });

  test('--pod-netns-only: the runner finds the pod netns from its container ID', async () => {
    const id = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const container = fakeContainer(world.a.netns, id);
    try {
      world.server.put(
        'pods',
        podObject('web-ns', 'node-a', world.a.podIp, {
          status: {
            phase: 'Running',
            podIP: world.a.podIp,
            podIPs: [{ ip: world.a.podIp }],
            containerStatuses: [
              {
                name: 'web',
                containerID: `containerd://${id}`,
                ready: true,
                restartCount: 0,
                image: 'nginx',
                imageID: '',
              },
            ],
          },
        }),
      );
      const netns = statSync(`/run/netns/${world.a.netns}`).ino;
      const r = await runCli(world, [
        'pod/web-ns',
        '-n',
        'shop',
        '--pod-netns-only',
        ...TRACE,
        '--max-events',
        '4',
        '-o',
        'json',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const events = jsonLines(r.stdout).filter((l) => l.type === 'event');
      assert.ok(events.length >= 4, r.stdout);
      for (const e of events) assert.equal(e.netns, netns, 'every event must be in the pod netns');
    } finally {
      container.stop();
    }
  });
});

describe('stopping', () => {
  test('Ctrl-C stops the trace, ends cleanly and deletes the pod', async () => {
    const run = startCli(world, ['pod/web-0', '-n', 'shop', ...TRACE]);
    await run.waitForStderr(/tracing with/);
    // Lines show while the trace runs.
    await run.waitForStdout(/10\.213\.1\.2:9999/);
    run.child.kill('SIGINT');
    const started = Date.now();
    const code = await run.done;
    assert.ok(Date.now() - started < 10000, 'Ctrl-C must stop the run within seconds');
    assert.equal(code, 0, run.stderr);
    assert.match(run.stdout, /10\.213\.1\.2:9999/);
    assert.match(run.stderr, /detaching probes/, 'the helper got to detach its probes');
    assert.deepEqual(debugPods(world), []);
  });

  test('SIGTERM does the same as Ctrl-C', async () => {
    const run = startCli(world, ['svc/web', '-n', 'shop', ...TRACE]);
    await run.waitForStderr(
      /tracing on node-a with[\s\S]*tracing on node-b with|tracing on node-b with[\s\S]*tracing on node-a with/,
    );
    run.child.kill('SIGTERM');
    assert.equal(await run.done, 0, run.stderr);
    assert.deepEqual(debugPods(world), []);
  });

  test('a second Ctrl-C exits at once, and the pod is still deleted', async () => {
    const run = startCli(world, ['pod/web-0', '-n', 'shop', ...TRACE]);
    await run.waitForStderr(/tracing with/);
    run.child.kill('SIGINT');
    run.child.kill('SIGINT');
    const started = Date.now();
    await run.done;
    assert.ok(Date.now() - started < 4500, `took ${Date.now() - started} ms`);
    assert.deepEqual(debugPods(world), []);
  });

  test('an API server that speaks only v4.channel.k8s.io: Ctrl-C still stops and cleans up', async () => {
    world.server.config.channelProtocols = ['v4.channel.k8s.io'];
    const run = startCli(world, ['pod/web-0', '-n', 'shop', ...TRACE]);
    await run.waitForStderr(/tracing with/);
    await new Promise((r) => setTimeout(r, 500));
    run.child.kill('SIGINT');
    assert.equal(await run.done, 0, run.stderr);
    assert.match(run.stdout, /10\.213\.1\.2:9999/);
    assert.ok(world.server.requests.some((q) => q.startsWith('UPGRADE')));
    assert.deepEqual(debugPods(world), []);
  });

  test('SIGKILL of the CLI: probes detach and the pod ends by itself; cleanup removes it', async () => {
    const run = startCli(world, ['pod/web-0', '-n', 'shop', ...TRACE]);
    await run.waitForStderr(/tracing with/);
    run.child.kill('SIGKILL');
    await run.done;
    // The attach stream closed: stdin (stdinOnce) ends, the runner stops the helper.
    const running = await eventually(
      () => [
        ...leftovers(world).filter((l) => !l.startsWith('pod ')),
        ...debugPods(world)
          .filter((p) => p.status.phase === 'Running')
          .map((p) => `pod ${p.metadata.name} still running`),
      ],
      10000,
    );
    assert.deepEqual(running, []);
    const left = debugPods(world);
    assert.equal(left.length, 1, 'a killed client cannot delete its pod');
    assert.equal(left[0].status.phase, 'Succeeded');
    const r = await runCli(world, ['cleanup']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `deleted pod shop/${left[0].metadata.name} \\(node node-a, Succeeded, started by .* tracing pod/shop/web-0\\)`,
      ),
    );
    assert.deepEqual(debugPods(world), []);
  });

  test('the API connection drops mid-trace: a clear error, and the pod stops its probes', async () => {
    const run = startCli(world, ['pod/web-0', '-n', 'shop', ...TRACE]);
    await run.waitForStderr(/tracing with/);
    world.server.dropConnections();
    const code = await run.done;
    assert.notEqual(code, 0);
    assert.match(run.stderr, /connection to the API server dropped during the trace on node node-a/);
  });
});

describe('refusals and faults', () => {
  test('unknown pod, namespace, target kind', async () => {
    const created = world.server.createdPods.length;
    let r = await runCli(world, ['pod/nope', '-n', 'shop', ...TRACE]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pods "nope" not found in namespace "shop"/);
    r = await runCli(world, ['pod/web-0', '-n', 'nosuch', ...TRACE]);
    assert.match(r.stderr, /namespace "nosuch" not found/);
    r = await runCli(world, ['svc/nope', '-n', 'shop', ...TRACE]);
    assert.match(r.stderr, /services "nope" not found in namespace "shop"/);
    r = await runCli(world, ['node/nope', ...TRACE]);
    assert.match(r.stderr, /nodes "nope" not found/);
    r = await runCli(world, ['pod/web-0', '-n', 'shop', '--debug-namespace', 'nosuch', ...TRACE]);
    assert.match(r.stderr, /namespace "nosuch" not found: check -n\/--namespace and --debug-namespace/);
    r = await runCli(world, ['rs/web', '-n', 'shop', ...TRACE]);
    assert.match(r.stderr, /unknown target kind "rs"/);
    assert.equal(world.server.createdPods.length, created, 'no pod is created for bad input');
  });

  test('no kubeconfig, an unreachable API server: what to fix', async () => {
    let r = await runCli(world, ['pod/web-0', ...TRACE], { KUBECONFIG: '', HOME: world.dir });
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /no kubeconfig found \(\$KUBECONFIG, ~\/\.kube\/config\) and not running in a pod/,
    );
    const dead = join(world.dir, 'dead-kubeconfig');
    writeFileSync(
      dead,
      readFileSync(world.kubeconfig, 'utf8').replace(world.server.url, 'http://127.0.0.1:9'),
    );
    r = await runCli(world, ['pod/web-0', '-n', 'shop', '--kubeconfig', dead, ...TRACE]);
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /cannot reach the Kubernetes API at http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\) while trying to get pods "web-0"/,
    );
  });

  test('pod not scheduled yet, pod already finished', async () => {
    world.server.put('pods', podObject('pending-0', undefined, undefined));
    world.server.put('pods', podObject('done-0', 'node-a', undefined, { status: { phase: 'Succeeded' } }));
    let r = await runCli(world, ['pod/pending-0', '-n', 'shop', ...TRACE]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pod "pending-0" in namespace "shop" is not scheduled to a node yet/);
    r = await runCli(world, ['pod/done-0', '-n', 'shop', ...TRACE]);
    assert.match(r.stderr, /pod "done-0" in namespace "shop" has already finished \(phase Succeeded\)/);
  });

  test('RBAC forbids creating pods: names the verb and resource, points to manifests/rbac.yaml', async () => {
    world.server.config.forbid = ['create pods'];
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', ...TRACE]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /forbidden: you may not create pods in namespace "shop"/);
    assert.match(r.stderr, /User "alice" cannot create resource "pods"/);
    assert.match(r.stderr, /manifests\/rbac\.yaml/);
  });

  test('RBAC forbids attach: the pod is created, then deleted, and the message says pods/attach', async () => {
    world.server.config.forbid = ['create pods/attach'];
    const before = world.server.createdPods.length;
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', ...TRACE]);
    assert.notEqual(r.code, 0);
    assert.equal(world.server.createdPods.length, before + 1);
    assert.match(r.stderr, /you may not create pods\/attach/);
    assert.match(r.stderr, /manifests\/rbac\.yaml/);
  });

  test('Pod Security admission rejects the privileged pod: says so and how to pick a namespace', async () => {
    world.server.config.podSecurity = { locked: 'baseline' };
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', '--debug-namespace', 'locked', ...TRACE]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Pod Security admission rejected the privileged debug pod in namespace "locked"/);
    assert.match(r.stderr, /violates PodSecurity "baseline:latest"/);
    assert.match(r.stderr, /--debug-namespace/);
    assert.match(r.stderr, /pod-security\.kubernetes\.io\/enforce=privileged/);
  });

  test("the image cannot be pulled: stops at once with the kubelet's reason", async () => {
    world.server.config.unpullable = ['registry.invalid/nope:1'];
    const r = await runCli(world, [
      'pod/web-0',
      '-n',
      'shop',
      '--image',
      'registry.invalid/nope:1',
      ...TRACE,
    ]);
    assert.notEqual(r.code, 0);
    assert.ok(r.ms < 10000, `took ${r.ms} ms`);
    assert.match(r.stderr, /cannot start: ErrImagePull: Failed to pull image "registry.invalid\/nope:1"/);
    assert.match(r.stderr, /--image/);
  });

  test('an image without node: the container cannot start, and the message says what to pass', async () => {
    world.server.config.withoutNode = ['busybox:1.36'];
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', '--image', 'busybox:1.36', ...TRACE]);
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /ended before the trace started: StartError \(exit code 128\): .*exec: "node": executable file not found in \$PATH/,
    );
    assert.match(r.stderr, /the image busybox:1.36 must have node on its PATH: pass --image/);
  });

  test('the helper refuses (no such backend on this kernel): its message, verbatim', async () => {
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', '--backend', 'kprobe', '--proto', 'udp']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /backend kprobe is not available on this kernel \(.*\); available: tracepoint/);
  });
});

describe('manifests', () => {
  test('--print-manifest prints valid pods, one per node, and creates nothing', async () => {
    const posts = world.server.requests.filter((q) => q.startsWith('POST')).length;
    const r = await runCli(world, [
      'svc/web',
      '-n',
      'shop',
      '--print-manifest',
      '--duration',
      '30s',
      '--image',
      'node:22-slim',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(world.server.requests.filter((q) => q.startsWith('POST')).length, posts);
    const docs = r.stdout.split(/^---$/m).map((d) => k8sLib().loadYaml(d) as Record<string, never>);
    assert.equal(docs.length, 2);
    for (const doc of docs) new Pod(doc).validate();
    const pods = docs as unknown as {
      spec: { nodeName: string; activeDeadlineSeconds: number; containers: { image: string }[] };
    }[];
    assert.deepEqual(pods.map((p) => p.spec.nodeName).sort(), ['node-a', 'node-b']);
    assert.equal(pods[0].spec.activeDeadlineSeconds, 150);
    assert.equal(pods[0].spec.containers[0].image, 'node:22-slim');
    assert.match(readFileSync(`${__dirname}/../../../manifests/debug-pod.yaml`, 'utf8'), /stdinOnce: true/);
  });

  test('cleanup finds debug pods by label only', async () => {
    world.server.put('pods', {
      metadata: {
        name: 'pwru-node-a-left1',
        namespace: 'default',
        labels: { 'app.kubernetes.io/managed-by': 'kubectl-pwru' },
        annotations: {
          'pwru.kubectl.io/started-by': 'bob@laptop',
          'pwru.kubectl.io/target': 'pod/shop/web-0',
        },
      },
      spec: { nodeName: 'node-a', containers: [{ name: 'pwru', image: 'node:20-bookworm-slim' }] },
      status: { phase: 'Succeeded' },
    });
    let r = await runCli(world, ['cleanup', '--dry-run']);
    assert.match(
      r.stdout,
      /would delete pod default\/pwru-node-a-left1 \(node node-a, Succeeded, started by bob@laptop tracing pod\/shop\/web-0\)/,
    );
    assert.equal(debugPods(world).length, 1);
    r = await runCli(world, ['cleanup']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deleted pod default\/pwru-node-a-left1/);
    assert.ok(world.server.get('pods', 'shop', 'web-0'), 'cleanup must not touch other pods');
    r = await runCli(world, ['cleanup']);
    assert.match(r.stdout, /no kubectl-pwru debug pods found/);
  });

  test("cleanup keeps someone else's running debug pod unless --all", async () => {
    world.server.put('pods', {
      metadata: {
        name: 'pwru-node-b-busy1',
        namespace: 'default',
        labels: { 'app.kubernetes.io/managed-by': 'kubectl-pwru' },
        annotations: { 'pwru.kubectl.io/started-by': 'carol@elsewhere' },
      },
      spec: { nodeName: 'node-b', containers: [{ name: 'pwru', image: 'node:20-bookworm-slim' }] },
      status: { phase: 'Running' },
    });
    let r = await runCli(world, ['cleanup']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /kept \(may be a trace in progress; --all deletes it\) pod default\/pwru-node-b-busy1/,
    );
    assert.equal(debugPods(world).length, 1);
    r = await runCli(world, ['cleanup', '--all']);
    assert.match(r.stdout, /deleted pod default\/pwru-node-b-busy1/);
    assert.deepEqual(debugPods(world), []);
  });
});
