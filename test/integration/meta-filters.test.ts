/**
 * The in-kernel filters that are not pcap: network namespace, interface,
 * mark; and kernel stacks on request.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NetLab } from './netlab';
import { startTrace } from './tracer';

describe('metadata filters and stacks', () => {
  const lab = new NetLab();
  let a = '';
  let b = '';

  before(() => {
    [a, b] = lab.pair();
    lab.exec(b, 'iptables', [
      '-t',
      'mangle',
      '-A',
      'PREROUTING',
      '-p',
      'udp',
      '--dport',
      '6300',
      '-j',
      'MARK',
      '--set-mark',
      '0x42',
    ]);
  });
  after(() => lab.destroy());

  async function traceUdp(args: string[], ports: string[]) {
    const trace = startTrace([...args, `udp and host ${lab.v4(1, 2)}`]);
    await trace.ready();
    for (const port of ports) lab.traffic(a, ['udp', lab.v4(1, 2), port, '2']);
    return trace.stop();
  }

  test('--filter-netns keeps only steps inside that namespace (given as a path)', async () => {
    const { events, code, stderr } = await traceUdp(['--filter-netns', `/run/netns/${b}`], ['6200']);
    assert.equal(code, 0, stderr);
    assert.ok(events.length > 0, 'nothing traced in b');
    assert.ok(events.every((e) => e.netns === lab.inode(b)));
  });

  test('a pcap filter that reads no packet bytes ("greater N") loads and keeps only the large packets', async () => {
    // The namespace filter keeps the host's own traffic out of what "greater 900" alone would match.
    const trace = startTrace(['--filter-netns', `/run/netns/${b}`, 'greater 900']);
    await trace.ready();
    lab.traffic(a, ['udp', lab.v4(1, 2), '6202', '2', '', '40']);
    lab.traffic(a, ['udp', lab.v4(1, 2), '6203', '2', '', '1000']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);
    const ports = new Set(events.map((e) => e.tuple?.dport));
    assert.ok(ports.has(6203), `the 1000-byte datagrams are traced: ${[...ports]}`);
    assert.ok(!ports.has(6202), 'the 40-byte datagrams are not');
  });

  test('--filter-ifname keeps only steps on that interface (of the namespace --filter-netns names)', async () => {
    const { events, code, stderr } = await traceUdp(
      ['--filter-netns', `/run/netns/${a}`, '--filter-ifname', 'va1'],
      ['6201'],
    );
    assert.equal(code, 0, stderr);
    assert.ok(events.length > 0);
    assert.ok(events.every((e) => e.iface === 'va1'));
  });

  test('--filter-mark keeps only packets with that mark', async () => {
    const { events, code, stderr } = await traceUdp(['--filter-mark', '0x42/0xff'], ['6300', '6301']);
    assert.equal(code, 0, stderr);
    assert.ok(events.length > 0, 'the marked packets were not seen');
    assert.ok(events.every((e) => e.mark === 0x42 && e.tuple?.dport === 6300));
  });

  test("--output-stack gives each step its kernel stack, without the tracer's own frames", async () => {
    const { events, code, stderr } = await traceUdp(['--output-stack'], ['6202']);
    assert.equal(code, 0, stderr);
    assert.ok(events.length > 0);
    for (const e of events) {
      assert.ok(e.stack && e.stack.length > 0, `${e.func} has no stack`);
      assert.doesNotMatch(e.stack[0], /^bpf_/, `${e.func}: ${e.stack[0]}`);
      assert.match(e.stack[0], /^[A-Za-z_][\w.]*\+0x[0-9a-f]+$/);
    }
    const xmit = events.find((e) => e.func === 'net_dev_queue');
    assert.ok(
      xmit?.stack?.some((f) => f.startsWith('__dev_queue_xmit')),
      xmit?.stack?.join(' < '),
    );
  });
});
