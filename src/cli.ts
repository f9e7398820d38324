/**
 * Entry point. `trace` is the default command: anything that is not another
 * command's name is a trace target, so `kubectl pwru pod/foo --port 443` works.
 */
import { flush, handle, run } from '@oclif/core';
import { PACKAGE_ROOT } from './local/helper-binary';

const COMMANDS = new Set(['trace', 'show', 'diff', 'cleanup', 'help']);
const ROOT_FLAGS = new Set(['--help', '-h', '--version', '-v']);

export function withDefaultCommand(argv: string[]): string[] {
  if (argv.length === 0) return ['trace'];
  if (COMMANDS.has(argv[0]) || (argv.length === 1 && ROOT_FLAGS.has(argv[0]))) return argv;
  return ['trace', ...argv];
}

export async function main(argv: string[]): Promise<void> {
  try {
    await run(withDefaultCommand(argv), PACKAGE_ROOT);
    await flush();
  } catch (err) {
    await handle(err as Error);
  }
}
