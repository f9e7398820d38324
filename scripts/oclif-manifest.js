#!/usr/bin/env node
// Writes oclif.manifest.json after the TypeScript build. Without it oclif
// loads every command module (and the Kubernetes client with them) just to
// list the commands, which costs hundreds of milliseconds at every start;
// with it, only the command being run is loaded.
const { writeFileSync, rmSync } = require('node:fs');
const { join } = require('node:path');
const { Config } = require('@oclif/core');

const root = join(__dirname, '..');
const target = join(root, 'oclif.manifest.json');

(async () => {
  rmSync(target, { force: true }); // a stale manifest must not describe itself
  const config = await Config.load(root);
  const plugin = config.getPluginsList().find((p) => p.root === root);
  if (!plugin) throw new Error('kubectl-pwru is not an oclif plugin root here');
  writeFileSync(target, `${JSON.stringify(plugin.manifest, null, 2)}\n`);
  console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).join(', ')}`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
