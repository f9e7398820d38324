/**
 * The benchmark's network: two network namespaces joined by one veth pair,
 * an iperf3 server in one and the client in the other. All traffic stays on
 * that veth pair; destroy() removes both namespaces (and with them the pair).
 *
 * For the event pipeline there is also a routed path: client → router → far
 * host, over two more veth pairs. A packet there passes twice the devices and
 * so makes ~2× the events for the same work of the sender, which on this
 * 2-core machine is what keeps the sender from being the limit of the rate.
 */
import { type Proc, run, sleep, start } from './proc';

export type Load = 'tcp' | 'udp64';

export interface IperfResult {
  load: Load;
  seconds: number;
  /** The headline figure: TCP bit/s received, or UDP packets/s sent (see BENCHMARKS.md). */
  value: number;
  /** UDP: packets/s the server received; TCP: segments are not counted. */
  receivedPps?: number;
  bitsPerSecond: number;
  /** CPU seconds iperf3's client and server used (getrusage: with tick accounting it includes the softirq work done in their context). */
  cpuSeconds: number;
  /** Packets (UDP) or megabytes (TCP) carried. */
  units: number;
}

const PORT = 5301;

export class BenchNet {
  readonly client: string;
  readonly server: string;
  readonly clientIf: string;
  readonly serverIf: string;
  readonly clientIp: string;
  readonly serverIp: string;
  /** An address on the same subnet that nothing uses: filters on it match none of the traffic. */
  readonly absentIp: string;
  /** The routed path: a router namespace and a host behind it. */
  readonly router: string;
  readonly far: string;
  readonly farIp: string;
  private readonly routerNearIp: string;
  private readonly routerFarIp: string;
  private readonly servers: Proc[] = [];

  constructor() {
    const id = process.pid % 10000;
    this.client = `pwb${id}c`;
    this.server = `pwb${id}s`;
    this.clientIf = `pwb${id}c0`;
    this.serverIf = `pwb${id}s0`;
    const octet = 10 + (process.pid % 200);
    this.clientIp = `10.249.${octet}.1`;
    this.serverIp = `10.249.${octet}.2`;
    this.absentIp = `10.249.${octet}.77`;
    this.router = `pwb${id}r`;
    this.far = `pwb${id}f`;
    this.routerNearIp = `10.248.${octet}.2`;
    this.routerFarIp = `10.247.${octet}.1`;
    this.farIp = `10.247.${octet}.2`;
  }

  private veth(a: string, ifA: string, ipA: string, b: string, ifB: string, ipB: string): void {
    run('ip', ['link', 'add', ifA, 'netns', a, 'type', 'veth', 'peer', 'name', ifB, 'netns', b]);
    for (const [ns, dev, ip] of [
      [a, ifA, ipA],
      [b, ifB, ipB],
    ]) {
      run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', dev]);
      run('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    }
  }

  private async iperfServerIn(ns: string): Promise<void> {
    const server = start('ip', ['netns', 'exec', ns, 'iperf3', '-s', '--forceflush', '-p', String(PORT)]);
    this.servers.push(server);
    await server.waitFor(/listening/i, 'stdout', 10000);
  }

  async create(): Promise<void> {
    this.destroy();
    for (const ns of [this.client, this.server]) {
      run('ip', ['netns', 'add', ns]);
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    this.veth(this.client, this.clientIf, this.clientIp, this.server, this.serverIf, this.serverIp);
    // The routed path.
    for (const ns of [this.router, this.far]) {
      run('ip', ['netns', 'add', ns]);
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const octet = this.clientIp.split('.')[2];
    this.veth(this.client, `${this.clientIf}r`, `10.248.${octet}.1`, this.router, 'rn', this.routerNearIp);
    this.veth(this.router, 'rf', this.routerFarIp, this.far, `${this.serverIf}f`, this.farIp);
    run('ip', ['netns', 'exec', this.router, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    run('ip', ['-n', this.client, 'route', 'add', `10.247.${octet}.0/24`, 'via', this.routerNearIp]);
    run('ip', ['-n', this.far, 'route', 'add', 'default', 'via', this.routerFarIp]);
    await this.iperfServerIn(this.server);
    await this.iperfServerIn(this.far);
    await this.iperf('udp64', 1, 1000);
  }

  /** iperf3 from client to server (or the far host), client on CPU 0 and server on CPU 1. */
  async iperf(
    load: Load,
    seconds: number,
    packetsPerSecond?: number,
    to = this.serverIp,
  ): Promise<IperfResult> {
    const args = ['netns', 'exec', this.client, 'iperf3', '-c', to, '-p', String(PORT)];
    args.push('-t', String(seconds), '-J', '-A', '0,1');
    if (load === 'udp64') {
      const rate = packetsPerSecond ? String(packetsPerSecond * 64 * 8) : '0';
      args.push('-u', '-l', '64', '-b', rate);
    }
    for (let attempt = 0; ; attempt++) {
      const proc = start('ip', args);
      const code = await proc.done;
      // The server serves one test at a time; a busy answer means the last one is still closing.
      if (code !== 0 && attempt < 5 && /busy|connect/i.test(proc.stdout + proc.stderr)) {
        await sleep(500);
        continue;
      }
      if (code !== 0) throw new Error(`iperf3 failed (${code}): ${proc.stdout.slice(-400)} ${proc.stderr}`);
      return parseIperf(load, proc.stdout);
    }
  }

  destroy(): void {
    for (const server of this.servers.splice(0)) server.signal('SIGKILL');
    for (const ns of [this.client, this.server, this.router, this.far]) {
      try {
        run('ip', ['netns', 'del', ns]);
      } catch {
        // not there
      }
    }
  }
}

interface IperfSum {
  seconds: number;
  bits_per_second: number;
  packets?: number;
  lost_packets?: number;
}

function parseIperf(load: Load, json: string): IperfResult {
  const end = (
    JSON.parse(json) as {
      end: {
        sum_sent: IperfSum;
        sum_received: IperfSum;
        cpu_utilization_percent?: { host_total: number; remote_total: number };
      };
    }
  ).end;
  const sent = end.sum_sent;
  const received = end.sum_received;
  const cpu = end.cpu_utilization_percent;
  const cpuSeconds = cpu ? ((cpu.host_total + cpu.remote_total) / 100) * sent.seconds : 0;
  if (load === 'tcp') {
    return {
      load,
      seconds: received.seconds,
      value: received.bits_per_second,
      bitsPerSecond: received.bits_per_second,
      cpuSeconds,
      units: (received.bits_per_second * received.seconds) / 8e6,
    };
  }
  return {
    load,
    seconds: sent.seconds,
    value: (sent.packets ?? 0) / sent.seconds,
    receivedPps: ((received.packets ?? 0) - (received.lost_packets ?? 0)) / received.seconds,
    bitsPerSecond: sent.bits_per_second,
    cpuSeconds,
    units: sent.packets ?? 0,
  };
}
