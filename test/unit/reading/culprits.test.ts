/**
 * Culprits without root: the CULPRIT frame as bpf/event.h numbers it, the
 * words each kind of rule is given, the lines a saved trace may hold, and the
 * verdict table and diff naming the rule of a drop.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CulpritBook,
  culpritPhrase,
  describeCulprit,
  describeProgRun,
  describeRule,
  ProgRunBook,
} from '../../../src/reading/culprits';
import { diffPackets } from '../../../src/reading/diff';
import { PacketTracker } from '../../../src/reading/packet-tracker';
import { SummaryBuilder } from '../../../src/reading/summary';
import { parseTraceLine, TraceFileError } from '../../../src/reading/trace-file';
import { FrameType, RecordDecoder } from '../../../src/record/decode';
import type { CulpritRule, TraceCulprit, TraceEvent, TraceProgRun } from '../../../src/record/event';
import { ROOT } from '../fixtures';
import { HELLO, json } from '../record-stream';

const LEGACY: CulpritRule = {
  tool: 'iptables-legacy',
  family: 'ip',
  table: 'filter',
  chain: 'KUBE-FORWARD',
  hook: 'FORWARD',
  position: 3,
  text: '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
  counted: 1,
};
const NFT: CulpritRule = {
  tool: 'nft',
  family: 'inet',
  table: 'mine',
  chain: 'in',
  hook: 'input',
  position: 2,
  handle: 7,
  text: 'udp dport 6104 counter drop',
};

function culprit(over: Partial<TraceCulprit>): TraceCulprit {
  return {
    type: 'culprit',
    v: 1,
    ts: '2000',
    skb: '0xffff1',
    netns: 4026532000,
    kind: 'netfilter',
    method: 'counters',
    rule: LEGACY,
    ...over,
  };
}

function event(func: string, ts: string, drop = false): TraceEvent {
  return {
    type: 'event',
    v: 1,
    ts,
    time: '',
    skb: '0xffff1',
    func,
    probe: 'tracepoint',
    cpu: 0,
    pid: 1,
    process: 'x',
    netns: 4026532000,
    mark: 0,
    ifindex: 2,
    iface: 'eth0',
    l3proto: 'IPv4',
    mtu: 1500,
    len: 60,
    pktType: 'host',
    tuple: { family: 4, proto: 'UDP', src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 6104 },
    ...(drop ? { drop: { reason: 'NETFILTER_DROP', code: 12 }, freed: true } : {}),
  };
}

describe('culprits', () => {
  test('the CULPRIT frame has the number bpf/event.h gives it, and reaches the listener', () => {
    const header = readFileSync(join(ROOT, 'bpf', 'event.h'), 'utf8');
    assert.equal(Number(/PWRU_FRAME_CULPRIT = (\d+)/.exec(header)?.[1]), FrameType.Culprit);
    const seen: unknown[] = [];
    const d = new RecordDecoder({ culprit: (c) => seen.push(c) });
    const { type: _t, v: _v, ...payload } = culprit({});
    d.push(Buffer.concat([json(FrameType.Hello, HELLO), json(FrameType.Culprit, payload)]));
    assert.deepEqual(seen, [payload]);
  });

  test('rules in words: iptables by table/hook and position, nft by family, table/chain and handle', () => {
    assert.equal(
      describeRule(LEGACY),
      '`-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP` in filter/FORWARD (rule 3 of KUBE-FORWARD, iptables-legacy)',
    );
    assert.equal(
      describeRule(NFT),
      '`udp dport 6104 counter drop` in inet mine/in (handle 7, hook input, nft)',
    );
    assert.equal(
      describeRule({
        ...LEGACY,
        chain: 'FORWARD',
        position: undefined,
        policy: true,
        text: '-P FORWARD DROP',
      }),
      '`-P FORWARD DROP` in filter/FORWARD (policy of FORWARD, iptables-legacy)',
    );
    assert.equal(
      culpritPhrase(culprit({})),
      '`-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP` in filter/FORWARD',
    );
  });

  test('the chain exactly from the kernel, the rule by counters; or the chain alone; or why not', () => {
    const exact = {
      method: 'exact' as const,
      by: 'ipt_do_table',
      family: 'ip',
      table: 'filter',
      chain: 'FORWARD',
      hook: 'FORWARD',
    };
    assert.equal(
      describeCulprit(culprit({ chain: exact })),
      'dropped in ip filter/FORWARD, exactly (ipt_do_table returned NF_DROP); the rule, by counters: `-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP` in filter/FORWARD (rule 3 of KUBE-FORWARD, iptables-legacy), since its counter moved',
    );
    const nft = {
      method: 'exact' as const,
      by: 'nft_do_chain',
      family: 'inet',
      table: 'mine',
      chain: 'in',
      hook: 'input',
    };
    const unknown = culprit({
      method: 'none',
      rule: undefined,
      why: 'no rule that drops counted',
      chain: nft,
    });
    assert.equal(
      describeCulprit(unknown),
      'dropped in inet mine/in, hook input, exactly (nft_do_chain returned NF_DROP); which rule: could not tell (no rule that drops counted)',
    );
    assert.equal(culpritPhrase(unknown), 'a rule of inet mine/in');
    const notSaid = culprit({ chain: { method: 'none', why: 'another netfilter hook dropped it' } });
    assert.match(
      describeCulprit(notSaid),
      /known because its counter moved \(the chain: could not tell: another netfilter hook dropped it\)$/,
    );
    assert.equal(
      culpritPhrase(culprit({ method: 'none', rule: undefined, chain: notSaid.chain })),
      undefined,
    );
  });

  test('tc and XDP: the program attached there, or one of several', () => {
    const prog = {
      id: 41,
      name: 'drop_all',
      tag: '0123456789abcdef',
      attach: 'clsact',
      detail: 'filter x.o:[tc] pref 1 handle 0x1',
    };
    const tc = culprit({
      kind: 'tc',
      method: 'attached',
      rule: undefined,
      iface: 'eth0',
      ifindex: 2,
      direction: 'ingress',
      verdict: 'TC_ACT_SHOT',
      programs: [prog],
    });
    assert.equal(
      describeCulprit(tc),
      'dropped by BPF program drop_all (id 41, tag 0123456789abcdef, clsact filter x.o:[tc] pref 1 handle 0x1) at tc ingress of eth0:2, which returned TC_ACT_SHOT; known because it is the one program attached there',
    );
    assert.equal(culpritPhrase(tc), 'BPF program drop_all (id 41) at tc ingress of eth0:2');
    // Programs traced in this run, but not this one yet: why it is not exact.
    assert.match(
      describeCulprit({ ...tc, why: 'drop_all (id 41): loaded after the trace began and not traced yet' }),
      /; known because it is the one program attached there \(not known exactly: drop_all \(id 41\): loaded after the trace began and not traced yet\)$/,
    );
    const two = {
      ...tc,
      kind: 'xdp' as const,
      verdict: 'XDP_DROP or XDP_ABORTED',
      programs: [prog, { ...prog, id: 42, name: 'other' }],
    };
    assert.match(
      describeCulprit(two),
      /^dropped at XDP of eth0:2 \(XDP_DROP or XDP_ABORTED\) by one of the BPF programs attached there/,
    );
    assert.equal(
      culpritPhrase(two),
      'one of the BPF programs drop_all (id 41), other (id 42) at XDP of eth0:2',
    );
    assert.equal(culpritPhrase({ ...tc, method: 'none', programs: undefined, why: 'gone' }), undefined);
  });

  test('tc and XDP, exactly: the one program that returned the drop, and its verdict', () => {
    const x = culprit({
      kind: 'tc',
      method: 'exact',
      rule: undefined,
      iface: 'veth2',
      ifindex: 2,
      direction: 'ingress',
      verdict: 'TC_ACT_SHOT',
      programs: [{ id: 12, name: 'pwru_tc_drop', tag: '0123456789abcdef', attach: 'tcx' }],
    });
    assert.equal(
      describeCulprit(x),
      'dropped by BPF program pwru_tc_drop (id 12, tag 0123456789abcdef, tcx) at tc ingress of veth2:2, which returned TC_ACT_SHOT; known exactly (the program traced as it returned)',
    );
    assert.equal(culpritPhrase(x), 'BPF program pwru_tc_drop (id 12) at tc ingress of veth2:2');
  });

  test('a program run (PROG frame): numbered as bpf/event.h says, read back from a saved trace, put in words', () => {
    const header = readFileSync(join(ROOT, 'bpf', 'event.h'), 'utf8');
    assert.equal(Number(/PWRU_FRAME_PROG = (\d+)/.exec(header)?.[1]), FrameType.Prog);
    const run: TraceProgRun = {
      type: 'prog',
      v: 1,
      ts: '1500',
      skb: '0xffff1',
      netns: 4026532000,
      kind: 'tc',
      iface: 'veth2',
      ifindex: 2,
      direction: 'ingress',
      program: { id: 13, name: 'pwru_tc_redir', tag: 'fedcba9876543210' },
      ret: 7,
      verdict: 'TC_ACT_REDIRECT',
    };
    const seen: unknown[] = [];
    const d = new RecordDecoder({ prog: (p) => seen.push(p) });
    const { type: _t, v: _v, ...payload } = run;
    d.push(Buffer.concat([json(FrameType.Hello, HELLO), json(FrameType.Prog, payload)]));
    assert.deepEqual(seen, [payload]);
    assert.deepEqual(parseTraceLine(JSON.stringify(run), 't.jsonl', 1), run);
    const { program: _p, ...noProgram } = run;
    assert.throws(() => parseTraceLine(JSON.stringify(noProgram), 't.jsonl', 1), TraceFileError);
    assert.equal(
      describeProgRun(run),
      'handled by BPF program pwru_tc_redir (id 13, tag fedcba9876543210) at tc ingress of veth2:2: TC_ACT_REDIRECT',
    );
    assert.equal(
      describeProgRun({ ...run, kind: 'xdp', direction: undefined, ret: 2, verdict: 'XDP_PASS' }),
      'handled by BPF program pwru_tc_redir (id 13, tag fedcba9876543210) at XDP of veth2:2: XDP_PASS',
    );
  });

  test('could not tell: the reason and the candidates, and no rule named', () => {
    const c = culprit({
      method: 'none',
      rule: undefined,
      why: '2 rules that drop counted packets',
      candidates: [LEGACY, NFT],
    });
    assert.equal(culpritPhrase(c), undefined);
    assert.match(
      describeCulprit(c),
      /^which rule dropped it: could not tell \(2 rules that drop counted packets\); it was one of: `-A KUBE-FORWARD/,
    );
  });

  test('saved traces: culprit lines are read back; one without its namespace is refused', () => {
    const line = JSON.stringify(culprit({}));
    assert.deepEqual(parseTraceLine(line, 't.jsonl', 1), culprit({}));
    const { netns: _n, ...bad } = culprit({});
    assert.throws(() => parseTraceLine(JSON.stringify(bad), 't.jsonl', 2), TraceFileError);
  });

  test('the rule exactly, by its handle: nft by handle, iptables-nft by position and handle; in the table and diff', () => {
    const nftChain = {
      method: 'exact' as const,
      by: 'nft_do_chain',
      family: 'inet',
      table: 'mine',
      chain: 'in',
      hook: 'input',
    };
    const nft = culprit({ method: 'exact', chain: nftChain, rule: { ...NFT, chain: 'sub' } });
    assert.equal(
      describeCulprit(nft),
      'dropped by `udp dport 6104 counter drop` in inet mine/sub (handle 7, hook input, nft); known exactly (its drop verdict ran, and nft_do_chain returned NF_DROP)',
    );
    const ipt = culprit({
      method: 'exact',
      chain: { ...nftChain, family: 'ip', table: 'filter', chain: 'INPUT' },
      rule: {
        tool: 'iptables-nft',
        family: 'ip',
        table: 'filter',
        chain: 'PWRU-SUB',
        hook: 'INPUT',
        position: 2,
        handle: 8,
        text: '-A PWRU-SUB -p udp -m udp --dport 9041 -j DROP',
      },
    });
    assert.equal(
      describeCulprit(ipt),
      'dropped by `-A PWRU-SUB -p udp -m udp --dport 9041 -j DROP` in filter/INPUT (rule 2 of PWRU-SUB, handle 8, iptables-nft); known exactly (its drop verdict ran, and nft_do_chain returned NF_DROP)',
    );
    assert.equal(culpritPhrase(ipt), '`-A PWRU-SUB -p udp -m udp --dport 9041 -j DROP` in filter/INPUT');

    const book = new CulpritBook();
    book.add(nft);
    const tracker = new PacketTracker();
    const summary = new SummaryBuilder();
    for (const e of [event('netif_receive_skb', '1000'), event('kfree_skb', '2000', true)])
      summary.step(tracker.observe(e).step);
    for (const p of tracker.packets()) summary.packet(p);
    const s = summary.build([], [], book);
    assert.equal(s.packets[0].culprit?.method, 'exact');
    assert.match(
      s.packets[0].text,
      /dropped by `udp dport 6104 counter drop` in inet mine\/sub .*known exactly/,
    );
    const good = new PacketTracker();
    good.observe(event('netif_receive_skb', '1000'));
    const d = diffPackets(good.packets()[0], tracker.packets()[0], { bad: book });
    assert.match(d.sentence, /is dropped by `udp dport 6104 counter drop` in inet mine\/sub/);
  });

  test('the verdict table and diff name the rule of the drop the culprit points at', () => {
    const book = new CulpritBook();
    book.add(culprit({ ts: '2000' }));
    const tracker = new PacketTracker();
    const summary = new SummaryBuilder();
    for (const e of [event('netif_receive_skb', '1000'), event('kfree_skb', '2000', true)])
      summary.step(tracker.observe(e).step);
    for (const p of tracker.packets()) summary.packet(p);
    const s = summary.build([], [], book);
    assert.equal(s.packets[0].culprit?.method, 'counters');
    assert.match(s.packets[0].text, /dropped by `-A KUBE-FORWARD .* -j DROP` in filter\/FORWARD/);
    // Another drop at another time is not this culprit's.
    assert.equal(book.of(event('kfree_skb', '2001', true)), undefined);

    const good = new PacketTracker();
    good.observe(event('netif_receive_skb', '1000'));
    const d = diffPackets(good.packets()[0], tracker.packets()[0], { bad: book });
    assert.match(
      d.sentence,
      /is dropped by `-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP` in filter\/FORWARD/,
    );
  });

  test('the verdict table names the programs that handled a packet: its skb, between its first and last steps', () => {
    const run = (ts: string, verdict: string, skb = '0xffff1'): TraceProgRun => ({
      type: 'prog',
      v: 1,
      ts,
      skb,
      netns: 4026532000,
      kind: 'tc',
      iface: 'eth0',
      ifindex: 2,
      direction: 'egress',
      program: { id: 7, name: 'out', tag: '0123456789abcdef' },
      ret: verdict === 'TC_ACT_OK' ? 0 : 7,
      verdict,
    });
    const book = new ProgRunBook();
    // Before the packet (another packet at the same address), during it, after it, on another skb.
    for (const r of [
      run('900', 'TC_ACT_OK'),
      run('1500', 'TC_ACT_REDIRECT'),
      run('2100', 'TC_ACT_OK'),
      run('1600', 'TC_ACT_OK', '0xffff2'),
    ])
      book.add(r);
    const tracker = new PacketTracker();
    const summary = new SummaryBuilder();
    for (const e of [event('__dev_queue_xmit', '1000'), event('consume_skb', '2000')])
      summary.step(tracker.observe(e).step);
    for (const p of tracker.packets()) summary.packet(p);
    const s = summary.build([], [], undefined, book);
    assert.deepEqual(s.packets[0].programs, [
      'handled by BPF program out (id 7, tag 0123456789abcdef) at tc egress of eth0:2: TC_ACT_REDIRECT',
    ]);
    // Bounded: past its limit, the oldest skbs' runs are forgotten.
    const small = new ProgRunBook(1);
    small.add(run('1500', 'TC_ACT_OK'));
    small.add(run('1600', 'TC_ACT_OK', '0xffff2'));
    assert.deepEqual(small.of({ skbs: new Set(['0xffff1']), first: '1000', last: '2000' }), []);
  });

  test('diff says when the programs that handled the two packets differ', () => {
    const run = (verdict: string, ret: number): TraceProgRun => ({
      type: 'prog',
      v: 1,
      ts: '1500',
      skb: '0xffff1',
      netns: 4026532000,
      kind: 'tc',
      iface: 'eth0',
      ifindex: 2,
      direction: 'egress',
      program: { id: 7, name: 'out', tag: '0123456789abcdef' },
      ret,
      verdict,
    });
    const packet = () => {
      const t = new PacketTracker();
      for (const e of [event('__dev_queue_xmit', '1000'), event('consume_skb', '2000')]) t.observe(e);
      return t.packets()[0];
    };
    const good = new ProgRunBook();
    good.add(run('TC_ACT_OK', 0));
    const bad = new ProgRunBook();
    bad.add(run('TC_ACT_REDIRECT', 7));
    const d = diffPackets(packet(), packet(), {}, { good, bad });
    assert.deepEqual(d.badPrograms, ['out (id 7) at tc egress of eth0:2: TC_ACT_REDIRECT']);
    assert.match(
      d.sentence,
      / The failing one was handled by out \(id 7\) at tc egress of eth0:2: TC_ACT_REDIRECT; the working one by out \(id 7\) at tc egress of eth0:2: TC_ACT_OK\.$/,
    );
    // The same programs, the same verdicts: nothing said.
    assert.doesNotMatch(diffPackets(packet(), packet(), {}, { good, bad: good }).sentence, /handled by/);
  });
});
