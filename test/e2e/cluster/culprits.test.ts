/**
 * Culprits through Kubernetes mode on the real cluster: inside a real pod's
 * network namespace, an iptables-nft rule drops one UDP port and a tc ingress
 * program (built here with clang) drops another. `kubectl pwru pod/NAME`
 * must name the rule (text, chain, position: read by the node's own tools,
 * from the debug pod) and the program (id, name, tag, interface, direction).
 * And the verdicts: ping and a TCP exchange with the pod are delivered
 * (--fail-on-drop exits 0), a datagram to the dropping port in the same run
 * is a loss (exit 3).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readdirSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceCulprit, TraceEvent } from '../../../src/record/event';
import { buildDropPrograms, tcFilterArgs } from '../../integration/drop-programs';
import {
  type CliRun,
  deleteNamespace,
  jsonLines,
  KUBECONFIG,
  makeWorld,
  podIp,
  podName,
  startCli,
  type World,
} from './world';

const skip = KUBECONFIG ? false : 'no cluster (scripts/run-tests.js says why)';

/** A process in the network namespace that holds ip (a pod's pause process, on this node). */
function processInNetnsOf(ip: string): number {
  const tried = new Set<number>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let inode: number;
    try {
      inode = statSync(`/proc/${pid}/ns/net`).ino;
    } catch {
      continue;
    }
    if (tried.has(inode)) continue;
    tried.add(inode);
    try {
      const addrs = execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', '-4', 'addr'], {
        encoding: 'utf8',
      });
      if (addrs.includes(` ${ip}/`)) return Number(pid);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no process is in the network namespace of ${ip}`);
}

function inPod(pid: number, cmd: string, args: string[]): string {
  return execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, cmd, ...args], { encoding: 'utf8' });
}

describe('culprits through Kubernetes mode', { skip }, () => {
  let world: World;
  let pid = 0;
  let ip = '';

  before(async () => {
    world = await makeWorld();
    ip = podIp(world.pods.deploy[0]);
    pid = processInNetnsOf(ip);
    const obj = join(world.dir, 'drop.bpf.o');
    buildDropPrograms(obj);
    inPod(pid, 'iptables-nft', ['-A', 'INPUT', '-p', 'udp', '--dport', '6300', '-j', 'ACCEPT']);
    inPod(pid, 'iptables-nft', ['-A', 'INPUT', '-p', 'udp', '--dport', '6301', '-j', 'DROP']);
    inPod(pid, 'tc', ['qdisc', 'add', 'dev', 'eth0', 'clsact']);
    inPod(pid, 'tc', tcFilterArgs('eth0', 'ingress', obj));
  });
  after(async () => {
    if (world) await deleteNamespace(world.ns);
  });

  /** `kubectl pwru pod/NAME` with the tracepoint backend for a minute, once it traces. */
  async function tracePod(format: 'json' | 'text', filter: string, extra: string[] = []): Promise<CliRun> {
    const pod = podName(world.pods.deploy[0]);
    const run = startCli([
      `pod/${pod}`,
      '-n',
      world.ns,
      '--backend',
      'tracepoint',
      '--duration',
      '60s',
      '-o',
      format,
      ...extra,
      filter,
    ]);
    await run.waitForStderr(/tracing with/);
    return run;
  }

  /** `kubectl pwru pod/NAME -o FORMAT` on the two ports that drop, once one datagram went to each. */
  async function traceDrops(format: 'json' | 'text'): Promise<CliRun> {
    const run = await tracePod(format, 'udp and (port 6301 or port 6201)');
    const sock = createSocket('udp4');
    for (const port of [6301, 6201]) await new Promise((r) => sock.send('pwru-e2e', port, ip, r));
    sock.close();
    return run;
  }

  test('pod/NAME: the iptables rule and the tc program that dropped, named', async () => {
    const tc = /id (\d+) name pwru_tc_drop tag ([0-9a-f]{16})/.exec(
      inPod(pid, 'tc', ['filter', 'show', 'dev', 'eth0', 'ingress']),
    );
    assert.ok(tc, 'the tc program is attached');
    const run = await traceDrops('json');
    await run.waitForStdout(/"type":"culprit"[^\n]*\n(.*\n)*.*"type":"culprit"/, 30_000);
    run.child.kill('SIGINT');
    assert.equal(await run.done, 0, run.stderr);

    const lines = jsonLines(run.stdout);
    const events = lines.filter((l) => l.type === 'event') as TraceEvent[];
    const culprits = lines.filter((l) => l.type === 'culprit') as TraceCulprit[];
    const culpritOf = (port: number) => {
      const drop = events.find((e) => e.drop && e.tuple?.dport === port);
      assert.ok(drop, `the drop of port ${port} is traced:\n${run.stdout}`);
      const c = culprits.find((x) => x.skb === drop.skb && x.ts === drop.ts);
      assert.ok(c, `a culprit for port ${port}`);
      assert.equal(c.node, drop.node, 'named by the node of its drop');
      return c;
    };
    const rule = culpritOf(6301);
    assert.equal(rule.method, 'counters', JSON.stringify(rule));
    assert.deepEqual(
      { ...rule.rule },
      {
        tool: 'iptables-nft',
        family: 'ip',
        table: 'filter',
        chain: 'INPUT',
        hook: 'INPUT',
        position: 2,
        text: '-A INPUT -p udp -m udp --dport 6301 -j DROP',
        counted: 1,
      },
    );
    const prog = culpritOf(6201);
    assert.equal(prog.kind, 'tc');
    assert.equal(prog.method, 'attached');
    assert.equal(prog.iface, 'eth0');
    assert.equal(prog.direction, 'ingress');
    assert.equal(prog.verdict, 'TC_ACT_SHOT');
    assert.deepEqual(
      prog.programs?.map((p) => [p.id, p.name, p.tag, p.attach]),
      [[Number(tc[1]), 'pwru_tc_drop', tc[2], 'clsact']],
    );
  });

  /** The test's own TCP client port: the kubelet's readiness probes reach the same server (and drop its answers). */
  const CLIENT_PORT = 40000 + (process.pid % 20000);

  /** One TCP exchange with the pod's server (it answers "hi", then the connection closes). */
  function tcpExchange(localPort: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const c = connect({ port: 8080, host: ip, localPort });
      c.setTimeout(5000, () => c.destroy(new Error('no answer from the pod in 5 s')));
      c.on('data', () => c.end());
      c.on('close', () => resolve());
      c.on('error', reject);
    });
  }

  /**
   * `kubectl pwru pod/NAME --fail-on-drop` while the host pings the pod and talks TCP to it (and sends one
   * datagram to the dropping port, when asked): the exit code, and the closing table's rows.
   */
  async function verdictRun(
    drop: boolean,
  ): Promise<{ code: number | string; rows: Map<string, [string, string]>; out: string }> {
    const port = CLIENT_PORT + (drop ? 1 : 0);
    const run = await tracePod('text', `icmp or (tcp and port ${port}) or (udp and port 6301)`, [
      '--fail-on-drop',
    ]);
    execFileSync('ping', ['-c', '2', '-i', '0.3', '-W', '2', ip]);
    await tcpExchange(port);
    if (drop) {
      const sock = createSocket('udp4');
      await new Promise((r) => sock.send('pwru-e2e', 6301, ip, r));
      sock.close();
      await run.waitForStdout(/kfree_skb\(NETFILTER_DROP\)/, 30_000);
    }
    await run.waitForStdout(/:8080->[^\n]*\(tcp:F\.\)/, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    run.child.kill('SIGINT');
    const code = await run.done;
    // │ #N │ TUPLE │ FIRST │ LAST │ STEPS │ VERDICT │
    const rows = new Map<string, [string, string]>();
    for (const m of run.stdout.matchAll(/^│ (#\d+) +│ (\S+) +│[^│]*│[^│]*│[^│]*│ (.*?) +│$/gm))
      rows.set(m[1], [m[2], m[3]]);
    return { code, rows, out: `${run.stdout}\n${run.stderr}` };
  }

  test('ping and a TCP exchange with the pod, --fail-on-drop: delivered, exit 0; no copy of a packet with other bytes', async () => {
    const { code, rows, out } = await verdictRun(false);
    assert.equal(code, 0, out);
    const verdicts = [...rows.values()].map(([, v]) => v);
    assert.ok(verdicts.includes('delivered (a copy to a raw socket)'), out);
    assert.ok(verdicts.includes('delivered to socket'), out);
    // A clone shares its original's bytes: same tuple, same TCP flags.
    for (const [id, [tuple, verdict]] of rows) {
      const of = /a copy of (#\d+)/.exec(verdict)?.[1];
      if (of) assert.equal(tuple, rows.get(of)?.[0], `${id} is called a copy of ${of}:\n${out}`);
    }
  });

  test('the same with a datagram to the dropping port: a loss, the rule named, exit 3', async () => {
    const { code, rows, out } = await verdictRun(true);
    assert.equal(code, 3, out);
    const losses = [...rows.values()].filter(([, v]) => /^dropped/.test(v));
    assert.equal(losses.length, 1, out);
    assert.match(losses[0][0], new RegExp(`->${ip.replace(/\./g, '\\.')}:6301\\(udp\\)$`));
    assert.match(out, /dropped by `-A INPUT -p udp -m udp --dport 6301 -j DROP` in filter\/INPUT/);
  });

  test('pod/NAME -o text to a pipe (the helper in the pod writes the lines): each culprit once, under its drop', async () => {
    const run = await traceDrops('text');
    await run.waitForStdout(/↳[^\n]*dropped by `-A INPUT -p udp -m udp --dport 6301 -j DROP`/, 30_000);
    await run.waitForStdout(/↳[^\n]*dropped by BPF program pwru_tc_drop/, 30_000);
    run.child.kill('SIGINT');
    assert.equal(await run.done, 0, run.stderr);
    const notes = run.stdout.split('\n').filter((l) => l.startsWith('    ↳'));
    assert.equal(notes.length, 2, `one culprit line per drop, no more:\n${run.stdout}`);
    assert.match(
      run.stdout,
      /(0x[0-9a-f]{8,}) [^\n]*kfree_skb\([A-Z_]+\)[^\n]*\n {4}↳ \1 dropped by BPF program pwru_tc_drop/,
    );
  });
});
