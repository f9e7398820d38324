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
    done: new Promise((resolve) => child.once('close', (code) => resolve(code))),
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

async function waitReady(run: PodRun, timeoutMs = 15000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!decode(run.stdout).ready) {
    if (Date.now() > until) throw new Error(`helper never got ready:\n${run.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const request = (heartbeatTimeoutSec: number): RunnerRequest => ({
  args: ['--backend', 'tracepoint', '--', 'udp and host 10.213.99.99'],
  heartbeatTimeoutSec,
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

/** A client's heartbeats, from the bundle on, as src/kube/attach-channel.ts sends them. */
function heartbeats(run: PodRun): { stop(): void } {
  const beat = setInterval(() => run.stdin.write('.'), 500);
  return { stop: () => clearInterval(beat) };
}

test('heartbeats stop (the network dropped, stdin half-open): the runner stops the helper', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(2)));
  // Beating until ready: on a loaded machine the helper can take longer to start than the 2 s allowed.
  const beat = heartbeats(run);
  await waitReady(run).finally(() => beat.stop());
  const started = Date.now();
  await run.done;
  // Prompt, not timed to the millisecond: a runner that never stopped would hang here instead.
  assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
  assert.match(run.stderr, /no heartbeat from the client for 2 s/);
  await assertNothingLeft(run);
});

test('heartbeats keep it going', async () => {
  const run = startPod();
  run.stdin.write(await buildBundle('amd64', request(2)));
  const beat = heartbeats(run);
  await waitReady(run);
  await new Promise((r) => setTimeout(r, 3500));
  beat.stop();
  assert.equal(decode(run.stdout).end, undefined, 'still tracing after 3.5 s of heartbeats');
  run.stdin.end();
  await run.done;
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
