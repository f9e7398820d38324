/**
 * The qemu kernel matrix: the real helper against real traffic in Debian's own
 * 5.10, 6.1 and 6.12 kernels, booted under software emulation (the machines
 * here have no kprobes; users' nodes do). Needs `bash test/kernel-matrix/prepare.sh`
 * and `make -C helper`; skips only when the helper has not been built.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { ProbeKind, TraceEvent } from '../../src/record/event';
import { bootGuest, type CaseResult, type CaseSpec, type GuestRun, repoRoot } from './guest';

interface KernelSpec {
  label: string;
  /** Backends the kernel offers, best first: what `auto` must pick is the first. */
  backends: ProbeKind[];
  /** What the drop of the :9001 packet must say. */
  dropReason: string;
  /** Modules carry BTF (5.11+): --all-kmods can probe them. */
  moduleBtf: boolean;
}

const KERNELS: KernelSpec[] = [
  // 5.10: no drop reasons (5.17+), no fprobe (5.18+).
  { label: '5.10', backends: ['kprobe', 'tracepoint'], dropReason: 'UNKNOWN', moduleBtf: false },
  // Debian's 6.1 is built without CONFIG_FPROBE.
  { label: '6.1', backends: ['kprobe', 'tracepoint'], dropReason: 'NETFILTER_DROP', moduleBtf: true },
  {
    label: '6.12',
    backends: ['kprobe-multi', 'kprobe', 'tracepoint'],
    dropReason: 'NETFILTER_DROP',
    moduleBtf: true,
  },
];

/** The flow under test, in pcap words: delivered to :9000, dropped by iptables at :9001. */
const FILTER = 'udp and (dst port 9000 or dst port 9001)';
const PASS_PORT = 9000;
const DROP_PORT = 9001;
const NOISE_PORT = 7777;
const NOISE_PACKETS = 20;

/**
 * Functions on the UDP path, for the kprobe backends: plain kprobes attach and
 * detach slowly under emulation, so functional runs use this small set.
 */
const PATH_FUNCS = [
  'ip_output',
  'ip_finish_output',
  'ip_finish_output2',
  '__dev_queue_xmit',
  'veth_xmit',
  '__netif_receive_skb_core',
  'ip_rcv',
  'ip_rcv_core',
  'ip_rcv_finish',
  'nf_hook_slow',
  'ip_local_deliver',
  'ip_local_deliver_finish',
  'udp_rcv',
  '__udp4_lib_rcv',
  'udp_queue_rcv_skb',
];
const PATH_REGEX = `^(${PATH_FUNCS.join('|')})$`;
/** Functions a kprobe trace of the delivered packet must pass through, on every kernel here. */
const EXPECTED_KPROBE_PATH = ['ip_output', 'ip_rcv', 'ip_local_deliver', 'udp_rcv'];
/** Tracepoints the delivered packet must pass, on every kernel here. */
const EXPECTED_TRACEPOINT_PATH = ['net_dev_queue', 'netif_receive_skb'];
/**
 * The kprobe attach-time run: about 400 functions (395 on 6.12), not all of
 * them (1630 on 6.12), which would take minutes to detach under TCG.
 */
const KPROBE_TIMING_REGEX = '^(ip|ip6|udp|tcp|nf|netif|__netif|dev|__dev|skb|__skb)_';
/** A soft descriptor limit far below what ~400 plain kprobes hold (two each): the helper raises it. */
const LOW_NOFILE = 256;
/** A hard limit it may not raise (fs.nr_open the same): it runs out, which must be an error. */
const CAPPED_NOFILE = 200;

function plan(k: KernelSpec): CaseSpec[] {
  const cases: CaseSpec[] = [];
  const funcsFor = (b: ProbeKind) => (b === 'tracepoint' ? [] : ['--filter-func', PATH_REGEX]);
  cases.push({
    name: 'auto',
    traffic: 'full',
    readyTimeout: 120,
    args: ['--backend', 'auto', '--filter-func', PATH_REGEX, '--', FILTER],
  });
  for (const b of k.backends) {
    cases.push({
      name: `trace-${b}`,
      traffic: 'full',
      readyTimeout: 120,
      args: ['--backend', b, ...funcsFor(b), '--', FILTER],
    });
  }
  cases.push({
    name: 'netns',
    traffic: 'full',
    readyTimeout: 120,
    args: [
      '--backend',
      k.backends[0],
      ...funcsFor(k.backends[0]),
      '--filter-netns',
      '/run/netns/ns2',
      '--',
      FILTER,
    ],
  });
  cases.push({
    name: 'noise',
    traffic: 'noise',
    readyTimeout: 120,
    args: ['--backend', k.backends[0], ...funcsFor(k.backends[0]), '--', FILTER],
  });
  // veth is a module on Debian: its functions are only probed with --all-kmods (module BTF).
  cases.push({
    name: 'kmods',
    traffic: 'full',
    readyTimeout: 120,
    args: ['--backend', 'kprobe', '--all-kmods', '--filter-func', '^(veth_xmit|ip_rcv)$', '--', FILTER],
  });
  if (!k.backends.includes('kprobe-multi')) {
    cases.push({
      name: 'force-kprobe-multi',
      traffic: 'none',
      readyTimeout: 120,
      args: ['--backend', 'kprobe-multi'],
    });
  }
  for (const b of k.backends) {
    const funcs = b === 'kprobe' ? ['--filter-func', KPROBE_TIMING_REGEX] : [];
    // Plain kprobes hold two descriptors each: under a soft limit of 256 the helper must raise it.
    const ulimit = b === 'kprobe' ? `-S -n ${LOW_NOFILE}` : undefined;
    cases.push({
      name: `attach-${b}`,
      traffic: 'none',
      readyTimeout: 240,
      ulimit,
      args: ['--backend', b, ...funcs],
    });
  }
  if (k.backends.includes('kprobe-multi')) {
    // Every function again, which ftrace can trace read from its own list, not judged from each one's first bytes.
    cases.push({
      name: 'attach-kprobe-multi-list',
      traffic: 'none',
      readyTimeout: 240,
      env: 'PWRU_TRACEABLE_FROM=list',
      args: ['--backend', 'kprobe-multi'],
    });
  }
  if (k.backends.includes('kprobe')) {
    // A limit it may not raise (the hard limit and fs.nr_open both low): running out is an error.
    cases.push({
      name: 'nofile-capped',
      traffic: 'none',
      readyTimeout: 240,
      ulimit: `-n ${CAPPED_NOFILE}`,
      nrOpen: CAPPED_NOFILE,
      args: ['--backend', 'kprobe', '--filter-func', KPROBE_TIMING_REGEX],
    });
    // Ctrl-C one second into a long attach.
    cases.push({
      name: 'stop-attaching',
      traffic: 'none',
      readyTimeout: 240,
      stop: 'attaching',
      args: ['--backend', 'kprobe', '--filter-func', KPROBE_TIMING_REGEX],
    });
  }
  return cases;
}

function helperPath(): string {
  return path.join(repoRoot(), 'helper/build/amd64/pwru-helper');
}

function describeCase(c: CaseResult): string {
  return [
    `case ${c.name}: state=${c.state} exit=${c.exitCode} backend=${c.ready?.backend ?? '-'}`,
    `attached=${c.ready?.attached ?? '-'} events=${c.events.length}`,
    `stats=${JSON.stringify(c.stats.at(-1) ?? null)} errors=${JSON.stringify(c.errors)}`,
    c.decodeError ? `decode error: ${c.decodeError}` : '',
    `stderr:\n${c.stderr.trim().split('\n').slice(-15).join('\n')}`,
  ].join(' ');
}

function getCase(run: GuestRun, name: string): CaseResult {
  const c = run.cases.get(name);
  assert.ok(c, `kernel ${run.kernel}: case ${name} did not run (fatal: ${run.fatal ?? '-'})`);
  return c;
}

/** A run that must have attached, traced, and exited cleanly. */
function assertClean(c: CaseResult): void {
  assert.equal(c.decodeError, undefined, describeCase(c));
  assert.equal(c.state, 'ready', describeCase(c));
  assert.equal(c.errors.length, 0, describeCase(c));
  assert.equal(c.exitCode, 0, describeCase(c));
  assert.ok(c.ready, describeCase(c));
}

function eventsTo(c: CaseResult, port: number): TraceEvent[] {
  return c.events.filter((e) => e.tuple?.proto === 'UDP' && e.tuple.dport === port);
}

function finalStats(c: CaseResult) {
  const s = c.stats.find((x) => x.final) ?? c.stats.at(-1);
  assert.ok(s, `${describeCase(c)}: no STATS frame`);
  return s;
}

/**
 * Every event that reached the ring buffer was delivered, or read after the
 * stop and discarded (docs/record-stream.md, "Loss"): with nothing lost, the
 * two add up to what the kernel emitted.
 */
function assertAccounted(c: CaseResult): void {
  const s = finalStats(c) as ReturnType<typeof finalStats> & { discarded?: number };
  assert.equal(s.lost, 0, `${c.name}: ${JSON.stringify(s)}`);
  assert.equal(s.emitted, c.events.length + (s.discarded ?? 0), `${c.name}: ${JSON.stringify(s)}`);
}

/**
 * The probes are detached after END (docs/record-stream.md): PROGRESS detach
 * frames follow it, the last at done == total, and the helper exited only then.
 */
function assertDetachedAfterEnd(c: CaseResult): void {
  assert.ok(c.end, describeCase(c));
  assert.ok(
    c.afterEnd.every((kind) => kind === 'progress'),
    `${c.name}: after END: ${c.afterEnd.join(', ')}`,
  );
  const detach = c.progress.filter((p) => p.phase === 'detach');
  assert.ok(
    detach.length > 0 && c.afterEnd.length >= detach.length,
    `${c.name}: ${JSON.stringify(c.progress)}`,
  );
  const last = detach.at(-1);
  assert.ok(last && last.done === last.total && last.total > 0, `${c.name}: ${JSON.stringify(last)}`);
}

function report(run: GuestRun): string {
  const rows = [...run.cases.values()].map((c) =>
    [
      c.name.padEnd(20),
      (c.ready?.backend ?? c.state).padEnd(13),
      String(c.ready?.attached ?? '-').padStart(5),
      String(c.ready?.attach_ms ?? '-').padStart(8),
      c.readySeconds.toFixed(1).padStart(7),
      c.stopSeconds.toFixed(1).padStart(7),
      (c.marks.end - c.stopAt).toFixed(1).padStart(6),
      String(c.events.length).padStart(6),
      `${c.stats.at(-1)?.seen ?? '-'}/${c.stats.at(-1)?.emitted ?? '-'}/${c.stats.at(-1)?.lost ?? '-'}`.padStart(
        15,
      ),
      String(c.exitCode).padStart(4),
    ].join(' '),
  );
  const notes = [...run.cases.values()].flatMap((c) =>
    c.errors.map((e) => `${c.name}: helper error ${e.code}: ${e.message}`),
  );
  return [
    `kernel ${run.kernel} (${run.release}): /init at ${run.bootSeconds.toFixed(2)} s, network ready at ${run.setupSeconds.toFixed(2)} s, qemu wall ${run.wallSeconds.toFixed(1)} s`,
    `${'case'.padEnd(20)} ${'backend'.padEnd(13)} probes attachms ready_s  stop_s  end_s events seen/emit/lost exit`,
    ...rows,
    ...notes,
  ].join('\n');
}

/** KERNEL_MATRIX_ONLY=6.12 (or "5.10,6.1") runs a subset, for work on one kernel. */
const only = process.env.KERNEL_MATRIX_ONLY?.split(',');

for (const k of KERNELS.filter((x) => !only || only.includes(x.label))) {
  test(`kernel ${k.label} under qemu`, { timeout: 12 * 60_000 }, async (t) => {
    const helper = helperPath();
    if (!existsSync(helper)) {
      t.skip(`the helper is not built (${helper}): run make -C helper`);
      return;
    }
    const run = await bootGuest({ kernel: k.label, helper, cases: plan(k), timeoutMs: 11 * 60_000 });
    console.log(report(run));
    assert.equal(run.fatal, undefined, `guest setup failed: ${run.fatal}`);

    await t.test(`auto picks ${k.backends[0]}`, () => {
      const c = getCase(run, 'auto');
      assertClean(c);
      assert.equal(c.ready?.backend, k.backends[0], describeCase(c));
    });

    for (const b of k.backends) {
      await t.test(`${b}: traces the UDP flow and the iptables drop`, () => {
        const c = getCase(run, `trace-${b}`);
        assertClean(c);
        assert.equal(c.ready?.backend, b, describeCase(c));
        assert.ok((c.ready?.attached ?? 0) > 0, describeCase(c));

        const delivered = eventsTo(c, PASS_PORT);
        assert.ok(delivered.length > 0, `no events for the delivered packets: ${describeCase(c)}`);
        const funcs = new Set(delivered.map((e) => e.func));
        for (const f of b === 'tracepoint' ? EXPECTED_TRACEPOINT_PATH : EXPECTED_KPROBE_PATH) {
          assert.ok(funcs.has(f), `${f} missing from the delivered packet's path: ${[...funcs].join(', ')}`);
        }
        for (const e of delivered) assert.equal(e.drop, undefined, `delivered packet dropped at ${e.func}`);

        const drops = eventsTo(c, DROP_PORT).filter((e) => e.drop);
        assert.ok(drops.length > 0, `no drop reported for :${DROP_PORT}: ${describeCase(c)}`);
        for (const d of drops) {
          assert.equal(d.drop?.reason, k.dropReason, JSON.stringify(d));
          // The drop tracepoint fires in the receiving namespace, where the rule is.
          assert.equal(d.func, 'kfree_skb', JSON.stringify(d));
          assert.equal(String(d.netns), run.info.netns_inode_ns2, JSON.stringify(d));
        }
      });

      await t.test(`${b}: the pcap filter keeps other traffic out in the kernel`, () => {
        const c = getCase(run, `trace-${b}`);
        const noise = c.events.filter((e) => e.tuple?.sport === NOISE_PORT || e.tuple?.dport === NOISE_PORT);
        assert.equal(noise.length, 0, `events for :${NOISE_PORT}: ${JSON.stringify(noise[0])}`);
        const s = finalStats(c);
        assert.ok(s.seen > s.emitted, `seen ${s.seen} should exceed emitted ${s.emitted}`);
        assertAccounted(c);
      });
    }

    await t.test('only non-matching traffic: probes are hit, nothing is emitted', () => {
      const c = getCase(run, 'noise');
      assertClean(c);
      const s = finalStats(c);
      assert.equal(c.events.length, 0, `events: ${JSON.stringify(c.events[0])}`);
      assert.equal(s.emitted, 0, JSON.stringify(s));
      assert.ok(s.seen >= NOISE_PACKETS, `seen ${s.seen}: the probes should have seen the noise`);
    });

    await t.test(
      '--all-kmods probes functions of modules (veth) from their BTF, or says the kernel has none',
      () => {
        const c = getCase(run, 'kmods');
        assertClean(c);
        const funcs = new Set(eventsTo(c, PASS_PORT).map((e) => e.func));
        assert.ok(funcs.has('ip_rcv'), `ip_rcv missing: ${[...funcs].join(', ')}`);
        if (k.moduleBtf) {
          assert.ok(
            funcs.has('veth_xmit'),
            `veth_xmit missing: ${[...funcs].join(', ')}; ${describeCase(c)}`,
          );
        } else {
          assert.ok(!funcs.has('veth_xmit'), describeCase(c));
          assert.ok(
            c.warnings.some((w) => w.code === 'no_module_btf'),
            `no warning about module BTF: ${JSON.stringify(c.warnings)}`,
          );
        }
      },
    );

    await t.test('--filter-netns keeps only the receiving namespace', () => {
      const c = getCase(run, 'netns');
      assertClean(c);
      assert.ok(c.events.length > 0, describeCase(c));
      const elsewhere = c.events.filter((e) => String(e.netns) !== run.info.netns_inode_ns2);
      assert.equal(elsewhere.length, 0, `events outside ns2: ${JSON.stringify(elsewhere[0])}`);
      const funcs = new Set(c.events.map((e) => e.func));
      assert.ok(funcs.has('ip_rcv'), `ip_rcv (in ns2) missing: ${[...funcs].join(', ')}`);
      assert.ok(!funcs.has('ip_output'), 'ip_output runs in ns1 and must be filtered out');
    });

    if (!k.backends.includes('kprobe-multi')) {
      await t.test('forcing kprobe-multi fails with an error the user can read', () => {
        const c = getCase(run, 'force-kprobe-multi');
        assert.notEqual(c.exitCode, 0, describeCase(c));
        assert.ok(c.errors.length > 0 || c.stderr.trim() !== '', describeCase(c));
      });
    }

    for (const b of k.backends) {
      await t.test(`${b}: attaches its probe set (timing is reported, not asserted)`, () => {
        const c = getCase(run, `attach-${b}`);
        assertClean(c);
        assert.equal(c.ready?.backend, b, describeCase(c));
        assert.ok((c.ready?.attached ?? 0) > 0, describeCase(c));
      });
    }

    if (k.backends.includes('kprobe-multi')) {
      await t.test(
        "kprobe-multi: the functions judged traceable by their first bytes are those of ftrace's list",
        () => {
          const byCode = getCase(run, 'attach-kprobe-multi');
          const byList = getCase(run, 'attach-kprobe-multi-list');
          assertClean(byCode);
          assertClean(byList);
          const names = (c: CaseResult) =>
            (c.ready?.probes ?? [])
              .filter((p) => p.kind === 'kprobe-multi')
              .map((p) => p.name)
              .sort();
          const code = names(byCode);
          const list = names(byList);
          assert.ok(list.length > 1000, describeCase(byList));
          assert.deepEqual(
            code.filter((n) => !list.includes(n)),
            [],
            'judged traceable, not in the list',
          );
          assert.deepEqual(
            list.filter((n) => !code.includes(n)),
            [],
            'in the list, not judged traceable',
          );
          assert.equal(byCode.ready?.attached, byList.ready?.attached, describeCase(byCode));
          assert.equal(byCode.ready?.skipped, 0, describeCase(byCode));
        },
      );
    }

    // The programs stop before the final STATS (they return at once, and the
    // helper waits for those running), so that the final STATS account for all
    // the kernel emitted, and END comes before the slow detach.
    // Function probes are the kernel's to remove after the helper's exit (helper/link_handoff.h): it does,
    // and nothing stays attached.
    await t.test('after each run the kernel lists no probe that was not there before it', () => {
      for (const c of run.cases.values()) {
        assert.ok(
          Number.isFinite(c.marks.clean),
          `${c.name}: the kernel's lists never came back: ${describeCase(c)}`,
        );
      }
    });

    await t.test('final STATS account for every event; END comes before the detach', () => {
      for (const c of run.cases.values()) {
        if (c.state !== 'ready' || c.stats.length === 0) continue;
        assertAccounted(c);
        assertDetachedAfterEnd(c);
      }
    });

    if (k.backends.includes('kprobe')) {
      await t.test(
        `plain kprobes under a soft limit of ${LOW_NOFILE} descriptors: the helper raises it`,
        () => {
          const c = getCase(run, 'attach-kprobe');
          assertClean(c);
          assert.ok((c.ready?.attached ?? 0) > LOW_NOFILE / 2, describeCase(c));
        },
      );

      await t.test('running out of descriptors is an error, never skipped functions', () => {
        const c = getCase(run, 'nofile-capped');
        assert.equal(c.decodeError, undefined, describeCase(c));
        assert.equal(c.ready, undefined, `READY after running out of descriptors: ${describeCase(c)}`);
        assert.equal(c.exitCode, 1, describeCase(c));
        assert.equal(c.errors[0]?.code, 'attach_failed', describeCase(c));
        assert.match(c.errors[0]?.message ?? '', /out of file descriptors/, describeCase(c));
        // What did attach is detached before the exit, with progress to the end.
        const last = c.progress.at(-1);
        assert.equal(last?.phase, 'detach', describeCase(c));
        assert.equal(last?.done, last?.total, describeCase(c));
      });

      await t.test('Ctrl-C during a long attach: END at once, then everything attached is detached', () => {
        const c = getCase(run, 'stop-attaching');
        assert.equal(c.decodeError, undefined, describeCase(c));
        assert.equal(c.state, 'attaching', describeCase(c));
        assert.equal(c.ready, undefined, describeCase(c));
        assert.equal(c.exitCode, 0, describeCase(c));
        assert.equal(c.end?.reason, 'signal', describeCase(c));
        assert.ok(
          c.progress.some((p) => p.phase === 'attach' && p.done > 0 && p.done < p.total),
          `no attach progress before the stop: ${JSON.stringify(c.progress)}`,
        );
        assertDetachedAfterEnd(c);
      });
    }
  });
}
