/**
 * Entry point. `trace` is the default command: anything that is not another
 * command's name is a trace target, so `kubectl pwru pod/foo --port 443` works.
 *
 * oclif is loaded from its own entry points rather than its index (which also
 * loads semver to check Node's version, and everything else it exports), and
 * each command loads what it needs when it runs: a `--local` trace never loads
 * the Kubernetes client.
 */
import { setFlagsFromString } from 'node:v8';
import { PACKAGE_ROOT } from './local/helper-binary';

const COMMANDS = new Set(['trace', 'show', 'diff', 'cleanup', 'doctor', 'completion']);
const ROOT_FLAGS = new Set(['--help', '-h', '--version', '-v']);

/**
 * V8 grows its young generation from 2 MiB to 32 MiB under a steady stream of
 * short-lived objects (decoded events, drop reports) and keeps it there: a
 * quarter of the CLI's RSS in a long run (BENCHMARKS.md, section 7b). Kept at
 * its start size it is collected more often, each time as cheaply (little
 * survives). Of the heap's size flags only this one still applies once V8 has
 * started. Measured on Node 20 (V8 11.3); later V8 raises a factor below 2 to
 * 2, and there this does nothing.
 *
 * What does survive (events of packets in flight, lines being written) is
 * promoted, and V8 let the old generation fill to about three times what was
 * live before collecting it: under a Kubernetes flood (~40k events/s) it sawed
 * between ~20 and ~67 MiB, and the CLI peaked at 178-183 MiB. Collected
 * once it has grown by a fifth (V8 still grows it by at least 8 MiB), it peaked
 * at 113-117 MiB, with the same CPU (BENCHMARKS.md, section 9). This flag too is
 * read at each collection, so it applies when set after start.
 */
export function boundHeap(): void {
  setFlagsFromString('--semi-space-growth-factor=1');
  setFlagsFromString('--heap-growing-percent=20');
}

export function withDefaultCommand(argv: string[]): string[] {
  if (argv.length === 0) return ['trace'];
  // `help trace` as git and kubectl read it (oclif alone would look for a command "help:trace").
  if (argv[0] === 'help') return COMMANDS.has(argv[1]) ? [argv[1], '--help'] : ['--help'];
  if (COMMANDS.has(argv[0]) || (argv.length === 1 && ROOT_FLAGS.has(argv[0]))) return argv;
  return ['trace', ...argv];
}

export async function main(argv: string[]): Promise<void> {
  boundHeap();
  // Shell completion (Cobra's protocol, as kubectl plugins answer it): no oclif, no command.
  if (argv[0] === '__complete') {
    const { completeToStdout } = require('./kube/complete') as typeof import('./kube/complete');
    return completeToStdout(argv.slice(1));
  }
  const { run } = require('@oclif/core/run') as typeof import('@oclif/core/lib/main');
  const { flush } = require('@oclif/core/flush') as typeof import('@oclif/core/lib/flush');
  const { handle } = require('@oclif/core/handle') as typeof import('@oclif/core/lib/errors/handle');
  try {
    await run(withDefaultCommand(argv), PACKAGE_ROOT);
    await flush();
  } catch (err) {
    await handle(err as Error);
  }
}
