/**
 * BPF programs named exactly on kernels that let programs be traced (6.12 and
 * 6.1 under qemu; fexit on each tc and XDP program, helper/prog_exact.c). The
 * guest's setup attaches, with progload (guest/progload.c, as the guest has no
 * tc binary), programs built here with clang. On veth2 (ns2), where the
 * packets arrive: a generic XDP program that drops UDP to :9104 and passes
 * the rest; on 6.12 a tcx ingress program that drops :9101 and lets the rest
 * go on to clsact (TCX_NEXT); a clsact ingress filter (cls_bpf, direct
 * action: what `tc filter add … bpf da` makes) that drops :9105 and passes the
 * rest. On veth1 (ns1), as they leave: an egress program that passes :9102 and
 * redirects :9103 to veth1's own ingress, by tcx on 6.12 and by clsact on 6.1
 * (6.1 has no tcx: clsact is what its nodes use), and for what comes back
 * from ns2, a native XDP program that drops :9108 and passes the rest (:9109,
 * to a receiver in ns1). Each drop's culprit must be the one program that
 * returned it (method exact, its verdict, how it is attached), and the passes
 * and the redirect must show as that program's runs on their packets (PROG
 * frames); the native XDP passes, which veth runs on a copy of the packet in a
 * buffer of its own, under the packet of the skb built around that buffer,
 * which the summary has the packet sent continue as (the run's `from`). On a
 * second pair, vx1 (ns1) and vx2 (ns2), a native XDP program on vx1 turns what
 * ns2 sends to :9110 and :9111 around, by XDP_TX and by XDP_REDIRECT: each run
 * named with its verdict and linked the same way, and the datagrams received
 * back in ns2.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { jsonLine } from '../../src/output/json';
import { describeCulprit, ProgRunBook, spanOf } from '../../src/reading/culprits';
import { PacketTracker } from '../../src/reading/packet-tracker';
import { TraceReading } from '../../src/reading/trace-reading';
import { describeVerdict } from '../../src/reading/verdict-words';
import { verdictOf } from '../../src/reading/verdicts';
import type { CulpritInfo, ProgRunInfo } from '../../src/record/decode';
import {
  TRACE_SCHEMA_VERSION,
  type TraceCulprit,
  type TraceEvent,
  type TraceLine,
  type TraceProgRun,
} from '../../src/record/event';
import { bootGuest, type CaseResult, type CaseSpec, repoRoot } from './guest';

const PROGRAMS = `
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

static __always_inline int udp_dport(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP ||
	    ip->ihl != 5)
		return -1;
	return bpf_ntohs(udp->dest);
}

/* tcx: TC_ACT_UNSPEC is TCX_NEXT, so that the clsact filters run after it. */
SEC("tc")
int pwru_tc_in(struct __sk_buff *skb)
{
	return udp_dport((void *)(long)skb->data, (void *)(long)skb->data_end) == 9101 ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

SEC("tc")
int pwru_cls_in(struct __sk_buff *skb)
{
	return udp_dport((void *)(long)skb->data, (void *)(long)skb->data_end) == 9105 ? TC_ACT_SHOT : TC_ACT_OK;
}

/* Attached after the trace began (case progs-late), ahead of pwru_cls_in: the rest goes on to it. */
SEC("tc")
int pwru_late(struct __sk_buff *skb)
{
	return udp_dport((void *)(long)skb->data, (void *)(long)skb->data_end) == 9106 ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

SEC("tc")
int pwru_tc_out(struct __sk_buff *skb)
{
	if (udp_dport((void *)(long)skb->data, (void *)(long)skb->data_end) == 9103)
		return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
	return TC_ACT_OK;
}

SEC("xdp")
int pwru_xdp(struct xdp_md *ctx)
{
	return udp_dport((void *)(long)ctx->data, (void *)(long)ctx->data_end) == 9104 ? XDP_DROP : XDP_PASS;
}

/* Native XDP on veth1: veth runs it in its NAPI poll, on a copy of the packet in a buffer of its own. */
SEC("xdp")
int pwru_xdp_nat(struct xdp_md *ctx)
{
	return udp_dport((void *)(long)ctx->data, (void *)(long)ctx->data_end) == 9108 ? XDP_DROP : XDP_PASS;
}

/*
 * Native XDP on vx1 (ns1), for what ns2 sends over vx2: to :9110 back out of vx1 (XDP_TX), to :9111
 * redirected to vx1 itself (XDP_REDIRECT, through the redirect path), both turned around (MACs and IPv4
 * addresses swapped: the checksums hold; the ports kept) so that ns2 receives them on vx2.
 */
SEC("xdp")
int pwru_xdp_bounce(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	int port = udp_dport(data, end);
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	unsigned char mac[ETH_ALEN];
	__be32 a;

	if ((port != 9110 && port != 9111) || (void *)(ip + 1) > end)
		return XDP_PASS;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	return port == 9110 ? XDP_TX : bpf_redirect(ctx->ingress_ifindex, 0);
}

/* Native XDP on vx2: veth takes XDP frames (XDP_TX, redirects) only into a peer with NAPI, which XDP gives it. */
SEC("xdp")
int pwru_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
`;

/** progload's line for program prog on iface of ns, attached as how (arg: a tcx link's pin, a clsact filter's preference). */
const load = (ns: string, prog: string, iface: string, how: string, arg = '-') =>
  `in_ns ${ns} progload /extra/progs.o ${prog} ${iface} ${how} ${arg} 2>/tmp/pl.err || fail "progload ${prog}: $(cat /tmp/pl.err)"`;

const KERNELS = [
  { label: '6.12', tcx: true, backend: 'kprobe-multi' },
  { label: '6.1', tcx: false, backend: 'kprobe' },
];

/** In the order they run on veth2's ingress: XDP, then tcx (6.12), then clsact (preference 2: progs-late's goes first). */
function setup(tcx: boolean): string {
  return [
    load('ns2', 'pwru_xdp', 'veth2', 'xdp-generic'),
    ...(tcx ? [load('ns2', 'pwru_tc_in', 'veth2', 'tcx-ingress', '/sys/fs/bpf/tc_in')] : []),
    load('ns2', 'pwru_cls_in', 'veth2', 'clsact-ingress', '2'),
    tcx
      ? load('ns1', 'pwru_tc_out', 'veth1', 'tcx-egress', '/sys/fs/bpf/tc_out')
      : load('ns1', 'pwru_tc_out', 'veth1', 'clsact-egress'),
    // What comes back from ns2 to veth1: native XDP; what it passes to :9109 is received in ns1.
    load('ns1', 'pwru_xdp_nat', 'veth1', 'xdp-native'),
    'in_ns ns1 udpkit recv 9109 &',
    // A second pair for XDP_TX and XDP_REDIRECT: ns1's vx1 (10.200.3.1) turns ns2's datagrams to :9110
    // and :9111 around, back to ns2's vx2 (10.200.3.2), where receivers take them.
    '/sbin/ip link add vx1 netns ns1 type veth peer name vx2 netns ns2 || fail "ip link add vx"',
    '/sbin/ip -n ns1 addr add 10.200.3.1/24 dev vx1',
    '/sbin/ip -n ns2 addr add 10.200.3.2/24 dev vx2',
    '/sbin/ip -n ns1 link set vx1 up',
    '/sbin/ip -n ns2 link set vx2 up',
    load('ns1', 'pwru_xdp_bounce', 'vx1', 'xdp-native'),
    load('ns2', 'pwru_xdp_pass', 'vx2', 'xdp-native'),
    'in_ns ns2 udpkit recv 9110 &',
    'in_ns ns2 udpkit recv 9111 &',
    'sleep 0.2',
    // Neighbours resolved before the trace (7777 goes through vx1's XDP program: passed).
    'in_ns ns2 udpkit send 10.200.3.1 7777 1',
  ].join('\n');
}

const FILTER = 'udp and dst portrange 9101-9111';
/**
 * The steps just before tc egress and before the receive hooks, and few: kprobes are slow under emulation.
 * eth_type_trans: veth's native XDP path calls it on the skb built around the program's buffer right after
 * the run, and the list receive that follows passes neither __netif_receive_skb nor ip_rcv; the socket's
 * __udp_enqueue_schedule_skb says it was delivered.
 */
const FUNCS =
  '^(__dev_queue_xmit|__netif_receive_skb|__netif_receive_skb_one_core|ip_rcv|eth_type_trans|__udp_enqueue_schedule_skb)$';

function cases(backend: string): CaseSpec[] {
  return [
    {
      name: `progs-${backend}`,
      traffic: 'progs',
      readyTimeout: 120,
      args: ['--backend', backend, '--filter-func', FUNCS, '--', FILTER],
    },
    // --on-drop: the reports' drops named exactly too (the runs are read, not written).
    {
      name: 'progs-on-drop',
      traffic: 'progs',
      readyTimeout: 120,
      args: ['--backend', backend, '--filter-func', FUNCS, '--on-drop', '--', FILTER],
    },
    {
      name: 'progs-tracepoint',
      traffic: 'progs',
      readyTimeout: 120,
      args: ['--backend', 'tracepoint', '--', FILTER],
    },
    // The helper's own JSON lines (helper/culprit.c, helper/prog_exact.c write them, twins of the client's).
    {
      name: 'progs-json',
      traffic: 'progs',
      readyTimeout: 120,
      lines: true,
      args: [
        '--backend',
        'tracepoint',
        '--emit',
        'json',
        '--lines-fd',
        '4',
        '--lines-name',
        'lines',
        '--',
        FILTER,
      ],
    },
  ];
}

/**
 * Programs loaded after the trace began (a CNI agent restarting): setup's
 * programs are traced from the start, pwru_late is attached during the case
 * (guest/init.sh, traffic progs-late), ahead of pwru_cls_in.
 */
const LATE: CaseSpec = {
  name: 'progs-late',
  traffic: 'progs-late',
  readyTimeout: 120,
  // The helper's own JSON lines: its culprit lines (with why) held to the client's writer too.
  lines: true,
  args: [
    '--backend',
    'tracepoint',
    '--emit',
    'json',
    '--lines-fd',
    '4',
    '--lines-name',
    'lines',
    '--',
    FILTER,
  ],
};

/** The same, with the helper's text lines (--emit text): its culprit lines, with why, held to the client's words. */
const LATE_TEXT: CaseSpec = {
  ...LATE,
  name: 'progs-late-text',
  args: LATE.args.map((a) => (a === 'json' ? 'text' : a)),
};

/**
 * A case as its JSON lines tell it (--emit json): events, culprits and runs
 * from the lines; and each culprit and prog line as the client's writer
 * (jsonLine) would write the same object, byte for byte.
 */
function fromLines(c: CaseResult): CaseResult {
  const parsed = (c.lines ?? '')
    .split('\n')
    .filter((l) => l)
    .map((l) => ({ text: l, line: JSON.parse(l) as TraceLine }));
  for (const { text, line } of parsed)
    if (line.type === 'culprit' || line.type === 'prog') assert.equal(jsonLine(line), text);
  const strip = <T extends { type: string; v: number }>({ type: _t, v: _v, ...rest }: T) => rest;
  return {
    ...c,
    events: parsed.map((p) => p.line).filter((l): l is TraceEvent => l.type === 'event'),
    culprits: parsed
      .map((p) => p.line)
      .filter((l): l is TraceCulprit => l.type === 'culprit')
      .map(strip),
    progs: parsed
      .map((p) => p.line)
      .filter((l): l is TraceProgRun => l.type === 'prog')
      .map(strip),
  };
}

function describe(c: CaseResult): string {
  return `case ${c.name}: state=${c.state} exit=${c.exitCode} events=${c.events.length} culprits=${JSON.stringify(
    c.culprits,
  )} progs=${JSON.stringify(c.progs)} warnings=${JSON.stringify(c.warnings)} errors=${JSON.stringify(
    c.errors,
  )}\nstderr: ${c.stderr.slice(-2000)}`;
}

/** The culprits of the drops of :port, each found by its drop event's skb and ts. */
function dropCulprits(c: CaseResult, port: number): CulpritInfo[] {
  const drops = c.events.filter((e) => e.drop && e.tuple?.dport === port);
  assert.ok(drops.length > 0, `no drop of :${port}: ${describe(c)}`);
  return drops.map((d) => {
    const k = c.culprits.find((x) => x.skb === d.skb && x.ts === d.ts);
    assert.ok(k, `no culprit for ${JSON.stringify(d)}: ${describe(c)}`);
    return k;
  });
}

const only = process.env.KERNEL_MATRIX_ONLY?.split(',');

/** The programs, compiled here into dir/progs.o (the guest's /extra). */
function buildPrograms(dir: string): void {
  writeFileSync(path.join(dir, 'progs.c'), PROGRAMS);
  const obj = path.join(dir, 'progs.o');
  execFileSync('clang', [
    '-O2',
    '-g',
    '-target',
    'bpf',
    '-I/usr/include/x86_64-linux-gnu',
    '-c',
    path.join(dir, 'progs.c'),
    '-o',
    obj,
  ]);
  rmSync(path.join(dir, 'progs.c'));
}

/** The tc program's drops of :9101: exact, at veth2's tcx ingress, TC_ACT_SHOT. */
function assertTcDrops(c: CaseResult): void {
  for (const k of dropCulprits(c, 9101)) {
    assert.equal(k.kind, 'tc', JSON.stringify(k));
    assert.equal(k.method, 'exact', JSON.stringify(k));
    assert.equal(k.iface, 'veth2', JSON.stringify(k));
    assert.equal(k.direction, 'ingress', JSON.stringify(k));
    assert.equal(k.verdict, 'TC_ACT_SHOT', JSON.stringify(k));
    assert.equal(k.programs?.length, 1, JSON.stringify(k));
    assert.equal(k.programs?.[0].name, 'pwru_tc_in', JSON.stringify(k));
    assert.equal(k.programs?.[0].attach, 'tcx', JSON.stringify(k));
    assert.match(k.programs?.[0].tag ?? '', /^[0-9a-f]{16}$/);
  }
}

/** The XDP program's drops of :9104: exact, on veth2, XDP_DROP. */
function assertXdpDrops(c: CaseResult): void {
  for (const k of dropCulprits(c, 9104)) {
    assert.equal(k.kind, 'xdp', JSON.stringify(k));
    assert.equal(k.method, 'exact', JSON.stringify(k));
    assert.equal(k.iface, 'veth2', JSON.stringify(k));
    assert.equal(k.verdict, 'XDP_DROP', JSON.stringify(k));
    assert.deepEqual(
      k.programs?.map((p) => [p.name, p.attach]),
      [['pwru_xdp', 'xdp-generic']],
      JSON.stringify(k),
    );
  }
}

/**
 * veth1's native XDP drops of :9108 (sent from ns2): exact, XDP_DROP. veth runs it on a copy of the packet
 * in its own buffer; the drop is still that buffer's (its passes: assertNativeXdpPasses).
 */
function assertNativeXdpDrops(c: CaseResult): void {
  for (const k of dropCulprits(c, 9108)) {
    assert.equal(k.kind, 'xdp', JSON.stringify(k));
    assert.equal(k.method, 'exact', JSON.stringify(k));
    assert.equal(k.iface, 'veth1', JSON.stringify(k));
    assert.equal(k.verdict, 'XDP_DROP', JSON.stringify(k));
    assert.deepEqual(
      k.programs?.map((p) => [p.name, p.attach]),
      [['pwru_xdp_nat', 'xdp-native']],
      JSON.stringify(k),
    );
  }
}

/** The clsact filter's drops of :9105: exact, at veth2's ingress, TC_ACT_SHOT, with the filter as tc lists it. */
function assertClsactDrops(c: CaseResult): void {
  for (const k of dropCulprits(c, 9105)) {
    assert.equal(k.kind, 'tc', JSON.stringify(k));
    assert.equal(k.method, 'exact', JSON.stringify(k));
    assert.equal(k.iface, 'veth2', JSON.stringify(k));
    assert.equal(k.direction, 'ingress', JSON.stringify(k));
    assert.equal(k.verdict, 'TC_ACT_SHOT', JSON.stringify(k));
    assert.deepEqual(
      k.programs?.map((p) => [p.name, p.attach]),
      [['pwru_cls_in', 'clsact']],
      JSON.stringify(k),
    );
    // libbpf names the filter after the program and its id: "pwru_cls_in:[12]".
    const p = k.programs?.[0];
    assert.match(
      p?.detail ?? '',
      new RegExp(`^filter pwru_cls_in:\\[${p?.id}\\] pref 2 handle 0x[0-9a-f]+$`),
    );
  }
}

/** A run belongs to the packet whose step with that skb came last before it (an skb's address is reused). */
function portOf(c: CaseResult, p: ProgRunInfo): number | undefined {
  return c.events.filter((e) => e.skb === p.skb && BigInt(e.ts) <= BigInt(p.ts)).at(-1)?.tuple?.dport;
}

/** The runs of program name on the packets to port: one per packet (2 sent), each as want says. */
function assertRuns(c: CaseResult, port: number, name: string, want: Partial<ProgRunInfo>): void {
  const runs: ProgRunInfo[] = c.progs.filter((p) => portOf(c, p) === port && p.program.name === name);
  assert.equal(runs.length, 2, `one run of ${name} for each packet to :${port}: ${describe(c)}`);
  for (const r of runs)
    for (const [k, v] of Object.entries(want))
      assert.deepEqual(r[k as keyof ProgRunInfo], v, JSON.stringify(r));
}

/**
 * veth1's native XDP passes of :9109 (sent from ns2): one run per datagram, XDP_PASS, on the skb veth built
 * around the program's buffer (its head is not the sent skb's), shown under that packet by the client's own
 * reading (ProgRunBook, as show and the summary find a packet's runs), and that packet delivered in ns1.
 */
function assertNativeXdpPasses(c: CaseResult): void {
  assertRuns(c, 9109, 'pwru_xdp_nat', { kind: 'xdp', iface: 'veth1', ret: 2, verdict: 'XDP_PASS' });
  const tracker = new PacketTracker();
  for (const e of c.events) tracker.observe(e);
  tracker.open();
  const packets = tracker.packets().filter((p) => p.tuple?.dport === 9109);
  const book = new ProgRunBook();
  for (const r of c.progs) book.add({ type: 'prog', v: TRACE_SCHEMA_VERSION, ...r });
  const handled = packets.filter((p) => book.of(spanOf(p)).some((r) => r.program.name === 'pwru_xdp_nat'));
  assert.equal(handled.length, 2, `each datagram to :9109 one packet with its run: ${describe(c)}`);
  const sentHeads = new Set(
    c.events.filter((e) => e.tuple?.dport === 9109 && e.iface === 'veth2').map((e) => e.head),
  );
  for (const p of handled) {
    const runs = book.of(spanOf(p));
    assert.equal(runs.length, 1, `one run under #${p.id}: ${JSON.stringify(runs)}`);
    // The run's skb is the packet's first, at its first step: the skb built around the program's buffer.
    assert.equal(runs[0].skb, p.steps[0].event.skb, JSON.stringify(runs[0]));
    assert.equal(runs[0].ts, p.steps[0].event.ts, JSON.stringify(runs[0]));
    assert.ok(
      !sentHeads.has(p.steps[0].event.head),
      `a buffer of veth's own: ${JSON.stringify(p.steps[0].event)}`,
    );
    const v = verdictOf(p);
    assert.equal(v.kind, 'delivered', `#${p.id}: ${describeVerdict(v)}`);
  }
  // The skb sent from ns2 goes on as the one veth built: one packet in the summary.
  assertContinued(c, 9109, 'pwru_xdp_nat');
}

/**
 * vx1's native XDP turning ns2's datagrams to port around (verdict XDP_TX or XDP_REDIRECT): one run per
 * datagram, named, on the skb veth built around the program's buffer, linked to the skb ns2 sent (`from`,
 * the skb the kernel built it from); and the datagram's path after: received in ns2 on vx2.
 */
function assertBounced(c: CaseResult, port: number, verdict: string): void {
  const steps = c.events
    .filter((e) => e.tuple?.dport === port)
    .map(
      (e) =>
        `${e.ts} ${e.cpu} ${e.skb} ${e.head} ${e.func} ${e.iface} ${e.tuple?.dst}${e.drop ? ` ${e.drop.reason}` : ''}`,
    );
  assertRuns(c, port, 'pwru_xdp_bounce', { kind: 'xdp', iface: 'vx1', verdict });
  assertContinued(c, port, 'pwru_xdp_bounce');
  const tracker = new PacketTracker();
  for (const e of c.events) tracker.observe(e);
  tracker.open();
  const after = tracker
    .packets()
    .filter(
      (p) => p.tuple?.dport === port && p.tuple.dst === '10.200.3.2' && verdictOf(p).kind === 'delivered',
    );
  assert.equal(
    after.length,
    2,
    `each datagram to :${port} received back in ns2: ${describe(c)}\nsteps to :${port}:\n${steps.join('\n')}`,
  );
}

/**
 * Each run of program name on a datagram to port names the skb veth copied into its buffer (`from`), an skb
 * sent from ns2 to port, and the summary (as show and the live trace read it) has that skb's packet
 * continue as the run's: verdict `continued`, not counted apart. every: a run on each of the two datagrams
 * (else those shown: with tracepoints under emulation a run's skb may be first reported too late for the tie).
 */
function assertContinued(c: CaseResult, port: number, name: string, every = true): void {
  const reading = new TraceReading();
  for (const e of c.events) reading.event(e);
  for (const r of c.progs) reading.prog({ type: 'prog', v: TRACE_SCHEMA_VERSION, ...r });
  const result = reading.result();
  assert.equal(result.kind, 'packets');
  const rows = result.summary.packets;
  const sentFromNs2 = new Set(
    c.events.filter((e) => e.tuple?.dport === port && e.func.includes('dev_queue')).map((e) => e.skb),
  );
  const runs = c.progs.filter((p) => p.program.name === name && portOf(c, p) === port);
  if (every) assert.equal(runs.length, 2, `two runs of ${name} on datagrams to :${port}: ${describe(c)}`);
  else assert.ok(runs.length > 0, `a run of ${name} on a datagram to :${port}: ${describe(c)}`);
  for (const r of runs) {
    assert.ok(r.from && sentFromNs2.has(r.from.skb), `the run names the skb sent: ${JSON.stringify(r)}`);
    const sent = rows.find(
      (row) => row.skb === r.from?.skb && row.verdict.kind === 'continued' && row.verdict.skb === r.skb,
    );
    assert.ok(
      sent,
      `the sent packet continues: ${JSON.stringify(rows.filter((row) => row.skb === r.from?.skb))}`,
    );
    assert.ok(sent.verdict.kind === 'continued' && sent.verdict.skb === r.skb, JSON.stringify(sent));
    const into = rows.find((row) => sent.verdict.kind === 'continued' && row.id === sent.verdict.as);
    assert.equal(into?.skb, r.skb, JSON.stringify(into));
    assert.equal(into?.continues, sent.id, JSON.stringify(into));
  }
}

for (const k of KERNELS.filter((x) => !only || only.includes(x.label))) {
  test(`kernel ${k.label} under qemu: tc and XDP programs named exactly`, {
    timeout: 10 * 60_000,
  }, async (t) => {
    const helper = path.join(repoRoot(), 'helper/build/amd64/pwru-helper');
    if (!existsSync(helper)) {
      t.skip(`the helper is not built (${helper}): run make -C helper`);
      return;
    }
    const extra = mkdtempSync(path.join(tmpdir(), 'pwru-progs-'));
    try {
      buildPrograms(extra);
      const plan = [...cases(k.backend), LATE, LATE_TEXT];
      const run = await bootGuest({
        kernel: k.label,
        helper,
        cases: plan,
        setup: setup(k.tcx),
        extra,
        timeoutMs: 9 * 60_000,
      });
      assert.equal(run.fatal, undefined, `guest setup failed: ${run.fatal}`);

      for (const name of cases(k.backend).map((c) => c.name)) {
        await t.test(`${name}: each drop's culprit is the one program that returned it`, () => {
          const raw = run.cases.get(name);
          assert.ok(raw, `case ${name} did not run`);
          const c = raw.lines === undefined ? raw : fromLines(raw);
          assert.equal(c.exitCode, 0, describe(c));
          assert.deepEqual(c.errors, [], describe(c));
          assert.ok(!c.warnings.some((w) => w.code === 'programs_not_exact'), describe(c));
          if (k.tcx) assertTcDrops(c);
          assertXdpDrops(c);
          assertClsactDrops(c);
          assertNativeXdpDrops(c);
          if (name === 'progs-on-drop') assert.deepEqual(c.progs, [], 'no runs written with --on-drop');
        });
      }

      await t.test(
        `progs-${k.backend}: passes and redirects are shown as the program runs of their packets`,
        () => {
          const c = run.cases.get(`progs-${k.backend}`);
          assert.ok(c);
          assertRuns(c, 9102, 'pwru_xdp', { kind: 'xdp', iface: 'veth2', ret: 2, verdict: 'XDP_PASS' });
          assertNativeXdpPasses(c);
          assertBounced(c, 9110, 'XDP_TX');
          assertBounced(c, 9111, 'XDP_REDIRECT');
          // With tracepoints too: each native XDP run shown linked to the skb sent.
          const tp = run.cases.get('progs-tracepoint');
          assert.ok(tp, 'case progs-tracepoint ran');
          assertContinued(tp, 9109, 'pwru_xdp_nat', false);
          assertContinued(tp, 9110, 'pwru_xdp_bounce', false);
          assertContinued(tp, 9111, 'pwru_xdp_bounce', false);
          // The helper's own lines name the same runs of the XDP programs (the tracepoint backend).
          const json = run.cases.get('progs-json');
          assert.ok(json?.lines, 'the JSON lines came back');
          assertRuns(fromLines(json), 9102, 'pwru_xdp', {
            kind: 'xdp',
            iface: 'veth2',
            ret: 2,
            verdict: 'XDP_PASS',
          });
          assertNativeXdpPasses(fromLines(json));
          assertRuns(c, 9102, 'pwru_cls_in', {
            kind: 'tc',
            iface: 'veth2',
            direction: 'ingress',
            ret: 0,
            verdict: 'TC_ACT_OK',
          });
          // Egress: tcx on 6.12, clsact on 6.1.
          const out = { kind: 'tc', iface: 'veth1', direction: 'egress' } as const;
          assertRuns(c, 9102, 'pwru_tc_out', { ...out, ret: 0, verdict: 'TC_ACT_OK' });
          assertRuns(c, 9103, 'pwru_tc_out', { ...out, ret: 7, verdict: 'TC_ACT_REDIRECT' });
          // Never a run taken for a traced packet's that was not on one of its skbs.
          const traced = new Set(c.events.map((e) => e.skb));
          for (const p of c.progs)
            assert.ok(traced.has(p.skb), `a run on an untraced skb: ${JSON.stringify(p)}`);
        },
      );

      await t.test(
        'progs-late: a program attached after the trace began is named with why until it is traced, then exactly',
        () => {
          const raw = run.cases.get(LATE.name);
          assert.ok(raw?.lines, `case ${LATE.name} did not run, or its lines did not come back`);
          const c = fromLines(raw);
          assert.equal(c.exitCode, 0, describe(c));
          assert.deepEqual(c.errors, [], describe(c));
          const drops = c.events
            .filter((e) => e.drop && e.tuple?.dport === 9106)
            .sort((a, b) => (BigInt(a.ts) < BigInt(b.ts) ? -1 : 1));
          assert.equal(
            drops.length,
            4,
            `two drops of :9106 before its copy was loaded, two after: ${describe(c)}`,
          );
          const culpritOf = (d: TraceEvent) => {
            const k = c.culprits.find((x) => x.skb === d.skb && x.ts === d.ts);
            assert.ok(k, `no culprit for ${JSON.stringify(d)}: ${describe(c)}`);
            return k;
          };
          // Sent at once: the programs attached there, and why this one was not known exactly.
          for (const k of drops.slice(0, 2).map(culpritOf)) {
            assert.equal(k.method, 'attached', JSON.stringify(k));
            assert.equal(k.iface, 'veth2', JSON.stringify(k));
            assert.equal(k.direction, 'ingress', JSON.stringify(k));
            assert.ok(
              k.programs?.some((p) => p.name === 'pwru_late' && p.attach === 'clsact'),
              JSON.stringify(k),
            );
            assert.match(
              k.why ?? '',
              /pwru_late \(id \d+\): loaded after the trace began/,
              JSON.stringify(k),
            );
          }
          // Sent 4 s later: exactly.
          for (const k of drops.slice(2).map(culpritOf)) {
            assert.equal(k.method, 'exact', JSON.stringify(k));
            assert.equal(k.verdict, 'TC_ACT_SHOT', JSON.stringify(k));
            assert.deepEqual(
              k.programs?.map((p) => [p.name, p.attach]),
              [['pwru_late', 'clsact']],
              JSON.stringify(k),
            );
          }
          // And its runs on the packets it let go on (to pwru_cls_in).
          assertRuns(c, 9107, 'pwru_late', {
            kind: 'tc',
            iface: 'veth2',
            direction: 'ingress',
            ret: -1,
            verdict: 'TC_ACT_UNSPEC',
          });
        },
      );

      await t.test(
        'progs-late, --emit text: the helper writes each culprit line, why and all, as the client words it',
        () => {
          const c = run.cases.get(LATE_TEXT.name);
          assert.ok(
            c?.lines !== undefined,
            `case ${LATE_TEXT.name} did not run, or its lines did not come back`,
          );
          assert.equal(c.exitCode, 0, describe(c));
          const lines = c.lines.split('\n').filter((l) => l.startsWith('    ↳ ') && / dropped /.test(l));
          assert.deepEqual(
            lines,
            c.culprits.map((x) => `    ↳ ${x.skb} ${describeCulprit({ type: 'culprit', v: 1, ...x })}`),
            describe(c),
          );
          // The late program's drops before it was traced: named with why, in the helper's words.
          assert.ok(
            lines.some((l) =>
              /\(not known exactly: .*pwru_late \(id \d+\): loaded after the trace began/.test(l),
            ),
            c.lines,
          );
          assert.ok(
            lines.some((l) => /dropped by BPF program pwru_late .*; known exactly/.test(l)),
            c.lines,
          );
        },
      );
    } finally {
      rmSync(extra, { recursive: true, force: true });
    }
  });
}
