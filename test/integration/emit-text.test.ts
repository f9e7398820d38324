/**
 * With `-o text` or `-o wide` to a file or a pipe on --local, the helper
 * writes the lines itself (--emit text|wide, helper/event_text.c) and sends
 * the client finished packets, grouped by shape, for its closing table
 * (helper/packet_book.c). Both must be exactly what the client makes of the
 * same events: four tracers run at once over the same traffic, for each view
 * one with the helper's lines (stdout a pipe) and one that reads every event
 * (an --output-file keeps the client on its own path); their stdout must be
 * the same, the closing table included, and --fail-on-drop must agree. The
 * culprits of drops by a tc program and by an iptables rule are lines of the
 * helper's too (it is the lines' one writer): the client's words, the tc one
 * right under its drop.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXIT_DROPPED } from '../../src/errors';
import { buildDropPrograms, tcFilterArgs } from './drop-programs';
import { NetLab } from './netlab';
import { CLI, RunningTrace, type TraceResult } from './tracer';

type View = 'text' | 'wide';

function tracer(view: View, filter: string, extra: string[]): RunningTrace {
  return new RunningTrace(
    spawn(
      process.execPath,
      [CLI, '--local', '-o', view, '--duration', '60s', '--fail-on-drop', ...extra, filter],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NO_COLOR: '1' },
      },
    ),
  );
}

/** The helper's argv, read while it runs: which lines it was asked to write. */
function helperArgv(cli: number): string[] {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== cli) continue;
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0].endsWith('pwru-helper')) return argv;
    } catch {
      // gone meanwhile
    }
  }
  return [];
}

/** stdout in parts: the event lines (wide: without the two clock columns), the notes under them, the rest. */
function partsOf(out: string, view: View): { lines: string[]; notes: string[]; rest: string } {
  const all = out.split('\n');
  const end = all.findIndex((l) => l === '' || l.startsWith('┌') || /^No packet matched/.test(l));
  const body = all.slice(1, end < 0 ? all.length : end);
  return {
    lines: body
      .filter((l) => !l.startsWith('    ↳'))
      .map((l) => (view === 'wide' ? l.replace(/^\S+ +\S+ +/, '') : l)),
    notes: body.filter((l) => l.startsWith('    ↳')).sort(),
    rest: [all[0], ...all.slice(end < 0 ? all.length : end)].join('\n'),
  };
}

describe('text and wide lines written by the helper', () => {
  const lab = new NetLab();
  const dir = mkdtempSync(join(tmpdir(), 'pwru-emit-text-'));
  const runs: Record<View, { helper?: TraceResult; client?: TraceResult; argv: string[] }> = {
    text: { argv: [] },
    wide: { argv: [] },
  };

  before(async () => {
    // One CPU: each tracer's ring buffer then lists the events in the same order.
    execFileSync('taskset', ['-p', '-c', '0', String(process.pid)]);
    const [a, b] = lab.pair();
    const server = lab.v4(1, 2);
    const service = lab.v4(9, 100);
    lab.exec(a, 'ip', ['route', 'add', `${lab.v4(9, 0)}/24`, 'via', server]);
    // DNAT to a port nothing listens on: a rewrite and a drop (NO_SOCKET) per packet.
    lab.exec(
      b,
      'iptables',
      ['-t', 'nat', '-A', 'PREROUTING', '-d', service, '-p', 'udp', '-j', 'DNAT'].concat([
        '--to-destination',
        `${server}:6999`,
      ]),
    );
    // Culprits: a tc program that drops UDP port 6201, and an iptables rule that drops port 6102.
    const obj = join(dir, 'drop.bpf.o');
    buildDropPrograms(obj);
    lab.exec(b, 'tc', ['qdisc', 'add', 'dev', 'vb1', 'clsact']);
    lab.exec(b, 'tc', tcFilterArgs('vb1', 'ingress', obj));
    lab.exec(b, 'iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '6102', '-j', 'DROP']);
    await lab.serve(b, ['tcp-serve', '7001']);
    const filter = `host ${server} or host ${service} or host ${lab.v6(1, 2)}`;
    const started = {
      text: {
        helper: tracer('text', filter, []),
        client: tracer('text', filter, ['--output-file', join(dir, 'text.jsonl')]),
      },
      wide: {
        helper: tracer('wide', filter, []),
        client: tracer('wide', filter, ['--output-file', join(dir, 'wide.jsonl')]),
      },
    };
    const all = [started.text.helper, started.text.client, started.wide.helper, started.wide.client];
    await Promise.all(all.map((t) => t.ready()));
    for (const view of ['text', 'wide'] as const)
      runs[view].argv = helperArgv(started[view].helper.child.pid ?? 0);
    // Over 40 packets (so the table has a row per flow, and shapes count), TCP (clones: copies go whole), IPv6.
    lab.traffic(a, ['udp', service, '6100', '60']);
    lab.traffic(a, ['tcp', server, '7001']);
    lab.traffic(a, ['tcp', lab.v6(1, 2), '7001']);
    lab.exec(a, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', lab.v6(1, 2)]);
    lab.traffic(a, ['udp', server, '6201', '2']);
    lab.traffic(a, ['udp', server, '6102', '2']);
    // The rule's culprit is read from its counters after the drop: let it be told before the stop.
    await Promise.all(all.map((t) => t.until('the rule named', (o) => o.includes('--dport 6102 -j DROP`'))));
    const [th, tc, wh, wc] = await Promise.all(all.map((t) => t.stop()));
    runs.text.helper = th;
    runs.text.client = tc;
    runs.wide.helper = wh;
    runs.wide.client = wc;
  });
  after(() => {
    lab.destroy();
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  for (const view of ['text', 'wide'] as const) {
    test(`-o ${view} to a pipe: the helper writes the lines, with the client's words`, () => {
      const argv = runs[view].argv;
      assert.ok(argv.includes('--emit') && argv[argv.indexOf('--emit') + 1] === view, argv.join(' '));
      assert.ok(argv.includes('--text-notes'), argv.join(' '));
    });

    test(`-o ${view}: the same lines, notes and closing table as the client's own from every event`, () => {
      const helper = runs[view].helper;
      const client = runs[view].client;
      assert.ok(helper && client);
      // --fail-on-drop: both saw the same real losses (the DNAT'd packets nobody listens for).
      assert.equal(helper.code, EXIT_DROPPED, helper.stderr);
      assert.equal(client.code, EXIT_DROPPED, client.stderr);
      const h = partsOf(helper.stdout, view);
      const c = partsOf(client.stdout, view);
      assert.ok(h.lines.length > 200, `only ${h.lines.length} lines`);
      assert.equal(h.lines.length, c.lines.length, 'not the same number of lines');
      for (let i = 0; i < h.lines.length; i++) assert.equal(h.lines[i], c.lines[i], `line ${i + 1} differs`);
      assert.deepEqual(h.notes, c.notes);
      const tcCulprit =
        /↳ 0x[0-9a-f]+ dropped by BPF program pwru_tc_drop \(id \d+, tag [0-9a-f]{16}, clsact filter drop\.bpf\.o:\[tc\/ingress\] pref \d+ handle 0x1\) at tc ingress of vb1:\d+, which returned TC_ACT_SHOT; known (exactly|because it is the one program attached there)/;
      assert.equal(h.notes.filter((n) => tcCulprit.test(n)).length, 2, h.notes.join('\n'));
      const ruleCulprit =
        /↳ 0x[0-9a-f]+ dropped by `-A INPUT -p udp -m udp --dport 6102 -j DROP` in filter\/INPUT \(rule 1 of INPUT, iptables-(nft|legacy)\); known because its counter moved/;
      assert.equal(h.notes.filter((n) => ruleCulprit.test(n)).length, 2, h.notes.join('\n'));
      // Known at the drop: right under its line (the same skb).
      assert.match(
        helper.stdout,
        /(0x[0-9a-f]{8,}) [^\n]*kfree_skb\([A-Z_]+\)[^\n]*\n {4}↳ \1 dropped by BPF program pwru_tc_drop/,
      );
      assert.equal(h.rest, c.rest);
      assert.match(h.rest, /\d+ packets, one row per flow:/);
      assert.match(h.rest, /dropped at \S+: NO_SOCKET/);
      assert.ok(
        h.lines.some((l) => /\[DNAT dst \S+ → \S+, dport 6100 → 6999/.test(l)),
        'the DNAT showed no change',
      );
      assert.ok(
        h.lines.some((l) => /\[[0-9a-f:]+\]:\d+->.*\(tcp:/.test(l)),
        'no TCP over IPv6',
      );
    });
  }
});
