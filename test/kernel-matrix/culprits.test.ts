/**
 * Culprits of netfilter drops on kernels with function probes (the qemu
 * matrix): the table and chain that returned NF_DROP come from the kernel's
 * own table walkers (fexit on ipt_do_table and nft_do_chain,
 * helper/nf_exact.c), exactly, and the rule inside from its counter
 * (docs/record-stream.md, "Culprits"); nft's rule, whose drop verdict is an
 * immediate one, exactly too (nft-rules.test.ts tells more of that). The guest's ns2 drops UDP to :9001
 * with `iptables-legacy -A INPUT -p udp --dport 9001 -j DROP` and to :9002
 * with nft's `udp dport 9002 counter drop` in inet pwru/in (guest/init.sh).
 * The tracepoint backend beside them names the rule by counters alone and
 * says nothing of the chain.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { CulpritInfo } from '../../src/record/decode';
import type { CulpritChain, ProbeKind } from '../../src/record/event';
import { bootGuest, type CaseResult, type CaseSpec, type GuestRun, repoRoot } from './guest';

/** A flow the guest drops, and what its drops' culprits must say. */
interface DropFlow {
  name: string;
  traffic: CaseSpec['traffic'];
  filter: string;
  port: number;
  chain: CulpritChain;
  rule: { tool: string; text: RegExp };
  /** With function probes, how the rule is known: by its counter, or exactly (an nft immediate drop verdict). */
  method: 'counters' | 'exact';
}

const FLOWS: DropFlow[] = [
  {
    name: 'iptables',
    traffic: 'full',
    filter: 'udp and (dst port 9000 or dst port 9001)',
    port: 9001,
    chain: {
      method: 'exact',
      by: 'ipt_do_table',
      family: 'ip',
      table: 'filter',
      chain: 'INPUT',
      hook: 'INPUT',
    },
    rule: { tool: 'iptables-legacy', text: /^-A INPUT -p udp -m udp --dport 9001 -j DROP$/ },
    method: 'counters',
  },
  {
    name: 'nft',
    traffic: 'nft',
    filter: 'udp and dst port 9002',
    port: 9002,
    chain: { method: 'exact', by: 'nft_do_chain', family: 'inet', table: 'pwru', chain: 'in', hook: 'input' },
    rule: { tool: 'nft', text: /^udp dport 9002 counter drop$/ },
    method: 'exact',
  },
];
/** Few functions: plain kprobes attach and detach slowly under emulation. */
const FUNCS = '^(ip_rcv|ip_local_deliver|nf_hook_slow)$';

const KERNELS: { label: string; functionBackends: ProbeKind[] }[] = [
  { label: '6.1', functionBackends: ['kprobe'] },
  { label: '6.12', functionBackends: ['kprobe-multi', 'kprobe'] },
];

/** Both rules drop within one reading's span: only the kernel's word on the chain tells the rules apart. */
const BOTH_FILTER = 'udp and (dst port 9001 or dst port 9002)';

function plan(backends: ProbeKind[]): CaseSpec[] {
  const both: CaseSpec[] = [...backends, 'tracepoint' as ProbeKind].map((b) => ({
    name: `both-${b}`,
    traffic: 'both',
    readyTimeout: 120,
    args: ['--backend', b, ...(b === 'tracepoint' ? [] : ['--filter-func', FUNCS]), '--', BOTH_FILTER],
  }));
  return FLOWS.flatMap((f) => [
    ...backends.map((b) => ({
      name: `exact-${f.name}-${b}`,
      traffic: f.traffic,
      readyTimeout: 120,
      args: ['--backend', b, '--filter-func', FUNCS, '--', f.filter],
    })),
    {
      name: `counters-${f.name}-tracepoint`,
      traffic: f.traffic,
      readyTimeout: 120,
      args: ['--backend', 'tracepoint', '--', f.filter],
    },
  ]).concat(both);
}

function describe(c: CaseResult): string {
  return `case ${c.name}: state=${c.state} exit=${c.exitCode} events=${c.events.length} culprits=${JSON.stringify(
    c.culprits,
  )} warnings=${JSON.stringify(c.warnings)} errors=${JSON.stringify(c.errors)}\nstderr: ${c.stderr.slice(-2000)}`;
}

/** The case, run cleanly; and the culprit of each NETFILTER_DROP of the flow's port (by the drop event's skb and ts). */
function culpritsOfDrops(
  run: GuestRun,
  name: string,
  f: DropFlow,
): { c: CaseResult; culprits: CulpritInfo[] } {
  const c = run.cases.get(name);
  assert.ok(c, `case ${name} did not run (fatal: ${run.fatal ?? '-'})`);
  assert.equal(c.exitCode, 0, describe(c));
  assert.deepEqual(c.errors, [], describe(c));
  const drops = c.events.filter((e) => e.drop && e.tuple?.dport === f.port);
  assert.ok(drops.length > 0, `no drop of :${f.port}: ${describe(c)}`);
  const culprits = drops.map((d) => {
    assert.equal(d.drop?.reason, 'NETFILTER_DROP', JSON.stringify(d));
    const k = c.culprits.find((x) => x.skb === d.skb && x.ts === d.ts);
    assert.ok(k, `no culprit for ${JSON.stringify(d)}: ${describe(c)}`);
    assert.equal(k.kind, 'netfilter', JSON.stringify(k));
    return k;
  });
  return { c, culprits };
}

/** Each drop's rule is the flow's rule by its counter, or said to be unknown: never another rule. */
function assertRuleByCounters(c: CaseResult, f: DropFlow, culprits: CulpritInfo[]): void {
  for (const k of culprits) {
    if (k.method === 'none') continue;
    assert.equal(k.method, 'counters', JSON.stringify(k));
    assert.equal(k.rule?.tool, f.rule.tool, JSON.stringify(k));
    assert.match(k.rule?.text ?? '', f.rule.text, JSON.stringify(k));
  }
  assert.ok(
    culprits.some((k) => k.method === 'counters'),
    `no drop's rule was named by its counter: ${describe(c)}`,
  );
}

/** With function probes: by counters as above, or for an immediate drop verdict every drop's rule exactly. */
function assertRule(c: CaseResult, f: DropFlow, culprits: CulpritInfo[]): void {
  if (f.method === 'counters') {
    assertRuleByCounters(c, f, culprits);
    return;
  }
  for (const k of culprits) {
    assert.equal(k.method, 'exact', JSON.stringify(k));
    assert.equal(k.rule?.tool, f.rule.tool, JSON.stringify(k));
    assert.match(k.rule?.text ?? '', f.rule.text, JSON.stringify(k));
    assert.equal(typeof k.rule?.handle, 'number', JSON.stringify(k));
  }
}

const only = process.env.KERNEL_MATRIX_ONLY?.split(',');

for (const k of KERNELS.filter((x) => !only || only.includes(x.label))) {
  test(`kernel ${k.label} under qemu: netfilter culprits`, { timeout: 10 * 60_000 }, async (t) => {
    const helper = path.join(repoRoot(), 'helper/build/amd64/pwru-helper');
    if (!existsSync(helper)) {
      t.skip(`the helper is not built (${helper}): run make -C helper`);
      return;
    }
    const run = await bootGuest({
      kernel: k.label,
      helper,
      cases: plan(k.functionBackends),
      timeoutMs: 9 * 60_000,
    });
    assert.equal(run.fatal, undefined, `guest setup failed: ${run.fatal}`);

    for (const f of FLOWS) {
      for (const b of k.functionBackends) {
        await t.test(
          `${f.name}, ${b}: the table and chain exactly, from ${f.chain.by}; the rule ${f.method === 'exact' ? 'exactly' : 'by counters'}`,
          () => {
            const { c, culprits } = culpritsOfDrops(run, `exact-${f.name}-${b}`, f);
            assert.ok(!c.warnings.some((w) => w.code === 'netfilter_not_exact'), describe(c));
            for (const x of culprits) assert.deepEqual(x.chain, f.chain, JSON.stringify(x));
            assertRule(c, f, culprits);
          },
        );
      }

      await t.test(`${f.name}, tracepoint backend: the rule by counters, no word on the chain`, () => {
        const { c, culprits } = culpritsOfDrops(run, `counters-${f.name}-tracepoint`, f);
        for (const x of culprits) assert.equal(x.chain, undefined, JSON.stringify(x));
        assertRuleByCounters(c, f, culprits);
      });
    }

    for (const b of [...k.functionBackends, 'tracepoint' as ProbeKind]) {
      await t.test(`both rules drop at once, ${b}: each drop's rule is its own, never the other's`, () => {
        const name = `both-${b}`;
        const c = run.cases.get(name);
        assert.ok(c, `case ${name} did not run`);
        assert.equal(c.exitCode, 0, describe(c));
        // How each drop's rule was told, for the log: without the chain, both moving rules may hide each other.
        console.log(
          `${k.label} ${name}: ${c.culprits.map((x) => `${x.method}${x.candidates ? `(${x.candidates.length} candidates)` : ''}`).join(', ')}`,
        );
        for (const f of FLOWS) {
          const drops = c.events.filter((e) => e.drop && e.tuple?.dport === f.port);
          assert.ok(drops.length > 0, `no drop of :${f.port}: ${describe(c)}`);
          const culprits = drops.map((d) => {
            const x = c.culprits.find((y) => y.skb === d.skb && y.ts === d.ts);
            assert.ok(x, `no culprit for ${JSON.stringify(d)}: ${describe(c)}`);
            if (b !== 'tracepoint') assert.deepEqual(x.chain, f.chain, JSON.stringify(x));
            if (x.method !== 'none') assert.match(x.rule?.text ?? '', f.rule.text, JSON.stringify(x));
            return x;
          });
          // With the chain from the kernel, the other table's moving rule does not hide this one.
          if (b !== 'tracepoint') assertRule(c, f, culprits);
        }
      });
    }
  });
}
