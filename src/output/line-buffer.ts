/**
 * Lines written in batches: at hundreds of thousands of events a second, one
 * write() per line costs more than making the line. Remembers when the stream
 * asked us to wait, so the producer can be paused instead of buffering
 * without bound.
 */
export class LineBuffer {
  private parts: string[] = [];
  private size = 0;
  private backlogged = false;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly limit = 1 << 16,
  ) {}

  push(line: string): void {
    this.parts.push(line);
    this.size += line.length;
    if (this.size >= this.limit) this.flush();
  }

  flush(): void {
    if (this.parts.length === 0) return;
    const ok = this.stream.write(`${this.parts.join('\n')}\n`);
    this.parts = [];
    this.size = 0;
    if (!ok) this.backlogged = true;
  }

  /** Resolves when the stream has drained, or undefined when it is not backlogged. */
  drained(): Promise<void> | undefined {
    if (!this.backlogged) return undefined;
    return new Promise((resolve) => {
      this.stream.once('drain', () => {
        this.backlogged = false;
        resolve();
      });
    });
  }
}
