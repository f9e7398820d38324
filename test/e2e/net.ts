/**
 * Little networks for end-to-end tests: each "target pod" is a network
 * namespace joined to the host by a veth pair, with an address in 10.213.0.0/16.
 * Traffic goes only to loopback or into these namespaces.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface PodNet {
  netns: string;
  hostIf: string;
  hostIp: string;
  podIp: string;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Network namespace `pwrue2e-<tag>` with veth to the host: host 10.213.<n>.1, pod 10.213.<n>.2. */
export function createPodNet(tag: string, n: number): PodNet {
  const netns = `pwrue2e-${tag}`;
  const hostIf = `pe2e${tag}h`;
  const podIf = `pe2e${tag}p`;
  deletePodNet({ netns, hostIf, hostIp: '', podIp: '' });
  ip('netns', 'add', netns);
  ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', podIf);
  ip('link', 'set', podIf, 'netns', netns);
  ip('addr', 'add', `10.213.${n}.1/24`, 'dev', hostIf);
  ip('link', 'set', hostIf, 'up');
  ip('-n', netns, 'addr', 'add', `10.213.${n}.2/24`, 'dev', podIf);
  ip('-n', netns, 'link', 'set', podIf, 'up');
  ip('-n', netns, 'link', 'set', 'lo', 'up');
  return { netns, hostIf, hostIp: `10.213.${n}.1`, podIp: `10.213.${n}.2` };
}

export function deletePodNet(net: PodNet): void {
  try {
    ip('link', 'del', net.hostIf);
  } catch {}
  try {
    ip('netns', 'del', net.netns);
  } catch {}
}

/** Sends `count` UDP datagrams from the host to addr:port, `gapMs` apart. */
export async function sendUdp(addr: string, port: number, count: number, gapMs = 100): Promise<void> {
  const sock = createSocket('udp4');
  try {
    for (let i = 0; i < count; i++) {
      await new Promise<void>((resolve) =>
        sock.send(Buffer.from(`pwru-e2e ${i}`), port, addr, () => resolve()),
      );
      await new Promise((r) => setTimeout(r, gapMs));
    }
  } finally {
    sock.close();
  }
}

/** Keeps sending UDP datagrams until stop() is called. */
export function udpStream(addr: string, port: number, gapMs = 100): { stop(): void } {
  const sock = createSocket('udp4');
  const timer = setInterval(() => sock.send(Buffer.from('pwru-e2e'), port, addr), gapMs);
  return {
    stop() {
      clearInterval(timer);
      sock.close();
    },
  };
}

/**
 * Which processes hold each BPF link, from /proc/PID/fdinfo ("link_id:"):
 * bpftool here is built without the pids column.
 */
export function linkHolders(): Map<number, number[]> {
  const holders = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${entry}/fd/${fd}`) !== 'anon_inode:bpf_link') continue;
        const m = /^link_id:\s+(\d+)$/m.exec(readFileSync(`/proc/${entry}/fdinfo/${fd}`, 'utf8'));
        if (!m) continue;
        const id = Number(m[1]);
        holders.set(id, [...(holders.get(id) ?? []), Number(entry)]);
      } catch {}
    }
  }
  return holders;
}

/** BPF links (bpftool link show) held by a process whose cwd is under one of `roots`. */
export function linksUnder(roots: string[]): string[] {
  const out = execFileSync('bpftool', ['link', 'show', '-j'], { encoding: 'utf8' });
  const links = JSON.parse(out || '[]') as { id: number; type: string; tp_name?: string }[];
  const holders = linkHolders();
  const found: string[] = [];
  for (const link of links) {
    for (const pid of holders.get(link.id) ?? []) {
      const cwd = cwdOf(pid);
      if (cwd && roots.some((r) => cwd.startsWith(r))) {
        found.push(`link ${link.id} (${link.type} ${link.tp_name ?? ''}) held by pid ${pid} in ${cwd}`);
      }
    }
  }
  return found;
}

/** Processes whose working directory is under one of `roots` (a pod's leftovers). */
export function processesUnder(roots: string[]): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = cwdOf(Number(entry));
    if (cwd && roots.some((r) => cwd.startsWith(r))) {
      let comm = '?';
      try {
        comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      } catch {}
      found.push(`${comm}(${entry}) in ${cwd}`);
    }
  }
  return found;
}

function cwdOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/cwd`).replace(/ \(deleted\)$/, '');
  } catch {
    return undefined;
  }
}

/** Runs a long-lived process inside a netns (a stand-in for the pod's container). */
export function runInNetns(netns: string, args: string[]) {
  return spawn('ip', ['netns', 'exec', netns, ...args], { stdio: 'ignore' });
}
