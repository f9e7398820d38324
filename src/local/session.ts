/**
 * Local mode: runs the helper on this host and feeds its record stream to the
 * sink. Stops it by closing its stdin (it says goodbye, END, and detaches its
 * probes after that, alone: the trace is over at END); a helper
 * that then sends nothing while we read (stopped with SIGSTOP, or stuck) is
 * killed, and the kernel detaches its probes. --duration is kept on our clock
 * too, for a helper that cannot keep it.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { UserError } from '../errors';
import type { TraceSink } from '../output/sink';
import { textNotes } from '../output/text-notes';
import { TX_START_FUNCS } from '../reading/kernel-functions';
import { HelperStream } from '../trace/helper-stream';
import { helperArgs, type TraceRequest } from '../trace/request';

const STDERR_KEEP = 8192;
/**
 * After a stop, how long the helper may send nothing while we read before it
 * is killed: it acts on a stop within 20 ms and sends its last frames (STATS,
 * END) within 0.5 s while the outputs keep up; it detaches after END
 * (docs/record-stream.md).
 */
export const STOP_SILENCE_MS = 1500;
/** How long past --duration (from READY) the client stops the helper itself; the helper's own clock comes first. */
const DEADLINE_SLACK_MS = 500;

export async function runLocalTrace(
  request: TraceRequest,
  sink: TraceSink,
  signal: AbortSignal,
  helper: string,
): Promise<void> {
  // Lines and nothing else per event (JSON, or a text view to a file or pipe): the helper writes them, at
  // rates decoding here could not follow; straight to our outputs when they are descriptors (fd 3, 4 in the
  // helper), after the header. With a text view, finished packets still come here for the verdict table.
  // Lines carry no bytes: with --snaplen the events come here (binary) and take their bytes along.
  const emit = request.snaplen === undefined ? sink.acceptsLines : undefined;
  const direct = emit ? sink.lineOutputs?.() : undefined;
  const lines = emit &&
    direct && {
      emit,
      ...(emit === 'json' ? {} : { textNotes: textNotes() }),
      packetStarts: [...TX_START_FUNCS],
      to: { fds: direct.fds.map((_, i) => 3 + i), names: direct.names },
    };
  // The first three are pipes whatever follows them.
  const child = spawn(helper, helperArgs(request, lines), {
    stdio: ['pipe', 'pipe', 'pipe', ...(direct?.fds ?? [])],
  }) as ChildProcessWithoutNullStreams;
  let deadline: NodeJS.Timeout | undefined;
  const stream = new HelperStream(sink, {
    onReady: () => {
      direct?.ready().then(() => child.stdin.write('g'));
      if (request.durationSec !== undefined)
        deadline = setTimeout(stop, request.durationSec * 1000 + DEADLINE_SLACK_MS);
    },
  });
  let stderr = '';
  // END: the trace is over. The helper detaches its probes after it (the kernel takes seconds to minutes
  // with plain kprobes) and exits alone: the user does not wait for that (docs/record-stream.md).
  let ended: (() => void) | undefined;

  // When we last heard from the helper, or started listening again (for the stop's watchdog).
  let heard = Date.now();
  let paused = false;
  const source = {
    pause: () => {
      child.stdout.pause();
      paused = true;
    },
    resume: () => {
      paused = false;
      heard = Date.now();
      child.stdout.resume();
    },
  };
  child.stdout.on('data', (chunk: Buffer) => {
    heard = Date.now();
    if (!stream.feed(chunk, source)) {
      child.kill('SIGINT');
      return;
    }
    if (stream.outcome.endReason !== undefined && !stream.outcome.error) ended?.();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-STDERR_KEEP);
  });
  child.stdin.on('error', () => {}); // the helper may exit before reading stdin

  let stopping = false;
  let unresponsive = false;
  let watchdog: NodeJS.Timeout | undefined;
  function stop() {
    if (stopping) return;
    stopping = true;
    child.stdin.end();
    heard = Date.now();
    watchdog = setInterval(() => {
      if (paused || Date.now() - heard <= STOP_SILENCE_MS) return;
      unresponsive = true;
      child.kill('SIGKILL');
    }, 100);
  }
  if (signal.aborted) stop();
  else signal.addEventListener('abort', stop, { once: true });

  const [code, killedBy] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.on('error', (err) => reject(new UserError(`cannot start the helper ${helper}: ${err.message}`)));
    child.on('close', (c, s) => resolve([c, s]));
    ended = () => {
      child.stdout.destroy();
      child.stderr.destroy();
      child.stdin.destroy();
      child.unref();
      resolve([0, null]);
    };
  });
  signal.removeEventListener('abort', stop);
  clearTimeout(deadline);
  clearInterval(watchdog);

  if (stream.readError)
    throw new UserError(`the helper's output could not be read: ${stream.readError.message}`);
  if (unresponsive) {
    throw new UserError(
      `the helper did not answer the stop within ${STOP_SILENCE_MS / 1000} s (was it stopped with SIGSTOP?): killed it; the kernel detached its probes`,
    );
  }
  // After END, what follows (detach progress) may be cut mid-frame: it is not read.
  stream.finish({ cutOffExpected: false });
  const error = stream.helperError();
  if (error) throw error;
  if (killedBy) {
    throw new UserError(`the helper was killed by ${killedBy} before it finished${tail(stderr)}`);
  }
  if (code !== 0) throw new UserError(`the helper exited with code ${code}${tail(stderr)}`);
}

function tail(stderr: string): string {
  const text = stderr.trim();
  return text ? `; its last words:\n${text}` : '';
}
