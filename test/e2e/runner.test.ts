/**
 * The pod side on its own: the bootstrap from manifests/debug-pod.yaml, fed
 * the same bundle the client sends, unpacks the runner and the real helper
 * and must stop the helper (probes detached) whenever the client goes away.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { inflateRawSync, constants as zlibConstants } from 'node:zlib';
import { bareContainerId, netnsOfContainer, type RunnerRequest } from '../../runner/runner';
import { buildBundle } from '../../src/kube/bundle';
import { loadTemplate } from '../../src/kube/debug-pod';
import { type EndInfo, RecordDecoder } from '../../src/record/decode';
import { linksUnder, processesUnder } from './net';

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface PodRun {
  stdout: Buffer[];
  stderr: string;
  stdin: NodeJS.WritableStream;
  pid: number;
  kill(sig: NodeJS.Signals): void;
  done: Promise<number | null>;
  exited: boolean;
  root: string;
}

function startPod(): PodRun {
  const root = mkdtempSync(join(tmpdir(), 'pwru-runner-test-'));
  roots.push(root);
  const command = loadTemplate().spec?.containers[0].command ?? [];
  assert.equal(command[0], 'node');
  const child = spawn(process.execPath, command.slice(1), { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  const run: PodRun = {
    stdout: [],
    stderr: '',
    stdin: child.stdin,
    pid: child.pid ?? 0,
    kill: (sig) => child.kill(sig),
    done: new Promise((resolve) =>
      child.once('close', (code) => {
        run.exited = true;
        resolve(code);
      }),
    ),
    exited: false,
    root,
  };
  child.stdout.on('data', (c: Buffer) => run.stdout.push(c));
  child.stderr.on('data', (c: Buffer) => {
    run.stderr += c.toString();
  });
  return run;
}

function decode(chunks: Buffer[]): { ready: boolean; end?: EndInfo; error?: string } {
  const out: { ready: boolean; end?: EndInfo; error?: string } = { ready: false };
  const dec = new RecordDecoder({
    ready: () => {
      out.ready = true;
    },
    end: (e) => {
      out.end = e;
    },
    error: (e) => {
      out.error = e.message;
    },
  });
  dec.push(Buffer.concat(chunks));
  return out;
}

async function until(check: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitReady(run: PodRun, timeoutMs = 15000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!decode(run.stdout).ready) {
    if (Date.now() > until) throw new Error(`helper never got ready:\n${run.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const request = (clientGraceSec: number): RunnerRequest => ({
  args: ['--backend', 'tracepoint', '--', 'udp and host 10.213.99.99'],
  clientGraceSec,
});

async function assertNothingLeft(run: PodRun): Promise<void> {
  assert.deepEqual(processesUnder([run.root]), []);
  assert.deepEqual(linksUnder([run.root]), []);
}

test('stdin EOF (the client stopped): the helper detaches and reports its end', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(30)));
  await waitReady(run);
  run.stdin.end();
  const started = Date.now();
  assert.equal(await run.done, 0, run.stderr);
  assert.ok(Date.now() - started < 5000);
  assert.ok(decode(run.stdout).end, 'END frame');
  assert.match(run.stderr, /stopping the helper: the client closed the stream/);
  await assertNothingLeft(run);
});

/** A client's acknowledgements (its heartbeat), from the bundle on, as src/kube/runner-link.ts sends them. */
function heartbeats(run: PodRun): { stop(): void } {
  const beat = setInterval(() => run.stdin.write('ack 0\n'), 500);
  return { stop: () => clearInterval(beat) };
}

test('the client falls silent (gone for good, stdin open): the runner stops the helper after the grace', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(2)));
  // Present until the trace runs (a loaded machine may take longer than the grace to get there), then gone.
  const beat = heartbeats(run);
  await waitReady(run).finally(() => beat.stop());
  await run.done;
  assert.match(run.stderr, /no word from the client for 2 s/);
  assert.ok(decode(run.stdout).end, 'the helper ended with END');
  assert.match(run.stderr, /the client did not come back for 2 s; \d+ bytes not delivered/);
  await assertNothingLeft(run);
});

test('acknowledgements (the heartbeat) keep it going', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(2)));
  const beat = heartbeats(run);
  await waitReady(run);
  await new Promise((r) => setTimeout(r, 3500));
  beat.stop();
  assert.equal(decode(run.stdout).end, undefined, 'still tracing after 3.5 s of acknowledgements');
  run.stdin.end();
  await run.done;
  await assertNothingLeft(run);
});

test('"stop": the helper detaches and reports its end; the runner exits once the client says it has it all', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(30)));
  await waitReady(run);
  run.stdin.write('stop\n');
  await until(() => decode(run.stdout).end !== undefined, 'END');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(run.exited, false, 'the runner waits until the client has the last bytes');
  run.stdin.write(`ack ${Buffer.concat(run.stdout).length}\n`);
  assert.equal(await run.done, 0, run.stderr);
  assert.match(run.stderr, /stopping the helper: the client asked/);
  await assertNothingLeft(run);
});

test('a client that attaches again gets, after its marker, the stream from its last byte on', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(30)));
  await waitReady(run);
  // The client had the first 10 bytes; what reaches it before the marker is skipped.
  const before = Buffer.concat(run.stdout).length;
  const marker = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  run.stdin.write(`resume 10 ${marker.toString('hex')}\n`);
  run.stdin.write('stop\n');
  // The client's view: its 10 bytes, then what follows the marker.
  const resumed = () => {
    const all = Buffer.concat(run.stdout);
    const at = all.indexOf(marker);
    return at < 0
      ? all.subarray(0, 10)
      : Buffer.concat([all.subarray(0, 10), all.subarray(at + marker.length)]);
  };
  await until(() => decode([resumed()]).end !== undefined, 'END after the marker');
  run.stdin.write(`ack ${resumed().length}\n`);
  assert.equal(await run.done, 0, run.stderr);
  const all = Buffer.concat(run.stdout);
  const at = all.indexOf(marker);
  assert.ok(at >= before, 'the marker comes after what was written before the resume');
  const whole = resumed();
  assert.deepEqual(whole.subarray(0, at), all.subarray(0, at), 'the replay repeats the stream from byte 10');
  const seen = decode([whole]);
  assert.ok(seen.ready && seen.end, 'one unbroken stream: READY ... END');
  assert.match(run.stderr, /the client attached again: sending the stream from byte 10 on/);
  await assertNothingLeft(run);
});

test('deflate (as the client asks): the stream comes compressed, one record stream once inflated', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', { ...request(30), deflate: true }));
  const beat = heartbeats(run);
  const inflated = () => [
    inflateRawSync(Buffer.concat(run.stdout), { finishFlush: zlibConstants.Z_SYNC_FLUSH }),
  ];
  try {
    // Flushed as it goes: READY can be read before the trace ends.
    await until(() => decode(inflated()).ready, 'READY, inflated');
    run.stdin.write('stop\n');
    await until(() => decode(inflated()).end !== undefined, 'END, inflated');
  } finally {
    beat.stop();
  }
  run.stdin.write(`ack ${Buffer.concat(run.stdout).length}\n`);
  assert.equal(await run.done, 0, run.stderr);
  assert.equal(decode(inflated()).error, undefined);
  await assertNothingLeft(run);
});

test('SIGTERM (the pod is deleted): the helper stops', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(30)));
  await waitReady(run);
  run.kill('SIGTERM');
  await run.done;
  assert.match(run.stderr, /SIGTERM/);
  assert.ok(decode(run.stdout).end, 'END frame');
  await assertNothingLeft(run);
});

test('stdin closes before the bundle arrived: the bootstrap exits with a message', async () => {
  const run = startPod();
  run.stdin.end(Buffer.alloc(100));
  assert.equal(await run.done, 4);
  assert.match(run.stderr, /stdin closed before the bundle arrived/);
});

test('the netns of a container is found through /proc/PID/cgroup', () => {
  const proc = mkdtempSync(join(tmpdir(), 'pwru-fake-proc-'));
  roots.push(proc);
  const id = '0123456789abcdef0123456789abcdef';
  for (const [pid, cgroup] of [
    ['17', '0::/system.slice/other\n'],
    ['42', `0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-${id}.scope\n`],
  ]) {
    mkdirSync(join(proc, pid, 'ns'), { recursive: true });
    writeFileSync(join(proc, pid, 'cgroup'), cgroup);
    writeFileSync(join(proc, pid, 'ns', 'net'), pid);
  }
  mkdirSync(join(proc, 'self'));
  assert.equal(bareContainerId(`containerd://${id}`), id);
  assert.equal(netnsOfContainer(`containerd://${id}`, proc), statSync(join(proc, '42', 'ns', 'net')).ino);
  assert.equal(netnsOfContainer('containerd://ffffffffffffffff', proc), undefined);
  assert.equal(netnsOfContainer('containerd://../../x', proc), undefined, 'no path tricks');
});
