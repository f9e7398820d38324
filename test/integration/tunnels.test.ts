/**
 * --tunnel-filter on real packets between two namespaces: a pcap expression
 * matched, in the kernel program, against the packet inside a tunnel.
 *
 * VXLAN runs as a real overlay (the kernel encapsulates and decapsulates):
 * the filter on the inner port catches that flow only, lines carry the inner
 * tuple beside the outer one, and --filter-track-skb follows the packet
 * through decap to its end. Geneve, IP-in-IP and GRE are sent as the bytes a
 * tunnel endpoint would send (UDP to 6081, IP protocol 4 and 47, GRE with a
 * key and GRE carrying Ethernet), because this host's kernel has none of those
 * drivers: the receiving kernel drops them, but they cross the veth for real
 * and the filter and the inner tuple are the kernel program's. Where the
 * kernel has a geneve driver, a real Geneve overlay is tested like VXLAN.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceEvent } from '../../src/record/event';
import { NetLab, run } from './netlab';
import { startTrace } from './tracer';
import { tshark } from './tshark';

/** An IPv4 UDP packet: 20-byte header (no options), UDP header, payload. */
function ipv4Udp(src: string, dst: string, sport: number, dport: number, payload = 'pwru tunnel'): Buffer {
  const body = Buffer.from(payload);
  const ip = Buffer.alloc(28 + body.length);
  ip[0] = 0x45;
  ip.writeUInt16BE(ip.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  Buffer.from(src.split('.').map(Number)).copy(ip, 12);
  Buffer.from(dst.split('.').map(Number)).copy(ip, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  ip.writeUInt16BE(sport, 20);
  ip.writeUInt16BE(dport, 22);
  ip.writeUInt16BE(8 + body.length, 24);
  body.copy(ip, 28);
  return ip;
}

/** An Ethernet frame around an IPv4 packet. */
function ethernet(ip: Buffer): Buffer {
  const eth = Buffer.from('02000000000202000000000108 00'.replace(/ /g, ''), 'hex');
  return Buffer.concat([eth, ip]);
}

/** Sends bytes from a namespace: over UDP to a port, or as the payload of raw IP protocol N. */
const SENDER = `
import socket, sys
how, dst, data = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
if how.startswith("udp:"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(data, (dst, int(how[4:])))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, int(how))
    s.sendto(data, (dst, 0))
`;

function inners(events: TraceEvent[]): (number | undefined)[] {
  return events.map((e) => e.tunnel?.inner?.dport);
}

describe('--tunnel-filter: the packet inside VXLAN, Geneve, IP-in-IP and GRE', () => {
  const lab = new NetLab();
  const dir = mkdtempSync(join(tmpdir(), 'pwru-tunnels-'));
  let a = '';
  let b = '';

  before(() => {
    [a, b] = lab.pair();
    // A VXLAN overlay over the veth pair: vx0 on 10.X.50.0/24.
    for (const [ns, local, remote, host] of [
      [a, lab.v4(1, 1), lab.v4(1, 2), 1],
      [b, lab.v4(1, 2), lab.v4(1, 1), 2],
    ] as const) {
      const dev = ns === a ? 'va1' : 'vb1';
      const vxlan = `link add vx0 type vxlan id 100 remote ${remote} local ${local} dstport 4789 dev ${dev}`;
      lab.exec(ns, 'ip', vxlan.split(' '));
      lab.exec(ns, 'ip', ['addr', 'add', `${lab.v4(50, host)}/24`, 'dev', 'vx0']);
      lab.exec(ns, 'ip', ['link', 'set', 'vx0', 'up']);
    }
  });
  after(() => {
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('VXLAN overlay: only the inner flow asked for, inner and outer tuples, followed through decap', async () => {
    const inner = lab.v4(50, 2);
    const trace = startTrace([
      '--filter-track-skb',
      '--tunnel-filter',
      `udp and dst host ${inner} and dst port 9200`,
    ]);
    await trace.ready();
    lab.traffic(a, ['udp', inner, '9200', '2']);
    lab.traffic(a, ['udp', inner, '9201', '2']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);

    const encapsulated = events.filter((e) => e.tunnel);
    assert.ok(encapsulated.length >= 2, `no encapsulated step among ${events.length} events: ${stderr}`);
    for (const e of encapsulated) {
      assert.equal(e.tunnel?.kind, 'vxlan');
      assert.equal(e.tunnel?.vni, 100);
      assert.deepEqual(e.tunnel?.inner, {
        family: 4,
        proto: 'UDP',
        src: lab.v4(50, 1),
        dst: inner,
        sport: e.tunnel?.inner?.sport,
        dport: 9200,
      });
      assert.equal(e.tuple?.dport, 4789, 'the outer tuple is the tunnel');
      assert.equal(e.tuple?.dst, lab.v4(1, 2));
    }
    assert.ok(!inners(events).includes(9201), 'the other inner flow is not matched');
    assert.ok(!events.some((e) => e.tuple?.dport === 9201), 'nor seen after decap');
    // Decapsulated in b: the same skb, followed, now with the inner tuple as its own, to its drop.
    const decapped = events.filter((e) => e.netns === lab.inode(b) && e.tuple?.dport === 9200 && !e.tunnel);
    assert.ok(decapped.length >= 1, 'followed after decap');
    assert.ok(decapped.every((e) => e.tracked && e.iface === 'vx0'));
    assert.ok(
      decapped.some((e) => e.changes?.some((c) => c.field === 'dport' && c.from === '4789')),
      'the decap step is marked',
    );
    assert.ok(
      decapped.some((e) => e.drop?.reason === 'NO_SOCKET'),
      'and it ends where nothing listens',
    );
  });

  test('VXLAN with --pcapng: the packet encapsulated and decapsulated, both in the file', async () => {
    const file = join(dir, 'vxlan.pcapng');
    const inner = lab.v4(50, 2);
    const trace = startTrace([
      '--filter-track-skb',
      '--pcapng',
      file,
      '--tunnel-filter',
      `udp and dst host ${inner} and dst port 9210`,
    ]);
    await trace.ready();
    lab.traffic(a, ['udp', inner, '9210', '1']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);
    const blocks = tshark(file, ['vxlan.vni', 'ip.dst', 'udp.dstport', 'frame.comment']);
    assert.equal(blocks.length, events.filter((e) => e.bytes).length, 'one block per captured step');
    // Encapsulated: Wireshark decodes the VXLAN header and the packet inside it.
    const outer = blocks.find((x) => x[0] === '100');
    assert.ok(outer, `no VXLAN block: ${JSON.stringify(blocks)}`);
    assert.deepEqual(outer[1].split(','), [lab.v4(1, 2), inner]);
    assert.deepEqual(outer[2].split(','), ['4789', '9210']);
    // Decapsulated in b: the inner packet alone, its comment saying so.
    const decapped = blocks.find((x) => x[0] === '' && x[1] === inner);
    assert.ok(decapped, `no decapsulated block: ${JSON.stringify(blocks)}`);
    assert.match(decapped[3], /rewritten: VXLAN decap, inner /);
  });

  test('Geneve, IP-in-IP, GRE (with a key) and GRE carrying Ethernet: the inner packet matched and shown', async () => {
    const src = lab.v4(1, 1);
    const dst = lab.v4(1, 2);
    const innerSrc = `172.30.${lab.octet}.1`;
    const innerDst = `172.30.${lab.octet}.2`;
    // Geneve: version and options length 0, protocol Ethernet, VNI 7.
    const geneve = (ip: Buffer) => Buffer.concat([Buffer.from('0000655800000700', 'hex'), ethernet(ip)]);
    // GRE with a key (42): flags K, version 0, the protocol of what follows.
    const gre = (ptype: string, payload: Buffer) =>
      Buffer.concat([Buffer.from(`2000${ptype}0000002a`, 'hex'), payload]);
    const sends: [string, string, number][] = [];
    for (const port of [9300, 9301]) {
      const ip = ipv4Udp(innerSrc, innerDst, 40000, port);
      sends.push(['udp:6081', geneve(ip).toString('hex'), port]);
      sends.push(['4', ip.toString('hex'), port]);
      sends.push(['47', gre('0800', ip).toString('hex'), port]);
      sends.push(['47', gre('6558', ethernet(ip)).toString('hex'), port]);
    }
    const trace = startTrace(['--tunnel-filter', `udp and dst port 9300 and host ${innerDst}`]);
    await trace.ready();
    for (const [how, hex] of sends) lab.exec(a, 'python3', ['-c', SENDER, how, dst, hex]);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);

    assert.ok(!inners(events).includes(9301), 'the other inner flow is not matched');
    const seen = (kind: string, check: (e: TraceEvent) => boolean) => {
      const hit = events.filter((e) => e.tunnel?.kind === kind && check(e));
      assert.ok(hit.length >= 1, `no ${kind} step: ${JSON.stringify(events.map((e) => e.tunnel))}`);
      for (const e of hit) {
        assert.equal(e.tunnel?.inner?.src, innerSrc);
        assert.equal(e.tunnel?.inner?.dst, innerDst);
        assert.equal(e.tunnel?.inner?.dport, 9300);
        assert.equal(e.tuple?.src, src, 'the outer tuple is the tunnel');
      }
    };
    seen('geneve', (e) => e.tuple?.dport === 6081 && e.tunnel?.vni === 7);
    seen('ipip', (e) => e.tuple?.proto === '4');
    seen('gre', (e) => e.tunnel?.vni === 42);
    // Both GRE packets: the one carrying Ethernet is 14 bytes longer at the same step.
    const greLens = new Set(events.filter((e) => e.tunnel?.kind === 'gre').map((e) => `${e.func}/${e.len}`));
    assert.ok(
      [...greLens].some((x) => {
        const [func, len] = x.split('/');
        return greLens.has(`${func}/${Number(len) + 14}`);
      }),
      `GRE with an IP packet and with an Ethernet frame: ${[...greLens].join(' ')}`,
    );
  });

  test('Geneve overlay, where the kernel has the driver', async (t) => {
    try {
      lab.exec(a, 'ip', ['link', 'add', 'gn0', 'type', 'geneve', 'id', '7', 'remote', lab.v4(1, 2)]);
    } catch {
      t.skip(`this kernel (${run('uname', ['-r']).trim()}) has no geneve driver`);
      return;
    }
    lab.exec(b, 'ip', ['link', 'add', 'gn0', 'type', 'geneve', 'id', '7', 'remote', lab.v4(1, 1)]);
    for (const [ns, host] of [
      [a, 1],
      [b, 2],
    ] as const) {
      lab.exec(ns, 'ip', ['addr', 'add', `${lab.v4(60, host)}/24`, 'dev', 'gn0']);
      lab.exec(ns, 'ip', ['link', 'set', 'gn0', 'up']);
    }
    const trace = startTrace(['--filter-track-skb', '--tunnel-filter', 'udp and dst port 9400']);
    await trace.ready();
    lab.traffic(a, ['udp', lab.v4(60, 2), '9400', '2']);
    lab.traffic(a, ['udp', lab.v4(60, 2), '9401', '2']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);
    assert.ok(events.some((e) => e.tunnel?.kind === 'geneve' && e.tunnel.inner?.dport === 9400));
    assert.ok(!inners(events).includes(9401));
    assert.ok(events.some((e) => e.netns === lab.inode(b) && e.tuple?.dport === 9400 && e.tracked));
  });
});
