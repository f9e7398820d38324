/**
 * Verdicts on a real kernel (the tracepoint backend), in namespaces the test
 * makes: ping as root and a raw UDP receiver get their packets through copies
 * (the original is freed with NO_SOCKET) and --fail-on-drop exits 0; a healthy
 * TCP exchange exits 0; a real drop in the same run exits 3; with --on-drop,
 * the copies go with the drops they make no failure. And under a flood
 * of short-lived packets, where the kernel reuses skb addresses after frees no
 * tracepoint sees, no rewrite is invented: every address or port change in the
 * lines is the one DNAT the test set up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceDropReport, TraceEvent, TraceLine } from '../../src/record/event';
import { NetLab } from './netlab';
import { runCli, startTrace } from './tracer';

/** A raw UDP socket sees a copy of each datagram to a port nothing listens on, and reads it. */
const RAW_RECEIVER = `
import socket
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
raw.settimeout(2)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
got = 0
for i in range(3):
    udp.sendto(b"raw copy %d" % i, ("127.0.0.1", 7300))
    while True:
        data = raw.recv(2048)
        if data[22:24] == bytes([0x1c, 0x84]):  # destination port 7300
            got += 1
            break
print(got)
`;

/** Connect, a line each way, close (the server after reading, the client after its reply). */
const TCP_EXCHANGE = `
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 7302)); s.listen()
def serve():
    c, _ = s.accept(); c.recv(100); c.sendall(b"reply\\n"); c.close()
t = threading.Thread(target=serve); t.start()
c = socket.create_connection(("127.0.0.1", 7302)); c.sendall(b"hello\\n"); print(c.recv(100)); c.close(); t.join()
`;

/** Datagrams as fast as it can for a while: to 20 ports, from connected and unconnected sockets. */
const FLOOD = `
import socket, sys, time
dst, seconds = sys.argv[1], float(sys.argv[2])
conn = []
for p in range(20):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((dst, 7400 + p)); conn.append(s)
free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + seconds; n = 0
while time.time() < end:
    for i in range(200):
        try:
            conn[n % 20].send(b"f" * (n % 64))
        except ConnectionRefusedError:  # the port unreachable of an earlier one
            pass
        free.sendto(b"g" * (n % 64), (dst, 7400 + n % 20))
        free.sendto(b"dnat", (dst, 7999))
        n += 1
print(n)
`;

function python(lab: NetLab, ns: string, script: string, args: string[] = []): string {
  return lab.exec(ns, 'python3', ['-c', script, ...args]);
}

/** The packet table on stderr: one line per packet with its verdict label. */
function verdictLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => /delivered|dropped at|freed at|sent out|in flight|received on/.test(l));
}

describe('verdicts on this kernel', () => {
  const lab = new NetLab();
  let local = '';
  let a = '';
  let b = '';

  before(() => {
    local = lab.ns('v');
    [a, b] = lab.pair();
  });
  after(() => lab.destroy());

  const inLocal = () => ['--backend', 'tracepoint', '--filter-netns', `/run/netns/${local}`];

  test('ping to loopback (a raw socket) and a raw UDP receiver: delivered through copies, --fail-on-drop exits 0', async () => {
    const trace = startTrace([...inLocal(), '--fail-on-drop', 'icmp or udp port 7300']);
    await trace.ready();
    lab.exec(local, 'ping', ['-c', '3', '-i', '0.2', '-W', '1', '127.0.0.1']);
    assert.equal(python(lab, local, RAW_RECEIVER).trim(), '3', 'the raw socket read its three copies');
    const { events, code, stderr } = await trace.stop();

    const originals = events.filter((e) => e.drop?.reason === 'NO_SOCKET');
    assert.ok(
      originals.length >= 6,
      `three echo replies and three datagrams freed with NO_SOCKET: ${originals.length}`,
    );
    assert.ok(
      originals.every((e) => (e.shared ?? 1) > 1),
      'each was freed while a copy held its data',
    );
    const table = verdictLines(stderr).join('\n');
    assert.match(table, /delivered \(a copy to a raw socket\)/, stderr);
    assert.doesNotMatch(table, /dropped at/, stderr);
    assert.equal(code, 0, `--fail-on-drop counted a delivered packet:\n${stderr}`);
  });

  test('the same with -o json alone (the helper writes the lines): the closing summary says delivered, not dropped', async () => {
    // The helper's finished packets reach the client for the summary, so the copies' rule applies there too
    // (it said "3 dropped" for ping when it counted drops by reason and place alone).
    const trace = startTrace([...inLocal(), 'icmp']);
    await trace.ready();
    lab.exec(local, 'ping', ['-c', '3', '-i', '0.2', '-W', '1', '127.0.0.1']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);
    assert.ok(
      events.filter((e) => e.drop?.reason === 'NO_SOCKET').length >= 3,
      'the echo replies freed at ping_rcv',
    );
    const table = verdictLines(stderr).join('\n');
    assert.match(table, /delivered \(a copy to a raw socket\)/, stderr);
    assert.match(stderr, /^\d+ packets: \d+ delivered\. \d+ events, 0 lost\.$/m, stderr);
  });

  test('a healthy TCP exchange (connect, reply, close): --fail-on-drop exits 0', async () => {
    const trace = startTrace([...inLocal(), '--fail-on-drop', 'tcp port 7302']);
    await trace.ready();
    assert.match(python(lab, local, TCP_EXCHANGE), /reply/);
    const { events, code, stderr } = await trace.stop();

    assert.ok(
      events.some((e) => e.tuple?.tcpFlags?.includes('F')),
      'the close was traced',
    );
    for (const line of verdictLines(stderr).filter((l) => /QUEUE_PURGE/.test(l)))
      assert.match(line, /not a failure/, line);
    assert.equal(code, 0, stderr);
  });

  test('the same, with a real drop in the same run (an iptables DROP): --fail-on-drop exits 3', async () => {
    lab.exec(local, 'iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '7301', '-j', 'DROP']);
    try {
      const trace = startTrace([...inLocal(), '--fail-on-drop', 'icmp or tcp port 7302 or udp port 7301']);
      await trace.ready();
      lab.exec(local, 'ping', ['-c', '2', '-i', '0.2', '-W', '1', '127.0.0.1']);
      python(lab, local, TCP_EXCHANGE);
      python(
        lab,
        local,
        'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 7301))',
      );
      const { events, code, stderr } = await trace.stop();

      assert.ok(
        events.some((e) => e.drop?.reason === 'NETFILTER_DROP'),
        stderr,
      );
      assert.match(verdictLines(stderr).join('\n'), /delivered \(a copy to a raw socket\)/);
      assert.equal(code, 3, stderr);
    } finally {
      lab.exec(local, 'iptables', ['-D', 'INPUT', '-p', 'udp', '--dport', '7301', '-j', 'DROP']);
    }
  });

  test('--on-drop: the copies go with their originals (not reported, not counted); the real drop is reported, exit 3', async () => {
    lab.exec(local, 'iptables', ['-A', 'INPUT', '-p', 'udp', '--dport', '7301', '-j', 'DROP']);
    try {
      const trace = startTrace([
        ...inLocal(),
        '--on-drop',
        '--fail-on-drop',
        'icmp or tcp port 7302 or udp port 7300 or udp port 7301',
      ]);
      await trace.ready();
      lab.exec(local, 'ping', ['-c', '3', '-i', '0.2', '-W', '1', '127.0.0.1']);
      assert.equal(python(lab, local, RAW_RECEIVER).trim(), '3', 'the raw socket read its three copies');
      python(lab, local, TCP_EXCHANGE);
      python(
        lab,
        local,
        'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 7301))',
      );
      // A held report waits for its copies (at most 3 s): give the last ones time before the stop.
      await new Promise((r) => setTimeout(r, 1500));
      const { lines, code, stderr } = await trace.stop();

      const reports = lines.filter((l): l is TraceDropReport => l.type === 'drop');
      assert.deepEqual(
        reports.map((r) => [r.flow?.dport, r.verdict.reason]),
        [[7301, 'NETFILTER_DROP']],
        stderr,
      );
      // The six originals freed with NO_SOCKET (and the TCP close's purges, if any) were told apart.
      const notFailures = Number(/(\d+) not failures/.exec(stderr)?.[1] ?? 0);
      assert.ok(
        notFailures >= 6,
        `three echo replies and three datagrams delivered through copies:\n${stderr}`,
      );
      assert.equal(code, 3, stderr);
    } finally {
      lab.exec(local, 'iptables', ['-D', 'INPUT', '-p', 'udp', '--dport', '7301', '-j', 'DROP']);
    }
  });

  test('a flood of short-lived datagrams: no rewrite but the real DNAT, in the helper lines and in show', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pwru-flood-'));
    const file = join(dir, 'flood.jsonl');
    const dst = lab.v4(1, 2);
    // Nothing listens in b: every datagram is freed soon after it arrives. One real rewrite: 7999 → 7998.
    lab.exec(b, 'iptables', [
      '-t',
      'nat',
      '-A',
      'PREROUTING',
      '-p',
      'udp',
      '--dport',
      '7999',
      '-j',
      'REDIRECT',
      '--to-ports',
      '7998',
    ]);
    try {
      const trace = startTrace([
        '--backend',
        'tracepoint',
        '--output-file',
        file,
        `udp and net ${lab.v4(1, 0)}/24`,
      ]);
      await trace.ready();
      const sent = Number(python(lab, a, FLOOD, [dst, '2']));
      const { code, stderr } = await trace.stop();
      assert.equal(code, 0, stderr);
      assert.ok(sent > 1000, `only ${sent} rounds sent`);

      const helper = readLines(file);
      const shown = await runCli(['show', '-o', 'json', file]);
      assert.equal(shown.code, 0, shown.stderr);
      for (const [who, events] of [
        ['the helper (C)', helper],
        ['show (TypeScript)', shown.events],
      ] as const) {
        assert.ok(events.length > 5000, `${who}: only ${events.length} events`);
        const rewrites = events.flatMap((e) =>
          (e.changes ?? [])
            .filter((c) => ['src', 'dst', 'sport', 'dport', 'proto'].includes(c.field))
            .map((c) => ({ e, c })),
        );
        const invented = rewrites.filter(
          ({ c }) => !(c.field === 'dport' && c.from === '7999' && c.to === '7998'),
        );
        assert.deepEqual(
          invented.slice(0, 5).map(({ e, c }) => `#${e.packet} ${e.func} ${c.field} ${c.from} → ${c.to}`),
          [],
          `${who}: rewrites the traffic never had`,
        );
        assert.ok(rewrites.length > 0, `${who}: the real DNAT is still shown`);
        for (const e of events) {
          const t = e.tuple;
          if (!t) continue;
          const port = t.dport === 7998 || t.dport === 7999 || (t.dport ?? 0) - 7400 < 20;
          assert.ok(
            t.src === lab.v4(1, 1) && t.dst === dst && port,
            `a tuple never sent: ${JSON.stringify(t)}`,
          );
        }
      }
      assert.deepEqual(
        shown.events.map((e) => e.packet),
        helper.map((e) => e.packet),
        'both trackers number the packets alike',
      );
    } finally {
      lab.exec(b, 'iptables', [
        '-t',
        'nat',
        '-D',
        'PREROUTING',
        '-p',
        'udp',
        '--dport',
        '7999',
        '-j',
        'REDIRECT',
        '--to-ports',
        '7998',
      ]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function readLines(file: string): TraceEvent[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as TraceLine)
    .filter((l): l is TraceEvent => l.type === 'event');
}
