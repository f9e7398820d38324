/**
 * The CLI run as users run it, `kubectl-pwru --local …`, with fake helpers
 * (shell scripts that log how they were started) standing in for the real one:
 * the helper's command line, errors and exit codes before anything starts,
 * a whole trace and --fail-on-drop, a reader that went away, Ctrl-C, and what
 * a local trace loads (never the Kubernetes client).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FrameType } from '../../src/record/decode';
import { ROOT } from '../unit/fixtures';
import { event, HELLO, json, READY } from '../unit/record-stream';
import { HELPER } from './tracer';

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

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pwru-early-'));
  log = join(dir, 'spawns.log');
  const logLine = `{ printf '%s' "$$"; for a in "$@"; do printf '\\t%s' "$a"; done; printf '\\n'; } >> "$FAKE_LOG"`;
  // `--check` (the CLI asks it before every trace) answers that the input is good, and is logged apart.
  const checked = join(dir, 'check.stream');
  writeFileSync(checked, checkStream());
  const check = `if [ "$1" = --check ]; then echo "$$" >> "$FAKE_LOG.check"; cat ${JSON.stringify(checked)}; exit 0; fi`;
  const script = (name: string, body: string) => {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${check}\n${logLine}\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  };
  waiting = script('waiting-helper', 'exec cat >/dev/null');
  lingering = script('lingering-helper', 'timeout 3 cat >/dev/null\necho "fake helper" >&2\nexit 1');
  failing = script('failing-helper', 'echo "fake helper" >&2\nexit 1');
  const stream = join(dir, 'drop.stream');
  writeFileSync(stream, dropStream());
  dropping = script('dropping-helper', `cat ${JSON.stringify(stream)}`);
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

/** What `pwru-helper --check` writes for good input: HELLO, END check. */
function checkStream(): Buffer {
  return Buffer.concat([
    json(FrameType.Hello, HELLO),
    json(FrameType.End, { reason: 'check', events: 0, lost: 0 }),
  ]);
}

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

/** A helper's arguments without how a session wires the lines it writes itself (--emit and its companions). */
function requestArgs(args: string[]): string[] {
  const wiring = new Set(['--emit', '--packet-starts', '--text-notes', '--lines-fd', '--lines-name']);
  return args.filter((a, i) => !wiring.has(a) && !wiring.has(args[i - 1] ?? ''));
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
  cwd?: string;
}

function startCli(args: string[], o: CliOptions): CliRun {
  const child = spawn(process.execPath, [CLI, ...args], {
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

describe('the CLI with --local', () => {
  test("the helper's command line, for each way of writing it", async () => {
    const cases: [string[], string[]][] = [
      [
        ['--local', 'udp and host 10.9.9.9'],
        ['--backend', 'auto', '--', 'udp and host 10.9.9.9'],
      ],
      [
        ['--local', '--backend', 'tracepoint', '-o', 'wide', '--duration', '300s', 'udp'],
        ['--backend', 'tracepoint', '--duration', '300', '--', 'udp'],
      ],
      [
        ['--local', '-o', 'json', '--summary', 'udp'],
        ['--backend', 'auto', '--', 'udp'],
      ],
      [
        ['trace', '--local', '--port', '53', '--proto', 'udp', '--max-events', '10', '--summary'],
        ['--backend', 'auto', '--max-events', '10', '--', 'udp and (port 53)'],
      ],
      [
        [
          '--local',
          '--port',
          '53',
          '--filter-track-skb',
          '--output-file',
          join(dir, 'out.jsonl'),
          'host 10.0.0.1',
        ],
        ['--backend', 'auto', '--filter-track-skb', '--', '(port 53) and (host 10.0.0.1)'],
      ],
    ];
    await Promise.all(
      cases.map(async ([argv, expected], i) => {
        const file = join(dir, `args-${i}.log`);
        const r = await runCli(argv, { helper: failing, log: file });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /the helper exited with code 1; its last words:\nfake helper/);
        assert.doesNotMatch(r.stderr, /\n {4}at /);
        assert.deepEqual(
          spawns(file).map((s) => requestArgs(s.args)),
          [expected],
          argv.join(' '),
        );
        // A text view to a pipe (stdout here): the helper writes its lines, with the client's words.
        const emit = spawns(file)[0]?.args ?? [];
        const view =
          argv.includes('json') || argv.includes('--summary') || argv.includes('--output-file')
            ? undefined
            : argv.includes('wide')
              ? 'wide'
              : 'text';
        assert.equal(
          emit.includes('--emit') ? emit[emit.indexOf('--emit') + 1] : undefined,
          view,
          argv.join(' '),
        );
        if (view) assert.ok(emit.includes('--text-notes') && emit.includes('--lines-fd'), emit.join(' '));
      }),
    );
  });

  test('the helper writes -o json lines itself, to our descriptors, one name each', async () => {
    const file = join(dir, 'lines.log');
    await runCli(['--local', '-o', 'json', '--output-file', join(dir, 'out-json.jsonl'), 'udp'], {
      helper: failing,
      log: file,
    });
    const [spawned] = spawns(file);
    const fds = spawned.args.flatMap((a, i) => (a === '--lines-fd' ? [spawned.args[i + 1]] : []));
    assert.deepEqual(fds, ['3', '4']);
  });

  test('bad input: its error and exit code, and no helper started', async () => {
    const cases: [string[], number, RegExp, string?][] = [
      [['--local', '--port', '70000'], 2, /^error: --port 70000: expected a port from 1 to 65535/],
      [['--local', '--host', 'example.com'], 2, /^error: --host example\.com/],
      [['--local', '--duration', '5x'], 2, /^error: --duration 5x: expected a duration/],
      [['--local', '-n', 'kube-system'], 2, /^error: --namespace is for Kubernetes targets, not --local/],
      [['--local', '--print-manifest'], 2, /^error: --print-manifest is for Kubernetes targets, not --local/],
      [['--local', '--pod-netns-only'], 2, /^error: --pod-netns-only is for Kubernetes targets, not --local/],
      [['--local', '--bogus'], 2, /^error: unknown flag --bogus: see kubectl pwru trace --help\n$/],
      [['--port', '80', '--local', '443'], 2, /^error: '443' is not a filter on its own/],
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
      rmSync(log, { force: true });
      const r = await runCli(argv, { helper: helper ?? lingering });
      assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
      assert.deepEqual(spawns(), [], argv.join(' '));
    }
  });

  test("bad values the helper's --check refuses: its words, exit 2, and no trace started", async () => {
    // The real helper, behind a script that logs each start that is not a --check.
    const real = join(dir, 'real-helper');
    writeFileSync(
      real,
      `#!/bin/sh\n[ "$1" = --check ] || echo "$$" >> "$FAKE_LOG"\nexec ${JSON.stringify(HELPER)} "$@"\n`,
    );
    chmodSync(real, 0o755);
    const cases: [string[], RegExp][] = [
      [['--filter-mark', 'zz'], /^error: --filter-mark zz: expected MARK or MARK\/MASK/],
      [['--filter-netns', '/nonexistent'], /^error: --filter-netns \/nonexistent: No such file/],
      [['--filter-ifname', 'nosuch0'], /^error: --filter-ifname nosuch0: no such interface/],
      [['--filter-func', '(('], /^error: --filter-func: /],
      [['tcp and'], /^error: invalid pcap filter/],
    ];
    for (const [args, message] of cases) {
      rmSync(log, { force: true });
      const r = await runCli(['--local', ...args], { helper: real });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /tracing with|HELLO/);
      assert.deepEqual(spawns(), [], args.join(' '));
    }
  });

  test('a kubeconfig that is empty or not YAML: one sentence that says so, no stack', async () => {
    const empty = join(dir, 'empty.kubeconfig');
    const broken = join(dir, 'broken.kubeconfig');
    writeFileSync(empty, '');
    writeFileSync(broken, 'garbage: [\n');
    const e = await runCli(['pod/web', '--kubeconfig', empty], { helper: lingering });
    assert.equal(e.code, 1, e.stderr);
    assert.equal(
      e.stderr,
      `error: the kubeconfig ${empty} names no cluster (is it empty?): pass one that kubectl can use\n`,
    );
    const b = await runCli(['pod/web', '--kubeconfig', broken], { helper: lingering });
    assert.equal(b.code, 1, b.stderr);
    assert.match(b.stderr, /^error: cannot read the kubeconfig .*broken\.kubeconfig: .*: is it a kubeconfig/);
    assert.equal(b.stderr.split('\n').length, 2, b.stderr);
  });

  test('a mistyped flag: the same one line whether the command is named or not', async () => {
    const bare = await runCli(['pod/web', '--ports', '8080'], { helper: lingering });
    const named = await runCli(['trace', 'pod/web', '--ports', '8080'], { helper: lingering });
    assert.deepEqual(
      [bare.code, bare.stdout, bare.stderr],
      [2, '', 'error: unknown flag --ports: see kubectl pwru trace --help\n'],
    );
    assert.deepEqual([named.code, named.stdout, named.stderr], [bare.code, bare.stdout, bare.stderr]);
  });

  test('a whole trace; --fail-on-drop exits 3', async () => {
    for (const [argv, code] of [
      [['--local', 'udp'], 0],
      [['--local', '--fail-on-drop', 'udp'], 3],
      [['--local', '--fail-on-drop', '--summary', 'udp'], 3],
      [['--local', '-o', 'json', '--fail-on-drop', '--output-file', join(dir, 'drop.jsonl')], 3],
    ] as [string[], number][]) {
      const r = await runCli(argv, { helper: dropping, log: join(dir, 'drop.log') });
      assert.equal(r.code, code, `${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /tracing with tracepoint: 2 probes attached in 12 ms/);
      assert.match(`${r.stdout}${r.stderr}`, /NETFILTER_DROP/);
    }
  });

  test('a reader that went away (`| head`): the trace ends without a stack trace', async () => {
    const closedStdout = (argv: string[]) =>
      new Promise<[number | null, string | null, string]>((resolve) => {
        const child = spawn(process.execPath, [CLI, ...argv], {
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
      const [code, signal, stderr] = await closedStdout(argv);
      assert.doesNotMatch(stderr, /\n {4}at /, `${argv.join(' ')}: ${stderr}`);
      assert.equal(signal, null, argv.join(' '));
      assert.ok(code === 0 || code === 3, `${argv.join(' ')}: ${code} ${stderr}`);
    }
  });

  test('a local trace never loads the Kubernetes client', async () => {
    // A preload that logs, in order, each spawn and the first time the Kubernetes client is loaded.
    const probe = join(dir, 'order-probe.js');
    writeFileSync(
      probe,
      `const Module = require('node:module');
       const { appendFileSync } = require('node:fs');
       const cp = require('node:child_process');
       const note = (what) => appendFileSync(process.env.ORDER_LOG, what + '\\n');
       const load = Module._load;
       let kube = false;
       Module._load = function (request, ...rest) {
         if (!kube && request.startsWith('@kubernetes/client-node')) { kube = true; note('client-node'); }
         return load.call(this, request, ...rest);
       };
       const spawn = cp.spawn;
       cp.spawn = function (...call) { note('spawn ' + call[0]); return spawn.apply(this, call); };`,
    );
    const cases: [string[], string[]][] = [
      // The helper's --check, then the trace.
      [
        ['--local', 'udp'],
        [`spawn ${failing}`, `spawn ${failing}`],
      ],
      [
        ['--local', '-o', 'json', '--output-file', join(dir, 'order.jsonl'), 'udp'],
        [`spawn ${failing}`, `spawn ${failing}`],
      ],
      [['--local', '--port', '70000'], []],
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
