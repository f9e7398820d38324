/**
 * With `-o json` on --local the helper writes the JSON lines itself
 * (--emit json, helper/event_json.c and helper/packet_track.c). Those lines
 * must be exactly what the client writes when it decodes the same events
 * (text view with --output-file), and what `show -o json` makes of them.
 * Two tracers run at once over the same traffic: one of each kind.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceEvent } from '../../src/record/event';
import { NetLab } from './netlab';
import { CLI, RunningTrace, runCli, startTrace } from './tracer';

function eventsOf(file: string): TraceEvent[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{"type":"event"'))
    .map((l) => JSON.parse(l) as TraceEvent);
}

describe('JSON lines written by the helper', () => {
  const lab = new NetLab();
  const dir = mkdtempSync(join(tmpdir(), 'pwru-emit-json-'));
  const helperFile = join(dir, 'helper.jsonl');
  const clientFile = join(dir, 'client.jsonl');
  let helperRun: Awaited<ReturnType<RunningTrace['stop']>>;
  let clientRun: Awaited<ReturnType<RunningTrace['stop']>>;

  before(async () => {
    // Everything on one CPU: each tracer's ring buffer orders the events of different CPUs as they
    // happen to commit, so with two CPUs the two files could list the same events in another order.
    execFileSync('taskset', ['-p', '-c', '0', String(process.pid)]);
    const [a, b] = lab.pair();
    const server = lab.v4(1, 2);
    const service = lab.v4(9, 100);
    lab.exec(a, 'ip', ['route', 'add', `${lab.v4(9, 0)}/24`, 'via', server]);
    // DNAT to a port nothing listens on: a rewrite (changes) and a drop (NO_SOCKET).
    lab.exec(
      b,
      'iptables',
      ['-t', 'nat', '-A', 'PREROUTING', '-d', service, '-p', 'udp', '-j', 'DNAT'].concat([
        '--to-destination',
        `${server}:6999`,
      ]),
    );
    await lab.serve(b, ['tcp-serve', '7001']);

    const filter = `host ${server} or host ${service} or host ${lab.v6(1, 2)}`;
    const helperLines = startTrace([
      '--filter-track-skb',
      '--output-stack',
      '--output-file',
      helperFile,
      filter,
    ]);
    const clientLines = new RunningTrace(
      spawn(
        process.execPath,
        [CLI, '--local', '-o', 'text', '--duration', '60s', '--filter-track-skb', '--output-stack'].concat([
          '--output-file',
          clientFile,
          filter,
        ]),
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
      ),
    );
    await Promise.all([helperLines.ready(), clientLines.ready()]);
    lab.traffic(a, ['udp', service, '6100', '2']);
    lab.traffic(a, ['tcp', server, '7001']);
    lab.traffic(a, ['tcp', lab.v6(1, 2), '7001']);
    lab.exec(a, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', lab.v6(1, 2)]);
    [helperRun, clientRun] = await Promise.all([helperLines.stop(), clientLines.stop()]);
  });
  after(() => {
    lab.destroy();
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  });

  test('both tracers ran and saw the traffic', () => {
    assert.equal(helperRun.code, 0, helperRun.stderr);
    assert.equal(clientRun.code, 0, clientRun.stderr);
    assert.ok(eventsOf(helperFile).length > 20, helperRun.stderr);
  });

  test('the helper writes the lines the client writes for the same events, packets and changes included', () => {
    // The lab's events only: an address --filter-track-skb follows can be reused by the kernel for
    // another packet of this machine (the test cluster's loopback traffic, on the other CPU), which
    // each tracer's ring buffer may list at another place. Packet numbers then differ by those
    // packets, so they are compared as a one-to-one mapping.
    const v4 = `${lab.v4(0, 0).split('.').slice(0, 2).join('.')}.`;
    const v6 = `${lab.v6(0, 0).split(':').slice(0, 2).join(':')}:`;
    const ofLab = (e: TraceEvent) =>
      !e.tuple || [e.tuple.src, e.tuple.dst].some((a) => a.startsWith(v4) || a.startsWith(v6));
    const fromHelper = eventsOf(helperFile).filter(ofLab);
    const fromClient = eventsOf(clientFile).filter(ofLab);
    assert.equal(fromHelper.length, fromClient.length, 'not the same number of events');
    const clientPacketOf = new Map<number | undefined, number | undefined>();
    const helperPacketOf = new Map<number | undefined, number | undefined>();
    // Each program reads the clock itself at the same hit: times are a few microseconds apart.
    // Each has its own stack map, where a hash collision can leave one event without its stack.
    for (let i = 0; i < fromHelper.length; i++) {
      const { time: th, ts: nh, stack: sh, packet: ph, ...h } = fromHelper[i];
      const { time: tc, ts: nc, stack: sc, packet: pc, ...c } = fromClient[i];
      assert.deepEqual(h, c, `event ${i} differs`);
      assert.equal(
        clientPacketOf.get(ph) ?? pc,
        pc,
        `event ${i}: the helper's packet #${ph} is two of the client's`,
      );
      assert.equal(
        helperPacketOf.get(pc) ?? ph,
        ph,
        `event ${i}: the client's packet #${pc} is two of the helper's`,
      );
      clientPacketOf.set(ph, pc);
      helperPacketOf.set(pc, ph);
      if (sh && sc) assert.deepEqual(sh, sc, `event ${i}: stacks differ`);
      assert.ok(Math.abs(Number(BigInt(nh) - BigInt(nc))) < 5_000_000, `event ${i}: ts ${nh} vs ${nc}`);
      assert.ok(Math.abs(Date.parse(th) - Date.parse(tc)) <= 5, `event ${i}: ${th} vs ${tc}`);
    }
    assert.ok(
      fromHelper.some((e) => e.changes?.some((c) => c.field === 'dport')),
      'the DNAT showed no change',
    );
    assert.ok(fromHelper.some((e) => e.tuple?.family === 6 && e.tuple.proto === 'TCP'));
    assert.ok(fromHelper.some((e) => (e.stack?.length ?? 0) > 0));
  });

  test('the helper wrote the very lines of stdout to the file', () => {
    const stdoutEvents = helperRun.stdout.split('\n').filter((l) => l.startsWith('{"type":"event"'));
    const fileEvents = readFileSync(helperFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{"type":"event"'));
    assert.deepEqual(stdoutEvents, fileEvents);
  });

  test('show -o json reads the file back to the same lines', async () => {
    const shown = await runCli(['show', '-o', 'json', helperFile]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stdout, readFileSync(helperFile, 'utf8'));
  });

  test("the closing words come from the helper's finished packets: each one's verdict, the drop among them", () => {
    assert.match(helperRun.stderr, /│ PKT │ TUPLE/);
    assert.match(helperRun.stderr, /NO_SOCKET/);
    assert.match(helperRun.stderr, /\d+ packets: \d+ dropped, \d+ delivered[^.]*\. \d+ events, 0 lost\./);
  });
});
