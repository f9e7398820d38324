/**
 * What every fault case checks afterwards, and the tools to make the faults:
 * the BPF programs and links the helper held are gone from the kernel (after
 * its grace period, waited for with a bound), no helper process is left (nor
 * a filter compiler it forked), and a flood sender faster than any reader.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Held } from '../integration/bpf-held';
import { HELPER } from '../integration/tracer';

export { type Held, heldBy } from '../integration/bpf-held';

/**
 * Ids of the kernel's programs or links; undefined when bpftool failed, as it
 * does when one goes away between its listing and its look at it (the helper
 * detaches after END, while the test looks).
 */
function idsIn(kind: 'prog' | 'link'): Set<number> | undefined {
  try {
    const list = JSON.parse(
      execFileSync('bpftool', ['-j', kind, 'show'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }),
    ) as { id: number }[];
    return new Set(list.map((x) => x.id));
  } catch {
    return undefined;
  }
}

/**
 * The frames up to the last words (END or ERROR): the probes are detached
 * after them, with PROGRESS frames (docs/record-stream.md).
 */
export function beforeDetach(order: readonly string[]): string[] {
  const out = [...order];
  while (out.at(-1) === 'progress') out.pop();
  return out;
}

async function waitFor<T>(
  what: string,
  probe: () => T,
  done: (v: T) => boolean,
  boundMs: number,
): Promise<T> {
  const started = Date.now();
  for (;;) {
    const v = probe();
    if (done(v)) return v;
    if (Date.now() - started > boundMs) throw new Error(`${what} after ${boundMs} ms: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Waits until none of the programs and links the run held exists in the
 * kernel: freed after an RCU grace period, not at the moment the helper exits.
 */
export async function assertGoneFromKernel(held: Held, boundMs = 10000): Promise<void> {
  await waitFor(
    'programs and links of the run still in the kernel',
    () => {
      const progs = idsIn('prog');
      const links = idsIn('link');
      if (!progs || !links) return undefined; // changing while listed: look again
      return {
        progs: [...held.progs].filter((id) => progs.has(id)),
        links: [...held.links].filter((id) => links.has(id)),
      };
    },
    (left) => left !== undefined && left.progs.length === 0 && left.links.length === 0,
    boundMs,
  );
}

/** Processes running the helper binary (the helper, or a filter compiler it forked). */
function helperProcesses(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/exe`) === HELPER) pids.push(Number(d));
    } catch {
      // gone, or not ours to look at
    }
  }
  return pids;
}

export async function assertNoHelperLeft(boundMs = 5000): Promise<void> {
  await waitFor('helper processes still running', helperProcesses, (p) => p.length === 0, boundMs);
}

/** Every line is whole JSON; returns them. */
export function wholeLines(text: string, what: string): unknown[] {
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), `${what} ends inside a line: …${JSON.stringify(text.slice(-80))}`);
  return text
    .slice(0, -1)
    .split('\n')
    .map((l, i) => {
      try {
        return JSON.parse(l) as unknown;
      } catch {
        throw new Error(`${what}: line ${i + 1} is not JSON: ${l.slice(0, 120)}`);
      }
    });
}

/**
 * wholeLines for a stream too big to hold as one string (a flood on a fast
 * machine writes more than V8's longest string): each line checked as it
 * completes, only the unfinished tail kept.
 */
export class WholeLineCounter {
  lines = 0;
  private tail = '';

  constructor(private readonly what: string) {}

  push(chunk: Buffer): void {
    const parts = (this.tail + chunk.toString('utf8')).split('\n');
    this.tail = parts.pop() ?? '';
    for (const l of parts) {
      this.lines++;
      try {
        JSON.parse(l);
      } catch {
        throw new Error(`${this.what}: line ${this.lines} is not JSON: ${l.slice(0, 120)}`);
      }
    }
  }

  /** The number of lines, once the stream has ended: it must end with a whole line. */
  end(): number {
    assert.equal(this.tail, '', `${this.what} ends inside a line: …${JSON.stringify(this.tail.slice(-80))}`);
    return this.lines;
  }
}

const FLOOD_C = `
/* flood DST PORT SECONDS: UDP datagrams to DST:PORT as fast as the kernel takes them. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	time_t end = time(NULL) + atoi(argv[3]);
	char b[16] = "pwru flood";

	inet_pton(AF_INET, argv[1], &a.sin_addr);
	while (time(NULL) < end)
		for (int i = 0; i < 1000; i++)
			sendto(s, b, sizeof(b), 0, (struct sockaddr *)&a, sizeof(a));
	return 0;
}
`;

let floodBinary: string | undefined;

/** A static flood sender, built once per test process. */
export function floodSender(): string {
  if (!floodBinary) {
    const dir = mkdtempSync(join(tmpdir(), 'pwru-flood-'));
    writeFileSync(join(dir, 'flood.c'), FLOOD_C);
    execFileSync('cc', ['-O2', '-static', '-o', join(dir, 'flood'), join(dir, 'flood.c')]);
    floodBinary = join(dir, 'flood');
  }
  return floodBinary;
}

/** Starts a flood inside a namespace (to its own loopback); it ends by itself after seconds. */
export function startFlood(ns: string, dst: string, port: number, seconds: number): () => void {
  const child = spawn('ip', ['netns', 'exec', ns, floodSender(), dst, String(port), String(seconds)], {
    stdio: 'ignore',
  });
  return () => child.kill('SIGKILL');
}

/** A tmpfs of a few KiB, unmounted by the returned function. */
export function tinyDisk(sizeKiB: number): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'pwru-tinydisk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k`, 'tmpfs', dir]);
  return {
    dir,
    remove: () => {
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
