/**
 * Copies made by a copy function, linked to their original (issue 15, item
 * 3), on kernels with function probes (the qemu matrix). ns1 gets a second
 * veth pair to ns2 (veth3 10.200.2.1 -- veth4 10.200.2.2) and, in its nft
 * output chain, `udp dport 9003 dup to 10.200.2.2 device "veth3"` then
 * `oifname "veth1" udp dport 9003 drop`: nf_dup_ipv4 copies each datagram
 * (pskb_copy: a data buffer of its own) and sends the copy out of veth3 to
 * ns2's receiver on :9003, and the original, which would leave by veth1, is
 * dropped by the next rule. Port 9004 is dup'ed the same way and then dropped
 * whatever the device: the copy, which goes through the chain again, is
 * dropped too.
 *
 * With a function backend the copy's events say what it was copied from
 * (copiedFrom: fexit on __pskb_copy_fclone, helper/copy_link.c), the original
 * reads as delivered by its copy and --fail-on-drop does not count it; when
 * the copy is dropped too, both are losses. With the tracepoint backend the
 * copy is a packet of its own, the original a loss, and the helper says it
 * could not tell (WARNING copies_not_seen). With --on-drop the originals'
 * reports carry their copies, and read the same.
 *
 * KERNEL_MATRIX_SAVE=DIR writes each function-backend run's record stream
 * and trace there (the unit tests' fixtures: test/fixtures/streams, traces).
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { annotatedEventLine } from '../../src/output/json';
import { isFailure, packetOf } from '../../src/reading/drop-report';
import { type Packet, PacketTracker } from '../../src/reading/packet-tracker';
import { describeVerdict } from '../../src/reading/verdict-words';
import { isLoss, verdictOf } from '../../src/reading/verdicts';
import { RecordDecoder } from '../../src/record/decode';
import {
  type ProbeKind,
  TRACE_SCHEMA_VERSION,
  type TraceEvent,
  type TraceHeader,
} from '../../src/record/event';
import { eventJson } from '../../src/record/json-line';
import { type CollectedReport, DropCollector } from '../../src/trace/drop-collector';
import { TOOL_VERSION } from '../../src/version';
import { bootGuest, type CaseResult, type CaseSpec, type GuestRun, repoRoot } from './guest';

const SETUP = [
  'ip link add veth3 netns ns1 type veth peer name veth4 netns ns2 || fail "ip link add veth3"',
  'ip -n ns1 addr add 10.200.2.1/24 dev veth3',
  'ip -n ns2 addr add 10.200.2.2/24 dev veth4',
  'ip -n ns1 link set veth3 up',
  'ip -n ns2 link set veth4 up',
  'in_ns ns1 nft add table ip copies 2>/tmp/dup.err || fail "nft add table: $(cat /tmp/dup.err)"',
  `in_ns ns1 nft add chain ip copies out '{ type filter hook output priority 0; }' 2>/tmp/dup.err || fail "nft add chain: $(cat /tmp/dup.err)"`,
  `in_ns ns1 nft add rule ip copies out udp dport 9003 dup to 10.200.2.2 device veth3 2>/tmp/dup.err || fail "nft dup: $(cat /tmp/dup.err)"`,
  `in_ns ns1 nft add rule ip copies out udp dport 9004 dup to 10.200.2.2 device veth3 || fail "nft dup 9004"`,
  `in_ns ns1 nft add rule ip copies out oifname veth1 udp dport 9003 drop || fail "nft drop 9003"`,
  `in_ns ns1 nft add rule ip copies out udp dport 9004 drop || fail "nft drop 9004"`,
  'in_ns ns2 udpkit recv 9003 &',
  'sleep 0.2',
].join('\n');

/** The original's steps up to the copy, the copy's way out and in, the receive: few functions, as plain kprobes are slow. */
const FUNCS =
  '^(ip_local_out|nf_hook_slow|__pskb_copy_fclone|skb_copy_header|ip_output|ip_finish_output2|__dev_queue_xmit|ip_rcv|ip_local_deliver|udp_queue_rcv_skb|__udp_enqueue_schedule_skb)$';

const KERNELS: { label: string; backend: ProbeKind }[] = [
  { label: '6.1', backend: 'kprobe' },
  { label: '6.12', backend: 'kprobe-multi' },
];

function plan(backend: ProbeKind): CaseSpec[] {
  const fn = ['--backend', backend, '--filter-func', FUNCS];
  return [
    { name: 'dup', traffic: 'dup', readyTimeout: 120, args: [...fn, '--', 'udp and dst port 9003'] },
    {
      name: 'dup-json',
      traffic: 'dup',
      readyTimeout: 120,
      lines: true,
      args: [
        ...fn,
        '--emit',
        'json',
        '--lines-fd',
        '4',
        '--lines-name',
        'lines',
        '--',
        'udp and dst port 9003',
      ],
    },
    {
      name: 'dup-both',
      traffic: 'dup-both',
      readyTimeout: 120,
      args: [...fn, '--', 'udp and dst port 9004'],
    },
    // --on-drop: the reports carry the copies, and the client reads the originals' verdicts with them.
    {
      name: 'dup-on-drop',
      traffic: 'dup',
      readyTimeout: 120,
      args: [...fn, '--on-drop', '--', 'udp and dst port 9003'],
    },
    {
      name: 'dup-both-on-drop',
      traffic: 'dup-both',
      readyTimeout: 120,
      args: [...fn, '--on-drop', '--', 'udp and dst port 9004'],
    },
    {
      name: 'dup-tracepoint',
      traffic: 'dup',
      readyTimeout: 120,
      args: ['--backend', 'tracepoint', '--', 'udp and dst port 9003'],
    },
  ];
}

function describe(c: CaseResult): string {
  return `case ${c.name}: state=${c.state} exit=${c.exitCode} events=${c.events.length} warnings=${JSON.stringify(
    c.warnings,
  )} errors=${JSON.stringify(c.errors)}\nevents: ${c.events
    .map(
      (e) =>
        `${e.skb} ${e.func}${e.copiedFrom ? ` copiedFrom=${e.copiedFrom.skb}` : ''}${e.drop ? ` DROP ${e.drop.reason}` : ''}`,
    )
    .join('; ')}\nstderr: ${c.stderr.slice(-2000)}`;
}

function ranCleanly(run: GuestRun, name: string): CaseResult {
  const c = run.cases.get(name);
  assert.ok(c, `case ${name} did not run (fatal: ${run.fatal ?? '-'})`);
  assert.equal(c.state, 'ready', describe(c));
  assert.equal(c.exitCode, 0, describe(c));
  assert.equal(c.decodeError, undefined, describe(c));
  assert.deepEqual(c.errors, [], describe(c));
  return c;
}

/** Packets as the client reads them, with every packet's verdict settled (as at the end of a trace). */
function read(events: TraceEvent[]): Packet[] {
  const tracker = new PacketTracker();
  for (const e of events) tracker.observe(e);
  tracker.open();
  return tracker.packets();
}

/** What --fail-on-drop counts: packets whose verdict is a real loss. */
function losses(packets: Packet[]): Packet[] {
  return packets.filter((p) => isLoss(verdictOf(p)));
}

/** The originals: the datagrams udpkit sent (their first step is the socket's ip_local_out), not their copies. */
function originals(packets: Packet[]): Packet[] {
  return packets.filter((p) => p.copyOf === undefined && p.steps.some((s) => s.event.drop));
}

function save(dir: string, kernel: string, run: GuestRun, c: CaseResult): void {
  if (c.stream) writeFileSync(path.join(dir, `nft-dup-${kernel}.records`), c.stream);
  const header: TraceHeader = {
    type: 'header',
    v: TRACE_SCHEMA_VERSION,
    tool: 'kubectl-pwru',
    toolVersion: TOOL_VERSION,
    kernel: run.release,
    backend: c.ready?.backend ?? 'kprobe',
    probes: c.ready?.attached ?? 0,
    attachMs: c.ready?.attach_ms ?? 0,
    filter: c.ready?.filter ?? '',
    startedAt: new Date().toISOString(),
    dropReasons: c.ready?.drop_reasons ?? {},
  };
  const tracker = new PacketTracker({ retain: false });
  const lines = [JSON.stringify(header), ...c.events.map((e) => annotatedEventLine(tracker.observe(e)))];
  writeFileSync(path.join(dir, `nft-dup-${kernel}.jsonl`), `${lines.join('\n')}\n`);
}

/** --on-drop: each report with its dropped packet as the client reads it (with the report's copies). */
function reportsOf(c: CaseResult): { info: CollectedReport['info']; bad: Packet; failure: boolean }[] {
  const out: { info: CollectedReport['info']; bad: Packet; failure: boolean }[] = [];
  const collector = new DropCollector((r) => {
    const copies = r.copies.map((events, i) => ({ events, id: r.info.copies?.[i]?.packet ?? 0 }));
    const bad = packetOf(r.bad, r.info.bad.packet, copies);
    assert.ok(bad, `report ${r.info.n} has its packet`);
    out.push({ info: r.info, bad, failure: isFailure(bad) });
  });
  new RecordDecoder({
    dropReport: (info) => collector.start(info),
    event: (e) => assert.ok(collector.take(e), `an event outside a report: ${e.func}`),
  }).push(c.stream ?? Buffer.alloc(0));
  return out;
}

const only = process.env.KERNEL_MATRIX_ONLY?.split(',');

for (const k of KERNELS.filter((x) => !only || only.includes(x.label))) {
  test(`kernel ${k.label} under qemu: copies made by nft dup`, { timeout: 10 * 60_000 }, async (t) => {
    const helper = path.join(repoRoot(), 'helper/build/amd64/pwru-helper');
    if (!existsSync(helper)) {
      t.skip(`the helper is not built (${helper}): run make -C helper`);
      return;
    }
    const run = await bootGuest({
      kernel: k.label,
      helper,
      cases: plan(k.backend),
      setup: SETUP,
      timeoutMs: 9 * 60_000,
    });
    assert.equal(run.fatal, undefined, `guest setup failed: ${run.fatal}`);
    const saveDir = process.env.KERNEL_MATRIX_SAVE;

    await t.test(`${k.backend}: the copy is linked, the original delivered by it, no loss`, () => {
      const c = ranCleanly(run, 'dup');
      if (saveDir) save(saveDir, k.label, run, c);
      assert.deepEqual(
        c.warnings.filter((w) => w.code === 'copies_not_seen'),
        [],
        describe(c),
      );
      const linked = c.events.filter((e) => e.copiedFrom);
      assert.equal(linked.length, 3, `one link per datagram: ${describe(c)}`);
      const packets = read(c.events);
      const origs = originals(packets);
      assert.equal(origs.length, 3, describe(c));
      for (const o of origs) {
        const drop = o.steps.find((s) => s.event.drop);
        assert.equal(drop?.event.drop?.reason, 'NETFILTER_DROP', describe(c));
        assert.equal(o.copies?.length, 1, `${o.id} has its copy: ${describe(c)}`);
        const copy = o.copies?.[0];
        assert.ok(copy?.copied, 'a copy made by pskb_copy, not a clone');
        const from = copy.steps.find((s) => s.event.copiedFrom)?.event.copiedFrom;
        assert.equal(from?.skb, o.skb, 'copiedFrom names the original skb');
        assert.notEqual(copy.steps[0].event.head, o.steps[0].event.head, 'a data buffer of its own');
        const v = verdictOf(o);
        assert.equal(v.kind, 'delivered', `${describeVerdict(v)}: ${describe(c)}`);
        assert.match(
          describeVerdict(v),
          new RegExp(
            `^delivered \\(a copy to a local socket, packet #${copy.id}\\); the original freed at .+ \\(NETFILTER_DROP\\)$`,
          ),
        );
        // The copy itself was delivered to ns2's receiver, a copy of the original.
        const cv = verdictOf(copy);
        assert.equal(cv.kind, 'delivered', describeVerdict(cv));
        assert.equal(cv.kind === 'delivered' && cv.copyOf, o.id);
      }
      assert.deepEqual(
        losses(packets).map((p) => `#${p.id} ${describeVerdict(verdictOf(p))}`),
        [],
        '--fail-on-drop exits 0',
      );
    });

    await t.test(`${k.backend}: the helper's JSON lines carry the link, as the client would write it`, () => {
      const c = ranCleanly(run, 'dup-json');
      const texts = (c.lines ?? '').split('\n').filter((l) => l.startsWith('{"type":"event"'));
      assert.ok(texts.length > 0, describe(c));
      for (const text of texts) assert.equal(eventJson(JSON.parse(text) as TraceEvent), text);
      const events = texts.map((l) => JSON.parse(l) as TraceEvent);
      assert.equal(events.filter((e) => e.copiedFrom).length, 3, c.lines);
      // show reads the lines: the same links and verdicts.
      const packets = read(events);
      assert.equal(originals(packets).length, 3);
      assert.deepEqual(losses(packets), []);
    });

    await t.test(`${k.backend}: the copy dropped too: both are losses, --fail-on-drop counts them`, () => {
      const c = ranCleanly(run, 'dup-both');
      const packets = read(c.events);
      const origs = originals(packets);
      assert.equal(origs.length, 3, describe(c));
      for (const o of origs) {
        assert.equal(o.copies?.length, 1, describe(c));
        assert.equal(isLoss(verdictOf(o)), true, describeVerdict(verdictOf(o)));
        const copy = o.copies?.[0];
        assert.ok(copy);
        assert.equal(isLoss(verdictOf(copy)), true, describeVerdict(verdictOf(copy)));
      }
      assert.equal(losses(packets).length, 6, describe(c));
    });

    await t.test(
      `${k.backend} --on-drop: the originals' reports carry their copies, delivered: no failure`,
      () => {
        const c = ranCleanly(run, 'dup-on-drop');
        const reports = reportsOf(c);
        assert.equal(reports.length, 3, describe(c));
        for (const r of reports) {
          assert.equal(r.bad.steps.find((s) => s.event.drop)?.event.drop?.reason, 'NETFILTER_DROP');
          assert.equal(r.info.copies?.length, 1, JSON.stringify(r.info));
          assert.equal(r.bad.copies?.length, 1, 'the copy linked in the report');
          assert.equal(r.bad.copies?.[0].copied, true, 'by its COPY record: a copy made by pskb_copy');
          const v = verdictOf(r.bad);
          assert.equal(v.kind, 'delivered', describeVerdict(v));
          assert.equal(r.failure, false);
        }
      },
    );

    await t.test(`${k.backend} --on-drop: the copy dropped too: every report a failure`, () => {
      const c = ranCleanly(run, 'dup-both-on-drop');
      const reports = reportsOf(c);
      assert.equal(reports.length, 6, `three originals and three copies: ${describe(c)}`);
      assert.ok(reports.every((r) => r.failure));
      const withCopies = reports.filter((r) => r.info.copies?.length);
      assert.equal(withCopies.length, 3, 'the originals carry their dropped copies');
      for (const r of withCopies) assert.equal(r.info.copies?.[0].ended, 'dropped');
    });

    await t.test('tracepoint: no link, the original a loss, and the helper says it could not tell', () => {
      const c = ranCleanly(run, 'dup-tracepoint');
      assert.equal(c.events.filter((e) => e.copiedFrom).length, 0);
      const w = c.warnings.filter((x) => x.code === 'copies_not_seen');
      assert.equal(w.length, 1, describe(c));
      assert.match(w[0].message, /could not tell/);
      const packets = read(c.events);
      const dropped = packets.filter((p) => p.steps.some((s) => s.event.drop?.reason === 'NETFILTER_DROP'));
      assert.equal(dropped.length, 3, describe(c));
      for (const p of dropped) {
        assert.equal(p.copies, undefined);
        assert.equal(isLoss(verdictOf(p)), true);
      }
    });
  });
}
