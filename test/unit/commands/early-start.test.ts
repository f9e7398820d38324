/**
 * `--local` starts the helper before oclif loads (src/startup/). What must
 * hold: the early reader of argv agrees with the trace command, or says
 * nothing; bad input starts nothing; an early helper that is not taken over
 * is killed on every way out. A fake helper (a shell script that logs how it
 * was started) stands in for the real one: no root, no BPF here.
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
import {
  discardEarlyHelper,
  startEarlyHelper,
  takeEarlyHelper,
  withEarlyHelper,
} from '../../../src/startup/early-helper';
import { speculateHelperArgs, TRACE_FLAG_SPECS } from '../../../src/startup/speculate';
import { ROOT } from '../fixtures';

const CLI = join(ROOT, 'bin', 'kubectl-pwru');

let dir = '';
let log = '';
/** Logs "PID\tARG\tARG..." and waits for stdin to close (as the real helper stops on EOF). */
let waiting = '';
/** Logs, lingers 3 s (or until stdin closes), then fails with "fake helper": the CLI then ends. */
let lingering = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pwru-early-'));
  log = join(dir, 'spawns.log');
  const logLine = `{ printf '%s' "$$"; for a in "$@"; do printf '\\t%s' "$a"; done; printf '\\n'; } >> "$FAKE_LOG"`;
  waiting = join(dir, 'waiting-helper');
  writeFileSync(waiting, `#!/bin/sh\n${logLine}\nexec cat >/dev/null\n`);
  lingering = join(dir, 'lingering-helper');
  writeFileSync(
    lingering,
    `#!/bin/sh\n${logLine}\ntimeout 3 cat >/dev/null\necho "fake helper" >&2\nexit 1\n`,
  );
  chmodSync(waiting, 0o755);
  chmodSync(lingering, 0o755);
});

/** Every fake helper seen: none may outlive the tests, even when one fails. */
const seen = new Set<number>();

after(() => {
  discardEarlyHelper();
  for (const pid of seen) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  rmSync(dir, { recursive: true, force: true });
});

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

function withFake<T>(helper: string, fn: () => Promise<T>): Promise<T> {
  const saved = { helper: process.env.PWRU_HELPER, log: process.env.FAKE_LOG };
  process.env.PWRU_HELPER = helper;
  process.env.FAKE_LOG = log;
  rmSync(log, { force: true });
  return fn().finally(() => {
    discardEarlyHelper();
    process.env.PWRU_HELPER = saved.helper;
    process.env.FAKE_LOG = saved.log;
    if (saved.helper === undefined) delete process.env.PWRU_HELPER;
    if (saved.log === undefined) delete process.env.FAKE_LOG;
  });
}

interface CliRun {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

function startCli(args: string[], helper: string, file = log): CliRun {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PWRU_HELPER: helper, FAKE_LOG: file, NO_COLOR: '1' },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return {
    child,
    done: new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stderr }))),
  };
}

function runCli(args: string[], helper: string, file = log) {
  return startCli(args, helper, file).done;
}

describe('the early reader of argv', () => {
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

  test('reads the usual --local invocations', () => {
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
        ['--local', '-o', 'json', '--summary', 'udp'],
        ['--backend', 'auto', '--', 'udp'],
      ],
      [
        ['trace', '--local', '--port', '80', '--port', '8000-8080', '--host', '10.0.0.0/8', '--proto', 'TCP'],
        ['--backend', 'auto', '--', 'tcp and (port 80 or portrange 8000-8080) and (net 10.0.0.0/8)'],
      ],
      // after a repeatable flag, oclif takes the next words as more of its values
      [
        ['--port', '80', '--local', '443'],
        ['--backend', 'auto', '--', '(port 80 or port 443)'],
      ],
      [
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
        ],
        [
          '--backend',
          'auto',
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
          '--duration',
          '90',
          '--max-events',
          '7',
          '--ringbuf-size',
          '65536',
          '--',
          '-n x',
        ],
      ],
    ];
    for (const [argv, helper] of cases) {
      assert.deepEqual(speculateHelperArgs(withDefaultCommand(argv)), helper, argv.join(' '));
    }
  });

  test('says nothing about anything it is not sure the command would run as is', () => {
    for (const argv of [
      [],
      ['pod/web-0', '--port', '443'],
      ['show', 'trace.jsonl', '--local'],
      ['--local', '--help'],
      ['--local', '-h'],
      ['--local', 'udp', '--version'],
      ['--local', '--bogus'],
      ['--local', '--port', '70000'],
      ['--local', '--host', 'example.com'],
      ['--local', '--proto', 'igmp'],
      ['--local', '--backend', 'nope'],
      ['--local', '--backend', 'kprobe', '--backend', 'kprobe'],
      ['--local', '--max-events', '0'],
      ['--local', '--max-events', '1e3'],
      ['--local', '--duration', '5x'],
      ['--local', '--duration'],
      ['--local', '-n', 'kube-system'],
      ['--local', '--selector', 'app=x'],
      ['--local', '--print-manifest'],
      ['--local', '--pod-netns-only'],
      ['--local', '--output=json'],
      ['--local', '-ojson'],
      ['--local', '--local'],
      ['--local', '--filter-func', '-x'],
      ['--local', '--output-file', '/nonexistent-dir/trace.jsonl'],
      ['--local', '--output-file', tmpdir()],
      // the helper writes the JSON lines to our outputs: started with the sink, not before
      ['--local', '-o', 'json', 'udp'],
    ]) {
      assert.equal(speculateHelperArgs(withDefaultCommand(argv)), undefined, argv.join(' '));
    }
  });
});

describe('the early helper', () => {
  test('is taken over when the command runs exactly what it runs', () =>
    withFake(waiting, async () => {
      startEarlyHelper(['trace', '--local', 'udp']);
      await until('it started', () => spawns().length === 1);
      const [early] = spawns();
      assert.deepEqual(early.args, ['--backend', 'auto', '--', 'udp']);
      const child = takeEarlyHelper(waiting, ['--backend', 'auto', '--', 'udp']);
      assert.equal(child?.pid, early.pid);
      assert.ok(alive(early.pid));
      // The caller owns it now: leaving (discard) no longer touches it; closing its stdin ends it.
      discardEarlyHelper();
      assert.ok(alive(early.pid));
      const exited = new Promise((r) => child?.on('close', r));
      child?.stdin?.end();
      await exited;
    }));

  test('is killed when the command needs another command line; the command starts its own', () =>
    withFake(waiting, async () => {
      startEarlyHelper(['trace', '--local', 'udp']);
      await until('it started', () => spawns().length === 1);
      const [early] = spawns();
      assert.equal(takeEarlyHelper(waiting, ['--backend', 'tracepoint', '--', 'udp']), undefined);
      await until('the early helper is gone', () => !alive(early.pid));
    }));

  test('is killed when another helper binary is asked for', () =>
    withFake(waiting, async () => {
      startEarlyHelper(['trace', '--local', 'udp']);
      await until('it started', () => spawns().length === 1);
      assert.equal(takeEarlyHelper(lingering, ['--backend', 'auto', '--', 'udp']), undefined);
      await until('the early helper is gone', () => !alive(spawns()[0].pid));
    }));

  test("withEarlyHelper hands it to the session's spawn when that spawn runs the same", () =>
    withFake(waiting, async () => {
      startEarlyHelper(['trace', '--local', 'udp']);
      await until('it started', () => spawns().length === 1);
      // Called through the module, as compiled TypeScript calls an imported function (src/local/session.ts).
      const cp = require('node:child_process') as typeof import('node:child_process');
      const child = withEarlyHelper(() =>
        cp.spawn(waiting, ['--backend', 'auto', '--', 'udp'], { stdio: ['pipe', 'pipe', 'pipe'] }),
      );
      assert.equal(child.pid, spawns()[0].pid);
      assert.equal(spawns().length, 1, 'nothing else was started');
      // spawn is itself again
      const other = cp.spawn('true', [], { stdio: 'ignore' });
      await new Promise((r) => other.on('close', r));
      const exited = new Promise((r) => child.on('close', r));
      child.stdin?.end();
      await exited;
    }));

  test('withEarlyHelper: a session that spawns something else gets that, and the early helper is killed', () =>
    withFake(waiting, async () => {
      startEarlyHelper(['trace', '--local', 'udp']);
      await until('it started', () => spawns().length === 1);
      const [early] = spawns();
      // Called through the module, as compiled TypeScript calls an imported function (src/local/session.ts).
      const cp = require('node:child_process') as typeof import('node:child_process');
      const child = withEarlyHelper(() =>
        cp.spawn(waiting, ['--backend', 'auto', '--', 'tcp'], { stdio: ['pipe', 'pipe', 'pipe'] }),
      );
      await until('the session’s own helper started', () => spawns().length === 2);
      assert.equal(child.pid, spawns()[1].pid);
      await until('the early helper is gone', () => !alive(early.pid));
      const exited = new Promise((r) => child.on('close', r));
      child.stdin?.end();
      await exited;
    }));

  test('is killed when the process exits or dies of a signal before the command takes it', async () => {
    const harness = join(dir, 'harness.js');
    const module = join(ROOT, 'dist', 'src', 'startup', 'early-helper.js');
    // Starts an early helper, waits until it runs (it logged), then leaves as told.
    writeFileSync(
      harness,
      `const { existsSync } = require('node:fs');
       require(${JSON.stringify(module)}).startEarlyHelper(['trace', '--local', 'udp']);
       const how = process.argv[2];
       const wait = () => {
         if (!existsSync(process.env.FAKE_LOG)) return setTimeout(wait, 10);
         if (how === 'exit') process.exit(2);
         if (how === 'throw') throw new Error('boom');
         if (how.startsWith('SIG')) setTimeout(() => {}, 10000);
         // 'idle': nothing left to do
       };
       wait();`,
    );
    for (const how of ['exit', 'throw', 'SIGINT', 'SIGTERM', 'SIGHUP', 'idle'] as const) {
      rmSync(log, { force: true });
      const child = spawn(process.execPath, [harness, how], {
        stdio: 'ignore',
        env: { ...process.env, PWRU_HELPER: waiting, FAKE_LOG: log },
      });
      const ended = new Promise<[number | null, string | null]>((r) =>
        child.on('close', (c, s) => r([c, s])),
      );
      await until('the early helper started', () => spawns().length === 1);
      if (how.startsWith('SIG')) child.kill(how as NodeJS.Signals);
      const [code, signal] = await ended;
      if (how === 'exit') assert.equal(code, 2);
      if (how === 'throw') assert.equal(code, 1);
      // a signal before the trace command handles signals: the default action, as without an early helper
      if (how.startsWith('SIG')) assert.equal(signal, how);
      // the unused early helper does not keep Node running
      if (how === 'idle') assert.equal(code, 0);
      await until(`the early helper is gone (${how})`, () => !alive(spawns()[0].pid));
    }
  });
});

describe('the CLI with an early helper', () => {
  test('starts one helper, with the command line the trace command computes', async () => {
    const cases = [
      ['--local', 'udp and host 10.9.9.9'],
      ['--local', '--backend', 'tracepoint', '-o', 'wide', '--duration', '300s', 'udp'],
      ['--local', '-o', 'json', '--summary', 'udp'],
      // not read early (-o json): the command starts it, once
      ['--local', '-o', 'json', 'udp'],
      ['trace', '--local', '--port', '53', '--proto', 'udp', '--max-events', '10', '--summary'],
      ['--port', '80', '--local', '443', '--filter-track-skb', '--output-file', join(dir, 'out.jsonl')],
      // not read early (--output=json): the command starts it, once
      ['--local', '--output=json', 'udp'],
    ];
    // side by side (each fake helper lingers 3 s), each with its own log
    await Promise.all(
      cases.map(async (argv, i) => {
        const file = join(dir, `cli-${i}.log`);
        const r = await runCli(argv, lingering, file);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /the helper exited with code 1; its last words:\nfake helper/);
        const started = spawns(file);
        assert.equal(started.length, 1, `${argv.join(' ')}: ${JSON.stringify(started)}`);
        const early = speculateHelperArgs(withDefaultCommand(argv));
        if (early) assert.deepEqual(started[0].args, early, argv.join(' '));
      }),
    );
  });

  test('the helper is started before oclif is even loaded, and only once', async () => {
    // A preload that logs, in order, each spawn and the first time anything of oclif is loaded.
    const probe = join(dir, 'order-probe.js');
    const order = join(dir, 'order.log');
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
    const child = spawn(process.execPath, [CLI, '--local', 'udp'], {
      stdio: 'ignore',
      env: {
        ...process.env,
        NODE_OPTIONS: `--require ${probe}`,
        ORDER_LOG: order,
        PWRU_HELPER: lingering,
        FAKE_LOG: join(dir, 'order-spawns.log'),
      },
    });
    await new Promise((r) => child.on('close', r));
    assert.deepEqual(readFileSync(order, 'utf8').trim().split('\n'), [`spawn ${lingering}`, 'oclif']);
    assert.equal(spawns(join(dir, 'order-spawns.log')).length, 1);
  });

  test('bad input gets its usual error and exit code, and no helper is started', async () => {
    const cases: [string[], number, RegExp][] = [
      [['--local', '--port', '70000'], 2, /--port 70000: expected a port from 1 to 65535/],
      [['--local', '--backend', 'nope'], 2, /Expected --backend=nope to be one of/],
      [['--local', '--max-events', '0'], 2, /Expected an integer greater than or equal to 1/],
      [['--local', '-n', 'kube-system'], 2, /--namespace is for Kubernetes targets, not --local/],
      [['--local', '--duration', '5x'], 2, /--duration 5x: expected a duration/],
      [
        ['--local', '--output-file', '/nonexistent-dir/x'],
        1,
        /cannot write the trace to \/nonexistent-dir\/x/,
      ],
      [['--local', '--help'], 0, /USAGE/],
    ];
    for (const [argv, code, message] of cases) {
      rmSync(log, { force: true });
      const r = await runCli(argv, lingering);
      assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}`);
      if (code !== 0) assert.match(r.stderr, message);
      assert.deepEqual(spawns(), [], argv.join(' '));
    }
  });

  test('Ctrl-C while the CLI is still loading ends both', async () => {
    rmSync(log, { force: true });
    const { child, done } = startCli(['--local', 'udp'], waiting);
    // The early helper is up within milliseconds of Node's start, well before oclif is loaded.
    await until('the early helper started', () => spawns().length === 1, 10000);
    const { pid } = spawns()[0];
    child.kill('SIGINT');
    const { code, signal, stderr } = await done;
    // Killed by SIGINT before the trace command ran (as before), or the trace command stopped cleanly.
    assert.ok(signal === 'SIGINT' || code === 0, `code ${code}, signal ${signal}: ${stderr}`);
    await until('the helper is gone', () => !alive(pid));
    assert.equal(spawns().length, 1);
  });
});
