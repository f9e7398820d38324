/**
 * Figures and their goals: the table printed at the end of a run, and the
 * same figures as Markdown between the markers in BENCHMARKS.md, so the file
 * always holds the last run's numbers with the command and the machine.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import Table from 'cli-table3';

export interface Figure {
  section: string;
  what: string;
  value: string;
  goal?: string;
  /** undefined: no goal, or not measured. */
  met?: boolean;
  note?: string;
}

export class Report {
  readonly figures: Figure[] = [];
  readonly notes: string[] = [];

  add(f: Figure): void {
    this.figures.push(f);
    const mark = f.met === undefined ? '' : f.met ? ' [meets goal]' : ' [MISSES goal]';
    process.stderr.write(`bench: ${f.section}: ${f.what} = ${f.value}${mark}\n`);
  }

  notMeasured(section: string, what: string, why: string, goal?: string): void {
    this.add({ section, what, value: `not measured: ${why}`, goal });
  }

  table(): string {
    const t = new Table({
      head: ['section', 'figure', 'value', 'goal', 'meets'],
      colWidths: [14, 46, 40, 22, 7],
      wordWrap: true,
      style: { head: [], border: [] },
    });
    for (const f of this.figures) {
      t.push([f.section, f.what, f.value, f.goal ?? '', f.met === undefined ? '' : f.met ? 'yes' : 'NO']);
    }
    return t.toString();
  }

  markdown(command: string, startedAt: Date, seconds: number): string {
    const lines = [
      `Command: \`${command}\` — run ${startedAt.toISOString()} (${Math.round(seconds)} s).`,
      '',
      `Machine: ${machine()}`,
      '',
      '| section | figure | value | goal | meets |',
      '|---|---|---|---|---|',
    ];
    for (const f of this.figures) {
      const met = f.met === undefined ? '' : f.met ? 'yes' : '**no**';
      lines.push(`| ${f.section} | ${cell(f.what)} | ${cell(f.value)} | ${cell(f.goal ?? '')} | ${met} |`);
    }
    if (this.notes.length) {
      lines.push('', 'Notes from this run:', '');
      for (const n of this.notes) lines.push(`- ${n}`);
    }
    return lines.join('\n');
  }
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function machine(): string {
  const cpu = cpus();
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  let os = 'Linux';
  try {
    os = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]+)/m)?.[1] ?? os;
  } catch {}
  const load = loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  return (
    `${os}, kernel ${kernel}, ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ` +
    `${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; load average at the end ${load} ` +
    '(the machine is shared: other work was running)'
  );
}

const START = '<!-- bench:results:start -->';
const END = '<!-- bench:results:end -->';

/** Replaces the results block of BENCHMARKS.md (or appends one). */
export function writeResults(file: string, block: string): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const i = text.indexOf(START);
  const j = text.indexOf(END);
  const body = `${START}\n${block}\n${END}`;
  const next =
    i >= 0 && j > i ? text.slice(0, i) + body + text.slice(j + END.length) : `${text.trimEnd()}\n\n${body}\n`;
  writeFileSync(file, next);
}

export function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

export function rate(x: number, unit: string): string {
  if (x >= 1e9) return `${(x / 1e9).toFixed(2)} G${unit}`;
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)} M${unit}`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)} k${unit}`;
  return `${x.toFixed(0)} ${unit}`;
}

export function mib(kib: number): string {
  return `${(kib / 1024).toFixed(1)} MiB`;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
