/**
 * --output-file, optionally rotated (--output-file-max-size MiB,
 * --output-file-max-backups N, as pwru has them): when the file would grow
 * past the size, it is renamed FILE.1 (FILE.1 to FILE.2, …; the oldest beyond
 * N removed) and a new FILE is started with the trace's header line again, so
 * that every file reads on its own (`show`, `diff`). Rotation happens between
 * writes, and writers hand it whole lines, so no line is ever split.
 *
 * Opened up front, so that a bad path fails before any probe is attached.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { UserError } from '../errors';

export interface RotationOptions {
  /** Bytes a file may reach before the next write starts a new one. */
  maxBytes: number;
  /** Older files kept (FILE.1 … FILE.N). */
  maxBackups: number;
}

export class TraceFileWriter extends Writable {
  private fd: number;
  private size = 0;
  private header?: string;
  private failure?: Error;

  constructor(
    readonly path: string,
    private readonly rotation?: RotationOptions,
  ) {
    super({ decodeStrings: false });
    this.fd = TraceFileWriter.open(path);
  }

  private static open(path: string): number {
    try {
      return openSync(path, 'w');
    } catch (e) {
      throw new UserError(`cannot write the trace to ${path}: ${(e as Error).message}`);
    }
  }

  /** The descriptor the helper may write lines to directly: only when the file is never rotated. */
  get directFd(): number | undefined {
    return this.rotation ? undefined : this.fd;
  }

  /** The first write's first line is the trace's header: each new file starts with it. */
  override _write(chunk: string | Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    try {
      if (this.header === undefined) {
        const nl = text.indexOf('\n');
        this.header = nl >= 0 && text.startsWith('{"type":"header"') ? text.slice(0, nl + 1) : '';
      }
      const bytes = Buffer.byteLength(text);
      if (this.rotation && this.size > 0 && this.size + bytes > this.rotation.maxBytes) this.rotate();
      this.writeAll(text);
      done();
    } catch (e) {
      this.failure = e as Error;
      done(e as Error);
    }
  }

  private writeAll(text: string): void {
    const buf = Buffer.from(text);
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off);
    this.size += buf.length;
  }

  private rotate(): void {
    const { maxBackups } = this.rotation as RotationOptions;
    closeSync(this.fd);
    rmSync(`${this.path}.${maxBackups}`, { force: true });
    for (let i = maxBackups - 1; i >= 1; i--) {
      try {
        renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      } catch {
        // not there yet
      }
    }
    if (maxBackups > 0) renameSync(this.path, `${this.path}.1`);
    this.fd = openSync(this.path, 'w');
    this.size = 0;
    if (this.header) this.writeAll(this.header);
  }

  override _final(done: (err?: Error | null) => void): void {
    try {
      closeSync(this.fd);
      done();
    } catch (e) {
      done(e as Error);
    }
  }

  /** Ends the file; throws the error that writing it met, if any. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.once('error', () => resolve());
      this.end(() => resolve());
    });
    if (this.failure)
      throw new UserError(`could not write the trace to ${this.path}: ${this.failure.message}`);
  }
}

export function openTraceFile(path: string, rotation?: RotationOptions): TraceFileWriter {
  return new TraceFileWriter(path, rotation);
}
