/**
 * Drops by BPF programs named, on this kernel (no fentry: the programs the
 * kernel says are attached where it dropped the packet, `method: "attached"`,
 * and a warning that says the programs themselves could not be traced; the
 * exact method is tested in the qemu matrix, test/kernel-matrix/programs.test.ts). A tc ingress program
 * (clsact, direct action) and an XDP program, built here with clang, drop one
 * UDP port each on the receiving veth; XDP is tried generic and then native.
 * Each drop's culprit line must name the program (id, name and tag as the
 * kernel lists them), the interface, the direction and the verdict.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceCulprit, TraceEvent, TraceLine } from '../../src/record/event';
import { buildDropPrograms, tcFilterArgs } from './drop-programs';
import { NetLab } from './netlab';
import { startTrace } from './tracer';

/** "id 123 name pwru_tc_drop tag 0123456789abcdef", as tc and ip print an attached program. */
function listed(text: string, name: string): { id: number; tag: string } {
  const m = new RegExp(`id (\\d+) name ${name} tag ([0-9a-f]{16})`).exec(text);
  assert.ok(m, `${name} is attached:\n${text}`);
  return { id: Number(m[1]), tag: m[2] };
}

describe('drops by tc and XDP programs name the programs attached there', () => {
  const lab = new NetLab();
  const dir = mkdtempSync(join(tmpdir(), 'pwru-culprits-bpf-'));
  const obj = join(dir, 'drop.bpf.o');
  let a = '';
  let b = '';
  let dst = '';

  before(() => {
    buildDropPrograms(obj);
    [a, b] = lab.pair();
    dst = lab.v4(1, 2);
    const tcFilter = (ns: string, dev: string, dir: 'ingress' | 'egress', sec: string) =>
      lab.exec(ns, 'tc', tcFilterArgs(dev, dir, obj, sec));
    lab.exec(b, 'tc', ['qdisc', 'add', 'dev', 'vb1', 'clsact']);
    tcFilter(b, 'vb1', 'ingress', 'tc/ingress');
    // On the sender's side, a program that drops another port on its way out.
    lab.exec(a, 'tc', ['qdisc', 'add', 'dev', 'va1', 'clsact']);
    tcFilter(a, 'va1', 'egress', 'tc/egress');
    lab.exec(b, 'ip', ['link', 'set', 'dev', 'vb1', 'xdpgeneric', 'obj', obj, 'sec', 'xdp']);
  });
  after(() => {
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('tc ingress and egress (clsact), XDP (generic, then native): program, interface, direction, verdict', async () => {
    const tc = listed(lab.exec(b, 'tc', ['filter', 'show', 'dev', 'vb1', 'ingress']), 'pwru_tc_drop');
    const egress = listed(lab.exec(a, 'tc', ['filter', 'show', 'dev', 'va1', 'egress']), 'pwru_tc_egress');
    const generic = listed(lab.exec(b, 'ip', ['link', 'show', 'dev', 'vb1']), 'pwru_xdp_drop');
    const trace = startTrace([`udp and host ${dst}`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '6201', '1']);
    lab.traffic(a, ['udp', dst, '6203', '1']);
    lab.traffic(a, ['udp', dst, '6202', '1']);
    // The same program, attached natively instead (veth runs XDP itself then).
    lab.exec(b, 'ip', ['link', 'set', 'dev', 'vb1', 'xdpgeneric', 'off']);
    lab.exec(b, 'ip', ['link', 'set', 'dev', 'vb1', 'xdpdrv', 'obj', obj, 'sec', 'xdp']);
    const native = listed(lab.exec(b, 'ip', ['link', 'show', 'dev', 'vb1']), 'pwru_xdp_drop');
    lab.traffic(a, ['udp', dst, '6202', '1']);
    const { code, stderr, lines } = await trace.stop();
    assert.equal(code, 0, stderr);
    // This kernel refuses fexit on programs (as fentry anywhere): the fallback is said, and no run is shown.
    assert.match(
      stderr,
      /tc and XDP drops name the programs attached there, not the one that returned the drop/,
    );

    const all = lines as TraceLine[];
    const events = all.filter((l): l is TraceEvent => l.type === 'event');
    const culprits = all.filter((l): l is TraceCulprit => l.type === 'culprit');
    assert.deepEqual(
      all.filter((l) => l.type === 'prog'),
      [],
    );
    const ifindex = Number(/^(\d+):/.exec(lab.exec(b, 'ip', ['-o', 'link', 'show', 'dev', 'vb1']))?.[1]);
    const dropsTo = (port: number) => events.filter((e) => e.drop && e.tuple?.dport === port);
    const culpritOf = (e: TraceEvent) => culprits.find((c) => c.skb === e.skb && c.ts === e.ts);

    const [tcDrop] = dropsTo(6201);
    assert.ok(tcDrop, `the tc program's drop is traced:\n${JSON.stringify(events, null, 1)}`);
    assert.deepEqual(culpritOf(tcDrop), {
      type: 'culprit',
      v: 1,
      ts: tcDrop.ts,
      skb: tcDrop.skb,
      netns: lab.inode(b),
      kind: 'tc',
      method: 'attached',
      iface: 'vb1',
      ifindex,
      direction: 'ingress',
      verdict: 'TC_ACT_SHOT',
      programs: [
        {
          id: tc.id,
          name: 'pwru_tc_drop',
          tag: tc.tag,
          attach: 'clsact',
          detail: 'filter drop.bpf.o:[tc/ingress] pref 49152 handle 0x1',
        },
      ],
    });

    const [egressDrop] = dropsTo(6203);
    assert.ok(egressDrop, "the egress program's drop is traced");
    const out = culpritOf(egressDrop);
    assert.equal(out?.netns, lab.inode(a));
    assert.equal(out?.iface, 'va1');
    assert.equal(out?.direction, 'egress');
    assert.equal(out?.verdict, 'TC_ACT_SHOT');
    assert.deepEqual(
      out?.programs?.map((p) => [p.id, p.name, p.tag, p.attach]),
      [[egress.id, 'pwru_tc_egress', egress.tag, 'clsact']],
    );

    const xdpDrops = dropsTo(6202);
    assert.equal(xdpDrops.length, 2, 'both XDP drops are traced');
    for (const [i, want] of [
      { ...generic, attach: 'xdp-generic' },
      { ...native, attach: 'xdp-native' },
    ].entries()) {
      const c = culpritOf(xdpDrops[i]);
      assert.ok(c, `a culprit for XDP drop ${i + 1}`);
      assert.equal(c.kind, 'xdp');
      assert.equal(c.method, 'attached');
      assert.equal(c.iface, 'vb1');
      assert.equal(c.ifindex, ifindex);
      assert.equal(c.verdict, 'XDP_DROP or XDP_ABORTED');
      assert.deepEqual(c.programs, [
        { id: want.id, name: 'pwru_xdp_drop', tag: want.tag, attach: want.attach },
      ]);
    }
  });
});
