/**
 * A saved trace of any size, made up: one UDP flow, each datagram's path out
 * of a pod (six steps, SNAT on the way) followed by its reply's (five steps,
 * dropped: no socket),
 * so that `show` has packets to follow and `diff --flow` one flow of every
 * packet of the file with its replies — the case that made memory grow with
 * the file. Written in chunks: the generator holds no more than the file's
 * next megabyte.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { TRACE_SCHEMA_VERSION } from '../src/record/event';

const STEPS_OUT = [
  'net_dev_queue',
  'nf_nat_ipv4_out',
  'net_dev_start_xmit',
  'netif_rx',
  'ip_rcv',
  'consume_skb',
];
const STEPS_BACK = ['netif_receive_skb', 'ip_rcv', 'nf_nat_ipv4_in', 'udp_rcv', 'kfree_skb'];

function eventLine(
  n: number,
  func: string,
  skb: bigint,
  ts: bigint,
  tuple: { src: string; dst: string; sport: number; dport: number },
): string {
  const e: Record<string, unknown> = {
    type: 'event',
    v: TRACE_SCHEMA_VERSION,
    ts: ts.toString(),
    time: '2026-12-02T12:00:00.000Z',
    skb: `0x${skb.toString(16)}`,
    func,
    probe: 'tracepoint',
    cpu: n % 2,
    pid: 4242,
    process: 'client',
    netns: 4026532317,
    mark: 0,
    ifindex: 2,
    iface: 'eth0',
    l3proto: 'IPv4',
    mtu: 1500,
    len: 64,
    pktType: 'host',
    tuple: { family: 4, proto: 'UDP', ...tuple },
  };
  if (func === 'kfree_skb') e.drop = { reason: 'NO_SOCKET', code: 3 };
  if (func === 'consume_skb' || func === 'kfree_skb') e.freed = true;
  return JSON.stringify(e);
}

/**
 * Writes a trace of about `bytes` bytes to path; returns the packets in it.
 * `flows` > 1 spreads the datagrams over that many source ports.
 */
export function writeFlowTrace(path: string, bytes: number, flows = 1): number {
  const fd = openSync(path, 'w');
  let written = 0;
  let chunk: string[] = [];
  let chunkBytes = 0;
  const push = (line: string) => {
    chunk.push(line);
    chunkBytes += line.length + 1;
    if (chunkBytes >= 1 << 20) flush();
  };
  const flush = () => {
    writeSync(fd, `${chunk.join('\n')}\n`);
    written += chunkBytes;
    chunk = [];
    chunkBytes = 0;
  };
  push(
    JSON.stringify({
      type: 'header',
      v: TRACE_SCHEMA_VERSION,
      tool: 'kubectl-pwru',
      toolVersion: 'bench',
      kernel: 'bench',
      backend: 'tracepoint',
      probes: 30,
      attachMs: 0,
      filter: 'udp and port 53',
      startedAt: '2026-12-02T12:00:00.000Z',
      dropReasons: { '3': 'NO_SOCKET' },
    }),
  );
  let packets = 0;
  let ts = 1_000_000_000n;
  while (written + chunkBytes < bytes) {
    const port = 40000 + (Math.floor(packets / 2) % flows);
    const out = { src: '10.244.0.5', dst: '10.96.0.10', sport: port, dport: 53 };
    const snat = { src: '192.168.50.1', dst: '10.96.0.10', sport: port, dport: 53 };
    const back = { src: '10.96.0.10', dst: '192.168.50.1', sport: 53, dport: port };
    // Addresses come back as packets are freed: a few skbs serve the whole trace.
    const skb = 0xffff888100000000n + BigInt((packets % 64) * 0x100);
    packets++;
    const path = packets % 2 ? STEPS_OUT : STEPS_BACK;
    path.forEach((func, i) => {
      ts += 1000n;
      const tuple = path === STEPS_BACK ? back : i < 2 ? out : snat;
      push(eventLine(packets, func, skb, ts, tuple));
    });
  }
  flush();
  closeSync(fd);
  return packets;
}
