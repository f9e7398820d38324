/**
 * Reads saved traces (`--output-file`, or `-o json` redirected to a file):
 * JSON lines of the schema in src/record/event.ts. Every line is checked, and
 * a bad one is reported with its file and line number, so that a truncated or
 * hand-edited file gives an error a person can act on instead of a crash.
 */
import { createReadStream } from 'node:fs';
import { EXIT_BAD_TRACE_FILE, UserError } from '../errors';
import { TRACE_SCHEMA_VERSION, type TraceEvent, type TraceLine } from '../record/event';
import { checkDropLine } from './drop-report';

/** A saved trace that cannot be read: exit code 4 (docs/exit-codes.md). */
export class TraceFileError extends UserError {
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly reason: string,
  ) {
    super(line === undefined ? `${file}: ${reason}` : `${file}:${line}: ${reason}`, EXIT_BAD_TRACE_FILE);
    this.name = 'TraceFileError';
  }
}

type Check = 'string' | 'number' | 'boolean' | 'object';

type Fields = readonly (readonly [string, Check])[];

const EVENT_FIELDS: Fields = [
  ['ts', 'string'],
  ['skb', 'string'],
  ['func', 'string'],
  ['cpu', 'number'],
  ['netns', 'number'],
  ['mark', 'number'],
  ['ifindex', 'number'],
  ['iface', 'string'],
  ['len', 'number'],
];
const EVENT_OPTIONAL: Fields = [
  ['time', 'string'],
  ['probe', 'string'],
  ['caller', 'string'],
  ['pid', 'number'],
  ['process', 'string'],
  ['l3proto', 'string'],
  ['mtu', 'number'],
  ['pktType', 'string'],
  ['tuple', 'object'],
  ['drop', 'object'],
  ['freed', 'boolean'],
  ['tracked', 'boolean'],
  ['node', 'string'],
];
const HEADER_FIELDS: Fields = [
  ['backend', 'string'],
  ['filter', 'string'],
  ['dropReasons', 'object'],
];
const STATS_FIELDS: Fields = [
  ['seen', 'number'],
  ['events', 'number'],
  ['lost', 'number'],
];
const CULPRIT_FIELDS: Fields = [
  ['ts', 'string'],
  ['skb', 'string'],
  ['netns', 'number'],
  ['kind', 'string'],
  ['method', 'string'],
];
const PROG_FIELDS: Fields = [
  ['ts', 'string'],
  ['skb', 'string'],
  ['netns', 'number'],
  ['kind', 'string'],
  ['iface', 'string'],
  ['ifindex', 'number'],
  ['program', 'object'],
  ['ret', 'number'],
  ['verdict', 'string'],
];
const TUPLE_FIELDS: Fields = [
  ['src', 'string'],
  ['dst', 'string'],
  ['proto', 'string'],
];

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

// Runs for every line of a saved trace, so a plain loop over a fixed list.
function checkFields(o: Record<string, unknown>, fields: Fields, required: boolean): string | undefined {
  for (const [name, want] of fields) {
    const v = o[name];
    if (v === undefined) {
      if (required) return `"${name}" is missing`;
      continue;
    }
    if (typeof v !== want || v === null || Array.isArray(v)) {
      if (typeOf(v) !== want) return `"${name}" should be a ${want}, found ${typeOf(v)}`;
    }
  }
  return undefined;
}

/** Parses and checks one line; throws TraceFileError naming the line. */
export function parseTraceLine(text: string, file: string, line: number): TraceLine | undefined {
  if (text.trim() === '') return undefined;
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (err) {
    const why = (err as Error).message;
    throw new TraceFileError(
      file,
      line,
      `not valid JSON (${why}); is the file truncated or not a kubectl-pwru trace?`,
    );
  }
  if (typeOf(o) !== 'object')
    throw new TraceFileError(file, line, `expected a JSON object, found ${typeOf(o)}`);
  const rec = o as Record<string, unknown>;
  const v = rec.v;
  if (typeof v !== 'number')
    throw new TraceFileError(file, line, 'no schema version ("v"): not a kubectl-pwru trace line');
  if (v > TRACE_SCHEMA_VERSION) {
    throw new TraceFileError(
      file,
      line,
      `written with trace schema v${v}; this kubectl-pwru reads up to v${TRACE_SCHEMA_VERSION}: upgrade it`,
    );
  }
  let problem: string | undefined;
  switch (rec.type) {
    case 'event':
      problem = eventProblem(rec);
      break;
    case 'drop':
      problem = checkDropLine(rec, eventProblem);
      break;
    case 'header':
      problem = checkFields(rec, HEADER_FIELDS, true);
      break;
    case 'stats':
      problem = checkFields(rec, STATS_FIELDS, true);
      break;
    case 'culprit':
      problem = checkFields(rec, CULPRIT_FIELDS, true);
      break;
    case 'prog':
      problem = checkFields(rec, PROG_FIELDS, true);
      break;
    default:
      problem = `unknown line type ${JSON.stringify(rec.type)} (expected "header", "event", "culprit", "prog", "drop" or "stats")`;
  }
  if (problem) throw new TraceFileError(file, line, problem);
  const l = rec as unknown as TraceLine;
  if (l.type === 'drop') {
    l.bad.events = l.bad.events.map((e) => fillDefaults(e) as TraceEvent);
    if (l.good) l.good.events = l.good.events.map((e) => fillDefaults(e) as TraceEvent);
  }
  return fillDefaults(l);
}

function eventProblem(rec: Record<string, unknown>): string | undefined {
  let problem = checkFields(rec, EVENT_FIELDS, true) ?? checkFields(rec, EVENT_OPTIONAL, false);
  if (!problem && rec.drop && typeof (rec.drop as Record<string, unknown>).reason !== 'string')
    problem = '"drop.reason" should be a string';
  if (!problem && rec.tuple) problem = checkFields(rec.tuple as Record<string, unknown>, TUPLE_FIELDS, true);
  return problem;
}

/** Older or hand-written lines may lack optional display fields; give them neutral values. */
function fillDefaults(l: TraceLine): TraceLine {
  if (l.type !== 'event') return l;
  const e: TraceEvent = { ...l };
  e.process ??= '';
  e.pid ??= 0;
  e.l3proto ??= '';
  e.mtu ??= 0;
  e.pktType ??= '';
  e.time ??= '';
  e.probe ??= 'tracepoint';
  return e;
}

/** Parses a whole trace held in memory (tests, small files). */
export function parseTrace(text: string, file = '<trace>'): TraceLine[] {
  const out: TraceLine[] = [];
  const lines = text.split('\n');
  lines.forEach((t, i) => {
    const l = parseTraceLine(t, file, i + 1);
    if (l) out.push(l);
  });
  if (out.length === 0) throw new TraceFileError(file, undefined, 'empty: no trace lines');
  return out;
}

/**
 * The longest line a trace file may have: an event line is well under 4 KiB
 * (a deep --output-stack a few more); a longer one is not a trace line, and
 * holding it would make memory grow with the file.
 */
export const MAX_LINE_BYTES = 1 << 20;

/** The lines of a file, read in chunks, each line at most MAX_LINE_BYTES. */
async function* fileLines(file: string, input: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let n = 0;
  for await (const chunk of input) {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      n++;
      if (pendingBytes + piece.length > MAX_LINE_BYTES) throw longLine(file, n);
      yield (pending.length ? Buffer.concat([...pending, piece]) : piece).toString('utf8');
      pending = [];
      pendingBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      pendingBytes += rest.length;
      if (pendingBytes > MAX_LINE_BYTES) throw longLine(file, n + 1);
      pending.push(rest);
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending).toString('utf8');
}

function longLine(file: string, line: number): TraceFileError {
  return new TraceFileError(
    file,
    line,
    `longer than ${MAX_LINE_BYTES / (1 << 20)} MiB: not a kubectl-pwru trace line (is it a trace file?)`,
  );
}

/** Streams a trace file line by line: memory does not grow with the file. */
export async function* readTraceFile(file: string): AsyncGenerator<TraceLine> {
  const input = createReadStream(file, { highWaterMark: 1 << 16 });
  const unreadable = (err: NodeJS.ErrnoException) => {
    const why =
      err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    return new TraceFileError(file, undefined, why);
  };
  const opened = new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', (err: NodeJS.ErrnoException) => reject(unreadable(err)));
  });
  await opened;
  let n = 0;
  let any = false;
  try {
    for await (const text of fileLines(file, input as AsyncIterable<Buffer>)) {
      n++;
      const l = parseTraceLine(text.endsWith('\r') ? text.slice(0, -1) : text, file, n);
      if (l) {
        any = true;
        yield l;
      }
    }
  } catch (err) {
    throw err instanceof TraceFileError ? err : unreadable(err as NodeJS.ErrnoException);
  } finally {
    input.destroy();
  }
  if (!any) throw new TraceFileError(file, undefined, 'empty: no trace lines');
}

export async function loadTraceFile(file: string): Promise<TraceLine[]> {
  const out: TraceLine[] = [];
  for await (const l of readTraceFile(file)) out.push(l);
  return out;
}
