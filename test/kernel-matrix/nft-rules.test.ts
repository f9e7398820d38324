/**
 * The rule of nf_tables that dropped a packet, named exactly on kernels with
 * function probes (the qemu matrix): fexit on nft_immediate_eval finds the
 * rule whose drop verdict ran by walking the rules of the chains the
 * nft_do_chain call entered (bpf/nf_verdict.bpf.c), and the helper names it
 * by its handle as `nft -a list ruleset` prints it, or for iptables-nft as
 * `iptables-nft-save` does, at the handle's rank in its chain
 * (helper/culprit_netfilter.c, nf_rule_by_handle). Rules that do not drop
 * these flows stand around them, and the flows jump into user chains and
 * back; over IPv4 and IPv6 (ip6tables-nft), and ARP (arptables-nft, whose
 * rules no tool of the helper's reads but nft: named as nft prints them). A
 * drop no immediate verdict made (a vmap's) is never named exactly: its rule
 * comes from the counters, or could not be told.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { describeCulprit } from '../../src/reading/culprits';
import type { CulpritInfo } from '../../src/record/decode';
import type { CulpritChain, CulpritRule, ProbeKind } from '../../src/record/event';
import { bootGuest, type CaseResult, type GuestRun, repoRoot } from './guest';

/**
 * ns2's rules beside guest/init.sh's own: a native table of its own (priority 10, after inet pwru/in)
 * and iptables-nft's ip filter. Each dumped with its handles for the test to read them (GuestRun.info).
 */
const SETUP = `
in_ns ns2 nft -f - <<'EOF' 2>/tmp/setup.err || fail "nft: $(cat /tmp/setup.err)"
table inet exact {
  chain sub {
    udp dport 9030 counter drop
    udp dport 9022 counter drop
  }
  chain in {
    type filter hook input priority 10; policy accept;
    udp dport 9020 counter drop
    udp dport 9021 counter accept
    udp dport { 9022, 9023 } counter jump sub
    udp dport 9023 counter drop
    udp dport 9026 counter udp dport vmap { 9026 : drop }
  }
}
EOF
for r in '-N PWRU-SUB' \\
  '-A INPUT -p udp --dport 9040 -j DROP' \\
  '-A INPUT -p tcp -j ACCEPT' \\
  '-A INPUT -p udp --dport 9041 -j PWRU-SUB' \\
  '-A INPUT -p udp --dport 9042 -j PWRU-SUB' \\
  '-A PWRU-SUB -p udp --dport 9043 -j DROP' \\
  '-A PWRU-SUB -p udp --dport 9041 -j DROP' \\
  '-A INPUT -p udp --dport 9042 -j DROP'; do
  in_ns ns2 iptables-nft $r 2>/tmp/setup.err || fail "iptables-nft $r: $(cat /tmp/setup.err)"
done
ip -n ns1 addr add fd00:200::1/64 dev veth1 nodad || fail "ip -6 addr ns1"
ip -n ns2 addr add fd00:200::2/64 dev veth2 nodad || fail "ip -6 addr ns2"
for r in '-N PWRU-SUB' \\
  '-A INPUT -p udp --dport 9060 -j DROP' \\
  '-A INPUT -p udp --dport 9061 -j DROP' \\
  '-A INPUT -p udp --dport 9062 -j PWRU-SUB' \\
  '-A PWRU-SUB -p udp --dport 9062 -j DROP'; do
  in_ns ns2 ip6tables-nft $r 2>/tmp/setup.err || fail "ip6tables-nft $r: $(cat /tmp/setup.err)"
done
for r in '-A INPUT -d 10.200.1.98 -j DROP' '-A INPUT -d 10.200.1.99 -j DROP'; do
  in_ns ns2 arptables-nft $r 2>/tmp/setup.err || fail "arptables-nft $r: $(cat /tmp/setup.err)"
done
# Neighbours resolved now, so that the first traced datagram is not held for them.
in_ns ns1 udpkit send fd00:200::2 7777 1
say info nft_exact "$(in_ns ns2 nft -a list table inet exact | tr '\\n' '|')"
say info nft_ip_filter "$(in_ns ns2 nft -a list table ip filter | tr '\\n' '|')"
say info nft_ip6_filter "$(in_ns ns2 nft -a list table ip6 filter | tr '\\n' '|')"
say info nft_arp_filter "$(in_ns ns2 nft -a list table arp filter | tr '\\n' '|')"
`;

/**
 * A flow the setup drops, and the rule that must be named: its handle read from nft's listing, and
 * for nft's own rules its text too (the line without counter values and handle).
 */
interface Flow {
  /** The UDP port it goes to; 0: the ARP requests. */
  port: number;
  /** The table nft lists it in (GuestRun.info key) and its line there. */
  listing: string;
  nftLine: RegExp;
  rule: Omit<CulpritRule, 'handle' | 'text'> & { text?: string };
  chain: CulpritChain;
}

const NFT_CHAIN: CulpritChain = {
  method: 'exact',
  by: 'nft_do_chain',
  family: 'inet',
  table: 'exact',
  chain: 'in',
  hook: 'input',
};
const IPT_CHAIN: CulpritChain = {
  method: 'exact',
  by: 'nft_do_chain',
  family: 'ip',
  table: 'filter',
  chain: 'INPUT',
  hook: 'input',
};

const FLOWS: Flow[] = [
  // Jumped to sub, dropped there by its second rule.
  {
    port: 9022,
    listing: 'nft_exact',
    nftLine: /^udp dport 9022 counter packets \d+ bytes \d+ drop # handle (\d+)$/,
    rule: {
      tool: 'nft',
      family: 'inet',
      table: 'exact',
      chain: 'sub',
      hook: 'input',
      position: 2,
      text: 'udp dport 9022 counter drop',
    },
    chain: NFT_CHAIN,
  },
  // Jumped to sub and back (nothing there drops it), dropped in the base chain.
  {
    port: 9023,
    listing: 'nft_exact',
    nftLine: /^udp dport 9023 counter packets \d+ bytes \d+ drop # handle (\d+)$/,
    rule: {
      tool: 'nft',
      family: 'inet',
      table: 'exact',
      chain: 'in',
      hook: 'input',
      position: 4,
      text: 'udp dport 9023 counter drop',
    },
    chain: NFT_CHAIN,
  },
  // iptables-nft: jumped to PWRU-SUB, dropped by its second rule.
  {
    port: 9041,
    listing: 'nft_ip_filter',
    nftLine: /^udp dport 9041 counter packets \d+ bytes \d+ drop # handle (\d+)$/,
    rule: {
      tool: 'iptables-nft',
      family: 'ip',
      table: 'filter',
      chain: 'PWRU-SUB',
      hook: 'INPUT',
      position: 2,
      text: '-A PWRU-SUB -p udp -m udp --dport 9041 -j DROP',
    },
    chain: IPT_CHAIN,
  },
  // iptables-nft: jumped to PWRU-SUB and back, dropped by INPUT's fifth rule.
  {
    port: 9042,
    listing: 'nft_ip_filter',
    nftLine: /^udp dport 9042 counter packets \d+ bytes \d+ drop # handle (\d+)$/,
    rule: {
      tool: 'iptables-nft',
      family: 'ip',
      table: 'filter',
      chain: 'INPUT',
      hook: 'INPUT',
      position: 5,
      text: '-A INPUT -p udp -m udp --dport 9042 -j DROP',
    },
    chain: IPT_CHAIN,
  },
  // ip6tables-nft: INPUT's second rule.
  {
    port: 9061,
    listing: 'nft_ip6_filter',
    nftLine: /^udp dport 9061 counter packets \d+ bytes \d+ drop # handle (\d+)$/,
    rule: {
      tool: 'ip6tables-nft',
      family: 'ip6',
      table: 'filter',
      chain: 'INPUT',
      hook: 'INPUT',
      position: 2,
      text: '-A INPUT -p udp -m udp --dport 9061 -j DROP',
    },
    chain: { ...IPT_CHAIN, family: 'ip6' },
  },
  // ip6tables-nft: jumped to PWRU-SUB, dropped by its first rule.
  {
    port: 9062,
    listing: 'nft_ip6_filter',
    nftLine: /^udp dport 9062 counter packets \d+ bytes \d+ drop # handle (\d+)$/,
    rule: {
      tool: 'ip6tables-nft',
      family: 'ip6',
      table: 'filter',
      chain: 'PWRU-SUB',
      hook: 'INPUT',
      position: 1,
      text: '-A PWRU-SUB -p udp -m udp --dport 9062 -j DROP',
    },
    chain: { ...IPT_CHAIN, family: 'ip6' },
  },
  // arptables-nft: INPUT's second rule, as nft prints it.
  {
    port: 0,
    listing: 'nft_arp_filter',
    nftLine: /^.*10\.200\.1\.99.* counter packets \d+ bytes \d+ drop # handle (\d+)$/,
    rule: { tool: 'nft', family: 'arp', table: 'filter', chain: 'INPUT', hook: 'input', position: 2 },
    chain: { ...IPT_CHAIN, family: 'arp' },
  },
];
/** Dropped by a vmap's verdict, which no immediate expression made: never named exactly. */
const VMAP = { port: 9026, text: 'udp dport 9026 counter udp dport vmap { 9026 : drop }' };

const FUNCS = '^(ip_rcv|ip_local_deliver|nf_hook_slow)$';
const FILTER = 'udp and dst portrange 9020-9069';
/**
 * ARP in a case of its own: with `(udp ...) or arp` the helper gives a packet at arp_rcv the filter's raw
 * IP form, where `arp` is false, and no ARP packet is traced.
 */
const ARP_FILTER = 'arp';

const KERNELS: { label: string; functionBackends: ProbeKind[] }[] = [
  { label: '6.1', functionBackends: ['kprobe'] },
  { label: '6.12', functionBackends: ['kprobe-multi', 'kprobe'] },
];

function describe(c: CaseResult): string {
  return `case ${c.name}: state=${c.state} exit=${c.exitCode} events=${c.events.length} culprits=${JSON.stringify(
    c.culprits,
  )} warnings=${JSON.stringify(c.warnings)} errors=${JSON.stringify(c.errors)}\nstderr: ${c.stderr.slice(-2000)}`;
}

/** The rule nft's listing (a GuestRun.info entry, lines joined by |) names: the flow's, with its handle. */
function ruleOf(run: GuestRun, f: Flow): CulpritRule {
  const lines = (run.info[f.listing] ?? '').split('|').map((l) => l.trim());
  const m = lines.map((l) => f.nftLine.exec(l)).find((x) => x);
  assert.ok(m, `no line like ${f.nftLine} in ${f.listing}: ${run.info[f.listing]}`);
  const text = f.rule.text ?? m[0].replace(/ packets \d+ bytes \d+/, '').replace(/ # handle \d+$/, '');
  return { ...f.rule, text, handle: Number(m[1]) };
}

/** The culprits of the drops of :port (0: of ARP), each found by its drop event's skb and ts. */
function dropCulprits(c: CaseResult, port: number): CulpritInfo[] {
  const drops = c.events.filter((e) => e.drop && (port ? e.tuple?.dport === port : e.l3proto === 'ARP'));
  assert.ok(drops.length > 0, `no drop of ${port ? `:${port}` : 'ARP'}: ${describe(c)}`);
  return drops.map((d) => {
    assert.equal(d.drop?.reason, 'NETFILTER_DROP', JSON.stringify(d));
    const k = c.culprits.find((x) => x.skb === d.skb && x.ts === d.ts);
    assert.ok(k, `no culprit for ${JSON.stringify(d)}: ${describe(c)}`);
    assert.equal(k.kind, 'netfilter', JSON.stringify(k));
    return k;
  });
}

const only = process.env.KERNEL_MATRIX_ONLY?.split(',');

for (const k of KERNELS.filter((x) => !only || only.includes(x.label))) {
  test(`kernel ${k.label} under qemu: nf_tables rules named exactly`, { timeout: 10 * 60_000 }, async (t) => {
    const helper = path.join(repoRoot(), 'helper/build/amd64/pwru-helper');
    if (!existsSync(helper)) {
      t.skip(`the helper is not built (${helper}): run make -C helper`);
      return;
    }
    const run = await bootGuest({
      kernel: k.label,
      helper,
      setup: SETUP,
      cases: [
        ...k.functionBackends.map((b) => ({
          name: `rules-${b}`,
          traffic: 'rules' as const,
          readyTimeout: 120,
          args: ['--backend', b, '--filter-func', FUNCS, '--', FILTER],
        })),
        {
          name: 'rules-arp',
          traffic: 'rules' as const,
          readyTimeout: 120,
          args: ['--backend', k.functionBackends[0], '--filter-func', FUNCS, '--', ARP_FILTER],
        },
        // The helper's own culprit lines (--emit text): the client's words, byte for byte.
        {
          name: 'rules-text',
          traffic: 'rules' as const,
          readyTimeout: 120,
          lines: true,
          args: [
            '--backend',
            k.functionBackends[0],
            '--filter-func',
            FUNCS,
            '--emit',
            'text',
            '--lines-fd',
            '4',
            '--lines-name',
            'lines',
            '--',
            FILTER,
          ],
        },
      ],
      timeoutMs: 9 * 60_000,
    });
    assert.equal(run.fatal, undefined, `guest setup failed: ${run.fatal}`);

    for (const b of k.functionBackends) {
      for (const f of FLOWS) {
        if (!f.port && b !== k.functionBackends[0]) continue;
        const what = f.port ? `:${f.port}` : 'ARP';
        const name = f.port ? `rules-${b}` : 'rules-arp';
        await t.test(
          `${b}: ${what} dropped by ${f.rule.tool}'s rule in ${f.rule.family} ${f.rule.chain}, exactly`,
          () => {
            const c = run.cases.get(name);
            assert.ok(c, `case ${name} did not run`);
            assert.equal(c.exitCode, 0, describe(c));
            assert.deepEqual(c.errors, [], describe(c));
            assert.ok(!c.warnings.some((w) => w.code === 'netfilter_not_exact'), describe(c));
            const rule = ruleOf(run, f);
            for (const x of dropCulprits(c, f.port)) {
              assert.equal(x.method, 'exact', JSON.stringify(x));
              assert.deepEqual(x.chain, f.chain, JSON.stringify(x));
              assert.deepEqual(x.rule, rule, JSON.stringify(x));
            }
          },
        );
      }
      await t.test(`${b}: a vmap's drop is not named exactly: by its counter, or not at all`, () => {
        const c = run.cases.get(`rules-${b}`);
        assert.ok(c, `case rules-${b} did not run`);
        for (const x of dropCulprits(c, VMAP.port)) {
          assert.deepEqual(x.chain, NFT_CHAIN, JSON.stringify(x));
          assert.ok(x.method === 'counters' || x.method === 'none', JSON.stringify(x));
          if (x.method === 'counters') assert.equal(x.rule?.text, VMAP.text, JSON.stringify(x));
        }
      });
    }

    await t.test('the helper writes each culprit line as the client words it', () => {
      const c = run.cases.get('rules-text');
      assert.ok(c?.lines !== undefined, `case rules-text did not run, or its lines did not come back`);
      assert.equal(c.exitCode, 0, describe(c));
      const lines = c.lines.split('\n').filter((l) => l.startsWith('    ↳ '));
      const exact = c.culprits.filter((x) => x.method === 'exact');
      assert.ok(exact.length >= FLOWS.length - 1, `fewer exact culprits than IP flows: ${describe(c)}`);
      assert.deepEqual(
        lines,
        c.culprits.map((x) => `    ↳ ${x.skb} ${describeCulprit({ type: 'culprit', v: 1, ...x })}`),
        describe(c),
      );
    });
  });
}
