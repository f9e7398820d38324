/**
 * The rest of the kubectl conventions on a real cluster: `doctor`, shell
 * completion through the real kubectl (kubectl_complete-pwru) and the bash
 * script, --as/--as-group impersonation, --profile capabilities, and
 * --image-pull-secret on a real kubelet.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createNamespace,
  debugObjects,
  deleteNamespace,
  KUBECONFIG,
  makeWorld,
  podIp,
  podName,
  REPO,
  runCli,
  traffic,
  type World,
} from './world';

const skip = KUBECONFIG ? false : 'no cluster (scripts/run-tests.js says why)';
let world: World;
let flow: { stop(): void } | undefined;
const TRACE = ['--backend', 'tracepoint', '--max-events', '4'];

function hasKubectl(): boolean {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('doctor, completion and the debug pod flags on a real cluster', { skip }, () => {
  before(async () => {
    world = await makeWorld();
    flow = traffic(world.pods.deploy.map(podIp));
  });
  after(async () => {
    flow?.stop();
    if (world) {
      await deleteNamespace(world.ns);
      await deleteNamespace(`${world.ns}-restricted`);
    }
  });

  test('doctor: kernel, BTF, the backends that work, drop reasons, admission and rights, as a table; exit 0', async () => {
    const r = await runCli(['doctor', `node/${world.node}`, '-n', world.ns]);
    assert.equal(r.code, 0, r.stderr);
    for (const row of [
      /node\s+│ ok/,
      /rights\s+│ ok/,
      /admission\s+│ ok/,
      /BTF\s+│ ok/,
      /backend tracepoint\s+│ ok\s+│ works: \d+ probes attached/,
      /drop reasons\s+│ ok\s+│ \d+ reasons/,
    ])
      assert.match(r.stdout, row);
    const json = await runCli(['doctor', '-n', world.ns, '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const out = JSON.parse(json.stdout) as { ok: boolean; checks: { check: string; verdict: string }[] };
    assert.equal(out.ok, true);
    assert.ok(out.checks.some((c) => c.check === 'kernel' && c.verdict === 'ok'));
    assert.deepEqual(await debugObjects(world.ns), [], 'its debug pod is gone');
  });

  test('doctor where the pod is not admitted: says why, exit 1; an unknown node: exit 2', async () => {
    const ns = `${world.ns}-restricted`;
    await createNamespace(ns, 'restricted');
    const r = await runCli(['doctor', '-n', ns]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /admission\s+│ fail\s+│ Pod Security refuses it/);
    const none = await runCli(['doctor', 'node/k8s-no-such-node']);
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /nodes "k8s-no-such-node" not found/);
  });

  test('completion through the real kubectl (kubectl_complete-pwru): targets, namespaces, nodes from the cluster', {
    skip: hasKubectl() ? false : 'no kubectl',
  }, () => {
    const env = { ...process.env, KUBECONFIG, PATH: `${join(REPO, 'bin')}:${process.env.PATH}` };
    const ask = (...words: string[]) =>
      execFileSync('kubectl', ['__complete', 'pwru', ...words], {
        env,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    assert.match(ask(''), /^pod\/$/m);
    assert.match(ask('-n', world.ns, 'deploy/'), /^deploy\/web$/m);
    assert.match(ask('-n', world.ns, 'svc/'), /^svc\/empty$/m);
    assert.match(
      ask('-n', world.ns, podName(world.pods.deploy[0]).slice(0, 5)),
      new RegExp(`^${podName(world.pods.deploy[0])}$`, 'm'),
    );
    assert.match(ask('-n', world.ns.slice(0, 6)), new RegExp(`^${world.ns}$`, 'm'));
    assert.match(ask('node/'), new RegExp(`^node/${world.node}$`, 'm'));
    assert.match(ask('doctor', ''), new RegExp(`^node/${world.node}$`, 'm'));
    assert.match(ask('pod/x', '--backend', ''), /^tracepoint$/m);
  });

  test('kubectl pwru completion bash: the script completes kubectl-pwru from the cluster', () => {
    const env = { ...process.env, KUBECONFIG, PATH: `${join(REPO, 'bin')}:${process.env.PATH}` };
    const script = execFileSync(process.execPath, [join(REPO, 'bin', 'kubectl-pwru'), 'completion', 'bash'], {
      encoding: 'utf8',
    });
    const out = execFileSync(
      'bash',
      [
        '-c',
        `${script}\nCOMP_WORDS=(kubectl-pwru -n ${world.ns} sts/); COMP_CWORD=3; _kubectl_pwru; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      { env, encoding: 'utf8' },
    );
    assert.match(out, /^sts\/db$/m);
    for (const shell of ['zsh', 'fish']) {
      const s = execFileSync(process.execPath, [join(REPO, 'bin', 'kubectl-pwru'), 'completion', shell], {
        encoding: 'utf8',
      });
      assert.match(s, /kubectl-pwru __complete/);
    }
  });

  test('--as and --as-group impersonate, as kubectl does', async () => {
    const target = [`pod/${podName(world.pods.deploy[0])}`, '-n', world.ns, ...TRACE];
    const nobody = await runCli([...target, '--as', 'k8s-e2e-nobody']);
    assert.equal(nobody.code, 1, nobody.stderr);
    assert.match(nobody.stderr, /forbidden: .*User "k8s-e2e-nobody" cannot get resource "pods"/);
    const masters = await runCli([
      ...target,
      '--as',
      'k8s-e2e-admin',
      '--as-group',
      'system:masters',
      '--as-group',
      'system:authenticated',
    ]);
    assert.equal(masters.code, 0, masters.stderr);
  });

  test('--profile capabilities traces without privileged; --image-pull-secret reaches the kubelet', async () => {
    const target = [`pod/${podName(world.pods.deploy[0])}`, '-n', world.ns, ...TRACE];
    const caps = await runCli([...target, '--profile', 'capabilities', '-o', 'json']);
    assert.equal(caps.code, 0, caps.stderr);
    assert.ok(caps.stdout.includes(podIp(world.pods.deploy[0])));
    const secret = await runCli([...target, '--image-pull-secret', 'k8s-e2e-regcred']);
    assert.equal(secret.code, 0, secret.stderr);
    // The kubelet looked for the Secret (it does not exist; the image is local, so the pull is not needed).
    assert.match(secret.stderr, /k8s-e2e-regcred/);
    assert.deepEqual(await debugObjects(world.ns), []);
  });
});
