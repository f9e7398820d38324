/**
 * One destination of a trace's lines (stdout, or the --output-file): written
 * in batches (at hundreds of thousands of events a second, one write() per
 * line costs more than making the line), with backpressure, and faults that
 * end the run instead of hanging it. A reader that went away (EPIPE) closes
 * the output quietly; a write that fails (ENOSPC, EIO, EFBIG …) closes it with
 * that error, a file cut back to its last complete line. Either way what was
 * queued is dropped, whoever waits for a drain is let go, and onFault is told,
 * once, so that the run stops.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, write } from 'node:fs';
import { isatty } from 'node:tty';

export type OutputFault = { kind: 'closed' } | { kind: 'failed'; error: NodeJS.ErrnoException };

export interface LineOutput {
  /** For messages: `stdout`, or the file's path. */
  readonly name: string;
  /** A descriptor the helper may write the lines to itself, when the output has one. */
  readonly fd?: number;
  /** One line (without its newline), batched. */
  push(line: string): void;
  /** Whole lines as bytes, each with its newline (the helper's), batched with the others. */
  pushBytes(lines: Buffer): void;
  /** Text as is (the closing tables), after what was batched. */
  write(text: string): void;
  /** Writes what was batched. */
  flush(): void;
  /** When the output cannot keep up: a promise that resolves once it can (or has failed). */
  drained(): Promise<void> | undefined;
  /** Whether it has not taken what was written yet (what drained() would wait for), without waiting. */
  behind(): boolean;
  /** Resolves once everything written so far is out (or the output has failed). */
  written(): Promise<void>;
  readonly fault: OutputFault | undefined;
  /** Everything written, the descriptor closed when it is ours. */
  end(): Promise<void>;
}

/** Bytes of lines gathered into one write. */
const BATCH_BYTES = 1 << 18;
/** Bytes queued for a descriptor past which the producer is asked to wait. */
const HIGH_WATER = 1 << 20;

function faultOf(err: NodeJS.ErrnoException): OutputFault {
  return err.code === 'EPIPE' ? { kind: 'closed' } : { kind: 'failed', error: err };
}

/** What a fault means for the user: undefined for a reader that left, which is no failure. */
export function faultMessage(output: LineOutput): string | undefined {
  const f = output.fault;
  return f?.kind === 'failed' ? `cannot write the trace to ${output.name}: ${describe(f.error)}` : undefined;
}

function describe(err: NodeJS.ErrnoException): string {
  // Node's message is "ENOSPC: no space left on device, write": the words, as the helper says them.
  const m = /^[A-Z0-9]+: ([^,]+)/.exec(err.message);
  const words = m ? m[1] : err.message;
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * Lines batched into one write, each encoded straight into the batch's buffer
 * (joining them into one string first cost a copy and a second pass); the
 * writing itself is the subclass's.
 */
abstract class BatchedOutput implements LineOutput {
  private readonly batch = Buffer.allocUnsafe(BATCH_BYTES);
  private size = 0;
  private faulted?: OutputFault;
  protected waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    private readonly onFault: (output: LineOutput) => void,
  ) {}

  get fault(): OutputFault | undefined {
    return this.faulted;
  }

  push(line: string): void {
    if (this.faulted) return;
    // A UTF-16 unit takes at most 3 bytes in UTF-8; the newline one more.
    if (this.size + 3 * line.length + 1 > this.batch.length) {
      this.flush();
      if (3 * line.length + 1 > this.batch.length) {
        this.send(Buffer.from(`${line}\n`));
        return;
      }
    }
    this.size += this.batch.write(line, this.size);
    this.batch[this.size++] = 10;
  }

  pushBytes(lines: Buffer): void {
    if (this.faulted) return;
    if (this.size + lines.length > this.batch.length) {
      this.flush();
      // A large piece goes as it is: a view of the stream's chunk, which nothing writes to again.
      if (lines.length > this.batch.length / 4) {
        this.send(lines);
        return;
      }
    }
    this.size += lines.copy(this.batch, this.size);
  }

  flush(): void {
    if (this.size === 0) return;
    // A copy goes to the writer (which may hold it until the descriptor takes it); the buffer is reused.
    const full = Buffer.from(this.batch.subarray(0, this.size));
    this.size = 0;
    if (!this.faulted) this.send(full);
  }

  write(text: string): void {
    this.flush();
    if (!this.faulted && text) this.send(Buffer.from(text));
  }

  protected fail(err: NodeJS.ErrnoException): void {
    if (this.faulted) return;
    this.faulted = faultOf(err);
    this.size = 0;
    this.discard();
    this.release();
    this.onFault(this);
  }

  /** Lets go of everyone waiting for a drain. */
  protected release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  protected abstract send(bytes: Buffer): void;
  protected abstract discard(): void;
  abstract drained(): Promise<void> | undefined;
  abstract behind(): boolean;
  abstract written(): Promise<void>;
  abstract end(): Promise<void>;
}

/**
 * A descriptor of a regular file or a device (the --output-file, or stdout
 * redirected to one): written here with write(2), so that a partial write is
 * finished and a failure is known at once, not after a stream's buffering.
 */
class DescriptorOutput extends BatchedOutput {
  private queue: Buffer[] = [];
  private queued = 0;
  private busy = false;
  private readonly regular: boolean;

  constructor(
    name: string,
    onFault: (output: LineOutput) => void,
    readonly fd: number,
    private readonly owned: boolean,
  ) {
    super(name, onFault);
    this.regular = fstatSync(fd).isFile();
  }

  protected send(b: Buffer): void {
    this.queue.push(b);
    this.queued += b.length;
    this.pump();
  }

  private pump(): void {
    if (this.busy || this.fault) return;
    const b = this.queue[0];
    if (!b) {
      this.release();
      return;
    }
    this.busy = true;
    write(this.fd, b, 0, b.length, null, (err, n) => {
      this.busy = false;
      if (err) {
        this.fail(err);
        return;
      }
      this.queued -= n;
      if (n < b.length) this.queue[0] = b.subarray(n);
      else this.queue.shift();
      if (this.queued < HIGH_WATER) this.release();
      this.pump();
    });
  }

  protected discard(): void {
    this.queue = [];
    this.queued = 0;
    if (this.regular) cutToLastLine(this.fd);
  }

  drained(): Promise<void> | undefined {
    if (!this.behind()) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  behind(): boolean {
    return !this.fault && this.queued >= HIGH_WATER;
  }

  written(): Promise<void> {
    if (this.fault || (this.queued === 0 && !this.busy)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.fault || (this.queued === 0 && !this.busy)) resolve();
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  async end(): Promise<void> {
    this.flush();
    await this.written();
    if (this.owned) closeSync(this.fd);
  }
}

/**
 * A file that failed mid-line (a write the disk took half of) is cut back to
 * its last complete line, so that what it holds reads. The descriptor may be
 * write-only (a shell's redirection): the file is read through /proc.
 */
function cutToLastLine(fd: number): void {
  try {
    const size = fstatSync(fd).size;
    const reader = openSync(`/proc/self/fd/${fd}`, 'r');
    try {
      const chunk = Buffer.alloc(1 << 16);
      let end = size;
      while (end > 0) {
        const start = Math.max(0, end - chunk.length);
        const n = readSync(reader, chunk, 0, end - start, start);
        const nl = chunk.subarray(0, n).lastIndexOf(10);
        if (nl >= 0) {
          if (start + nl + 1 < size) ftruncateSync(fd, start + nl + 1);
          return;
        }
        end = start;
      }
      ftruncateSync(fd, 0);
    } finally {
      closeSync(reader);
    }
  } catch {
    // Not readable back (gone, or not ours): it stays as the failing write left it.
  }
}

/** A stream (stdout on a pipe or a terminal, or an embedding program's stream). */
class StreamOutput extends BatchedOutput {
  private backlogged = false;
  /** written() callers, let go at a fault (a stream that failed calls no more callbacks). */
  private flushes: (() => void)[] = [];

  constructor(
    name: string,
    onFault: (output: LineOutput) => void,
    private readonly stream: NodeJS.WritableStream,
    readonly fd: number | undefined,
  ) {
    super(name, onFault);
    stream.on('error', (err: NodeJS.ErrnoException) => this.fail(err));
    stream.on('drain', () => {
      this.backlogged = false;
      this.release();
    });
  }

  protected send(bytes: Buffer): void {
    try {
      if (!this.stream.write(bytes)) this.backlogged = true;
    } catch (err) {
      // A synchronous stream (a file) throws what it could not write.
      this.fail(err as NodeJS.ErrnoException);
    }
  }

  protected discard(): void {
    this.backlogged = false;
    const flushes = this.flushes;
    this.flushes = [];
    for (const f of flushes) f();
  }

  drained(): Promise<void> | undefined {
    if (!this.behind()) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  behind(): boolean {
    return !this.fault && this.backlogged;
  }

  written(): Promise<void> {
    if (this.fault) return Promise.resolve();
    return new Promise((resolve) => {
      this.flushes.push(resolve);
      try {
        this.stream.write('', () => resolve());
      } catch {
        resolve();
      }
    });
  }

  async end(): Promise<void> {
    this.flush();
    await this.written();
  }
}

/**
 * stdout: a regular file or a device is written through its descriptor (a
 * full disk is then known at the write that met it); a pipe or a terminal
 * through its stream. A stream without a descriptor is an embedding caller's.
 */
export function stdoutOutput(
  stream: NodeJS.WritableStream,
  onFault: (output: LineOutput) => void,
): LineOutput {
  const fd = (stream as { fd?: unknown }).fd;
  if (typeof fd !== 'number') return new StreamOutput('stdout', onFault, stream, undefined);
  const st = fstatSync(fd);
  if (st.isFile() || (st.isCharacterDevice() && !isatty(fd)))
    return new DescriptorOutput('stdout', onFault, fd, false);
  return new StreamOutput('stdout', onFault, stream, fd);
}

/** An output file opened (and locked) by the caller; closed at end(). */
export function fileOutput(path: string, fd: number, onFault: (output: LineOutput) => void): LineOutput {
  return new DescriptorOutput(path, onFault, fd, true);
}
