/**
 * Kubernetes mode against the stand-in API server, for what a real cluster
 * cannot be made to do (test/e2e/cluster/ runs everything else on a real
 * one): an API server that offers only v4 of the channel protocol, that ends
 * watches early, that cuts the connection mid-trace, or that accepts
 * connections and never answers. Its "kubelet" runs the debug pod's real
 * command (node + the bootstrap), which unpacks the real runner and helper
 * and traces real packets sent into network namespaces that stand for pods.
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { debugPods, eventually, leftovers, makeWorld, runCli, startCli, type World } from './harness';
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
  await world?.close();
});

afterEach(async () => {
  world.server.config.forbid = [];
  world.server.config.podSecurity = {};
  world.server.config.unpullable = [];
  world.server.config.withoutNode = [];
  world.server.config.watchTimeoutMs = undefined;
  world.server.config.dropAfterStdin = undefined;
  world.server.config.podWatchBehind = undefined;
  world.server.config.kubeletDelayMs = undefined;
  world.server.config.channelProtocols = undefined;
  // Every run, whatever its ending, must leave nothing behind.
  const left = await eventually(() => leftovers(world), 15000);
  assert.deepEqual(left, [], 'a debug pod, process or BPF link was left behind');
});

const TRACE = ['--backend', 'tracepoint', '--proto', 'udp'];

describe('what only a stand-in can do', () => {
  test('watches that the server ends early: the wait for the pod goes on by polling', async () => {
    world.server.config.watchTimeoutMs = 0;
    world.server.config.kubeletDelayMs = 1500; // still Pending when the watches end
    const seen = world.server.requests.length;
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', ...TRACE, '--max-events', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /10\.213\.1\.2:9999/);
    const polls = world.server.requests
      .slice(seen)
      .filter((q) => /^GET \/api\/v1\/namespaces\/shop\/pods\?labelSelector=job-name/.test(q));
    assert.ok(polls.length >= 1, 'the debug pod was polled');
  });

  test("a watch refused because the API server's watch cache is behind (504): the wait goes on by polling", async () => {
    world.server.config.podWatchBehind = true;
    const r = await runCli(world, ['pod/web-0', '-n', 'shop', ...TRACE, '--max-events', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /10\.213\.1\.2:9999/);
  });

  test('a node whose kernel is too old for --backend: exit 2 before any pod exists', async () => {
    // The real cluster runs one new kernel; the stand-in can say a node runs an old one.
    const node = (kernelVersion?: string) =>
      world.server.put('nodes', {
        metadata: { name: 'node-a' },
        status: { nodeInfo: { architecture: 'amd64', ...(kernelVersion ? { kernelVersion } : {}) } },
      });
    node('5.15.0-1034-aws');
    try {
      const seen = world.server.requests.length;
      const run = await runCli(world, ['node/node-a', '--backend', 'kprobe-multi', '--proto', 'udp']);
      assert.equal(run.code, 2, run.stderr);
      assert.match(
        run.stderr,
        /--backend kprobe-multi needs Linux 5\.18 or later; node node-a runs 5\.15\.0-1034-aws/,
      );
      const writes = world.server.requests.slice(seen).filter((q) => /^(POST|PUT|PATCH|UPGRADE)/.test(q));
      assert.deepEqual(writes, [], 'nothing created');
    } finally {
      node();
    }
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

  test('the API connection drops mid-trace, twice: attached again each time, the stream goes on unbroken', async () => {
    const run = startCli(world, ['pod/web-0', '-n', 'shop', ...TRACE, '-o', 'json']);
    const events = () => run.stdout.split('\n').filter((l) => l.includes('"type":"event"')).length;
    await run.waitForStderr(/tracing with/);
    for (const n of [1, 2]) {
      await eventually(() => (events() > 0 ? [] : ['no event yet']), 15000);
      world.server.dropConnections();
      await eventually(
        () => ((run.stderr.match(/attached again after/g) ?? []).length >= n ? [] : ['not attached again']),
        30000,
      );
      const before = events();
      await eventually(() => (events() > before ? [] : ['no event after attaching again']), 15000);
    }
    run.child.kill('SIGINT');
    assert.equal(await run.done, 0, run.stderr);
    assert.match(
      run.stderr,
      /the connection to the API server dropped \(websocket closed, code 1006\); attaching again/,
    );
    // Every line whole: no frame lost, repeated or cut where the streams were joined.
    const lines = run.stdout.split('\n').filter(Boolean);
    for (const l of lines) JSON.parse(l);
    assert.equal(lines.filter((l) => l.includes('"type":"header"')).length, 1);
    assert.ok(
      lines.some((l) => l.includes('"final":true')),
      'the final stats came after the drops',
    );
  });

  test('the API connection drops right after Ctrl-C: attached again for the last records, exit 0 with the final stats', async () => {
    const run = startCli(world, ['pod/web-0', '-n', 'shop', ...TRACE, '-o', 'json']);
    await run.waitForStderr(/tracing with/);
    await eventually(() => (run.stdout.includes('"type":"event"') ? [] : ['no event yet']), 15000);
    // The runner gets the stop; the connection is cut at once, before the helper's last records come.
    world.server.config.dropAfterStdin = 'stop';
    run.child.kill('SIGINT');
    assert.equal(await run.done, 0, run.stderr);
    assert.match(run.stderr, /attaching again for the trace's last records/);
    assert.match(run.stderr, /attached again after/);
    const lines = run.stdout.split('\n').filter(Boolean);
    for (const l of lines) JSON.parse(l);
    assert.ok(lines.at(-1)?.includes('"final":true'), `the final stats last: ${lines.at(-1)}`);
    assert.deepEqual(debugPods(world), []);
  });

  test('an API server that accepts connections and never answers: a timeout, and Ctrl-C ends it at once', async () => {
    const held: Socket[] = [];
    const blackHole = createServer((sock) => {
      held.push(sock);
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', r));
    const port = (blackHole.address() as { port: number }).port;
    const kubeconfig = `${world.dir}/black-hole.kubeconfig`;
    require('node:fs').writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters: [{name: h, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\n` +
        'users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: h, user: u}}]\ncurrent-context: c\n',
    );
    try {
      // Each call has a timeout (kubectl's --request-timeout; 30 s by default).
      const timed = await runCli(
        world,
        ['pod/web-0', '-n', 'shop', '--kubeconfig', kubeconfig, '--request-timeout', '1s'],
        {},
        20000,
      );
      assert.equal(timed.code, 1, timed.stderr);
      assert.match(timed.stderr, /did not answer within 1 s while trying to get pods "web-0"/);
      // One Ctrl-C ends it promptly, whatever call is waiting.
      const earlier = held.length;
      const run = startCli(world, ['pod/web-0', '-n', 'shop', '--kubeconfig', kubeconfig]);
      await eventually(() => (held.length > earlier ? [] : ['no request yet']), 10000);
      const started = Date.now();
      run.child.kill('SIGTERM');
      const code = await run.done;
      assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
      assert.equal(code, 130, run.stderr);
      assert.match(run.stderr, /interrupted before the trace started; nothing was created/);
    } finally {
      for (const sock of held) sock.destroy();
      blackHole.close();
    }
  });
});
