/**
 * Entry point. `trace` is the default command: anything that is not another
 * command's name is a trace target, so `kubectl pwru pod/foo --port 443` works.
 *
 * `trace --local` command lines that src/startup/speculate.ts reads exactly as
 * oclif would run without oclif: straight into runTrace, the trace command's
 * body, so that the helper starts (and reads the kernel's BTF, and attaches)
 * without first waiting for @oclif/core to load. Errors are printed as the
 * command prints them. Everything else (help, version, the other commands,
 * Kubernetes targets, anything the reader is unsure of) goes through oclif,
 * loaded from its own entry points rather than its index (which also loads
 * semver to check Node's version, and everything else it exports).
 */
import { UserError } from './errors';
import { PACKAGE_ROOT } from './local/helper-binary';
import { type SpeculatedTrace, speculateTrace } from './startup/speculate';

const COMMANDS = new Set(['trace', 'show', 'diff', 'cleanup']);
const ROOT_FLAGS = new Set(['--help', '-h', '--version', '-v']);

export function withDefaultCommand(argv: string[]): string[] {
  if (argv.length === 0) return ['trace'];
  // `help trace` as git and kubectl read it (oclif alone would look for a command "help:trace").
  if (argv[0] === 'help') return COMMANDS.has(argv[1]) ? [argv[1], '--help'] : ['--help'];
  if (COMMANDS.has(argv[0]) || (argv.length === 1 && ROOT_FLAGS.has(argv[0]))) return argv;
  return ['trace', ...argv];
}

export async function main(argv: string[]): Promise<void> {
  const args = withDefaultCommand(argv);
  const trace = speculateTrace(args);
  if (trace) await runTraceDirectly(trace);
  else await runWithOclif(args);
}

/** The oclif way, for every command line (args: the command name first). */
export async function runWithOclif(args: string[]): Promise<void> {
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

/**
 * What the trace command (src/commands/trace.ts) does with these flags, ending
 * as oclif ends it: a UserError printed plainly and its exit code, a non-zero
 * result as the exit code, anything unexpected reported by oclif's handler
 * (loaded only then).
 */
export async function runTraceDirectly({ flags, words }: SpeculatedTrace): Promise<void> {
  // Loaded here, not with this module: the other commands do not need it.
  const { runTrace } = require('./trace/run-trace') as typeof import('./trace/run-trace');
  // As oclif's command module does when it loads: a stdout that broke (`| head`) is not an error, here or
  // after runTrace has stopped listening (the summary written at the end).
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') return;
    throw err;
  });
  let code: number;
  try {
    code = await runTrace(flags, words);
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    const { handle } = require('@oclif/core/handle') as typeof import('@oclif/core/lib/errors/handle');
    await handle(err as Error);
    return;
  }
  if (code !== 0) process.exit(code);
}
