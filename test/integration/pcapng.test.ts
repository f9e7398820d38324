/**
 * --pcapng on real traffic: a datagram from namespace a to c through b, which
 * masquerades it (SNAT) on its way out, and c's iptables drops it. Wireshark's
 * tshark reads the file without a warning; the packet is there before and
 * after the SNAT, on the right interfaces, with comments that say the steps,
 * the rewrite and the drop; `show --pcapng` of the saved trace writes the
 * same file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NetLab } from './netlab';
import { runCli, startTrace } from './tracer';
import { tshark } from './tshark';

interface Block {
  iface: string;
  src: string;
  dst: string;
  comment: string;
}

/** The blocks of a pcapng file, as tshark reads them (test/integration/tshark.ts checks it complains of nothing). */
function read(file: string): Block[] {
  // The IP layer's fields of an encapsulated packet list outer and inner: the outer is first.
  return tshark(file, ['frame.interface_name', 'ip.src', 'ip.dst', 'frame.comment']).map(
    ([iface, src, dst, comment]) => ({ iface, src: src.split(',')[0], dst: dst.split(',')[0], comment }),
  );
}

describe('--pcapng: packets with their kernel path, for Wireshark', () => {
  const lab = new NetLab();
  const dir = mkdtempSync(join(tmpdir(), 'pwru-pcapng-'));
  let a = '';
  let b = '';
  let c = '';

  before(() => {
    a = lab.ns('a');
    b = lab.ns('b');
    c = lab.ns('c');
    lab.link(a, b, 1);
    lab.link(b, c, 2);
    lab.exec(a, 'ip', ['route', 'add', 'default', 'via', lab.v4(1, 2)]);
    lab.exec(b, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    lab.exec(b, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'va2', '-j', 'MASQUERADE']);
    lab.exec(c, 'iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '7101', '-j', 'DROP']);
  });
  after(() => {
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('through a NAT and a drop: both forms, the steps, the rewrite and the drop reason', async () => {
    const file = join(dir, 'nat.pcapng');
    const saved = join(dir, 'nat.jsonl');
    const src = lab.v4(1, 1);
    const natted = lab.v4(2, 1);
    const dst = lab.v4(2, 2);
    const trace = startTrace(['--pcapng', file, '--output-file', saved, `udp and dst port 7101`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '7101', '2']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);

    const blocks = read(file);
    const withBytes = events.filter((e) => e.bytes);
    assert.equal(blocks.length, withBytes.length, 'one block per step that carries bytes');
    assert.ok(
      withBytes.every((e) => e.bytes && Buffer.from(e.bytes.data, 'base64').length <= 256),
      'at most the default snaplen',
    );

    // node/netns/ifname: on --local the node is this host.
    const ifaceA = `${hostname()}/${lab.inode(a)}/va1`;
    const ifaceB = `${hostname()}/${lab.inode(b)}/va2`;
    const before = blocks.find((x) => x.src === src && x.iface === ifaceA);
    assert.ok(before, `no block before the NAT on ${ifaceA}: ${JSON.stringify(blocks, null, 1)}`);
    assert.match(before.comment, /^packet \d+, step 1 \([a-z_:0-9]+\): first capture/);
    assert.equal(before.dst, dst);

    const rewritten = blocks.filter((x) => x.src === natted && /rewritten: SNAT/.test(x.comment));
    assert.ok(rewritten.length >= 1, `no block after the SNAT: ${JSON.stringify(blocks, null, 1)}`);
    const nat = rewritten[0];
    assert.equal(nat.iface, ifaceB);
    assert.ok(nat.comment.includes(`SNAT src ${src} → ${natted}`), nat.comment);
    // The same packet's number in both forms.
    const number = (x: Block) => /^packet (\d+),/.exec(x.comment)?.[1];
    assert.ok(
      blocks.some((x) => x.src === src && number(x) === number(nat)),
      'the packet before its SNAT is in the file under the same number',
    );
    // Its last block: dropped, the reason in words.
    assert.match(nat.comment, /; verdict: dropped at [a-z_0-9]+ by netfilter .*\(NETFILTER_DROP\)$/);

    // show --pcapng of the saved trace: the same file, byte for byte.
    const again = join(dir, 'again.pcapng');
    const shown = await runCli(['show', saved, '--pcapng', again]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.deepEqual(readFileSync(again), readFileSync(file));
  });

  test('--snaplen cuts the bytes, and a bad value is refused before anything starts', async () => {
    const file = join(dir, 'short.pcapng');
    const dst = lab.v4(2, 2);
    const trace = startTrace(['--pcapng', file, '--snaplen', '40', `udp and dst port 7102`]);
    await trace.ready();
    lab.traffic(a, ['udp', dst, '7102', '1', '', '200']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);
    const captured = events.filter((e) => e.bytes);
    assert.ok(captured.length >= 1, 'bytes captured');
    for (const e of captured) {
      assert.equal(Buffer.from(e.bytes?.data ?? '', 'base64').length, 40);
      assert.equal(e.bytes?.len, 20 + 8 + 200, 'the original length');
    }
    assert.equal(read(file).length, captured.length);

    const bad = await runCli(['--local', '--snaplen', '0', '--pcapng', join(dir, 'never.pcapng')]);
    assert.equal(bad.code, 2, bad.stderr);
  });
});
