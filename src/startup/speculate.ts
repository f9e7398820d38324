/**
 * The helper's command line for `trace --local`, read from the raw argv before
 * oclif has even loaded, so that the helper can start while Node loads the
 * rest of the CLI (src/startup/early-helper.ts).
 *
 * This is a guess, never a decision: the trace command still parses its flags
 * with oclif and computes helperArgs() itself, and the early helper is used
 * only when both agree exactly. So this reader only has to be right when it
 * answers, and it answers only for input it fully understands and that oclif
 * and the trace command would accept: anything else (an unknown flag, --help,
 * a bad value, a Kubernetes-only flag, a form of writing a flag it does not
 * know) is `undefined`, and the CLI starts as it always did. Bad input then
 * gets oclif's or the command's own error, with nothing started.
 *
 * It reads flags as oclif's parser does (including its quirks: a positional
 * word after a repeatable flag is taken as one more value of that flag, and
 * positional words are ordered by their first appearance in argv), and builds
 * the request with the same functions the trace command uses.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDuration } from '../trace/duration';
import { composeFilter } from '../trace/filter';
import { BACKENDS, type Backend, helperArgs } from '../trace/request';

/**
 * How each flag of the trace command is written, and what it means for the
 * helper. Kept in step with src/commands/trace.ts by a unit test
 * (test/unit/commands/early-start.test.ts): a flag missing here makes every
 * invocation using it start the slow way, never a wrong one.
 */
export interface FlagSpec {
  type: 'boolean' | 'option';
  char?: string;
  multiple?: boolean;
  options?: readonly string[];
  default?: string;
  /** oclif's Flags.integer, with its minimum. */
  integer?: { min?: number };
  /** Only for Kubernetes targets: with --local the command refuses it, so nothing may start. */
  kubeOnly?: boolean;
}

export const TRACE_FLAG_SPECS: Readonly<Record<string, FlagSpec>> = {
  local: { type: 'boolean' },
  namespace: { type: 'option', char: 'n', kubeOnly: true },
  context: { type: 'option', kubeOnly: true },
  kubeconfig: { type: 'option', kubeOnly: true },
  selector: { type: 'option', char: 'l', kubeOnly: true },
  port: { type: 'option', multiple: true },
  host: { type: 'option', multiple: true },
  proto: { type: 'option' },
  'filter-func': { type: 'option' },
  'filter-netns': { type: 'option' },
  'filter-mark': { type: 'option' },
  'filter-ifname': { type: 'option' },
  'filter-track-skb': { type: 'boolean' },
  'pod-netns-only': { type: 'boolean', kubeOnly: true },
  backend: { type: 'option', options: BACKENDS, default: 'auto' },
  'all-kmods': { type: 'boolean' },
  'output-stack': { type: 'boolean' },
  'ringbuf-size': { type: 'option', integer: {} },
  duration: { type: 'option' },
  'max-events': { type: 'option', integer: { min: 1 } },
  output: { type: 'option', char: 'o', options: ['text', 'wide', 'json'], default: 'text' },
  'output-file': { type: 'option' },
  summary: { type: 'boolean' },
  'fail-on-drop': { type: 'boolean' },
  'no-color': { type: 'boolean' },
  image: { type: 'option', kubeOnly: true },
  'debug-namespace': { type: 'option', kubeOnly: true },
  'print-manifest': { type: 'boolean', kubeOnly: true },
};

/** Not understood: start nothing early. */
class Unsure extends Error {}

function flagNamed(token: string): string | undefined {
  if (token.startsWith('--')) {
    const name = token.slice(2);
    return Object.hasOwn(TRACE_FLAG_SPECS, name) ? name : undefined;
  }
  if (/^-[A-Za-z]$/.test(token)) {
    return Object.keys(TRACE_FLAG_SPECS).find((k) => TRACE_FLAG_SPECS[k].char === token[1]);
  }
  return undefined;
}

/** oclif's Flags.integer. */
function integer(value: string, min: number | undefined): number {
  if (!/^-?\d+$/.test(value)) throw new Unsure();
  const n = Number.parseInt(value, 10);
  if (min !== undefined && n < min) throw new Unsure();
  return n;
}

/**
 * `--output-file` is opened before anything is attached; a path that cannot be
 * written must fail the same way, with nothing started.
 */
function writable(path: string): boolean {
  try {
    const full = resolve(path);
    try {
      if (statSync(full).isDirectory()) return false;
      accessSync(full, constants.W_OK);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return false;
    }
    accessSync(dirname(full), constants.W_OK | constants.X_OK);
    return statSync(dirname(full)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The helper's argv for `argv` (the CLI's arguments, the command name first,
 * as src/cli.ts passes them to oclif), or undefined when this is not a
 * `trace --local` this reader is sure the command would run as is.
 */
export function speculateHelperArgs(argv: readonly string[]): string[] | undefined {
  if (argv[0] !== 'trace') return undefined;
  try {
    return speculate(argv.slice(1));
  } catch {
    // Unsure, or the command's own checks (composeFilter, parseDuration) refused: the command will say so.
    return undefined;
  }
}

function speculate(argv: string[]): string[] | undefined {
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  let current: string | undefined; // the last option flag read: oclif's parser's currentFlag
  let parsingFlags = true;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (parsingFlags && token.startsWith('-') && token !== '-') {
      if (token === '--') {
        parsingFlags = false;
        continue;
      }
      // Not understood here: --help/-h (oclif shows help), unknown flags, `--flag=value`, `-ovalue`.
      const name = flagNamed(token);
      if (name === undefined) throw new Unsure();
      const spec = TRACE_FLAG_SPECS[name];
      if (spec.kubeOnly) throw new Unsure();
      if (spec.type === 'boolean') {
        if (flags.has(name)) throw new Unsure();
        flags.set(name, []);
        continue;
      }
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('-')) throw new Unsure();
      if (flags.has(name) && !spec.multiple) throw new Unsure();
      if (spec.options && !spec.options.includes(value)) throw new Unsure();
      flags.set(name, [...(flags.get(name) ?? []), value]);
      current = name;
      i++;
      continue;
    }
    if (parsingFlags && current !== undefined && TRACE_FLAG_SPECS[current].multiple) {
      flags.set(current, [...(flags.get(current) ?? []), token]);
      continue;
    }
    positional.push(token);
  }
  if (!flags.has('local')) return undefined;

  const one = (name: string): string | undefined => flags.get(name)?.[0];
  // -o json without --summary: the sink takes JSON lines from the helper (src/output/create-sink.ts,
  // acceptsLines), and src/local/session.ts starts the helper for that with more than its command line
  // (our output descriptors, opened with the sink). Not something to start before the sink exists.
  if (one('output') === 'json' && !flags.has('summary')) return undefined;
  const outputFile = one('output-file');
  if (outputFile !== undefined && !writable(outputFile)) throw new Unsure();
  // oclif orders the positional words by where each first appears in argv.
  const words = [...positional].sort((a, b) => argv.indexOf(a) - argv.indexOf(b));
  const duration = one('duration');
  const maxEvents = one('max-events');
  const ringbuf = one('ringbuf-size');
  return helperArgs({
    pcapFilter: composeFilter(
      { port: flags.get('port'), host: flags.get('host'), proto: one('proto') },
      words.join(' '),
    ),
    backend: (one('backend') ?? 'auto') as Backend,
    filterFunc: one('filter-func'),
    filterNetns: one('filter-netns'),
    filterMark: one('filter-mark'),
    filterIfname: one('filter-ifname'),
    trackSkb: flags.has('filter-track-skb'),
    allKmods: flags.has('all-kmods'),
    outputStack: flags.has('output-stack'),
    durationSec: duration !== undefined ? parseDuration('--duration', duration) : undefined,
    maxEvents:
      maxEvents !== undefined ? integer(maxEvents, TRACE_FLAG_SPECS['max-events'].integer?.min) : undefined,
    ringbufBytes:
      ringbuf !== undefined ? integer(ringbuf, TRACE_FLAG_SPECS['ringbuf-size'].integer?.min) : undefined,
  });
}
