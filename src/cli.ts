/**
 * Entry point. `trace` is the default command: anything that is not another
 * command's name is a trace target, so `kubectl pwru pod/foo --port 443` works.
 *
 * `--local` traces start their helper before oclif is loaded (src/startup/):
 * so this module loads oclif only once main() has done that, and from oclif's
 * own entry points rather than its index (which also loads semver to check
 * Node's version, and everything else it exports).
 */
import { PACKAGE_ROOT } from './local/helper-binary';
import { startEarlyHelper } from './startup/early-helper';

const COMMANDS = new Set(['trace', 'show', 'diff', 'cleanup', 'help']);
const ROOT_FLAGS = new Set(['--help', '-h', '--version', '-v']);

export function withDefaultCommand(argv: string[]): string[] {
  if (argv.length === 0) return ['trace'];
  if (COMMANDS.has(argv[0]) || (argv.length === 1 && ROOT_FLAGS.has(argv[0]))) return argv;
  return ['trace', ...argv];
}

export async function main(argv: string[]): Promise<void> {
  const args = withDefaultCommand(argv);
  startEarlyHelper(args);
  const { run } = require('@oclif/core/run') as typeof import('@oclif/core/lib/main');
  const { flush } = require('@oclif/core/flush') as typeof import('@oclif/core/lib/flush');
  const { handle } = require('@oclif/core/handle') as typeof import('@oclif/core/lib/errors/handle');
  try {
    await run(args, PACKAGE_ROOT);
    await flush();
  } catch (err) {
    await handle(err as Error);
  }
}
