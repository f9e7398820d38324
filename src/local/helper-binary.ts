/** Where the prebuilt helper for an architecture lives in this package. */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors';

/** Kubernetes' and Debian's names for Node's process.arch values. */
export function archName(nodeArch: string = process.arch): string {
  return nodeArch === 'x64' ? 'amd64' : nodeArch;
}

export const PACKAGE_ROOT = join(__dirname, '..', '..', '..');

export function helperPath(arch: string = archName()): string {
  return join(PACKAGE_ROOT, 'helper', 'build', arch, 'pwru-helper');
}

/** The helper to run locally: PWRU_HELPER overrides, for development. */
export function localHelper(): string {
  const path = process.env.PWRU_HELPER || helperPath();
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new UserError(
      `the tracer helper is not built (${path}): run \`npm run build:helper\` (needs clang, libbpf-dev, libpcap-dev; see README)`,
    );
  }
  return path;
}
