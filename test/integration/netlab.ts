/**
 * Little networks for the real-kernel tests: network namespaces joined by
 * veth pairs, made by the test and deleted by it. Addresses are drawn per lab
 * so that concurrent runs never see each other's packets.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';

let labs = 0;

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export class NetLab {
  readonly prefix: string;
  /** Second octet of this lab's 10.X.0.0/16 and the fdXX::/16 v6 range. */
  readonly octet: number;
  private readonly namespaces: string[] = [];
  private readonly children: ChildProcess[] = [];

  constructor() {
    labs++;
    this.prefix = `pwt${process.pid % 10000}x${labs}`;
    this.octet = 100 + ((process.pid + labs * 7) % 150);
  }

  v4(subnet: number, host: number): string {
    return `10.${this.octet}.${subnet}.${host}`;
  }

  v6(subnet: number, host: number): string {
    return `fd00:${this.octet}:${subnet}::${host}`;
  }

  /** Creates a namespace with loopback up; returns its name. */
  ns(name: string): string {
    const full = `${this.prefix}${name}`;
    run('ip', ['netns', 'add', full]);
    this.namespaces.push(full);
    this.exec(full, 'ip', ['link', 'set', 'lo', 'up']);
    return full;
  }

  exec(ns: string, cmd: string, args: string[]): string {
    return run('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  /**
   * Joins two namespaces with a veth pair on subnet N: a gets .1, b gets .2,
   * in IPv4 and IPv6 (v6 duplicate address detection off, so it is usable at once).
   */
  link(a: string, b: string, subnet: number, names: [string, string] = [`va${subnet}`, `vb${subnet}`]): void {
    const [ia, ib] = names;
    run('ip', ['link', 'add', ia, 'netns', a, 'type', 'veth', 'peer', 'name', ib, 'netns', b]);
    for (const [ns, dev, host] of [
      [a, ia, 1],
      [b, ib, 2],
    ] as const) {
      this.exec(ns, 'sysctl', ['-q', '-w', `net.ipv6.conf.${dev}.accept_dad=0`]);
      this.exec(ns, 'ip', ['addr', 'add', `${this.v4(subnet, host)}/24`, 'dev', dev]);
      this.exec(ns, 'ip', ['-6', 'addr', 'add', `${this.v6(subnet, host)}/64`, 'dev', dev, 'nodad']);
      this.exec(ns, 'ip', ['link', 'set', dev, 'up']);
    }
  }

  /** The usual pair of hosts: namespaces a and b joined on subnet 1 (a is .1, b is .2). */
  pair(): [string, string] {
    const a = this.ns('a');
    const b = this.ns('b');
    this.link(a, b, 1);
    return [a, b];
  }

  /** Network namespace inode, as the tracer reports it. */
  inode(ns: string): number {
    return Number(run('stat', ['-L', '-c', '%i', `/run/netns/${ns}`]).trim());
  }

  /** Runs the traffic tool (test/integration/traffic.ts) inside a namespace and waits for it. */
  traffic(ns: string, args: string[]): string {
    return this.exec(ns, process.execPath, [trafficScript(), ...args]);
  }

  /** Starts a long-running traffic tool (a server); stopped at teardown. Resolves when it is listening. */
  async serve(ns: string, args: string[]): Promise<ChildProcess> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, trafficScript(), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`traffic server exited early (${code})`)));
    });
    return child;
  }

  /** Starts the traffic tool in the background, without waiting for it; stopped at teardown. */
  background(ns: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, trafficScript(), ...args], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    this.children.push(child);
    return child;
  }

  destroy(): void {
    for (const child of this.children) child.kill('SIGKILL');
    for (const ns of this.namespaces.reverse()) {
      try {
        run('ip', ['netns', 'del', ns]);
      } catch {
        // already gone
      }
    }
  }
}

function trafficScript(): string {
  return join(__dirname, 'traffic.js');
}
