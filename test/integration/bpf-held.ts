/**
 * Which BPF programs and links a process holds: its descriptors' fdinfo says
 * `prog_id:` (programs and links) and `link_id:` (links).
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface Held {
  progs: Set<number>;
  links: Set<number>;
}

export function heldBy(pid: number | string): Held {
  const held: Held = { progs: new Set(), links: new Set() };
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return held; // gone, or a kernel thread
  }
  for (const fd of fds) {
    let info = '';
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const prog = /^prog_id:\s*(\d+)/m.exec(info);
    const link = /^link_id:\s*(\d+)/m.exec(info);
    if (prog) held.progs.add(Number(prog[1]));
    if (link) held.links.add(Number(link[1]));
  }
  return held;
}

/** Which processes hold which programs, over every process. */
export function programHolders(): Map<number, number[]> {
  const holders = new Map<number, number[]>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    for (const id of heldBy(pid).progs) holders.set(id, [...(holders.get(id) ?? []), Number(pid)]);
  }
  return holders;
}
