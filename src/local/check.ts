/**
 * The helper's `--check` mode (docs/record-stream.md): a trace's input
 * checked by the helper itself, without privileges and without loading
 * anything, so that a bad pcap filter, --filter-mark, --filter-netns,
 * --filter-ifname or --filter-func is refused with the helper's own words and
 * exit code 2 before anything is started. Locally, before the trace's helper;
 * in Kubernetes mode, with this machine's helper, before any pod exists.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { UserError } from '../errors';
import { RecordDecoder } from '../record/decode';
import { helperExitCode } from '../trace/helper-stream';
import { helperArgs, type TraceRequest } from '../trace/request';
import { helperPath } from './helper-binary';

/** A check that does not answer within this long is given up on: the trace itself will tell. */
const CHECK_TIMEOUT_MS = 60_000;

/**
 * Runs `helper --check` for the request; resolves when the input is good, or
 * throws the helper's ERROR as a UserError with its exit code. Its warnings
 * are not repeated: the trace itself says what they would.
 */
export function checkWithHelper(helper: string, request: TraceRequest): Promise<void> {
  let error: UserError | undefined;
  let ended = false;
  const decoder = new RecordDecoder({
    error: (e) => {
      error = new UserError(e.message, helperExitCode(e.code));
    },
    end: () => {
      ended = true;
    },
  });
  // stdin stays open while it checks: its EOF would be a stop.
  const child = spawn(helper, ['--check', ...helperArgs(request)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => decoder.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4096);
  });
  child.stdin.on('error', () => {});
  const timer = setTimeout(() => child.kill('SIGKILL'), CHECK_TIMEOUT_MS);
  return new Promise<void>((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new UserError(`cannot start the helper ${helper}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      child.stdin.destroy();
      try {
        decoder.finish();
      } catch {
        // A cut-off stream is said below by its exit.
      }
      if (error) return reject(error);
      if (ended && code === 0) return resolve();
      const why = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(
        new UserError(
          `the helper's check of the trace's input ${why}${stderr.trim() ? `:\n${stderr.trim()}` : ''}`,
        ),
      );
    });
  });
}

/** This machine's helper, to check a Kubernetes trace's input with, when it is built. */
export function helperToCheckWith(): string | undefined {
  const path = process.env.PWRU_HELPER || helperPath();
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}
