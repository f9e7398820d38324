/**
 * The shipped manifests against the real Kubernetes OpenAPI schema
 * (kubernetes-models: validators generated from the upstream spec), and the
 * properties the debug pod must have.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { Pod } from 'kubernetes-models/v1/Pod';
import { k8sLib } from '../../src/kube/client';
import {
  buildDebugJob,
  buildDebugPod,
  CAPABILITIES,
  capabilitiesFor,
  loadTemplate,
} from '../../src/kube/debug-pod';
import { REPO } from './harness';

function docs(file: string): Record<string, never>[] {
  return k8sLib().loadAllYaml(readFileSync(join(REPO, 'manifests', file), 'utf8')) as Record<string, never>[];
}

test('the schema check catches a broken pod (so the checks below can fail)', () => {
  const pod = structuredClone(loadTemplate()) as unknown as {
    spec: { containers: { securityContext: unknown }[] };
  };
  pod.spec.containers[0].securityContext = { privileged: 'yes' };
  assert.throws(() => new Pod(pod as never).validate(), /privileged must be boolean/);
});

test('manifests/debug-pod.yaml is a valid Pod, and so is every filled-in pod', () => {
  for (const doc of docs('debug-pod.yaml')) new Pod(doc).validate();
  const filled = buildDebugPod({
    node: 'Worker_3.example.com',
    namespace: 'kube-system',
    image: 'node:22-slim',
    session: 'abc',
    target: 'pod/shop/web-0',
    filter: '(host 10.0.0.1) and (tcp port 443)',
    durationSec: 30,
  });
  new Pod(filled as never).validate();
  const job = buildDebugJob(filled);
  new Job(job as never).validate();
  // One shot, removed by the cluster soon after it ends, never outliving the pod's deadline.
  assert.equal(job.spec?.backoffLimit, 0);
  assert.ok((job.spec?.ttlSecondsAfterFinished ?? 999) <= 30);
  assert.equal(job.spec?.activeDeadlineSeconds, 150);
  assert.equal(job.spec?.template.metadata?.labels?.['app.kubernetes.io/managed-by'], 'kubectl-pwru');
  assert.equal(filled.metadata?.generateName, 'pwru-worker-3-example-com-');
  assert.equal(filled.spec?.nodeName, 'Worker_3.example.com');
  assert.equal(filled.spec?.activeDeadlineSeconds, 150);
});

test('--profile capabilities, --image-pull-secret and --pod-patch shape the pod; what kubectl-pwru relies on stays', () => {
  const pod = buildDebugPod({
    node: 'n1',
    namespace: 'ns',
    image: 'node:24-alpine',
    session: 's',
    target: 'node/n1',
    filter: '',
    profile: 'capabilities',
    kernelVersion: '6.1.0-18-amd64',
    imagePullSecrets: ['one', 'two'],
    patch: {
      metadata: { labels: { team: 'net', 'app.kubernetes.io/managed-by': 'someone' } },
      spec: {
        nodeName: 'elsewhere',
        priorityClassName: 'system-node-critical',
        containers: [{ name: 'pwru', resources: { limits: { memory: '1Gi' } }, stdin: false }],
        tolerations: [{ key: 'a', operator: 'Exists' }],
      },
    },
  });
  new Pod(pod as never).validate();
  const c = pod.spec?.containers[0];
  assert.deepEqual(c?.securityContext?.capabilities?.add, CAPABILITIES);
  // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK: only SYS_RESOURCE raises it.
  assert.ok(capabilitiesFor('5.10.0-23-amd64').includes('SYS_RESOURCE'));
  assert.ok(capabilitiesFor(undefined).includes('SYS_RESOURCE'));
  assert.ok(!capabilitiesFor('5.11.0').includes('SYS_RESOURCE'));
  assert.equal(c?.securityContext?.privileged, undefined);
  assert.deepEqual(pod.spec?.imagePullSecrets, [{ name: 'one' }, { name: 'two' }]);
  assert.equal(pod.metadata?.labels?.team, 'net');
  assert.equal(pod.spec?.priorityClassName, 'system-node-critical');
  assert.equal(c?.resources?.limits?.memory, '1Gi');
  assert.equal(c?.resources?.requests?.cpu, '50m', 'merged by name, not replaced');
  assert.deepEqual(
    pod.spec?.tolerations,
    [{ key: 'a', operator: 'Exists' }],
    'a list without merge key is replaced',
  );
  // What the run relies on is set again after the patch.
  assert.equal(pod.spec?.nodeName, 'n1');
  assert.equal(pod.metadata?.labels?.['app.kubernetes.io/managed-by'], 'kubectl-pwru');
  assert.equal(c?.stdin, true);
});

test('the debug pod has what tracing needs and nothing more', () => {
  const pod = JSON.parse(JSON.stringify(loadTemplate())) as ReturnType<typeof loadTemplate>;
  const spec = pod.spec;
  assert.ok(spec);
  assert.equal(spec.hostPID, true);
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.restartPolicy, 'Never');
  assert.equal(spec.dnsPolicy, 'Default', 'the pod never resolves names: no cluster DNS asked for');
  assert.equal(spec.automountServiceAccountToken, false);
  assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
  assert.ok((spec.activeDeadlineSeconds ?? 0) > 0);
  const c = spec.containers[0];
  assert.equal(c.securityContext?.privileged, true);
  assert.equal(c.imagePullPolicy, 'IfNotPresent');
  assert.equal(c.stdin, true);
  assert.equal(c.stdinOnce, false, 'stdin outlives one attach: a client attaches again after a drop');
  assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory);
  assert.equal(pod.metadata?.labels?.['app.kubernetes.io/managed-by'], 'kubectl-pwru');
  assert.ok(pod.metadata?.annotations?.['pwru.kubectl.io/reason']);
});

test('manifests/rbac.yaml: valid ClusterRoles, least privilege', () => {
  const roles = docs('rbac.yaml');
  assert.equal(roles.length, 2);
  for (const r of roles) new ClusterRole(r).validate();
  const rules = roles.flatMap(
    (r) => (r as unknown as { rules: { resources: string[]; verbs: string[] }[] }).rules,
  );
  const verbs = (res: string) =>
    rules
      .filter((r) => r.resources.includes(res))
      .flatMap((r) => r.verbs)
      .sort();
  assert.deepEqual(verbs('pods'), ['create', 'delete', 'get', 'list', 'watch']);
  assert.deepEqual(verbs('jobs'), ['create', 'delete', 'list']);
  assert.deepEqual(verbs('pods/attach'), ['create', 'get']);
  assert.deepEqual(verbs('nodes'), ['get']);
  assert.deepEqual(verbs('pods/exec'), [], 'exec is not needed');
  assert.deepEqual(verbs('secrets'), [], 'secrets are never needed');
  for (const r of rules) assert.ok(!r.verbs.includes('*') && !r.resources.includes('*'), 'no wildcards');
});

test('manifests/krew/pwru.yaml renders to a krew Plugin that points at this package', () => {
  const text = readFileSync(join(REPO, 'manifests', 'krew', 'pwru.yaml'), 'utf8');
  const values: Record<string, string> = {
    VERSION: '0.1.0',
    URI: 'https://releases.invalid/x.tar.gz',
    SHA256: 'a'.repeat(64),
  };
  const filled = text.replace(/\$\{(VERSION|URI|SHA256)\}/g, (_, k: string) => values[k]);
  assert.doesNotMatch(filled, /\$\{/, 'every field release.sh fills is one it knows');
  const plugin = k8sLib().loadYaml(filled) as {
    apiVersion: string;
    kind: string;
    metadata: { name: string };
    spec: {
      version: string;
      shortDescription: string;
      platforms: {
        uri: string;
        sha256: string;
        bin: string;
        selector: object;
        files: { from: string; to: string }[];
      }[];
    };
  };
  assert.equal(plugin.apiVersion, 'krew.googlecontainertools.github.com/v1alpha2');
  assert.equal(plugin.kind, 'Plugin');
  assert.equal(
    plugin.metadata.name,
    'pwru',
    'krew names the plugin after the file and calls it as kubectl pwru',
  );
  assert.match(plugin.spec.version, /^v\d+\.\d+\.\d+$/);
  assert.ok(plugin.spec.shortDescription.length <= 70);
  for (const p of plugin.spec.platforms) {
    assert.match(p.sha256, /^[0-9a-f]{64}$/);
    assert.ok(p.selector);
    assert.deepEqual(p.files, [{ from: 'kubectl-pwru-0.1.0/*', to: '.' }]);
    // The archive holds the package in kubectl-pwru-VERSION/, which files: moves to the root bin is relative to.
    assert.ok(existsSync(join(REPO, p.bin)), `${p.bin} is in the package`);
  }
  assert.ok(existsSync(join(REPO, 'manifests', 'krew', 'release.sh')));
});
