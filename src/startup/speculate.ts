/**
 * `trace --local` without oclif: src/cli.ts reads the command line with this
 * and, when it answers, calls runTrace (src/trace/run-trace.ts) directly, so
 * that a local trace does not wait for @oclif/core to load before its helper
 * starts.
 *
 * It answers only for input it fully understands, and then with exactly the
 * flags and words oclif's parser would give the trace command: anything else
 * (an unknown flag, --help, an option value oclif would refuse, a form of
 * writing a flag it does not know, no --local) is `undefined`, and the CLI
 * goes through oclif as always. So this reader only has to be right when it
 * answers; what the command itself checks (the filter, --duration, flags that
 * are for Kubernetes targets, --output-file) is runTrace's, on both paths.
 *
 * It reads flags as oclif's parser does, including its quirks: a positional
 * word after a repeatable flag is taken as one more value of that flag, and
 * positional words are ordered by their first appearance in argv.
 * test/unit/commands/early-start.test.ts runs both on the same command lines.
 */
import { BACKENDS } from '../trace/request';
import type { TraceFlags } from '../trace/run-trace';

/**
 * How each flag of the trace command is written. Kept in step with
 * src/commands/trace.ts by a unit test (test/unit/commands/early-start.test.ts):
 * a flag missing here sends every invocation using it through oclif, never a
 * wrong way.
 */
export interface FlagSpec {
  type: 'boolean' | 'option';
  char?: string;
  multiple?: boolean;
  options?: readonly string[];
  default?: string;
  /** oclif's Flags.integer, with its minimum. */
  integer?: { min?: number; max?: number };
}

export const TRACE_FLAG_SPECS: Readonly<Record<string, FlagSpec>> = {
  local: { type: 'boolean' },
  namespace: { type: 'option', char: 'n' },
  context: { type: 'option' },
  kubeconfig: { type: 'option' },
  selector: { type: 'option', char: 'l' },
  port: { type: 'option', multiple: true },
  host: { type: 'option', multiple: true },
  proto: { type: 'option' },
  'filter-func': { type: 'option' },
  'filter-netns': { type: 'option' },
  'filter-mark': { type: 'option' },
  'filter-ifname': { type: 'option' },
  'filter-track-skb': { type: 'boolean' },
  'pod-netns-only': { type: 'boolean' },
  backend: { type: 'option', options: BACKENDS, default: 'auto' },
  'all-kmods': { type: 'boolean' },
  'output-stack': { type: 'boolean' },
  'ringbuf-size': { type: 'option', integer: {} },
  duration: { type: 'option' },
  'max-events': { type: 'option', integer: { min: 1 } },
  output: { type: 'option', char: 'o', options: ['text', 'wide', 'json'], default: 'text' },
  'output-file': { type: 'option' },
  pcapng: { type: 'option' },
  snaplen: { type: 'option', integer: { min: 1, max: 65535 } },
  summary: { type: 'boolean' },
  'fail-on-drop': { type: 'boolean' },
  'no-color': { type: 'boolean' },
  image: { type: 'option' },
  'debug-namespace': { type: 'option' },
  'print-manifest': { type: 'boolean' },
};

/** Not understood: oclif decides. */
class Unsure extends Error {}

/** The trace command's flags and positional words, as oclif's parser would give them. */
export interface SpeculatedTrace {
  flags: TraceFlags;
  words: string[];
}

/**
 * A flag token as oclif reads it: `--name`, `-c`, and for option flags also
 * `--name=VALUE`, `-cVALUE`, `-c=VALUE` (value inline). undefined: not a flag
 * of the trace command.
 */
function flagToken(token: string): { name: string; inline?: string } | undefined {
  if (token.startsWith('--')) {
    const eq = token.indexOf('=');
    const name = eq === -1 ? token.slice(2) : token.slice(2, eq);
    if (!Object.hasOwn(TRACE_FLAG_SPECS, name)) return undefined;
    return eq === -1 ? { name } : { name, inline: token.slice(eq + 1) };
  }
  const name = Object.keys(TRACE_FLAG_SPECS).find((k) => TRACE_FLAG_SPECS[k].char === token[1]);
  if (name === undefined) return undefined;
  return token.length === 2 ? { name } : { name, inline: token.slice(token[2] === '=' ? 3 : 2) };
}

/** oclif's Flags.integer. */
function integer(value: string, min: number | undefined, max?: number): number {
  if (!/^-?\d+$/.test(value)) throw new Unsure();
  const n = Number.parseInt(value, 10);
  if (min !== undefined && n < min) throw new Unsure();
  if (max !== undefined && n > max) throw new Unsure();
  return n;
}

/**
 * The trace command's flags and words for `argv` (the CLI's arguments, the
 * command name first, as src/cli.ts passes them to oclif), or undefined when
 * this is not a `trace --local` this reader is sure oclif would read so.
 */
export function speculateTrace(argv: readonly string[]): SpeculatedTrace | undefined {
  if (argv[0] !== 'trace') return undefined;
  try {
    return speculate(argv.slice(1));
  } catch (err) {
    if (err instanceof Unsure) return undefined;
    throw err;
  }
}

function speculate(argv: string[]): SpeculatedTrace | undefined {
  const given = new Map<string, string[]>();
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
      // Not understood here: --help (oclif shows help), unknown flags (oclif passes them on as words),
      // negative numbers (words to oclif).
      const flag = flagToken(token);
      if (flag === undefined) throw new Unsure();
      const { name, inline } = flag;
      const spec = TRACE_FLAG_SPECS[name];
      if (given.has(name) && !(spec.type === 'option' && spec.multiple)) throw new Unsure(); // oclif refuses
      if (spec.type === 'boolean') {
        // `--local=true` leaves oclif a word "true"; `-xyz` is more flags.
        if (inline !== undefined) throw new Unsure();
        given.set(name, []);
        continue;
      }
      const value = inline ?? argv[++i];
      // Missing, empty, or possibly a flag: oclif refuses some of these and takes others as values.
      if (value === undefined || value === '' || value.startsWith('-')) throw new Unsure();
      if (spec.options && !spec.options.includes(value)) throw new Unsure();
      given.set(name, [...(given.get(name) ?? []), value]);
      current = name;
      continue;
    }
    if (parsingFlags && current !== undefined && TRACE_FLAG_SPECS[current].multiple) {
      given.set(current, [...(given.get(current) ?? []), token]);
      continue;
    }
    positional.push(token);
  }
  if (!given.has('local')) return undefined;

  const flags: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(TRACE_FLAG_SPECS)) {
    const values = given.get(name);
    if (values === undefined) {
      if (spec.default !== undefined) flags[name] = spec.default;
    } else if (spec.type === 'boolean') {
      flags[name] = true;
    } else if (spec.multiple) {
      flags[name] = values;
    } else {
      flags[name] = spec.integer ? integer(values[0], spec.integer.min, spec.integer.max) : values[0];
    }
  }
  // oclif orders the positional words by where each first appears in argv.
  const words = [...positional].sort((a, b) => argv.indexOf(a) - argv.indexOf(b));
  return { flags: flags as unknown as TraceFlags, words };
}
