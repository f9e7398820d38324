/**
 * Bad input and faults: each gets a clear message and a non-zero exit, and
 * nothing stays attached to the kernel.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { programHolders } from './bpf-held';
import { NetLab, run } from './netlab';
import { CLI, HELPER, RunningTrace, runCli, startTrace } from './tracer';

const OUR_PROGRAM = /^(tp_skb_|tp_kfree_skb|tp_consume_skb|kprobe_skb_|kmulti_skb_)/;

/** Our programs loaded in the kernel, by id. */
function ourPrograms(): Map<number, string> {
  const progs = JSON.parse(run('bpftool', ['-j', 'prog', 'show'])) as { id: number; name?: string }[];
  return new Map(progs.filter((p) => OUR_PROGRAM.test(p.name ?? '')).map((p) => [p.id, p.name ?? '']));
}

/**
 * Our programs that no process holds: left attached in the kernel by a helper
 * that is gone. Other tracers running at the same time hold theirs, so this
 * does not depend on what else runs on the machine.
 */
function orphanPrograms(): string[] {
  const holders = programHolders();
  return [...ourPrograms()].filter(([id]) => !holders.has(id)).map(([, name]) => name);
}

/**
 * Waits until no program of ours is left without a holder: the kernel frees
 * a dead process's programs after an RCU grace period, not at once. Says
 * which were still there when the bound passed.
 */
async function noOrphanPrograms(boundMs = 10000): Promise<void> {
  const started = Date.now();
  for (;;) {
    const left = orphanPrograms();
    if (left.length === 0) return;
    if (Date.now() - started > boundMs)
      assert.fail(
        `programs of ours without a holder ${boundMs} ms after the helper ended: ${left.join(', ')}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Our programs held by one process. */
function programsOf(pid: number): string[] {
  const holders = programHolders();
  return [...ourPrograms()].filter(([id]) => holders.get(id)?.includes(pid)).map(([, name]) => name);
}

function spawnCli(wrapper: string[], args: string[]): Promise<{ code: number | null; stderr: string }> {
  const [cmd, ...pre] = [...wrapper, process.execPath, CLI, ...args];
  const child = spawn(cmd, pre, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new RunningTrace(child).finished();
}

describe('bad input and faults', () => {
  test('an invalid pcap expression: libpcap says why, exit 2, nothing loaded', async () => {
    const r = await runCli(['--local', 'udp and hst 10.0.0.1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /invalid pcap filter: .*syntax error/);
    assert.doesNotMatch(r.stderr, /attaching probes/);
    await noOrphanPrograms();
  });

  test('a bad flag value is refused before anything runs', async () => {
    const r = await runCli(['--local', '--port', '70000']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--port 70000: expected a port from 1 to 65535/);
  });

  test('not root: says what privileges are needed', async () => {
    const r = await spawnCli(
      ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'],
      ['--local', 'udp'],
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not permitted: tracing needs root, or CAP_BPF and CAP_PERFMON/);
  });

  test('no kernel BTF: says so and what the kernel needs', async () => {
    // A private mount namespace where /sys/kernel/btf is empty stands in for a kernel without BTF.
    const r = await spawnCli(
      [
        'unshare',
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount -t tmpfs none /sys/kernel/btf && exec "$0" "$@"',
      ],
      ['--local', 'udp'],
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /this kernel has no BTF .* CONFIG_DEBUG_INFO_BTF=y/);
  });

  test('--filter-func that matches nothing says so', async () => {
    const r = await runCli([
      '--local',
      '--backend',
      'tracepoint',
      '--filter-func',
      '^no_such_probe_xyz$',
      'udp',
    ]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /--filter-func '\^no_such_probe_xyz\$' matches no tracepoint that takes a struct sk_buff \*/,
    );
  });

  test('asking for a backend the kernel lacks lists the ones it has', async () => {
    for (const backend of ['kprobe', 'kprobe-multi']) {
      const r = await runCli(['--local', '--backend', backend, 'udp']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`backend ${backend} is not available on this kernel .*available: tracepoint`),
      );
    }
  });

  test('the helper killed mid-trace: the CLI reports it and exits non-zero; the kernel detached everything', async () => {
    const trace = startTrace(['udp']);
    await trace.ready();
    const pid = execFileSync('pgrep', ['-P', String(trace.child.pid), '-f', 'pwru-helper'], {
      encoding: 'utf8',
    }).trim();
    assert.ok(programsOf(Number(pid)).length > 0, 'the helper holds its programs while tracing');
    process.kill(Number(pid), 'SIGKILL');
    const r = await trace.finished();
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the helper was killed by SIGKILL/);
    await noOrphanPrograms();
  });

  test('Ctrl-C stops cleanly: exit 0, final counts, no program left in the kernel', async () => {
    const trace = startTrace(['udp']);
    await trace.ready();
    const pid = Number(
      execFileSync('pgrep', ['-P', String(trace.child.pid), '-f', 'pwru-helper'], { encoding: 'utf8' }),
    );
    assert.ok(programsOf(pid).length > 0, 'programs are loaded while tracing');
    const r = await trace.stop();
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.lines.some((l) => l.type === 'stats' && l.final));
    // The CLI returns at END; the helper detaches after it, alone (docs/exit-codes.md): wait, bounded.
    const until = Date.now() + 10000;
    while (programsOf(pid).length > 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(programsOf(pid), [], 'the helper still holds programs 10 s after the CLI ended');
    await noOrphanPrograms();
  });

  test('a reader that stops reading cannot keep the helper from stopping on SIGTERM', async () => {
    const lab = new NetLab();
    try {
      const [a] = lab.pair();
      const helper = spawn(HELPER, ['--backend', 'tracepoint', '--', `host ${lab.v4(1, 2)}`], {
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      let seen = '';
      await new Promise<void>((resolve) => {
        const onData = (d: Buffer) => {
          seen += d.toString('latin1');
          if (seen.includes('attach_ms')) {
            helper.stdout.off('data', onData);
            helper.stdout.pause(); // stop reading: the pipe fills up
            resolve();
          }
        };
        helper.stdout.on('data', onData);
      });
      for (let i = 0; i < 3; i++) lab.traffic(a, ['udp', lab.v4(1, 2), '6500', '400']);
      const exited = new Promise<number | null>((resolve) => helper.on('exit', (code) => resolve(code)));
      helper.kill('SIGTERM');
      const code = await Promise.race([
        exited,
        new Promise<string>((r) => setTimeout(() => r('stuck'), 5000)),
      ]);
      if (code === 'stuck') helper.kill('SIGKILL');
      assert.equal(code, 0, 'the helper must stop within 5 s');
    } finally {
      lab.destroy();
    }
  });

  test('works without raising RLIMIT_MEMLOCK and without CAP_SYS_RESOURCE', async () => {
    const r = await spawnCli(
      ['prlimit', '--memlock=0:0', 'setpriv', '--inh-caps=-sys_resource', '--bounding-set=-sys_resource'],
      ['--local', '-o', 'json', '--duration', '1s', 'udp'],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /tracing with tracepoint/);
  });

  test("the kprobe and kprobe-multi programs pass this kernel's verifier (attaching needs kprobes: see the qemu matrix)", () => {
    for (const backend of ['kprobe', 'kprobe-multi']) {
      const out = execFileSync(
        HELPER,
        ['--backend', backend, '--verify-only', '--', 'tcp port 443 or (udp and net 10.0.0.0/8)'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      assert.match(out.toString('latin1'), /"reason":"verified"/, backend);
    }
  });
});
