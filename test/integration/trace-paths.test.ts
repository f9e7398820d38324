/**
 * Real packets between two network namespaces, traced by the real CLI and
 * helper on this kernel: the matching packets' path is printed, in order,
 * and packets the filter excludes never reach user space.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NetLab } from './netlab';
import { funcs, longestPath, startTrace } from './tracer';

describe('tracing packets between namespaces', () => {
  const lab = new NetLab();
  let a = '';
  let b = '';

  before(() => {
    [a, b] = lab.pair();
  });
  after(() => lab.destroy());

  test('IPv4 UDP: the matching flow is traced end to end, other ports are not', async () => {
    const dst = lab.v4(1, 2);
    const trace = startTrace([`udp and host ${dst} and port 5353`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '5353', '3']);
    lab.traffic(a, ['udp', dst, '5454', '3']);
    const { events, code, stderr } = await trace.stop();

    assert.equal(code, 0, stderr);
    assert.ok(events.length >= 6, `expected the path of 3 datagrams, got ${events.length} events`);
    for (const e of events) {
      assert.equal(e.tuple?.proto, 'UDP');
      assert.ok(
        e.tuple?.dport === 5353 || e.tuple?.sport === 5353,
        `port 5454 leaked: ${JSON.stringify(e.tuple)}`,
      );
    }
    const path = funcs(longestPath(events));
    // Leaves a's veth, arrives on b's.
    assert.ok(path.includes('net_dev_queue') || path.includes('net_dev_start_xmit'), path.join(' '));
    assert.ok(
      path.some((f) => f.startsWith('netif_rx') || f.startsWith('netif_receive_skb')),
      path.join(' '),
    );
    assert.ok(events.some((e) => e.iface.startsWith('va') && e.netns === lab.inode(a)));
    assert.ok(events.some((e) => e.iface.startsWith('vb') && e.netns === lab.inode(b)));
    const first = events[0];
    assert.equal(first.tuple?.src, lab.v4(1, 1));
    assert.equal(first.tuple?.dst, dst);
    assert.equal(first.l3proto, 'IPv4');
    assert.match(first.skb, /^0x[0-9a-f]+$/);
  });

  test('IPv6 TCP: the handshake and data are traced with flags', async () => {
    const dst = lab.v6(1, 2);
    await lab.serve(b, ['tcp-serve', '8080']);
    const trace = startTrace([`ip6 and tcp port 8080`]);
    await trace.ready();
    lab.traffic(a, ['tcp', dst, '8080']);
    const { events, code, stderr } = await trace.stop();

    assert.equal(code, 0, stderr);
    assert.ok(events.length > 0, 'no events');
    for (const e of events) {
      assert.equal(e.tuple?.family, 6);
      assert.equal(e.tuple?.proto, 'TCP');
      assert.equal(e.l3proto, 'IPv6');
    }
    const flags = new Set(events.map((e) => e.tuple?.tcpFlags));
    assert.ok(flags.has('S'), `no SYN among ${[...flags].join(',')}`);
    assert.ok(flags.has('S.'), `no SYN-ACK among ${[...flags].join(',')}`);
    assert.ok(events.some((e) => e.tuple?.dst === dst && e.tuple?.dport === 8080));
    assert.ok(events.some((e) => e.tuple?.src === dst && e.tuple?.sport === 8080));
  });

  test('ICMP: echo request and reply, with type and code', async () => {
    const dst = lab.v4(1, 2);
    const trace = startTrace([`icmp and host ${dst}`]);
    await trace.ready();
    lab.exec(a, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', dst]);
    const { events, code, stderr } = await trace.stop();

    assert.equal(code, 0, stderr);
    const types = new Set(events.map((e) => e.tuple?.icmpType));
    assert.ok(types.has(8), 'no echo request');
    assert.ok(types.has(0), 'no echo reply');
    assert.ok(events.every((e) => e.tuple?.proto === 'ICMP'));
  });

  test('filters on payload bytes, near the start of the packet and far into it', async () => {
    const dst = lab.v4(1, 2);
    // "pwru" starts the payload at IP offset 28; byte 150 is padding ('A') only in the long datagrams.
    const trace = startTrace([`udp and host ${dst} and ip[28:4] = 0x70777275 and ip[150] = 0x41`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '6601', '2', '', '200']);
    lab.traffic(a, ['udp', dst, '6602', '2', '', '100']);
    const { events, code, stderr } = await trace.stop();

    assert.equal(code, 0, stderr);
    const ports = new Set(events.map((e) => e.tuple?.dport));
    assert.deepEqual([...ports], [6601], 'only the datagrams long enough to have byte 150');
  });

  test('compound filter: and/or/not with a port range, decided in the kernel', async () => {
    const dst = lab.v4(1, 2);
    const trace = startTrace([
      `udp and host ${dst} and (port 7001 or portrange 7100-7110) and not port 7105`,
    ]);
    await trace.ready();
    for (const port of ['7001', '7105', '7107', '7200']) lab.traffic(a, ['udp', dst, port, '2']);
    const { events, code, stderr, lines } = await trace.stop();

    assert.equal(code, 0, stderr);
    const ports = new Set(events.map((e) => e.tuple?.dport));
    assert.ok(ports.has(7001), 'port 7001 missing');
    assert.ok(ports.has(7107), 'port 7107 (in the range) missing');
    assert.ok(!ports.has(7105), 'port 7105 was excluded by "not"');
    assert.ok(!ports.has(7200), 'port 7200 is outside the filter');
    // The kernel saw more than it delivered: filtering happened there.
    const stats = lines.filter((l) => l.type === 'stats' && l.final);
    assert.equal(stats.length, 1);
    const final = stats[0] as { seen: number; events: number };
    assert.ok(final.seen > final.events, `seen ${final.seen} vs delivered ${final.events}`);
  });
});
