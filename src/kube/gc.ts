/**
 * The garbage collector, run by hand where this process handles bytes in
 * bulk with few objects: the bundle going out, the runner's stream coming in.
 * Every piece of them is a Buffer whose memory lies outside V8's heap; V8
 * collects the objects that hold them only when its heap asks for it, or
 * once such memory has grown by tens of MiB, and until then they count in
 * the CLI's resident memory (the bundle's copies for the WebSocket's mask
 * and for TLS took it from ~62 to ~75 MiB at the start of a trace). The
 * runner does the same (runner/runner.ts, Collector); its node is started
 * with --expose-gc, which a plugin started by `#!/usr/bin/env node` cannot
 * be: the flag is set now, and the function taken from a new context, where
 * V8 installs it.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export type Gc = (options: { type: 'minor' | 'major' }) => void;

let gc: Gc | undefined | null = null;

/** The collector, or undefined where this V8 will not give it. */
export function exposedGc(): Gc | undefined {
  if (gc !== null) return gc;
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    gc = typeof fn === 'function' ? (fn as Gc) : undefined;
  } catch {
    gc = undefined;
  }
  return gc;
}
