/**
 * What travels to each node over the attach stream: a tar of the runner (one
 * dependency-free file), the helper for the node's architecture, and the
 * request. The pod's bootstrap (manifests/debug-pod.yaml) unpacks it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pack } from 'tar-stream';
import type { RunnerRequest } from '../../runner/runner';
import { UserError } from '../errors';
import { packageRoot } from './debug-pod';

/**
 * The client acknowledges what it has read at least every HEARTBEAT_MS (its
 * heartbeat). After CLIENT_GRACE_SEC without a word the runner stops the
 * helper: long enough for a client to attach again after its API connection
 * dropped (an API server restarting, a laptop changing networks), short
 * enough that a client gone for good leaves no probes for long.
 */
export const HEARTBEAT_MS = 2000;
export const CLIENT_GRACE_SEC = 60;

export function helperPath(arch: string): string {
  return join(packageRoot(), 'helper', 'build', arch, 'pwru-helper');
}

export function runnerPath(): string {
  return join(packageRoot(), 'dist', 'runner', 'runner.js');
}

/** Node architectures (node.status.nodeInfo.architecture) we ship a helper for. */
export const ARCHES = ['amd64', 'arm64'];

export function checkArch(node: string, arch: string): void {
  if (!ARCHES.includes(arch)) {
    throw new UserError(
      `node "${node}" runs on ${arch || 'an unknown architecture'}; kubectl-pwru ships helpers for ${ARCHES.join(' and ')} only`,
    );
  }
  if (!existsSync(helperPath(arch))) {
    throw new UserError(
      `no helper built for ${arch} (node "${node}"): expected ${helperPath(arch)}; run make -C helper`,
    );
  }
}

export async function buildBundle(arch: string, request: RunnerRequest): Promise<Buffer> {
  const tar = pack();
  const chunks: Buffer[] = [];
  tar.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    tar.on('end', resolve);
    tar.on('error', reject);
  });
  const mtime = new Date();
  tar.entry({ name: 'runner.js', mode: 0o644, mtime }, readFileSync(runnerPath()));
  tar.entry({ name: 'request.json', mode: 0o644, mtime }, JSON.stringify(request));
  tar.entry({ name: 'pwru-helper', mode: 0o755, mtime }, readFileSync(helperPath(arch)));
  tar.finalize();
  await done;
  return Buffer.concat(chunks);
}
