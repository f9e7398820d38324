/**
 * Boots one Debian kernel under qemu (TCG) with a test initramfs, and reads
 * back what the guest reported on its second serial port: timings, each
 * helper run's exit code, record stream (decoded with the project's own
 * decoder) and stderr. See guest/init.sh for the guest's side.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type CulpritInfo,
  type EndInfo,
  type HelperMessage,
  type ProgRunInfo,
  type ProgressInfo,
  type ReadyInfo,
  RecordDecoder,
  type StatsInfo,
} from '../../src/record/decode';
import type { TraceEvent } from '../../src/record/event';

/** The repository's root: scripts are found from here, not from dist/. */
export function repoRoot(): string {
  // dist/ may hold a copy of package.json, so look for this stage's own scripts.
  let dir = __dirname;
  for (;;) {
    if (existsSync(path.join(dir, 'test/kernel-matrix/build-initramfs.sh'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no test/kernel-matrix/build-initramfs.sh above ${__dirname}`);
    dir = up;
  }
}

export const CACHE = process.env.KERNEL_MATRIX_CACHE ?? '/var/cache/kubectl-pwru/kernel-matrix';
const PREPARE_HINT = 'run `bash test/kernel-matrix/prepare.sh` (as root) first';

export function qemuBinary(): string {
  const bin = path.join(CACHE, 'qemu/usr/bin/qemu-system-x86_64');
  if (!existsSync(bin)) throw new Error(`qemu 10 is not in ${CACHE}/qemu: ${PREPARE_HINT}`);
  return bin;
}

export function kernelDir(label: string): string {
  const dir = path.join(CACHE, 'kernels', label);
  if (!existsSync(path.join(dir, 'ok'))) throw new Error(`kernel ${label} is not in ${dir}: ${PREPARE_HINT}`);
  return dir;
}

/** One helper invocation in the guest: see run_case in guest/init.sh. */
export interface CaseSpec {
  name: string;
  /**
   * 'full': noise to :7777, delivered to :9000, dropped by iptables to :9001; 'noise': only :7777;
   * 'nft': three datagrams to :9002, dropped by nftables; 'tcp': a TCP exchange on :7000 from ns1 to
   * ns2 (a line each way, the server closes first); 'both': three to :9001, then three to :9002; 'progs': two
   * each to :9101-9105, and two each from ns2 to ns1:9108 and :9109 (programs.test.ts); 'progs-late': attaches pwru_late,
   * then two to :9106 at once, and 4 s later two to :9106 and two to :9107 (programs.test.ts); 'dup': three
   * to :9003, 'dup-both': three to :9004 (copies.test.ts); 'rules': two each to :9022, :9023, :9026, :9041
   * and :9042, then to [fd00:200::2]:9061 and :9062, half a second apart, and two ARP requests for
   * 10.200.1.99 (nft-rules.test.ts, whose setup gives ns2 that IPv6 address); 'none'.
   */
  traffic:
    | 'full'
    | 'noise'
    | 'nft'
    | 'tcp'
    | 'both'
    | 'progs'
    | 'progs-late'
    | 'dup'
    | 'dup-both'
    | 'rules'
    | 'none';
  /** Seconds to wait for READY. */
  readyTimeout: number;
  args: string[];
  /** 'pwru': cilium/pwru (BootOptions.pwru) instead of the helper, its events to a file. */
  tool?: 'helper' | 'pwru';
  /** Arguments to the guest shell's `ulimit` for this run only, e.g. '-S -n 256'. */
  ulimit?: string;
  /** fs.nr_open during this run (the most a process may raise its descriptor limit to). */
  nrOpen?: number;
  /** 'attaching': SIGINT one second into attaching, instead of once ready. */
  stop?: 'attaching';
  /** Descriptor 4 is a file, whose text comes back as CaseResult.lines (--emit json --lines-fd 4). */
  lines?: boolean;
  /** One NAME=VALUE in the tool's environment for this run only (no spaces). */
  env?: string;
}

export interface CaseResult {
  name: string;
  /** 'ready', 'exited' (before READY), 'attaching' (stopped while attaching, as asked) or 'timeout'. */
  state: string;
  /** Guest seconds from start to READY (or giving up). */
  readySeconds: number;
  /** Guest seconds from SIGINT to exit: mostly detaching. */
  stopSeconds: number;
  /** Guest uptime at the start and at SIGINT, seconds. */
  startAt: number;
  stopAt: number;
  /**
   * Guest uptime when the stream or stderr first showed a mark (polled every
   * 50 ms): 'end' (the helper's END frame), pwru's 'attach-begin',
   * 'attach-end', 'detach-begin'; and, after the exit, 'clean': the kernel's
   * lists of plain kprobes and traced functions back to what they were
   * before the case (the helper hands its function probes to the kernel to
   * remove after it: see helper/link_handoff.h).
   */
  marks: Record<string, number>;
  /** pwru: 'events' (lines in its output file). */
  info: Record<string, string>;
  progress: ProgressInfo[];
  /** Frames after END, by type name: detaching goes on after it. */
  afterEnd: string[];
  exitCode: number;
  ready?: ReadyInfo;
  events: TraceEvent[];
  stats: StatsInfo[];
  errors: HelperMessage[];
  warnings: HelperMessage[];
  /** CULPRIT frames: who dropped a packet. */
  culprits: CulpritInfo[];
  /** PROG frames: tc/XDP programs' runs on traced packets. */
  progs: ProgRunInfo[];
  end?: EndInfo;
  decodeError?: string;
  stderr: string;
  /** With CaseSpec.lines: what the helper wrote to descriptor 4. */
  lines?: string;
  /** The helper's record stream as it came (a fixture for the unit tests: test/fixtures/streams). */
  stream?: Buffer;
}

export interface GuestRun {
  kernel: string;
  release: string;
  /** Kernel uptime when /init started, seconds. */
  bootSeconds: number;
  /** Kernel uptime when the network was set up, seconds. */
  setupSeconds: number;
  /** Host wall-clock seconds for the whole qemu run. */
  wallSeconds: number;
  info: Record<string, string>;
  cases: Map<string, CaseResult>;
  counters: string;
  fatal?: string;
  console: string;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function planScript(cases: CaseSpec[]): string {
  return cases
    .map((c) => {
      const settings = [
        `CASE_TOOL=${shellQuote(c.tool ?? 'helper')}`,
        `CASE_ULIMIT=${shellQuote(c.ulimit ?? '')}`,
        `CASE_NR_OPEN=${shellQuote(c.nrOpen === undefined ? '' : String(c.nrOpen))}`,
        `CASE_STOP=${shellQuote(c.stop ?? '')}`,
        `CASE_LINES=${c.lines ? '1' : "''"}`,
        `CASE_ENV=${shellQuote(c.env ?? '')}`,
      ].join('; ');
      const call = ['run_case', c.name, c.traffic, String(c.readyTimeout), ...c.args]
        .map(shellQuote)
        .join(' ');
      return `${settings}; ${call}`;
    })
    .join('\n')
    .concat('\n');
}

function decodeStream(result: CaseResult, stream: Buffer): void {
  const after = (kind: string) => {
    if (result.end) result.afterEnd.push(kind);
  };
  const decoder = new RecordDecoder({
    progress: (p) => {
      after('progress');
      result.progress.push(p);
    },
    ready: (r) => {
      result.ready = r;
    },
    event: (e) => {
      after('event');
      result.events.push(e);
    },
    stats: (s) => {
      after('stats');
      result.stats.push(s);
    },
    error: (e) => {
      after('error');
      result.errors.push(e);
    },
    warning: (w) => {
      result.warnings.push(w);
    },
    culprit: (c) => {
      result.culprits.push(c);
    },
    prog: (p) => {
      result.progs.push(p);
    },
    end: (e) => {
      result.end = e;
    },
  });
  try {
    decoder.push(stream);
    decoder.finish();
  } catch (err) {
    result.decodeError = (err as Error).message;
  }
}

/** Parses the guest's ttyS1 transcript. */
export function parseTranscript(kernel: string, text: string, consoleLog: string, wall: number): GuestRun {
  const run: GuestRun = {
    kernel,
    release: '',
    bootSeconds: Number.NaN,
    setupSeconds: Number.NaN,
    wallSeconds: wall,
    info: {},
    cases: new Map(),
    counters: '',
    console: consoleLog,
  };
  const lines = text.replace(/\r/g, '').split('\n');
  let current: CaseResult | undefined;
  let file: { label: string; size: number; chunks: string[] } | undefined;
  for (const line of lines) {
    if (file) {
      if (line.startsWith('@@ file-end ')) {
        const data = Buffer.from(file.chunks.join(''), 'base64');
        if (data.length !== file.size) {
          throw new Error(`${kernel}: ${file.label} arrived with ${data.length} of ${file.size} bytes`);
        }
        if (current && file.label === `${current.name}.out`) {
          current.stream = data;
          decodeStream(current, data);
        }
        if (current && file.label === `${current.name}.err`) current.stderr = data.toString('utf8');
        if (current && file.label === `${current.name}.lines`) current.lines = data.toString('utf8');
        file = undefined;
      } else {
        file.chunks.push(line.trim());
      }
      continue;
    }
    if (!line.startsWith('@@ ')) continue;
    const [tag, ...rest] = line.slice(3).split(' ');
    switch (tag) {
      case 'boot':
        run.bootSeconds = Number(rest[0]);
        run.release = rest[1] ?? '';
        break;
      case 'ready':
        run.setupSeconds = Number(rest[0]);
        break;
      case 'info':
        run.info[rest[0]] = rest.slice(1).join(' ');
        break;
      case 'fatal':
        run.fatal = rest.join(' ');
        break;
      case 'counters':
        run.counters = rest.join(' ').replace(/\|/g, '\n');
        break;
      case 'case-begin':
        current = {
          name: rest[0],
          state: 'unknown',
          readySeconds: Number.NaN,
          stopSeconds: Number.NaN,
          exitCode: Number.NaN,
          startAt: Number.NaN,
          stopAt: Number.NaN,
          marks: {},
          info: {},
          progress: [],
          afterEnd: [],
          events: [],
          stats: [],
          errors: [],
          warnings: [],
          culprits: [],
          progs: [],
          stderr: '',
        };
        run.cases.set(current.name, current);
        break;
      case 'case-ready':
        if (current) {
          current.state = rest[1];
          current.startAt = Number(rest[2]);
          current.readySeconds = Number(rest[3]) - Number(rest[2]);
        }
        break;
      case 'case-mark':
        if (current) current.marks[rest[1]] = Number(rest[2]);
        break;
      case 'case-info':
        if (current) current.info[rest[1]] = rest.slice(2).join(' ');
        break;
      case 'case-exit':
        if (current) {
          current.exitCode = Number(rest[1]);
          current.stopAt = Number(rest[2]);
          current.stopSeconds = Number(rest[3]) - Number(rest[2]);
        }
        break;
      case 'file-begin':
        file = { label: rest[0], size: Number(rest[1]), chunks: [] };
        break;
      default:
        break;
    }
  }
  return run;
}

export interface BootOptions {
  kernel: string;
  helper: string;
  /** A static cilium/pwru for the cases with tool 'pwru'. */
  pwru?: string;
  cases: CaseSpec[];
  /** Shell run in the guest once its network is up, before the cases (the plan's first lines). */
  setup?: string;
  /** A folder copied into the guest as /extra (programs the setup loads). */
  extra?: string;
  /** Host-side limit for the whole guest, ms. */
  timeoutMs: number;
}

/** Builds the initramfs, boots the kernel, waits for the guest to power off. */
export async function bootGuest(opts: BootOptions): Promise<GuestRun> {
  const root = repoRoot();
  const qemu = qemuBinary();
  const kdir = kernelDir(opts.kernel);
  const work = mkdtempSync(path.join(tmpdir(), `kernel-matrix-${opts.kernel}-`));
  try {
    const plan = path.join(work, 'plan.sh');
    writeFileSync(plan, `${opts.setup ? `${opts.setup}\n` : ''}${planScript(opts.cases)}`);
    const initrd = path.join(work, 'initrd.cpio');
    const build = spawnSync(
      'bash',
      [
        path.join(root, 'test/kernel-matrix/build-initramfs.sh'),
        kdir,
        opts.helper,
        plan,
        initrd,
        ...(opts.pwru ? [opts.pwru] : []),
      ],
      { encoding: 'utf8', env: { ...process.env, INITRAMFS_EXTRA: opts.extra ?? '' } },
    );
    if (build.status !== 0) {
      throw new Error(`build-initramfs.sh failed for ${opts.kernel}: ${build.stderr}${build.error ?? ''}`);
    }
    const consolePath = path.join(work, 'console.log');
    const outPath = path.join(work, 'results.log');
    const qemuShare = path.join(CACHE, 'qemu/usr/share');
    const args = [
      '-L',
      path.join(qemuShare, 'qemu'),
      '-L',
      path.join(qemuShare, 'seabios'),
      '-accel',
      'tcg,thread=multi',
      '-cpu',
      'max',
      '-m',
      '2G',
      '-smp',
      '2',
      '-nographic',
      '-no-reboot',
      '-nodefaults',
      '-monitor',
      'none',
      '-kernel',
      path.join(kdir, 'vmlinuz'),
      '-initrd',
      initrd,
      '-append',
      // no_timer_check: on a loaded host the emulated timer can look broken to the boot-time check
      // ("IO-APIC + timer doesn't work!"), a panic before /init.
      'console=ttyS0 panic=-1 quiet mitigations=off no_timer_check',
      // ttyS0: the kernel's console; ttyS1: the test's own report.
      '-serial',
      `file:${consolePath}`,
      '-serial',
      `file:${outPath}`,
    ];
    const started = process.hrtime.bigint();
    const status = await new Promise<string>((resolve, reject) => {
      const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(`timed out after ${opts.timeoutMs / 1000} s`);
      }, opts.timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve(code === 0 ? 'ok' : `qemu exited with ${code ?? signal}: ${stderr.trim()}`);
      });
    });
    const wall = Number(process.hrtime.bigint() - started) / 1e9;
    const consoleLog = existsSync(consolePath) ? readFileSync(consolePath, 'latin1') : '';
    const transcript = existsSync(outPath) ? readFileSync(outPath, 'latin1') : '';
    const run = parseTranscript(opts.kernel, transcript, consoleLog, wall);
    if (status !== 'ok' || !transcript.includes('@@ done')) {
      const tail = consoleLog.replace(/\r/g, '').split('\n').slice(-30).join('\n');
      throw new Error(
        `guest ${opts.kernel} did not finish (${status}); fatal: ${run.fatal ?? '-'}\n` +
          `last report lines:\n${transcript.replace(/\r/g, '').split('\n').slice(-10).join('\n')}\n` +
          `console tail:\n${tail}`,
      );
    }
    return run;
  } finally {
    if (!process.env.KERNEL_MATRIX_KEEP) rmSync(work, { recursive: true, force: true });
  }
}
