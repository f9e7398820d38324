/**
 * The pcap filter's two forms on real packets: the raw form reads an IP
 * header, the Ethernet form a frame; a packet that is not IP (ARP) must be
 * matched by the Ethernet form even when the raw form compiled.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NetLab } from './netlab';
import { startTrace } from './tracer';

describe('pcap filter forms', () => {
  const lab = new NetLab();
  let a = '';

  before(() => {
    [a] = lab.pair();
  });
  after(() => lab.destroy());

  /** Sends two datagrams from a to b with a's neighbour cache empty, so a asks for b's address first. */
  async function traceFirstContact(filter: string) {
    lab.exec(a, 'ip', ['neigh', 'flush', 'all']);
    const trace = startTrace(['--filter-netns', `/run/netns/${a}`, filter]);
    await trace.ready();
    lab.traffic(a, ['udp', lab.v4(1, 2), '6410', '2']);
    return trace.stop();
  }

  test('"(udp and …) or arp" traces the ARP exchange and the datagrams', async () => {
    const { events, code, stderr } = await traceFirstContact(
      `(udp and port 6410 and host ${lab.v4(1, 2)}) or arp`,
    );
    assert.equal(code, 0, stderr);
    const arp = events.filter((e) => e.l3proto === 'ARP');
    assert.ok(arp.length > 0, `no ARP step traced: ${[...new Set(events.map((e) => e.l3proto))]}`);
    assert.ok(
      arp.some((e) => e.func === 'net_dev_queue' || e.func === 'net_dev_start_xmit'),
      'the ARP request sent from a is traced',
    );
    assert.ok(
      events.some((e) => e.tuple?.dport === 6410),
      'the datagrams are traced too',
    );
  });

  test('without "or arp" no ARP step is traced (the test can tell)', async () => {
    const { events, code, stderr } = await traceFirstContact(`udp and port 6410 and host ${lab.v4(1, 2)}`);
    assert.equal(code, 0, stderr);
    assert.ok(events.some((e) => e.tuple?.dport === 6410));
    assert.equal(events.filter((e) => e.l3proto === 'ARP').length, 0);
  });
});
