/**
 * Exit codes and error printing shared by `show` and `diff` (docs/exit-codes.md).
 * Errors print as one plain `error: ...` line, as the trace command and
 * kubectl do: people read it, scripts grep it.
 */
import type { Command } from '@oclif/core';
import { UserError } from '../errors';
import { TraceFileError } from './trace-file';

/** --fail-on-drop: a matching packet was dropped. Same code as the trace command's. */
export const EXIT_DROPPED = 3;
/** A saved trace could not be read: missing, empty, malformed or truncated. */
export const EXIT_BAD_TRACE_FILE = 4;

export function reportError(cmd: Command, err: Error & { exitCode?: number }): never {
  if (err instanceof TraceFileError) {
    process.stderr.write(`error: ${err.message}\n`);
    cmd.exit(EXIT_BAD_TRACE_FILE);
  }
  if (err instanceof UserError) {
    process.stderr.write(`error: ${err.message}\n`);
    cmd.exit(err.exitCode);
  }
  throw err;
}
