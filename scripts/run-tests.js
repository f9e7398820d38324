#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner,
// one file at a time: the real-kernel tests share the kernel's probes and would
// see each other's work if they ran together. Node 20 takes no globs, and given
// a directory it would run the support modules as tests too.
// Usage: node scripts/run-tests.js [SUBDIR ...]   (e.g. integration unit)
const { readdirSync, statSync } = require('node:fs');
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
const files = dirs.flatMap(find);
if (files.length === 0) {
  console.error(`no test files under ${dirs.join(', ')}: run \`npm run build\` first`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
