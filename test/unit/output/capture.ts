/** A writable that keeps what it is given, for checking what a view prints. */
import { Writable } from 'node:stream';

export class Capture extends Writable {
  text = '';
  isTTY = false;

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.text += chunk.toString();
    done();
  }
}
