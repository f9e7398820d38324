/**
 * --output-file with --output-file-max-size MiB (and --output-file-max-backups
 * N, as pwru has them): before a line would take the file past the size, it
 * is renamed FILE.1 (FILE.1 to FILE.2, …, the oldest beyond N removed) and a
 * new FILE is started with the trace's header line again, so that every file
 * reads on its own (`show`, `diff`). Lines are never split. The file being
 * left keeps its descriptor: what was still queued for it lands in FILE.1.
 *
 * A rotated file has no fixed descriptor, so the helper never writes it
 * itself: the lines are made here (slower under a flood, see README).
 */
import { openSync, renameSync, rmSync } from 'node:fs';
import { UserError } from '../errors';
import { fileOutput, type LineOutput, type OutputFault } from './line-output';

export interface Rotation {
  /** Bytes a file may hold. */
  maxBytes: number;
  /** Older files kept: FILE.1 … FILE.N (0: the old lines are dropped). */
  maxBackups: number;
}

export class RotatingOutput implements LineOutput {
  private current: LineOutput;
  private size = 0;
  private header?: string;
  private readonly leaving: Promise<void>[] = [];
  private lastFault?: LineOutput;

  constructor(
    readonly name: string,
    fd: number,
    private readonly rotation: Rotation,
    private readonly onFault: (output: LineOutput) => void,
  ) {
    this.current = this.open(fd);
  }

  /** Never written by the helper: the lines must pass through here to be counted. */
  readonly fd = undefined;

  get fault(): OutputFault | undefined {
    return this.current.fault ?? this.lastFault?.fault;
  }

  private open(fd: number): LineOutput {
    return fileOutput(this.name, fd, (o) => {
      this.lastFault = o;
      this.onFault(this);
    });
  }

  private rotate(): void {
    const { maxBackups } = this.rotation;
    const old = this.current;
    try {
      rmSync(`${this.name}.${maxBackups}`, { force: true });
      for (let i = maxBackups - 1; i >= 1; i--) {
        try {
          renameSync(`${this.name}.${i}`, `${this.name}.${i + 1}`);
        } catch {
          // not there yet
        }
      }
      if (maxBackups > 0) renameSync(this.name, `${this.name}.1`);
      else rmSync(this.name, { force: true });
      this.current = this.open(openSync(this.name, 'w+'));
    } catch (e) {
      throw new UserError(`cannot rotate the trace file ${this.name}: ${(e as Error).message}`);
    }
    // The old descriptor now names FILE.1: what was queued for it lands there.
    old.flush();
    this.leaving.push(old.end());
    this.size = 0;
    if (this.header !== undefined) this.add(this.header);
  }

  private add(line: string): void {
    this.current.push(line);
    this.size += Buffer.byteLength(line) + 1;
  }

  push(line: string): void {
    if (this.header === undefined) this.header = line.startsWith('{"type":"header"') ? line : '';
    if (this.size > 0 && this.size + Buffer.byteLength(line) + 1 > this.rotation.maxBytes && !this.fault)
      this.rotate();
    this.add(line);
  }

  /** The helper's lines: each on its own, so that a file never ends mid-line at a rotation. */
  pushBytes(lines: Buffer): void {
    let from = 0;
    for (let nl = lines.indexOf(10); nl >= 0; nl = lines.indexOf(10, from)) {
      this.push(lines.toString('utf8', from, nl));
      from = nl + 1;
    }
  }

  write(text: string): void {
    this.current.write(text);
    this.size += Buffer.byteLength(text);
  }

  flush(): void {
    this.current.flush();
  }

  drained(): Promise<void> | undefined {
    return this.current.drained();
  }

  behind(): boolean {
    return this.current.behind();
  }

  written(): Promise<void> {
    return this.current.written();
  }

  async end(): Promise<void> {
    await Promise.all([...this.leaving, this.current.end()]);
  }
}

/** The --output-file's lines: rotated when asked to, else written as they are (and by the helper, when it can). */
export function traceFileOutput(
  path: string,
  fd: number,
  rotation: Rotation | undefined,
  onFault: (output: LineOutput) => void,
): LineOutput {
  return rotation ? new RotatingOutput(path, fd, rotation, onFault) : fileOutput(path, fd, onFault);
}
