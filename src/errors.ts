/**
 * An error the user caused or can fix: bad input, a missing permission, a
 * cluster that refuses what we asked. Commands print its message as is (no
 * stack) and exit with exitCode. The message says what failed, on which
 * object, and what to do next.
 */
/** A write to --output-file or stdout failed mid-run (a full disk): the run was stopped (docs/exit-codes.md). */
export const EXIT_OUTPUT_FAILED = 5;

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
