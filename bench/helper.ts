/**
 * The helper on its own (no CLI): its time to READY, the probes it attaches,
 * and the runner (the in-pod Node program) forwarding its records, for the
 * runner's memory figure.
 */
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ReadyInfo, RecordDecoder, type StatsInfo } from '../src/record/decode';
import { PeakMemory, start, stop, treeCpu } from './proc';
import type { RunningTracer } from './tracers';
import { helperBinary, REPO } from './tracers';

export interface HelperReady {
  /** ms from spawn to the READY frame. */
  readyMs: number;
  /** ms from spawn to the HELLO frame (process start, privileges, BTF). */
  helloMs: number;
  ready: ReadyInfo;
}

/** Starts the helper with args, waits for READY, then stops it (stdin EOF). */
export async function helperReady(args: string[]): Promise<HelperReady> {
  const t0 = performance.now();
  const proc = start(helperBinary(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let helloMs = 0;
  const ready = await new Promise<ReadyInfo>((resolve, reject) => {
    const decoder = new RecordDecoder({
      hello: () => {
        helloMs = performance.now() - t0;
      },
      ready: resolve,
      error: (e) => reject(new Error(`helper: ${e.code}: ${e.message}`)),
    });
    proc.child.stdout?.on('data', (c: Buffer) => decoder.push(c));
    proc.done.then((code) => reject(new Error(`helper exited (${code}) before READY: ${proc.stderr}`)));
  });
  const readyMs = performance.now() - t0;
  proc.child.stdin?.end();
  await stop(proc);
  return { readyMs, helloMs, ready };
}

/**
 * Runs the runner as the debug pod's bootstrap does (runner.js and the
 * helper in the working directory, request.json beside them), its stdout to
 * a file as the container runtime would take it, and samples peak memory.
 * Resolves with a stop function once the helper said READY.
 */
export async function startRunner(
  args: string[],
  outFile: string,
): Promise<{ stop(): Promise<{ memory: Map<string, number>; stats?: StatsInfo }> }> {
  const dir = mkdtempSync(join(tmpdir(), 'pwru-bench-runner-'));
  symlinkSync(helperBinary(), join(dir, 'pwru-helper'));
  writeFileSync(join(dir, 'request.json'), JSON.stringify({ args, clientGraceSec: 600 }));
  const runner = join(REPO, 'dist', 'runner', 'runner.js');
  const fd = openSync(outFile, 'w');
  let proc: ReturnType<typeof start>;
  try {
    proc = start(process.execPath, ['-e', `require(${JSON.stringify(runner)}).main(Buffer.alloc(0))`], {
      cwd: dir,
      stdio: ['pipe', fd, 'pipe'],
    });
  } finally {
    closeSync(fd);
  }
  const memory = new PeakMemory(proc.pid, 'runner (node)');
  // The file is the client: what it holds is acknowledged, as the client acknowledges what it has read.
  const acks = setInterval(() => {
    try {
      proc.child.stdin?.write(`ack ${statSync(outFile).size}\n`);
    } catch {}
  }, 50);
  // READY is in the output file; the attach progress reaches it before. Wait for the helper's READY frame.
  const until = Date.now() + 30000;
  while (!readyInFile(outFile)) {
    if (Date.now() > until || proc.child.exitCode !== null) {
      clearInterval(acks);
      memory.finish();
      await stop(proc, 2000);
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`the runner's helper never said READY: ${proc.stderr.slice(-400)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    async stop() {
      clearInterval(acks);
      proc.child.stdin?.end();
      const timer = setTimeout(() => proc.signal('SIGKILL'), 15000);
      await proc.done;
      clearTimeout(timer);
      const peaks = memory.finish();
      rmSync(dir, { recursive: true, force: true });
      return { memory: peaks, stats: finalStats(outFile) };
    },
  };
}

function readyInFile(file: string): boolean {
  let found = false;
  try {
    const decoder = new RecordDecoder({
      ready: () => {
        found = true;
      },
    });
    decoder.push(readFileSync(file).subarray(0, 1 << 20));
  } catch {
    // partial
  }
  return found;
}

/** The last STATS frame of a record stream file. */
export function finalStats(file: string): StatsInfo | undefined {
  let last: StatsInfo | undefined;
  const decoder = new RecordDecoder({
    stats: (s) => {
      last = s;
    },
  });
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(8 << 20);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      decoder.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    closeSync(fd);
  }
  return last;
}

/**
 * The helper alone writing its record stream to a file, no client: how many
 * events the C side delivers, for comparison with the whole pipeline.
 */
export async function startHelperToFile(args: string[], outFile: string): Promise<RunningTracer> {
  const fd = openSync(outFile, 'w');
  const t0 = performance.now();
  let proc: ReturnType<typeof start>;
  try {
    proc = start(helperBinary(), args, { stdio: ['pipe', fd, 'pipe'] });
  } finally {
    closeSync(fd);
  }
  const until = Date.now() + 30000;
  while (!readyInFile(outFile)) {
    if (Date.now() > until || proc.child.exitCode !== null) {
      await stop(proc, 2000);
      throw new Error(`the helper never said READY: ${proc.stderr.slice(-400)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const readyMs = performance.now() - t0;
  return {
    readyMs,
    probes: 0,
    bpfPid: () => proc.pid,
    cpuNow: () => treeCpu(proc.pid),
    async stop() {
      proc.child.stdin?.end();
      const timer = setTimeout(() => proc.signal('SIGKILL'), 15000);
      await proc.done;
      clearTimeout(timer);
      let delivered = 0;
      let last: StatsInfo | undefined;
      const decoder = new RecordDecoder({
        event: () => {
          delivered++;
        },
        stats: (st) => {
          last = st;
        },
      });
      const rfd = openSync(outFile, 'r');
      const buf = Buffer.alloc(8 << 20);
      try {
        for (;;) {
          const n = readSync(rfd, buf, 0, buf.length, null);
          if (n === 0) break;
          decoder.push(Buffer.from(buf.subarray(0, n)));
        }
      } finally {
        closeSync(rfd);
      }
      if (!last) throw new Error(`no STATS frame in ${outFile}`);
      return { delivered, kernelLost: last.lost, emitted: last.emitted, stderr: proc.stderr, outputBytes: 0 };
    },
  };
}
