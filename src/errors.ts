/**
 * Errors the user can act on, and the exit codes of docs/exit-codes.md: the
 * one place both are declared. Commands print a UserError's message as is
 * (no stack) and exit with its code. The message says what failed, on which
 * object, and what to do next.
 */

/** The trace ran (or the file was read), and with --fail-on-drop nothing was dropped. */
export const EXIT_OK = 0;
/** The trace could not run or finish. */
export const EXIT_FAILED = 1;
/** Bad input, found before anything was created. */
export const EXIT_BAD_INPUT = 2;
/** --fail-on-drop: a matching packet was dropped. */
export const EXIT_DROPPED = 3;
/** A saved trace could not be read. */
export const EXIT_BAD_TRACE_FILE = 4;
/** A write to --output-file or stdout failed mid-run (a full disk): the run was stopped. */
export const EXIT_OUTPUT_FAILED = 5;
/**
 * --fail-on-drop found no drop, but the kernel lost events (its ring buffer was
 * full): one of them may have been the drop, so "no drop" cannot be said.
 */
export const EXIT_INCOMPLETE = 6;
/** A second Ctrl-C/SIGTERM while the first was still stopping the trace. */
export const EXIT_INTERRUPTED = 130;

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = EXIT_FAILED,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** Bad input: exit code 2. */
export class BadInput extends UserError {
  constructor(message: string) {
    super(message, EXIT_BAD_INPUT);
  }
}

/**
 * How every command ends on an error: a UserError is one plain `error: …`
 * line on stderr (people read it, scripts grep it, as kubectl's) and its exit
 * code; anything else is a bug, rethrown for oclif to report.
 */
export function reportError(cmd: { exit(code: number): never }, err: Error): never {
  if (err instanceof UserError) {
    process.stderr.write(`error: ${err.message}\n`);
    cmd.exit(err.exitCode);
  }
  throw err;
}
