/**
 * Packets the kernel throws away, for real, and the reason it gives: an
 * iptables DROP rule, a port nobody listens on (UDP and TCP), and the
 * reverse-path filter dropping a packet whose source address routes back out
 * of another interface (the product's founding story).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TraceEvent } from '../../src/record/event';
import { NetLab } from './netlab';
import { startTrace } from './tracer';

function drops(events: TraceEvent[]): TraceEvent[] {
  return events.filter((e) => e.drop);
}

describe('drop reasons seen for real', () => {
  const lab = new NetLab();
  let a = '';
  let b = '';
  let c = '';

  before(() => {
    a = lab.ns('a');
    b = lab.ns('b');
    c = lab.ns('c');
    lab.link(a, b, 1);
    lab.link(b, c, 2);
  });
  after(() => lab.destroy());

  test('iptables DROP: NETFILTER_DROP at the drop tracepoint', async () => {
    const dst = lab.v4(1, 2);
    lab.exec(b, 'iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '6001', '-j', 'DROP']);
    const trace = startTrace([`udp and host ${dst} and port 6001`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '6001', '1']);
    // Kernel symbols load in the background after probes attach (a slow read must not stall
    // events): the first drops may name their location by address; later ones by symbol.
    await new Promise((r) => setTimeout(r, 1500));
    lab.traffic(a, ['udp', dst, '6001', '1']);
    const { events, code, stderr } = await trace.stop();
    lab.exec(b, 'iptables', ['-D', 'INPUT', '-p', 'udp', '--dport', '6001', '-j', 'DROP']);

    assert.equal(code, 0, stderr);
    const dropped = drops(events);
    assert.ok(dropped.length >= 2, `expected 2 drops, got ${dropped.length}`);
    assert.match(
      dropped[dropped.length - 1].caller ?? '',
      /^[a-z_0-9.]+\+0x[0-9a-f]+$/,
      'the drop location is symbolised',
    );
    for (const d of dropped) {
      assert.equal(d.drop?.reason, 'NETFILTER_DROP');
      assert.equal(d.func, 'kfree_skb');
      assert.equal(d.netns, lab.inode(b));
      assert.match(
        d.caller ?? '',
        /^([a-z_0-9.]+\+0x[0-9a-f]+|0x[0-9a-f]+)$/,
        'the drop location, named or by address',
      );
    }
  });

  test('closed UDP port: NO_SOCKET', async () => {
    const dst = lab.v4(1, 2);
    const trace = startTrace([`udp and dst host ${dst} and dst port 6002`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '6002', '1']);
    const { events, code, stderr } = await trace.stop();

    assert.equal(code, 0, stderr);
    assert.deepEqual(
      drops(events).map((e) => e.drop?.reason),
      ['NO_SOCKET'],
    );
  });

  test('closed TCP port: NO_SOCKET, and the reset goes back', async () => {
    const dst = lab.v4(1, 2);
    const trace = startTrace([`tcp and host ${dst} and port 6003`]);
    await trace.ready();
    lab.traffic(a, ['tcp', dst, '6003']);
    const { events, code, stderr } = await trace.stop();

    assert.equal(code, 0, stderr);
    const syn = drops(events).find((e) => e.tuple?.tcpFlags === 'S');
    assert.ok(syn, `no dropped SYN among ${JSON.stringify(drops(events).map((e) => e.tuple))}`);
    assert.equal(syn.drop?.reason, 'NO_SOCKET');
    assert.ok(
      events.some((e) => e.tuple?.tcpFlags?.includes('R') && e.tuple.src === dst),
      'no RST from the closed port',
    );
  });

  test('reverse-path filter: IP_RPFILTER when the source routes back out of another interface', async () => {
    // b reaches 172.31.x.0/24 through c, so a packet from that range arriving from a fails rp_filter.
    const spoofed = `172.31.${lab.octet}.5`;
    lab.exec(a, 'ip', ['addr', 'add', `${spoofed}/32`, 'dev', 'va1']);
    lab.exec(b, 'ip', ['route', 'add', `172.31.${lab.octet}.0/24`, 'via', lab.v4(2, 2)]);
    lab.exec(b, 'sysctl', ['-q', '-w', 'net.ipv4.conf.all.rp_filter=1']);
    lab.exec(b, 'sysctl', ['-q', '-w', 'net.ipv4.conf.vb1.rp_filter=1']);
    const dst = lab.v4(1, 2);
    const trace = startTrace([`udp and src host ${spoofed}`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '6004', '2', spoofed]);
    const { events, code, stderr } = await trace.stop();

    assert.equal(code, 0, stderr);
    const dropped = drops(events);
    assert.ok(dropped.length >= 1, `no drop among ${events.map((e) => e.func).join(' ')}`);
    assert.ok(
      dropped.every((e) => e.drop?.reason === 'IP_RPFILTER'),
      dropped.map((e) => e.drop?.reason).join(','),
    );
    assert.equal(dropped[0].netns, lab.inode(b));
    assert.equal(dropped[0].iface, 'vb1');
  });
});
