/**
 * Opens --output-file up front, so that a bad path fails before any probe is
 * attached, and keeps a second run from writing the same file at the same
 * time (two runs' lines interleaved make a file that reads as neither): a
 * regular file is written under a lock file beside it, `FILE.lock`, holding
 * the writer's process id. A second run refuses while that process lives; a
 * lock left by a run that died is taken over. Devices and pipes (/dev/null,
 * /dev/stdout, a FIFO) are not locked.
 */
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { UserError } from '../errors';

export interface OpenedFile {
  fd: number;
  /** Removes the lock; call once the file is closed. */
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function cannot(path: string, e: unknown): UserError {
  return new UserError(`cannot write the trace to ${path}: ${(e as Error).message}`);
}

function lock(path: string): () => void {
  const lockPath = `${path}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(lockPath, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw cannot(path, e);
      const holder = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
      if (Number.isInteger(holder) && holder > 0 && alive(holder)) {
        throw new UserError(
          `${path} is being written by another kubectl-pwru run (process ${holder}, lock ${lockPath}): give another --output-file, or wait for that run to end`,
        );
      }
      unlinkSync(lockPath); // its writer is gone
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    // Also when the process ends without closing the sink (an exception, a second Ctrl-C).
    const release = () => {
      process.off('exit', release);
      try {
        unlinkSync(lockPath);
      } catch {
        // already gone
      }
    };
    process.on('exit', release);
    return release;
  }
  throw new UserError(
    `cannot lock ${path}: ${lockPath} keeps coming back; remove it if no run writes ${path}`,
  );
}

export function openOutputFile(path: string): OpenedFile {
  let regular = true;
  try {
    regular = statSync(path).isFile();
  } catch {
    // does not exist yet: a regular file once opened
  }
  const release = regular ? lock(path) : () => {};
  try {
    // Read-write: a file that fills up is read back to cut it at its last complete line.
    return { fd: openSync(path, regular ? 'w+' : 'w'), release };
  } catch (e) {
    release();
    throw cannot(path, e);
  }
}
