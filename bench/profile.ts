/**
 * Where the CLI's time goes: reads a V8 CPU profile (node --cpu-prof) and
 * sums self time by function and by package, so that a figure that misses
 * its goal comes with the place to look.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  byFunction: { name: string; ms: number }[];
  byPackage: { name: string; ms: number }[];
}

/** Where a script lives, in a few words: a package name, a file of this repo, or node's own. */
function owner(url: string): string {
  if (!url) return '(native, GC, idle)';
  if (url.startsWith('node:')) return 'node: built-ins';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + 13).split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  const dist = url.indexOf('/dist/');
  return dist >= 0 ? url.slice(dist + 6).replace(/\.js$/, '') : url;
}

export function summarizeProfile(file: string, top = 8): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => {
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const where = owner(n.callFrame.url);
    const name = `${n.callFrame.functionName || '(anonymous)'} (${where}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''})`;
    fn.set(name, (fn.get(name) ?? 0) + us / 1000);
    // Time in node's internals (module loading, streams, fs) counts for the package that called them.
    let caller: ProfileNode | undefined = n;
    while (caller && (!caller.callFrame.url || caller.callFrame.url.startsWith('node:'))) {
      const up = parent.get(caller.id);
      caller = up === undefined ? undefined : byId.get(up);
    }
    const leaf = n.callFrame.functionName;
    const account = caller
      ? owner(caller.callFrame.url)
      : /^\((idle|garbage collector|program)\)$/.test(leaf)
        ? leaf
        : '(node start-up and internals)';
    pkg.set(account, (pkg.get(account) ?? 0) + us / 1000);
  }
  const sorted = (m: Map<string, number>) =>
    [...m.entries()]
      .map(([name, ms]) => ({ name, ms }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top);
  return { totalMs: (p.endTime - p.startTime) / 1000, byFunction: sorted(fn), byPackage: sorted(pkg) };
}

/** The one .cpuprofile node wrote into dir. */
export function profileIn(dir: string): string {
  const f = readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
  if (!f) throw new Error(`no .cpuprofile in ${dir}`);
  return join(dir, f);
}

export function describeProfile(s: ProfileSummary, what: 'byFunction' | 'byPackage'): string {
  return s[what]
    .map((x) => `${x.name} ${Math.round(x.ms)} ms (${((100 * x.ms) / s.totalMs).toFixed(0)}%)`)
    .join('; ');
}
