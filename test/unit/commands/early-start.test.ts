/**
 * `trace --local` runs without oclif when src/startup/speculate.ts reads the
 * command line exactly as oclif would (src/cli.ts: straight into runTrace).
 * What must hold: the reader gives the trace command's own flags and words or
 * says nothing; the fast path and the oclif path end alike (output, errors,
 * exit codes, the helper's command line); the fast path never loads oclif.
 * Fake helpers (shell scripts that log how they were started) stand in for
 * the real one: no root, no BPF here.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Flags } from '@oclif/core';
import { withDefaultCommand } from '../../../src/cli';
import Trace from '../../../src/commands/trace';
import { FrameType } from '../../../src/record/decode';
import { type SpeculatedTrace, speculateTrace, TRACE_FLAG_SPECS } from '../../../src/startup/speculate';
import { helperArgs } from '../../../src/trace/request';
import * as runTraceModule from '../../../src/trace/run-trace';
import { ROOT } from '../fixtures';
import { event, HELLO, json, READY } from '../record-stream';

const CLI = join(ROOT, 'bin', 'kubectl-pwru');

let dir = '';
let log = '';
/** Logs "PID\tARG\tARG..." and waits for stdin to close (as the real helper stops on EOF). */
let waiting = '';
/** Logs, lingers 3 s (or until stdin closes), then fails with "fake helper": the CLI then ends. */
let lingering = '';
/** Logs, fails at once with "fake helper". */
let failing = '';
/** Logs, writes a whole record stream (two events, the second a drop) and exits 0. */
let dropping = '';
/** Runs the CLI's oclif path (src/cli.ts runWithOclif) for its arguments, whatever they are. */
let viaOclif = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pwru-early-'));
  log = join(dir, 'spawns.log');
  const logLine = `{ printf '%s' "$$"; for a in "$@"; do printf '\\t%s' "$a"; done; printf '\\n'; } >> "$FAKE_LOG"`;
  const script = (name: string, body: string) => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${logLine}\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  };
  waiting = script('waiting-helper', 'exec cat >/dev/null');
  lingering = script('lingering-helper', 'timeout 3 cat >/dev/null\necho "fake helper" >&2\nexit 1');
  failing = script('failing-helper', 'echo "fake helper" >&2\nexit 1');
  const stream = join(dir, 'drop.stream');
  writeFileSync(stream, dropStream());
  dropping = script('dropping-helper', `cat ${JSON.stringify(stream)}`);
  viaOclif = join(dir, 'via-oclif.js');
  const cli = JSON.stringify(join(ROOT, 'dist', 'src', 'cli.js'));
  writeFileSync(
    viaOclif,
    `const cli = require(${cli});\ncli.runWithOclif(cli.withDefaultCommand(process.argv.slice(2)));\n`,
  );
});

/** Every fake helper seen: none may outlive the tests, even when one fails. */
const seen = new Set<number>();

after(() => {
  for (const pid of seen) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A helper's record stream (bpf/event.h): HELLO, READY, a packet received and then dropped, STATS, END. */
function dropStream(): Buffer {
  return Buffer.concat([
    json(FrameType.Hello, HELLO),
    json(FrameType.Ready, READY),
    event({ probe: 7, ts: 1_500_000_000n }),
    event({ probe: 0, ts: 1_500_100_000n, drop: 12 }),
    json(FrameType.Stats, { seen: 2, emitted: 2, lost: 0, final: true }),
    json(FrameType.End, { reason: 'duration', events: 2, lost: 0 }),
  ]);
}

interface Spawned {
  pid: number;
  args: string[];
}

function spawns(file = log): Spawned[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [pid, ...args] = line.split('\t');
      seen.add(Number(pid));
      return { pid: Number(pid), args };
    });
}

function alive(pid: number): boolean {
  try {
    // A zombie is dead: its parent may be gone and nobody has reaped it yet.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface CliResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

interface CliRun {
  child: ChildProcess;
  done: Promise<CliResult>;
}

interface CliOptions {
  helper: string;
  log?: string;
  /** Through src/cli.ts's oclif path, whatever the arguments. */
  oclif?: boolean;
  cwd?: string;
}

function startCli(args: string[], o: CliOptions): CliRun {
  const child = spawn(process.execPath, [o.oclif ? viaOclif : CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: o.cwd,
    env: { ...process.env, PWRU_HELPER: o.helper, FAKE_LOG: o.log ?? log, NO_COLOR: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return {
    child,
    done: new Promise((resolve) =>
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
    ),
  };
}

function runCli(args: string[], o: CliOptions) {
  return startCli(args, o).done;
}

/** What oclif hands the trace command for argv (runTrace stubbed: nothing runs), or its error. */
async function oclifReads(argv: string[]): Promise<SpeculatedTrace | Error> {
  const { run } = require('@oclif/core/run') as typeof import('@oclif/core/lib/main');
  const mod = runTraceModule as { runTrace: typeof runTraceModule.runTrace };
  const original = mod.runTrace;
  let got: SpeculatedTrace | undefined;
  mod.runTrace = async (flags, words) => {
    got = { flags, words: [...words] };
    return 0;
  };
  try {
    await run(withDefaultCommand(argv), ROOT);
  } catch (err) {
    return err as Error;
  } finally {
    mod.runTrace = original;
  }
  return got ?? new Error('the trace command did not run');
}

/** Deterministic pseudo-random numbers (mulberry32). */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('the reader of argv without oclif', () => {
  test('knows every flag of the trace command, written the way the command declares it', () => {
    const integerParse = Flags.integer().parse;
    const flags = Trace.flags as unknown as Record<
      string,
      {
        type: string;
        char?: string;
        multiple?: boolean;
        options?: string[];
        default?: unknown;
        parse?: unknown;
        min?: number;
      }
    >;
    assert.deepEqual(Object.keys(TRACE_FLAG_SPECS).sort(), Object.keys(flags).sort());
    for (const [name, flag] of Object.entries(flags)) {
      const spec = TRACE_FLAG_SPECS[name];
      assert.equal(spec.type, flag.type, name);
      assert.equal(spec.char, flag.char, name);
      assert.equal(Boolean(spec.multiple), Boolean(flag.multiple), name);
      assert.deepEqual(spec.options ? [...spec.options] : undefined, flag.options, name);
      assert.equal(spec.default, flag.default, name);
      const isInteger = flag.parse === integerParse;
      assert.equal(Boolean(spec.integer), isInteger, name);
      if (isInteger) assert.equal(spec.integer?.min, flag.min, name);
    }
  });

  const understood: string[][] = [
    ['--local'],
    ['--local', 'udp and host 10.9.9.9'],
    [
      '--local',
      '--backend',
      'tracepoint',
      '-o',
      'wide',
      '--duration',
      '300s',
      '--no-color',
      'udp',
      'port',
      '53',
    ],
    ['--local', '-o', 'json', '--summary', 'udp'],
    ['--local', '-o', 'json', 'udp'],
    ['--local', '--output=json', 'udp'],
    ['--local', '-ojson', '--output-file', '/tmp/x.jsonl'],
    ['--local', '-o=wide'],
    ['trace', '--local', '--port', '80', '--port', '8000-8080', '--host', '10.0.0.0/8', '--proto', 'TCP'],
    // after a repeatable flag, oclif takes the next words as more of its values
    ['--port', '80', '--local', '443'],
    ['--port=80', '443', '--local', '--', '444'],
    // positional words in order of first appearance, even when that is as a flag's value
    ['--local', '--proto', 'udp', 'tcp', 'udp'],
    ['--local', '-', 'x', '', 'y'],
    [
      '--local',
      '--filter-func',
      '^ip_',
      '--filter-netns',
      '/proc/1/ns/net',
      '--filter-mark',
      '0x1/0xff',
      '--filter-ifname',
      'eth0',
      '--filter-track-skb',
      '--all-kmods',
      '--output-stack',
      '--max-events',
      '007',
      '--ringbuf-size',
      '65536',
      '--duration',
      '1.5m',
      '--summary',
      '--fail-on-drop',
      '--',
      '-n',
      'x',
      '--help',
    ],
    // the command's own refusals: the same on both paths (runTrace)
    ['--local', '--port', '70000'],
    ['--local', '--host', 'example.com'],
    ['--local', '--proto', 'igmp'],
    ['--local', '--duration', '5x'],
    ['--local', '-n', 'kube-system'],
    ['--local', '--selector=app=x'],
    ['--local', '--print-manifest'],
    ['--local', '--pod-netns-only'],
    ['--local', '--output-file', '/nonexistent-dir/trace.jsonl'],
    ['--local', '--output-file', tmpdir()],
  ];

  const unsure: string[][] = [
    [],
    ['pod/web-0', '--port', '443'],
    ['-l', 'app=x'],
    ['udp'],
    ['show', 'trace.jsonl', '--local'],
    ['--local', '--help'],
    ['--local', '-h'],
    ['--local', 'udp', '--version'],
    ['--local', '--bogus'],
    ['--local', '--backend', 'nope'],
    ['--local', '--backend', 'kprobe', '--backend', 'kprobe'],
    ['--local', '--max-events', '0'],
    ['--local', '--max-events', '1e3'],
    ['--local', '--duration'],
    ['--local', '--local'],
    ['--local=true'],
    ['--local', '--filter-func', '-x'],
    ['--local', '-5'],
    ['--local', '--output='],
    ['--local', '-ox'],
  ];

  test('gives exactly the flags and words oclif gives the trace command', async () => {
    for (const argv of understood) {
      const fast = speculateTrace(withDefaultCommand(argv));
      assert.ok(fast, `understood: ${JSON.stringify(argv)}`);
      assert.deepEqual(fast, await oclifReads(argv), JSON.stringify(argv));
    }
  });

  test('says nothing about anything it is not sure oclif reads so', () => {
    for (const argv of unsure) {
      assert.equal(speculateTrace(withDefaultCommand(argv)), undefined, JSON.stringify(argv));
    }
  });

  test('agrees with oclif on command lines made up of random tokens', async () => {
    const pool = [
      '--local',
      '--port',
      '80',
      '443',
      '--host',
      '10.0.0.1',
      '--proto',
      'udp',
      'tcp',
      '-o',
      'json',
      'wide',
      '--output=json',
      '-ojson',
      '-o=wide',
      '--summary',
      '--no-color',
      '--fail-on-drop',
      '--max-events',
      '007',
      '0',
      '--duration',
      '10s',
      '--',
      '-',
      'host',
      '--backend',
      'tracepoint',
      '-n',
      'ns',
      '--filter-func',
      '^ip_',
      '--port=53',
      '--output-file',
      '/tmp/x',
      'udp port 53',
      '',
      '--ringbuf-size',
      '-5',
      '-l',
      'app=x',
      '--print-manifest',
      '--local=true',
      '--bogus',
      '--help',
      '--filter-track-skb',
      '-h',
      '--host=10.0.0.0/8',
      '--image',
      'node:20',
    ];
    const next = random(20240607);
    let answered = 0;
    for (let n = 0; n < 400; n++) {
      const argv = Array.from(
        { length: 1 + Math.floor(next() * 7) },
        () => pool[Math.floor(next() * pool.length)],
      );
      argv.splice(Math.floor(next() * (argv.length + 1)), 0, '--local');
      if (argv.includes('--help')) continue; // oclif would print help here, not read flags
      const fast = speculateTrace(withDefaultCommand(argv));
      if (!fast) continue;
      answered++;
      assert.deepEqual(fast, await oclifReads(argv), JSON.stringify(argv));
    }
    assert.ok(answered > 50, `only ${answered} answered`);
  });

  test("the helper's command line for the usual invocations", () => {
    const cases: [string[], string[]][] = [
      [['--local'], ['--backend', 'auto']],
      [
        ['--local', 'udp and host 10.9.9.9'],
        ['--backend', 'auto', '--', 'udp and host 10.9.9.9'],
      ],
      [
        [
          '--local',
          '--backend',
          'tracepoint',
          '-o',
          'wide',
          '--duration',
          '300s',
          '--no-color',
          'udp',
          'port',
          '53',
        ],
        ['--backend', 'tracepoint', '--duration', '300', '--', 'udp port 53'],
      ],
      [
        ['trace', '--local', '--port', '80', '--port', '8000-8080', '--host', '10.0.0.0/8', '--proto', 'TCP'],
        ['--backend', 'auto', '--', 'tcp and (port 80 or portrange 8000-8080) and (net 10.0.0.0/8)'],
      ],
      [
        ['--port', '80', '--local', '443'],
        ['--backend', 'auto', '--', '(port 80 or port 443)'],
      ],
    ];
    for (const [argv, helper] of cases) {
      const fast = speculateTrace(withDefaultCommand(argv));
      assert.ok(fast, argv.join(' '));
      const { request } = runTraceModule.completeTrace(fast.flags, fast.words);
      assert.deepEqual(helperArgs(request), helper, argv.join(' '));
    }
  });
});

describe('the CLI, fast path and oclif path', () => {
  test('the same helper command line, output and error for the same arguments', async () => {
    const cases = [
      ['--local', 'udp and host 10.9.9.9'],
      ['--local', '--backend', 'tracepoint', '-o', 'wide', '--duration', '300s', 'udp'],
      ['--local', '-o', 'json', '--summary', 'udp'],
      // the helper writes the lines to our outputs (--lines-fd)
      ['--local', '-o', 'json', 'udp'],
      ['--local', '--output=json', '--output-file', join(dir, 'out-json.jsonl'), 'udp'],
      ['trace', '--local', '--port', '53', '--proto', 'udp', '--max-events', '10', '--summary'],
      ['--port', '80', '--local', '443', '--filter-track-skb', '--output-file', join(dir, 'out.jsonl')],
    ];
    await Promise.all(
      cases.map(async (argv, i) => {
        assert.ok(speculateTrace(withDefaultCommand(argv)), `fast path: ${argv.join(' ')}`);
        const fastLog = join(dir, `fast-${i}.log`);
        const oclifLog = join(dir, `oclif-${i}.log`);
        const [fast, slow] = await Promise.all([
          runCli(argv, { helper: failing, log: fastLog }),
          runCli(argv, { helper: failing, log: oclifLog, oclif: true }),
        ]);
        assert.equal(fast.code, 1, fast.stderr);
        assert.match(fast.stderr, /the helper exited with code 1; its last words:\nfake helper/);
        assert.deepEqual([fast.code, fast.stdout, fast.stderr], [slow.code, slow.stdout, slow.stderr]);
        const [a, b] = [spawns(fastLog), spawns(oclifLog)];
        assert.equal(a.length, 1, `${argv.join(' ')}: ${JSON.stringify(a)}`);
        assert.deepEqual(
          a.map((s) => s.args),
          b.map((s) => s.args),
        );
      }),
    );
  });

  test('bad input: the same error and exit code, and no helper started', async () => {
    const cases: [string[], number, RegExp, string?][] = [
      [['--local', '--port', '70000'], 2, /^error: --port 70000: expected a port from 1 to 65535/],
      [['--local', '--host', 'example.com'], 2, /^error: --host example\.com/],
      [['--local', '--duration', '5x'], 2, /^error: --duration 5x: expected a duration/],
      [['--local', '-n', 'kube-system'], 2, /^error: --namespace is for Kubernetes targets, not --local/],
      [
        ['--local', '--print-manifest'],
        2,
        /^error: --pod-netns-only and --print-manifest are for Kubernetes/,
      ],
      [
        ['--local', '--output-file', '/nonexistent-dir/x'],
        1,
        /^error: cannot write the trace to \/nonexistent-dir\/x/,
      ],
      [['--local', '--output-file', tmpdir()], 1, /^error: cannot write the trace to .*EISDIR/],
      [
        ['--local', 'udp'],
        1,
        /^error: the tracer helper is not built \(\/nonexistent\/pwru-helper\)/,
        '/nonexistent/pwru-helper',
      ],
    ];
    for (const [argv, code, message, helper] of cases) {
      assert.ok(speculateTrace(withDefaultCommand(argv)), `fast path: ${argv.join(' ')}`);
      rmSync(log, { force: true });
      const [fast, slow] = await Promise.all([
        runCli(argv, { helper: helper ?? lingering }),
        runCli(argv, { helper: helper ?? lingering, oclif: true }),
      ]);
      assert.equal(fast.code, code, `${argv.join(' ')}: ${fast.stderr}`);
      assert.match(fast.stderr, message);
      assert.deepEqual([fast.code, fast.stdout, fast.stderr], [slow.code, slow.stdout, slow.stderr]);
      assert.deepEqual(spawns(), [], argv.join(' '));
    }
  });

  test('a whole trace: the same output; --fail-on-drop exits 3 on both paths', async () => {
    for (const [argv, code] of [
      [['--local', 'udp'], 0],
      [['--local', '--fail-on-drop', 'udp'], 3],
      [['--local', '--fail-on-drop', '--summary', 'udp'], 3],
      [['--local', '-o', 'json', '--fail-on-drop', '--output-file', join(dir, 'drop.jsonl')], 3],
    ] as [string[], number][]) {
      const [fast, slow] = await Promise.all([
        runCli(argv, { helper: dropping, log: join(dir, 'drop-fast.log') }),
        runCli(argv, { helper: dropping, log: join(dir, 'drop-oclif.log'), oclif: true }),
      ]);
      assert.equal(fast.code, code, `${argv.join(' ')}: ${fast.stderr}`);
      assert.match(fast.stderr, /tracing with tracepoint: 2 probes attached in 12 ms/);
      assert.match(`${fast.stdout}${fast.stderr}`, /NETFILTER_DROP/);
      // The JSON header says when the trace started: the one difference allowed.
      const when = (s: string) => s.replace(/"startedAt":"[^"]*"/g, '"startedAt":"…"');
      assert.deepEqual(
        [fast.code, when(fast.stdout), fast.stderr],
        [slow.code, when(slow.stdout), slow.stderr],
      );
    }
  });

  test('a reader that went away (`| head`): both paths end alike, without a stack trace', async () => {
    const closedStdout = (argv: string[], oclif: boolean) =>
      new Promise<[number | null, string | null, string]>((resolve) => {
        const child = spawn(process.execPath, [oclif ? viaOclif : CLI, ...argv], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, PWRU_HELPER: dropping, FAKE_LOG: join(dir, 'epipe.log'), NO_COLOR: '1' },
        });
        child.stdout?.destroy();
        let stderr = '';
        child.stderr?.on('data', (d: Buffer) => {
          stderr += d.toString();
        });
        child.on('close', (code, signal) => resolve([code, signal, stderr]));
      });
    for (const argv of [
      ['--local', 'udp'],
      ['--local', '--summary', 'udp'],
      ['--local', '--fail-on-drop', 'udp'],
    ]) {
      const [fast, slow] = await Promise.all([closedStdout(argv, false), closedStdout(argv, true)]);
      assert.doesNotMatch(fast[2], /\n {4}at /, `${argv.join(' ')}: ${fast[2]}`);
      assert.deepEqual(fast, slow, argv.join(' '));
    }
  });

  test('the fast path never loads oclif; the others load it before starting anything', async () => {
    // A preload that logs, in order, each spawn and the first time anything of oclif is loaded.
    const probe = join(dir, 'order-probe.js');
    writeFileSync(
      probe,
      `const Module = require('node:module');
       const { appendFileSync } = require('node:fs');
       const cp = require('node:child_process');
       const note = (what) => appendFileSync(process.env.ORDER_LOG, what + '\\n');
       const load = Module._load;
       let oclif = false;
       Module._load = function (request, ...rest) {
         if (!oclif && request.startsWith('@oclif/core')) { oclif = true; note('oclif'); }
         return load.call(this, request, ...rest);
       };
       const spawn = cp.spawn;
       cp.spawn = function (...call) { note('spawn ' + call[0]); return spawn.apply(this, call); };`,
    );
    const cases: [string[], string[]][] = [
      [['--local', 'udp'], [`spawn ${failing}`]],
      [['--local', '-o', 'json', '--output-file', join(dir, 'order.jsonl'), 'udp'], [`spawn ${failing}`]],
      // a bad filter: the command's error, still without oclif
      [['--local', '--port', '70000'], []],
      // not read without oclif (oclif takes "-x" as the value)
      [
        ['--local', '--filter-func', '-x', 'udp'],
        ['oclif', `spawn ${failing}`],
      ],
      [['--local', '--help'], ['oclif']],
    ];
    for (const [i, [argv, expected]] of cases.entries()) {
      const order = join(dir, `order-${i}.log`);
      writeFileSync(order, '');
      const child = spawn(process.execPath, [CLI, ...argv], {
        stdio: 'ignore',
        env: {
          ...process.env,
          NODE_OPTIONS: `--require ${probe}`,
          ORDER_LOG: order,
          PWRU_HELPER: failing,
          FAKE_LOG: join(dir, `order-spawns-${i}.log`),
        },
      });
      await new Promise((r) => child.on('close', r));
      assert.deepEqual(readFileSync(order, 'utf8').split('\n').filter(Boolean), expected, argv.join(' '));
    }
  });

  test('Ctrl-C while the trace runs stops the helper and ends cleanly', async () => {
    rmSync(log, { force: true });
    const { child, done } = startCli(['--local', 'udp'], { helper: waiting });
    await until('the helper started', () => spawns().length === 1, 10000);
    const { pid } = spawns()[0];
    child.kill('SIGINT');
    const { code, signal, stderr } = await done;
    // The trace command stopped cleanly (its handler is installed before the helper starts).
    assert.equal(signal, null, stderr);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /stopping \(Ctrl-C again to force\)/);
    await until('the helper is gone', () => !alive(pid));
    assert.equal(spawns().length, 1);
  });
});
