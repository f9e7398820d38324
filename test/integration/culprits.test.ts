/**
 * Netfilter drops named down to the rule, on this kernel (tracepoints only:
 * the rule is known by its counter moving in the namespace of the drop).
 * One namespace holds iptables-legacy, iptables-nft and native nftables rules
 * that drop one port each, among rules that let others through; one datagram
 * to each port must name the right rule, text and position, in `-o json`
 * (the helper's own lines), in the text view, in a saved file and in `show`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceCulprit, TraceEvent, TraceLine } from '../../src/record/event';
import { NetLab } from './netlab';
import { CLI, runCli } from './tracer';

/** A trace of the CLI whose output can be waited on while it runs. */
class Trace {
  out = '';
  err = '';
  private readonly closed: Promise<number | null>;

  constructor(private readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => {
      this.out += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.err += d.toString();
    });
    this.closed = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  }

  /** Waits (bounded) until the output says what test() looks for. */
  async until(what: string, test: (t: Trace) => boolean, ms = 20000): Promise<void> {
    const end = Date.now() + ms;
    while (!test(this)) {
      if (this.child.exitCode !== null) throw new Error(`trace ended before ${what}:\n${this.err}`);
      if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms:\n${this.out}\n${this.err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<number | null> {
    this.child.kill('SIGINT');
    return this.closed;
  }
}

function start(args: string[]): Trace {
  return new Trace(
    spawn(process.execPath, [CLI, '--local', '--duration', '60s', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    }),
  );
}

function jsonLines(text: string): TraceLine[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as TraceLine);
}

const count = (text: string, what: RegExp) => (text.match(what) ?? []).length;

describe('netfilter drops named down to the rule (counters, tracepoint backend)', () => {
  const lab = new NetLab();
  let a = '';
  let b = '';
  let dst = '';
  const dir = mkdtempSync(join(tmpdir(), 'pwru-culprits-'));
  // The port each rule drops, and the rule as its tool prints it.
  const expected = [
    {
      port: 6102,
      tool: 'iptables-legacy',
      table: 'filter',
      chain: 'PWRU-LEGACY',
      hook: 'INPUT',
      position: 2,
      text: '-A PWRU-LEGACY -p udp -m udp --dport 6102 -j DROP',
    },
    {
      port: 6103,
      tool: 'iptables-nft',
      table: 'filter',
      chain: 'INPUT',
      hook: 'INPUT',
      position: 2,
      text: '-A INPUT -p udp -m udp --dport 6103 -j REJECT --reject-with icmp-port-unreachable',
    },
    {
      port: 6104,
      tool: 'nft',
      table: 'pwru',
      chain: 'in',
      hook: 'input',
      position: 2,
      text: 'udp dport 6104 counter drop',
    },
  ];

  before(() => {
    [a, b] = lab.pair();
    dst = lab.v4(1, 2);
    const ipt = (tool: string, ...args: string[]) => lab.exec(b, tool, args);
    // iptables-legacy: a user chain reached from INPUT; its second rule drops.
    ipt('iptables-legacy', '-N', 'PWRU-LEGACY');
    ipt('iptables-legacy', '-A', 'PWRU-LEGACY', '-p', 'udp', '--dport', '6101', '-j', 'ACCEPT');
    ipt('iptables-legacy', '-A', 'PWRU-LEGACY', '-p', 'udp', '--dport', '6102', '-j', 'DROP');
    ipt('iptables-legacy', '-A', 'INPUT', '-p', 'udp', '-j', 'PWRU-LEGACY');
    // iptables-nft: the second rule of INPUT rejects.
    ipt('iptables-nft', '-A', 'INPUT', '-p', 'udp', '--dport', '6101', '-j', 'ACCEPT');
    ipt('iptables-nft', '-A', 'INPUT', '-p', 'udp', '--dport', '6103', '-j', 'REJECT');
    // Native nftables: a counted drop, and a drop without a counter (cannot be seen moving).
    lab.exec(b, 'nft', [
      'add table inet pwru; ' +
        'add chain inet pwru in { type filter hook input priority 10; policy accept; }; ' +
        'add rule inet pwru in udp dport 6101 counter accept; ' +
        'add rule inet pwru in udp dport 6104 counter drop; ' +
        'add rule inet pwru in udp dport 6105 drop',
    ]);
  });
  after(() => {
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('-o json: each drop has a culprit line naming its rule, or saying why not', async () => {
    const trace = start(['-o', 'json', `udp and host ${dst}`]);
    await trace.until('ready', (t) => /tracing with/.test(t.err));
    // One datagram at a time, each drop's culprit awaited: every rule is read between two drops.
    for (const [i, port] of [6101, 6102, 6103, 6104, 6105].entries()) {
      lab.traffic(a, ['udp', dst, String(port), '1']);
      if (port !== 6101)
        await trace.until(`the culprit of port ${port}`, (t) => count(t.out, /"type":"culprit"/g) >= i);
    }
    const code = await trace.stop();
    assert.equal(code, 0, trace.err);
    const lines = jsonLines(trace.out);
    const events = lines.filter((l): l is TraceEvent => l.type === 'event');
    const culprits = lines.filter((l): l is TraceCulprit => l.type === 'culprit');
    const dropOf = (port: number) =>
      events.find((e) => e.drop?.reason === 'NETFILTER_DROP' && e.tuple?.dport === port);
    const culpritOf = (e: TraceEvent | undefined) => culprits.find((c) => c.skb === e?.skb && c.ts === e?.ts);

    assert.equal(dropOf(6101), undefined, 'the accepted port is not dropped by netfilter');
    for (const want of expected) {
      const drop = dropOf(want.port);
      assert.ok(drop, `port ${want.port} dropped by netfilter:\n${trace.out}`);
      const c = culpritOf(drop);
      assert.ok(c, `a culprit for port ${want.port}`);
      assert.equal(c.method, 'counters', JSON.stringify(c));
      assert.equal(c.netns, lab.inode(b));
      assert.equal(c.kind, 'netfilter');
      const { tool, table, chain, hook, position, text } = c.rule ?? {};
      assert.deepEqual(
        { port: want.port, tool, table, chain, hook, position, text },
        { ...want },
        `port ${want.port}`,
      );
    }
    const uncounted = culpritOf(dropOf(6105));
    assert.ok(uncounted, 'the drop by a rule without a counter has a culprit line');
    assert.equal(uncounted.method, 'none');
    assert.equal(uncounted.rule, undefined, 'no rule is guessed');
    assert.match(uncounted.why ?? '', /1 rule that drops has no counter/);
  });

  test('text view, saved file and show: the rule under the drop line and in the verdict table', async () => {
    const file = join(dir, 'trace.jsonl');
    const trace = start(['--output-file', file, `udp and host ${dst} and port 6102`]);
    await trace.until('ready', (t) => /tracing with/.test(t.err));
    lab.traffic(a, ['udp', dst, '6102', '1']);
    await trace.until('the culprit line', (t) => /↳/.test(t.out));
    const code = await trace.stop();
    assert.equal(code, 0, trace.err);
    const want =
      '`-A PWRU-LEGACY -p udp -m udp --dport 6102 -j DROP` in filter/INPUT (rule 2 of PWRU-LEGACY, iptables-legacy)';
    assert.ok(trace.out.includes(`dropped by ${want}; known because its counter moved`), trace.out);
    assert.match(
      trace.out,
      /kfree_skb\(NETFILTER_DROP\)[^\n]*\n {4}↳ 0x[0-9a-f]+ dropped by `-A PWRU-LEGACY/,
    );

    const saved = jsonLines(readFileSync(file, 'utf8'));
    assert.equal(saved.filter((l) => l.type === 'culprit').length, 1, 'the file holds the culprit line');
    const shown = await runCli(['show', file, '--no-color']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.ok(shown.stdout.includes(`↳`) && shown.stdout.includes(want), shown.stdout);
    const summary = await runCli(['show', file, '--summary', '-o', 'json']);
    const rows = (JSON.parse(summary.stdout) as { packets: { culprit?: { method: string; text: string } }[] })
      .packets;
    const named = rows.filter((r) => r.culprit);
    assert.equal(named.length, 1, summary.stdout);
    assert.equal(named[0].culprit?.method, 'counters');
    assert.ok(named[0].culprit?.text.includes(want));

    // diff against a datagram that got through: the sentence names the rule.
    await lab.serve(b, ['udp-serve', '6101']);
    const goodFile = join(dir, 'good.jsonl');
    const good = start(['--output-file', goodFile, `udp and host ${dst} and port 6101`]);
    await good.until('ready', (t) => /tracing with/.test(t.err));
    lab.traffic(a, ['udp', dst, '6101', '1']);
    await good.until('the delivery', (t) => /netif_receive_skb/.test(t.out));
    assert.equal(await good.stop(), 0, good.err);
    const diff = await runCli(['diff', goodFile, file, '-o', 'json']);
    assert.equal(diff.code, 0, diff.stderr);
    const d = JSON.parse(diff.stdout) as { sentence: string; bad: { culprit?: string } };
    const phrase = '`-A PWRU-LEGACY -p udp -m udp --dport 6102 -j DROP` in filter/INPUT';
    assert.equal(d.bad.culprit, phrase);
    assert.ok(/the failing one .*is dropped by `-A PWRU-LEGACY/.test(d.sentence), d.sentence);
  });
});

describe('forwarded packets: a user chain reached from FORWARD, and a DROP policy (counters)', () => {
  const lab = new NetLab();
  let a = '';
  let b = '';
  let c = '';
  let dst = '';

  before(() => {
    a = lab.ns('a');
    b = lab.ns('b');
    c = lab.ns('c');
    lab.link(a, b, 1);
    lab.link(b, c, 2);
    dst = lab.v4(2, 2);
    lab.exec(b, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    lab.exec(a, 'ip', ['route', 'add', `${lab.v4(2, 0)}/24`, 'via', lab.v4(1, 2)]);
    lab.exec(c, 'ip', ['route', 'add', `${lab.v4(1, 0)}/24`, 'via', lab.v4(2, 1)]);
    // As kube-proxy lays it out: FORWARD jumps to KUBE-FORWARD, which drops; the rest meets the policy.
    const ipt = (...args: string[]) => lab.exec(b, 'iptables-nft', args);
    ipt('-N', 'KUBE-FORWARD');
    ipt('-A', 'FORWARD', '-j', 'KUBE-FORWARD');
    ipt('-A', 'FORWARD', '-p', 'udp', '--dport', '6400', '-j', 'ACCEPT');
    ipt('-A', 'KUBE-FORWARD', '-p', 'udp', '--dport', '6401', '-j', 'DROP');
    ipt('-P', 'FORWARD', 'DROP');
  });
  after(() => lab.destroy());

  test('the rule in KUBE-FORWARD on hook FORWARD, and the policy, each named', async () => {
    const trace = start(['-o', 'json', `udp and host ${dst}`]);
    await trace.until('ready', (t) => /tracing with/.test(t.err));
    lab.traffic(a, ['udp', dst, '6401', '1']);
    await trace.until('the first culprit', (t) => count(t.out, /"type":"culprit"/g) >= 1);
    lab.traffic(a, ['udp', dst, '6402', '1']);
    await trace.until('the second culprit', (t) => count(t.out, /"type":"culprit"/g) >= 2);
    assert.equal(await trace.stop(), 0, trace.err);
    const lines = jsonLines(trace.out);
    const culpritOf = (port: number) => {
      const drop = lines.find(
        (l): l is TraceEvent =>
          l.type === 'event' && l.drop?.reason === 'NETFILTER_DROP' && l.tuple?.dport === port,
      );
      assert.ok(drop, `port ${port} dropped by netfilter`);
      return lines.find(
        (l): l is TraceCulprit => l.type === 'culprit' && l.skb === drop.skb && l.ts === drop.ts,
      );
    };
    const chain = culpritOf(6401);
    assert.equal(chain?.method, 'counters', JSON.stringify(chain));
    assert.deepEqual(
      { ...chain?.rule, counted: undefined },
      {
        tool: 'iptables-nft',
        family: 'ip',
        table: 'filter',
        chain: 'KUBE-FORWARD',
        hook: 'FORWARD',
        position: 1,
        text: '-A KUBE-FORWARD -p udp -m udp --dport 6401 -j DROP',
        counted: undefined,
      },
    );
    const policy = culpritOf(6402);
    assert.equal(policy?.method, 'counters', JSON.stringify(policy));
    assert.deepEqual(
      { ...policy?.rule, counted: undefined },
      {
        tool: 'iptables-nft',
        family: 'ip',
        table: 'filter',
        chain: 'FORWARD',
        hook: 'FORWARD',
        policy: true,
        text: '-P FORWARD DROP',
        counted: undefined,
      },
    );
  });
});
