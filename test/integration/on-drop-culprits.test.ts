/**
 * --on-drop names who dropped each reported packet, as the trace does: a
 * namespace with an iptables rule that drops UDP port 6102 and a tc program
 * that drops port 6201 on its interface; one datagram to each. Each report is
 * followed by its culprit (a "culprit" line with the report's number in
 * `-o json` and in the saved file; "↳ drop #N …" under it in text), and `show`
 * of the file says the same.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceCulprit, TraceDropReport, TraceLine } from '../../src/record/event';
import { buildDropPrograms, tcFilterArgs } from './drop-programs';
import { NetLab } from './netlab';
import { runCli, startTrace } from './tracer';

const RULE = '`-A INPUT -p udp -m udp --dport 6102 -j DROP` in filter/INPUT (rule 1 of INPUT, iptables-';

describe('--on-drop: the culprit under each report', () => {
  const lab = new NetLab();
  const dir = mkdtempSync(join(tmpdir(), 'pwru-on-drop-culprits-'));
  let a = '';
  let dst = '';

  before(() => {
    const obj = join(dir, 'drop.bpf.o');
    buildDropPrograms(obj);
    let b = '';
    [a, b] = lab.pair();
    dst = lab.v4(1, 2);
    lab.exec(b, 'tc', ['qdisc', 'add', 'dev', 'vb1', 'clsact']);
    lab.exec(b, 'tc', tcFilterArgs('vb1', 'ingress', obj));
    lab.exec(b, 'iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '6102', '-j', 'DROP']);
  });
  after(() => {
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('-o json and the saved file: each report, then its culprit with its number; show says it under the report', async () => {
    const file = join(dir, 'caught.jsonl');
    const trace = startTrace([
      '--on-drop',
      '--drops',
      '2',
      '--output-file',
      file,
      `udp and host ${dst} and (port 6102 or port 6201)`,
    ]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '6201', '1']);
    lab.traffic(a, ['udp', dst, '6102', '1']);
    const res = await trace.finished(); // --drops 2 ends it
    assert.equal(res.code, 0, res.stderr);

    for (const lines of [
      res.lines,
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ]) {
      const reports = (lines as TraceLine[]).filter((l): l is TraceDropReport => l.type === 'drop');
      const culprits = (lines as TraceLine[]).filter((l): l is TraceCulprit => l.type === 'culprit');
      assert.equal(reports.length, 2, JSON.stringify(lines));
      assert.equal(culprits.length, 2, JSON.stringify(culprits));
      const byPort = (port: number) => reports.find((r) => r.flow?.dport === port);
      const tc = byPort(6201);
      const nf = byPort(6102);
      assert.ok(tc && nf, JSON.stringify(reports.map((r) => r.flow)));
      const culpritOf = (r: TraceDropReport) => culprits.find((c) => c.drop === r.n);
      const tcCulprit = culpritOf(tc);
      assert.equal(tcCulprit?.kind, 'tc');
      assert.deepEqual(
        tcCulprit?.programs?.map((p) => p.name),
        ['pwru_tc_drop'],
      );
      // The culprit names the reported drop: its skb and time are the dropped packet's last step's.
      const last = tc.bad.events[tc.bad.events.length - 1];
      assert.equal(tcCulprit?.skb, last.skb);
      assert.equal(tcCulprit?.ts, last.ts);
      const nfCulprit = culpritOf(nf);
      assert.equal(nfCulprit?.kind, 'netfilter');
      assert.equal(nfCulprit?.method, 'counters', JSON.stringify(nfCulprit));
      assert.equal(nfCulprit?.rule?.text, '-A INPUT -p udp -m udp --dport 6102 -j DROP');
    }

    const shown = await runCli(['show', file, '--no-color']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /↳ drop #\d dropped by BPF program pwru_tc_drop \(id \d+/);
    assert.ok(shown.stdout.includes(`dropped by ${RULE}`), shown.stdout);
    // Each under its own report: the report's heading comes before it, and no other report in between.
    for (const m of shown.stdout.matchAll(/↳ drop #(\d)/g)) {
      const before = shown.stdout.slice(0, m.index);
      const heading = [...before.matchAll(/── drop #(\d) at/g)].at(-1);
      assert.equal(heading?.[1], m[1], shown.stdout);
    }
  });
});
