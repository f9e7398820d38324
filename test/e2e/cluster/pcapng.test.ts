/**
 * --pcapng through Kubernetes mode on the real cluster: datagrams from this
 * host to a pod's closed port, traced with `pod/NAME --pcapng FILE`. tshark
 * reads the file without a warning; its interfaces are named after the node,
 * the network namespace and the device; the packet's last comment says it
 * was dropped, and why.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import type { TraceEvent } from '../../../src/record/event';
import {
  api,
  BUSYBOX,
  createNamespace,
  deleteNamespace,
  jsonLines,
  KUBECONFIG,
  startCli,
  until,
} from './world';

const skip = KUBECONFIG ? false : 'no cluster (scripts/run-tests.js says why)';

describe('--pcapng through Kubernetes mode', { skip }, () => {
  const ns = `pcapng-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'pwru-pcapng-e2e-'));
  let pod: k8s.V1Pod;

  before(async () => {
    await createNamespace(ns, 'privileged');
    await api.request('POST', `/api/v1/namespaces/${ns}/pods`, {
      body: {
        metadata: { name: 'quiet' },
        spec: {
          terminationGracePeriodSeconds: 0,
          containers: [
            { name: 'c', image: BUSYBOX, imagePullPolicy: 'IfNotPresent', command: ['sleep', '3600'] },
          ],
        },
      },
    });
    pod = await until(
      'the pod running with an address',
      async () => {
        const p = await api.request<k8s.V1Pod>('GET', `/api/v1/namespaces/${ns}/pods/quiet`);
        return p.status?.phase === 'Running' && p.status.podIP ? p : undefined;
      },
      120_000,
    );
  });
  after(async () => {
    await deleteNamespace(ns);
    rmSync(dir, { recursive: true, force: true });
  });

  test('pod/NAME --pcapng: interfaces named node/netns/ifname, the drop and its reason in the comments', async () => {
    const file = join(dir, 'pod.pcapng');
    const ip = pod.status?.podIP ?? '';
    const node = pod.spec?.nodeName ?? '';
    const run = startCli([
      'pod/quiet',
      '-n',
      ns,
      '--backend',
      'tracepoint',
      '--duration',
      '60s',
      '-o',
      'json',
      '--pcapng',
      file,
      'udp and port 7301',
    ]);
    await run.waitForStderr(/tracing with/);
    const sock = createSocket('udp4');
    await new Promise((r) => sock.send('pwru-pcapng', 7301, ip, r));
    sock.close();
    await run.waitForStdout(/"drop":\{"reason":"NO_SOCKET"/, 30_000);
    run.child.kill('SIGINT');
    assert.equal(await run.done, 0, run.stderr);

    const events = jsonLines(run.stdout).filter((l) => l.type === 'event') as TraceEvent[];
    const drop = events.find((e) => e.drop?.reason === 'NO_SOCKET');
    assert.ok(drop, 'the drop is traced');
    const r = spawnSync(
      'tshark',
      ['-r', file, '-T', 'fields', '-e', 'frame.interface_name', '-e', 'ip.dst', '-e', 'frame.comment'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const complaints = r.stderr.split('\n').filter((l) => l.trim() && !/^Running as user "root"/.test(l));
    assert.deepEqual(complaints, [], 'tshark reads it without a warning');
    const blocks = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t'));
    assert.ok(blocks.length >= 1, 'packets in the file');
    for (const [iface, dst] of blocks) {
      assert.match(iface, new RegExp(`^${node}/\\d+/[^/]+$`), 'node/netns/ifname');
      assert.equal(dst, ip);
    }
    assert.ok(
      blocks.some(([, , comment]) => /; verdict: dropped at [a-z_0-9]+ .*NO_SOCKET/.test(comment)),
      blocks.map((b) => b[2]).join('\n'),
    );
  });
});
