/**
 * `kubectl-pwru --local` starts the helper before oclif loads. The helper
 * spends a few hundred milliseconds reading the kernel's BTF and attaching
 * probes; Node spends about as long loading oclif and the CLI. Side by side
 * instead of one after the other, the trace is ready sooner.
 *
 * The early start is a speculation (src/startup/speculate.ts reads the argv
 * without oclif). The trace command decides: when the helper its local
 * session starts is exactly this one (same binary, same command line, plain
 * pipes), the session gets this process instead of a new one; otherwise, and
 * on every other way out (a failure before the trace runs, exit, a signal
 * before the trace command handles signals), the early helper is killed.
 * SIGKILL is safe for the helper: its probes are links held as file
 * descriptors, so the kernel detaches them when it dies.
 *
 * Until it is taken, the early helper does not keep Node running (its handle
 * and pipes are unref'd) and its output waits in its pipes: nothing is read,
 * nothing is lost.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { localHelper } from '../local/helper-binary';
import { speculateHelperArgs } from './speculate';

interface EarlyHelper {
  child: ChildProcess;
  path: string;
  args: readonly string[];
  /** It could not be started ('error'). */
  failed: boolean;
}

let early: EarlyHelper | undefined;

const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Starts the helper now if argv (the command name first, as given to oclif)
 * is a `trace --local` whose helper command line is certain. Never throws:
 * whatever goes wrong here, the trace command starts the helper itself.
 */
export function startEarlyHelper(argv: readonly string[]): void {
  if (early) return;
  const args = speculateHelperArgs(argv);
  if (!args) return;
  let path: string;
  try {
    path = localHelper();
  } catch {
    return; // not built: the trace command says so
  }
  let child: ChildProcess;
  try {
    child = spawn(path, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  } catch {
    return;
  }
  const e: EarlyHelper = { child, path, args, failed: false };
  early = e;
  child.on('error', () => {
    e.failed = true;
  });
  child.stdin?.on('error', () => {}); // it may exit before anyone writes
  setRef(child, false);
  process.on('exit', discardEarlyHelper);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

/**
 * The early helper, if it runs `path` with exactly `args` and is still
 * running: from here on the caller owns it as if it had just spawned it
 * (stdio pipes, nothing read yet). Otherwise undefined, and any early helper
 * is killed: the caller starts its own.
 *
 * One that has already ended is not handed over: Node discards the output of
 * a child that exits while nobody reads it (its pipes are drained so that
 * they close), so its words may be gone. It ended fast (an error such as no
 * privileges or a bad filter, found in milliseconds): running it again costs
 * little and tells the same.
 */
export function takeEarlyHelper(path: string, args: readonly string[]): ChildProcess | undefined {
  const e = early;
  if (!e) return undefined;
  release();
  const running = !e.failed && e.child.exitCode === null && e.child.signalCode === null;
  if (!running || e.path !== path || !sameArgs(e.args, args)) {
    kill(e.child);
    return undefined;
  }
  setRef(e.child, true);
  return e.child;
}

/** Kills the early helper, if one is still waiting to be taken. */
export function discardEarlyHelper(): void {
  const e = early;
  if (!e) return;
  release();
  kill(e.child);
}

/**
 * Runs `start` (src/local/session.ts's runLocalTrace), which spawns the helper
 * first thing, synchronously, and hands it the early helper when that spawn
 * runs the same helper binary with the same command line.
 *
 * Stopgap: runLocalTrace has no way to be given a running helper, so for the
 * length of that synchronous call `spawn` of node:child_process answers the
 * one matching call with the early helper. Should that call not come (the
 * session changed), the early helper is killed and the session's own spawn
 * runs as before: slower, never wrong. Once the session accepts a running
 * helper, it calls takeEarlyHelper(path, args) itself instead.
 */
export function withEarlyHelper<T>(start: () => T): T {
  if (!early) return start();
  const cp: { spawn: typeof spawn } = require('node:child_process');
  const original = cp.spawn;
  let handed: ChildProcess | undefined;
  cp.spawn = function (this: unknown, ...call: unknown[]) {
    cp.spawn = original; // the first spawn only
    const [file, args, options] = call;
    if (typeof file === 'string' && Array.isArray(args) && pipes(options))
      handed = takeEarlyHelper(file, args);
    return handed ?? (original as (...a: unknown[]) => ChildProcess).apply(this, call);
  } as typeof spawn;
  try {
    return start();
  } finally {
    cp.spawn = original;
    if (!handed) discardEarlyHelper();
  }
}

function onSignal(signal: NodeJS.Signals): void {
  discardEarlyHelper();
  // As if nobody had listened: the default action (the process ends by this signal), as before.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function release(): void {
  early = undefined;
  process.off('exit', discardEarlyHelper);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.destroy();
}

/** Whether the helper's handle and pipes keep Node's event loop alive. */
function setRef(child: ChildProcess, ref: boolean): void {
  if (ref) child.ref();
  else child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) {
    const socket = stream as unknown as Partial<Socket> | null;
    if (ref) socket?.ref?.();
    else socket?.unref?.();
  }
}

function sameArgs(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function pipes(options: unknown): boolean {
  const stdio = (options as { stdio?: unknown } | undefined)?.stdio;
  return Array.isArray(stdio) && stdio.length === 3 && stdio.every((s) => s === 'pipe');
}
