/**
 * An error the user caused or can fix: bad input, a missing permission, a
 * cluster that refuses what we asked. Commands print its message as is (no
 * stack) and exit with exitCode. The message says what failed, on which
 * object, and what to do next.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
