/**
 * `--local` on this kernel, as users start it: the trace runs
 * on one helper, the CLI's own child; a command that fails before tracing
 * (an --output-file it cannot open) starts no helper; a CLI stopped or killed
 * once its helper runs takes the helper with it, and leaves nothing attached.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NetLab, run } from './netlab';
import { CLI, HELPER, RunningTrace } from './tracer';

const OUR_PROGRAM = /^(tp_skb_|tp_kfree_skb|tp_consume_skb|kprobe_skb_|kmulti_skb_)/;

/** Our programs loaded in the kernel, by id (as test/integration/faults.test.ts counts them). */
function ourPrograms(): Map<number, string> {
  const progs = JSON.parse(run('bpftool', ['-j', 'prog', 'show'])) as { id: number; name?: string }[];
  return new Map(progs.filter((p) => OUR_PROGRAM.test(p.name ?? '')).map((p) => [p.id, p.name ?? '']));
}

/** Which processes hold which programs (prog and link fds say "prog_id:" in their fdinfo). */
function programHolders(): Map<number, number[]> {
  const holders = new Map<number, number[]>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let info = '';
      try {
        info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      } catch {
        continue;
      }
      const m = /^prog_id:\s*(\d+)/m.exec(info);
      if (m) holders.set(Number(m[1]), [...(holders.get(Number(m[1])) ?? []), Number(pid)]);
    }
  }
  return holders;
}

/** Our programs that no process holds: left attached by a helper that is gone (others' tracers hold theirs). */
function orphanPrograms(): string[] {
  const holders = programHolders();
  return [...ourPrograms()].filter(([id]) => !holders.has(id)).map(([, name]) => name);
}

function programsOf(pid: number): string[] {
  const holders = programHolders();
  return [...ourPrograms()].filter(([id]) => holders.get(id)?.includes(pid)).map(([, name]) => name);
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, ms = 20000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Nothing left attached: a killed helper's programs go when the kernel has closed its links (not at once). */
async function nothingLeftAttached(): Promise<void> {
  const end = Date.now() + 20000;
  let left = orphanPrograms();
  while (left.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    left = orphanPrograms();
  }
  assert.deepEqual(left, []);
}

let dir = '';
/** The real helper behind a script that logs each start ("PID") first. */
let wrapper = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pwru-early-it-'));
  wrapper = join(dir, 'logging-helper');
  // Traces are logged; the --check the CLI asks first is not a trace (it loads nothing).
  writeFileSync(
    wrapper,
    `#!/bin/sh\n[ "$1" = --check ] || echo "$$" >> "$STARTS_LOG"\nexec ${JSON.stringify(HELPER)} "$@"\n`,
  );
  chmodSync(wrapper, 0o755);
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function starts(log: string): number[] {
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).map(Number) : [];
}

describe('--local on this kernel', () => {
  test('a --local trace runs on it: one helper, the CLI’s child; events flow; Ctrl-C detaches everything', async () => {
    const lab = new NetLab();
    try {
      const [a] = lab.pair();
      const dst = lab.v4(1, 2);
      const log = join(dir, 'trace.log');
      const args = ['--local', '--backend', 'tracepoint', '--duration', '60s', `udp and host ${dst}`];
      const trace = new RunningTrace(
        spawn(process.execPath, [CLI, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, NO_COLOR: '1', PWRU_HELPER: wrapper, STARTS_LOG: log },
        }),
      );
      await trace.ready();
      const [helper] = starts(log);
      assert.deepEqual(childrenOf(trace.child.pid ?? 0), [helper]);
      assert.ok(programsOf(helper).length > 0, 'it holds the probes');
      lab.traffic(a, ['udp', dst, '6601', '2']);
      const r = await trace.stop();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /:6601\(udp\)/, 'events reached the CLI');
      assert.deepEqual(starts(log), [helper], 'no other helper was started');
      await nothingLeftAttached();
    } finally {
      lab.destroy();
    }
  });

  test('the command fails before tracing (--output-file it cannot open): its error, no helper started', async (t) => {
    // Writable as far as access(2) can tell (root), refused by open(2): sysfs has no write for it.
    const path = '/sys/kernel/notes';
    if (!existsSync(path)) {
      t.skip(`${path} is missing`);
      return;
    }
    const log = join(dir, 'fails.log');
    const child = spawn(
      process.execPath,
      [CLI, '--local', '--backend', 'tracepoint', '--output-file', path, 'udp and host 10.254.254.3'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PWRU_HELPER: wrapper, STARTS_LOG: log } },
    );
    const r = await new RunningTrace(child).finished();
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^error: cannot write the trace to \/sys\/kernel\/notes: EACCES/m);
    assert.doesNotMatch(r.stderr, /tracing with/);
    // The sink (and its file) comes first: nothing was started.
    assert.deepEqual(starts(log), []);
    await nothingLeftAttached();
  });

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGKILL'] as const) {
    test(`the CLI gets ${signal} as soon as its helper runs: the helper goes too; nothing left`, async () => {
      const log = join(dir, `${signal}.log`);
      const child = spawn(
        process.execPath,
        [CLI, '--local', '--backend', 'tracepoint', 'udp and host 10.254.254.4'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, PWRU_HELPER: wrapper, STARTS_LOG: log },
        },
      );
      const done = new RunningTrace(child).finished();
      await until('the helper started', () => starts(log).length === 1);
      child.kill(signal);
      const r = await done;
      // The trace command handles SIGINT/SIGTERM before it starts the helper: a clean stop. SIGKILL: the
      // helper sees its stdin close and stops.
      assert.ok(r.signal === signal || r.code === 0, `code ${r.code}, signal ${r.signal}: ${r.stderr}`);
      const [helper] = starts(log);
      await until('the helper is gone', () => !alive(helper));
      assert.equal(starts(log).length, 1);
      await nothingLeftAttached();
    });
  }
});
