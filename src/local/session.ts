/**
 * Local mode: runs the helper on this host and feeds its record stream to the
 * sink. Stops it by closing its stdin (it detaches and says goodbye), and if
 * it lingers, by SIGINT and then SIGKILL.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { TX_START_FUNCS } from '../reading/kernel-functions';
import { HelperStream, helperExitCode } from '../trace/helper-stream';
import { helperArgs, type TraceRequest } from '../trace/request';

const STDERR_KEEP = 8192;

export async function runLocalTrace(
  request: TraceRequest,
  sink: TraceSink,
  signal: AbortSignal,
  helper: string,
): Promise<void> {
  // JSON lines and nothing else per event: the helper writes them, at rates decoding here could not
  // follow; straight to our outputs when they are descriptors (fd 3, 4 in the helper), after the header.
  // Lines carry no bytes: with --snaplen the events come here (binary) and take their bytes along.
  const direct = sink.acceptsLines && request.snaplen === undefined ? sink.lineOutputs?.() : undefined;
  const req = direct
    ? {
        ...request,
        emitJson: { packetStarts: [...TX_START_FUNCS], lineFds: direct.fds.map((_, i) => 3 + i) },
      }
    : request;
  // The first three are pipes whatever follows them.
  const child = spawn(helper, helperArgs(req), {
    stdio: ['pipe', 'pipe', 'pipe', ...(direct?.fds ?? [])],
  }) as ChildProcessWithoutNullStreams;
  const stream = new HelperStream(sink, undefined, () => {
    direct?.ready().then(() => child.stdin.write('g'));
  });
  let stderr = '';
  let streamError: Error | undefined;

  child.stdout.on('data', (chunk: Buffer) => {
    if (streamError) return;
    try {
      stream.push(chunk);
    } catch (err) {
      streamError = err as Error;
      child.kill('SIGINT');
      return;
    }
    // Output slower than the kernel: stop reading, so the helper's pipe and then the ring buffer fill.
    const drained = sink.waitForDrain?.();
    if (drained) {
      child.stdout.pause();
      drained.then(() => child.stdout.resume());
    }
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-STDERR_KEEP);
  });
  child.stdin.on('error', () => {}); // the helper may exit before reading stdin

  const stop = () => {
    child.stdin.end();
    // A helper that does not stop on EOF within 5 s is asked again, then killed.
    setTimeout(() => child.kill('SIGINT'), 5000).unref();
    setTimeout(() => child.kill('SIGKILL'), 15000).unref();
  };
  if (signal.aborted) stop();
  else signal.addEventListener('abort', stop, { once: true });

  const [code, killedBy] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.on('error', (err) => reject(new UserError(`cannot start the helper ${helper}: ${err.message}`)));
    child.on('close', (c, s) => resolve([c, s]));
  });
  signal.removeEventListener('abort', stop);

  if (streamError) throw new UserError(`the helper's output could not be read: ${streamError.message}`);
  stream.decoder.finish();
  const { error } = stream.outcome;
  if (error) throw new UserError(error.message, helperExitCode(error.code));
  if (killedBy) {
    throw new UserError(`the helper was killed by ${killedBy} before it finished${tail(stderr)}`);
  }
  if (code !== 0) throw new UserError(`the helper exited with code ${code}${tail(stderr)}`);
}

function tail(stderr: string): string {
  const text = stderr.trim();
  return text ? `; its last words:\n${text}` : '';
}
