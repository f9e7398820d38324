/**
 * What travels to each node over the attach stream: a tar of the runner (one
 * dependency-free file), the helper for the node's architecture, the
 * request, and the files the helper's arguments name (names.txt). The pod's bootstrap (manifests/debug-pod.yaml) unpacks it.
 */
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
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

/**
 * The bundle as a tar stream, packed as it is read: the helper (most of the 2.3 MiB) is read from disk in
 * pieces as the attach stream takes them, so it is never in this process's memory whole, nor copied
 * whole for the WebSocket and TLS (the CLI's peak memory was set by that at the start of a trace).
 * `files`: more files beside the helper, by name (the names of addresses, --addr-names).
 */
export function bundleStream(
  arch: string,
  request: RunnerRequest,
  files: Record<string, string> = {},
): AsyncIterable<Buffer> {
  const tar = pack();
  const mtime = new Date();
  tar.entry({ name: 'runner.js', mode: 0o644, mtime }, readFileSync(runnerPath()));
  tar.entry({ name: 'request.json', mode: 0o644, mtime }, JSON.stringify(request));
  for (const [name, text] of Object.entries(files)) tar.entry({ name, mode: 0o644, mtime }, text);
  const path = helperPath(arch);
  const entry = tar.entry({ name: 'pwru-helper', mode: 0o755, mtime, size: statSync(path).size }, (err) => {
    if (err) tar.destroy(err);
    else tar.finalize();
  });
  const file = createReadStream(path, { highWaterMark: 64 * 1024 });
  file.on('error', (err) => tar.destroy(err));
  file.pipe(entry as unknown as NodeJS.WritableStream);
  return tar as unknown as AsyncIterable<Buffer>;
}

/** The whole bundle at once (doctor, tests). */
export async function buildBundle(
  arch: string,
  request: RunnerRequest,
  files: Record<string, string> = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of bundleStream(arch, request, files)) chunks.push(c);
  return Buffer.concat(chunks);
}
