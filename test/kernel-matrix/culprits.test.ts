/**
 * Culprits of netfilter drops on kernels with function probes (the qemu
 * matrix): the table and chain that returned NF_DROP come from the kernel's
 * own table walker (fexit on ipt_do_table, helper/nf_exact.c), exactly, and
 * the rule inside it from its counter (docs/record-stream.md, "Culprits").
 * The guest's ns2 drops UDP to :9001 with `iptables-legacy -A INPUT -p udp
 * --dport 9001 -j DROP` (guest/init.sh). The tracepoint backend beside it
 * names the rule by counters alone and says nothing of the chain.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { CulpritInfo } from '../../src/record/decode';
import type { ProbeKind } from '../../src/record/event';
import { bootGuest, type CaseResult, type CaseSpec, repoRoot } from './guest';

const FILTER = 'udp and (dst port 9000 or dst port 9001)';
const DROP_PORT = 9001;
const RULE_TEXT = '-A INPUT -p udp -m udp --dport 9001 -j DROP';
/** Few functions: plain kprobes attach and detach slowly under emulation. */
const FUNCS = '^(ip_rcv|ip_local_deliver|nf_hook_slow)$';

const KERNELS: { label: string; functionBackends: ProbeKind[] }[] = [
  { label: '6.1', functionBackends: ['kprobe'] },
  { label: '6.12', functionBackends: ['kprobe-multi', 'kprobe'] },
];

function plan(backends: ProbeKind[]): CaseSpec[] {
  const cases: CaseSpec[] = backends.map((b) => ({
    name: `exact-${b}`,
    traffic: 'full',
    readyTimeout: 120,
    args: ['--backend', b, '--filter-func', FUNCS, '--', FILTER],
  }));
  cases.push({
    name: 'counters-tracepoint',
    traffic: 'full',
    readyTimeout: 120,
    args: ['--backend', 'tracepoint', '--', FILTER],
  });
  return cases;
}

function describe(c: CaseResult): string {
  return `case ${c.name}: state=${c.state} exit=${c.exitCode} events=${c.events.length} culprits=${JSON.stringify(
    c.culprits,
  )} warnings=${JSON.stringify(c.warnings)} errors=${JSON.stringify(c.errors)}\nstderr: ${c.stderr.slice(-2000)}`;
}

/** The NETFILTER_DROPs of :9001 and the culprit of each (by the drop event's skb and ts). */
function dropsWithCulprits(c: CaseResult): { drop: string; culprit: CulpritInfo | undefined }[] {
  const drops = c.events.filter((e) => e.drop && e.tuple?.dport === DROP_PORT);
  assert.ok(drops.length > 0, `no drop of :${DROP_PORT}: ${describe(c)}`);
  return drops.map((d) => {
    assert.equal(d.drop?.reason, 'NETFILTER_DROP', JSON.stringify(d));
    return { drop: JSON.stringify(d), culprit: c.culprits.find((x) => x.skb === d.skb && x.ts === d.ts) };
  });
}

/** Each drop's rule is the DROP rule by its counter, or said to be unknown: never another rule. */
function assertRuleByCounters(c: CaseResult, culprits: CulpritInfo[]): void {
  for (const k of culprits) {
    if (k.method === 'none') continue;
    assert.equal(k.method, 'counters', JSON.stringify(k));
    assert.equal(k.rule?.text, RULE_TEXT, JSON.stringify(k));
    assert.equal(k.rule?.tool, 'iptables-legacy', JSON.stringify(k));
    assert.equal(k.rule?.position, 1, JSON.stringify(k));
  }
  assert.ok(
    culprits.some((k) => k.method === 'counters'),
    `no drop's rule was named by its counter: ${describe(c)}`,
  );
}

const only = process.env.KERNEL_MATRIX_ONLY?.split(',');

for (const k of KERNELS.filter((x) => !only || only.includes(x.label))) {
  test(`kernel ${k.label} under qemu: netfilter culprits`, { timeout: 8 * 60_000 }, async (t) => {
    const helper = path.join(repoRoot(), 'helper/build/amd64/pwru-helper');
    if (!existsSync(helper)) {
      t.skip(`the helper is not built (${helper}): run make -C helper`);
      return;
    }
    const run = await bootGuest({
      kernel: k.label,
      helper,
      cases: plan(k.functionBackends),
      timeoutMs: 7 * 60_000,
    });
    assert.equal(run.fatal, undefined, `guest setup failed: ${run.fatal}`);

    for (const b of k.functionBackends) {
      await t.test(`${b}: the table and chain exactly, from ipt_do_table; the rule by counters`, () => {
        const c = run.cases.get(`exact-${b}`);
        assert.ok(c, `case exact-${b} did not run`);
        assert.equal(c.exitCode, 0, describe(c));
        assert.deepEqual(c.errors, [], describe(c));
        assert.ok(!c.warnings.some((w) => w.code === 'netfilter_not_exact'), describe(c));
        const pairs = dropsWithCulprits(c);
        for (const { drop, culprit } of pairs) {
          assert.ok(culprit, `no culprit for ${drop}: ${describe(c)}`);
          assert.equal(culprit.kind, 'netfilter', JSON.stringify(culprit));
          assert.deepEqual(
            culprit.chain,
            {
              method: 'exact',
              by: 'ipt_do_table',
              family: 'ip',
              table: 'filter',
              chain: 'INPUT',
              hook: 'INPUT',
            },
            JSON.stringify(culprit),
          );
        }
        assertRuleByCounters(
          c,
          pairs.map((p) => p.culprit as CulpritInfo),
        );
      });
    }

    await t.test('tracepoint backend: the rule by counters, no word on the chain', () => {
      const c = run.cases.get('counters-tracepoint');
      assert.ok(c, 'case counters-tracepoint did not run');
      assert.equal(c.exitCode, 0, describe(c));
      const pairs = dropsWithCulprits(c);
      const culprits = pairs.map((p) => {
        assert.ok(p.culprit, `no culprit for ${p.drop}: ${describe(c)}`);
        assert.equal(p.culprit.chain, undefined, JSON.stringify(p.culprit));
        return p.culprit;
      });
      assertRuleByCounters(c, culprits);
    });
  });
}
