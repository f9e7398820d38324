/**
 * Culprits through Kubernetes mode on the real cluster: inside a real pod's
 * network namespace, an iptables-nft rule drops one UDP port and a tc ingress
 * program (built here with clang) drops another. `kubectl pwru pod/NAME`
 * must name the rule (text, chain, position: read by the node's own tools,
 * from the debug pod) and the program (id, name, tag, interface, direction).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceCulprit, TraceEvent } from '../../../src/record/event';
import { buildDropPrograms, tcFilterArgs } from '../../integration/drop-programs';
import {
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

  /** `kubectl pwru pod/NAME -o FORMAT` on the two ports that drop, once one datagram went to each. */
  async function traceDrops(format: 'json' | 'text'): Promise<ReturnType<typeof startCli>> {
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
      'udp and (port 6301 or port 6201)',
    ]);
    await run.waitForStderr(/tracing with/);
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
