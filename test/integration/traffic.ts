/**
 * Sends or serves test traffic inside a network namespace (run through
 * `ip netns exec`). One process per call, so the tests spawn few of them.
 *   udp DST PORT COUNT [SRC] [SIZE]   send COUNT UDP datagrams "pwru test N" (from SRC; padded with A to SIZE bytes)
 *   tcp DST PORT               connect, send a line, close (ok even if refused)
 *   tcp-serve PORT             accept connections and read; prints "ready"
 *   udp-serve PORT             receive datagrams; prints "ready"
 *   udp-every DST PORT MS      one datagram every MS ms, each from a new socket (a new source port), until killed
 *   udp-spread DST PORT N MS   N datagrams to ports PORT..PORT+N-1 (N flows), one every MS ms
 */
import dgram from 'node:dgram';
import net, { isIPv6 } from 'node:net';

const [mode, ...rest] = process.argv.slice(2);

async function sendUdp(dst: string, port: number, count: number, src?: string, size = 0): Promise<void> {
  const sock = dgram.createSocket(isIPv6(dst) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => (src ? sock.bind({ address: src }, resolve) : resolve()));
  for (let i = 0; i < count; i++) {
    const text = `pwru test ${i}`;
    await new Promise<void>((resolve) => sock.send(text.padEnd(size, 'A'), port, dst, () => resolve()));
    await new Promise((r) => setTimeout(r, 20));
  }
  sock.close();
}

/** One flow as NAT sees many: the same addresses and destination port, a new source port each time. */
async function udpEvery(dst: string, port: number, ms: number): Promise<void> {
  for (let i = 0; ; i++) {
    const sock = dgram.createSocket(isIPv6(dst) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve) => sock.send(`pwru test ${i}`, port, dst, () => resolve()));
    sock.close();
    await new Promise((r) => setTimeout(r, ms));
  }
}

async function udpSpread(dst: string, port: number, n: number, ms: number): Promise<void> {
  const sock = dgram.createSocket(isIPv6(dst) ? 'udp6' : 'udp4');
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve) => sock.send(`pwru test ${i}`, port + i, dst, () => resolve()));
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }
  sock.close();
}

async function connectTcp(dst: string, port: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const sock = net.connect({ host: dst, port, timeout: 2000 }, () => {
      sock.end('pwru test\n');
    });
    sock.on('close', () => resolve());
    sock.on('error', () => resolve());
    sock.on('timeout', () => sock.destroy());
  });
}

async function main(): Promise<void> {
  switch (mode) {
    case 'udp':
      await sendUdp(rest[0], Number(rest[1]), Number(rest[2]), rest[3] || undefined, Number(rest[4] ?? 0));
      break;
    case 'udp-every':
      await udpEvery(rest[0], Number(rest[1]), Number(rest[2]));
      break;
    case 'udp-spread':
      await udpSpread(rest[0], Number(rest[1]), Number(rest[2]), Number(rest[3]));
      break;
    case 'tcp':
      await connectTcp(rest[0], Number(rest[1]));
      break;
    case 'tcp-serve': {
      const server = net.createServer((s) => s.resume().on('error', () => {}));
      server.listen(Number(rest[0]), '::', () => process.stdout.write('ready\n'));
      break;
    }
    case 'udp-serve': {
      const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
      sock.bind(Number(rest[0]), '::', () => process.stdout.write('ready\n'));
      break;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((err) => {
  process.stderr.write(`${err}\n`);
  process.exit(1);
});
