#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner,
// one file at a time: the real-kernel tests share the kernel's probes and would
// see each other's work if they ran together. Node 20 takes no globs, and given
// a directory it would run the support modules as tests too.
// Usage: node scripts/run-tests.js [SUBDIR ...]   (e.g. integration unit e2e/cluster)
//
// The real-cluster stage (test/e2e/cluster) runs against the cluster that
// PWRU_E2E_KUBECONFIG names, else the one ../shared/k8s/up.sh starts (when
// that folder is there, as root), else it is skipped with a message: a new
// user's `npm test` does not fail for want of a cluster. PWRU_E2E_KUBECONFIG=skip
// skips it on purpose.
const { existsSync, readdirSync, statSync } = require('node:fs');
const { join } = require('node:path');
const { spawnSync } = require('node:child_process');

const root = join(__dirname, '..', 'dist', 'test');

function find(dir) {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return find(path);
      return name.endsWith('.test.js') ? [path] : [];
    });
}

const dirs = process.argv.length > 2 ? process.argv.slice(2).map((d) => join(root, d)) : [root];
let files = dirs.flatMap(find);
const env = { ...process.env };

const clusterDir = join(root, 'e2e', 'cluster');
const isCluster = (f) => f.startsWith(`${clusterDir}/`);
if (files.some(isCluster)) {
  const kubeconfig = findCluster();
  if (kubeconfig) env.PWRU_E2E_KUBECONFIG = kubeconfig;
  else files = files.filter((f) => !isCluster(f));
}

/** The kubeconfig of the cluster to test against, or undefined (said why) to skip the stage. */
function findCluster() {
  const named = process.env.PWRU_E2E_KUBECONFIG;
  if (named === 'skip') {
    console.error('e2e/cluster: skipped (PWRU_E2E_KUBECONFIG=skip)');
    return undefined;
  }
  if (named) {
    if (!existsSync(named)) {
      console.error(`e2e/cluster: PWRU_E2E_KUBECONFIG=${named}: no such file`);
      process.exit(1);
    }
    return named;
  }
  const upSh = join(__dirname, '..', '..', 'shared', 'k8s', 'up.sh');
  if (!existsSync(upSh)) {
    console.error(
      'e2e/cluster: skipped: no cluster to test against (set PWRU_E2E_KUBECONFIG to a kubeconfig of a cluster you may create privileged pods in; see README)',
    );
    return undefined;
  }
  if (process.getuid?.() !== 0) {
    console.error(
      `e2e/cluster: skipped: ${upSh} starts a cluster as root; run as root or set PWRU_E2E_KUBECONFIG`,
    );
    return undefined;
  }
  const kitConfig = join(process.env.K8S_HOME ?? '/var/tmp/k8s-kit', 'admin.kubeconfig');
  if (clusterAnswers(kitConfig)) {
    // up.sh is not safe to run again over a running cluster (it fails setting up the node's network).
    console.error(`e2e/cluster: using the test cluster already running (${kitConfig})`);
    return kitConfig;
  }
  console.error(`e2e/cluster: starting the test cluster (${upSh})`);
  const up = spawnSync('bash', [upSh], { stdio: ['ignore', 2, 2] });
  if (up.status !== 0) {
    console.error(`e2e/cluster: ${upSh} failed (exit ${up.status})`);
    process.exit(1);
  }
  return kitConfig;
}

/** Whether the API server that kubeconfig names is up and ready (false when kubectl is not installed yet). */
function clusterAnswers(kubeconfig) {
  if (!existsSync(kubeconfig)) return false;
  const ready = spawnSync(
    'kubectl',
    ['--kubeconfig', kubeconfig, '--request-timeout=5s', 'get', '--raw', '/readyz'],
    {
      stdio: 'ignore',
      timeout: 10_000,
    },
  );
  return ready.status === 0;
}

if (files.length === 0) {
  console.error(`no test files under ${dirs.join(', ')}: run \`npm run build\` first`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
  env,
});
process.exit(result.status ?? 1);
