/**
 * --on-drop through Kubernetes mode on the real cluster: the node is this
 * machine's kernel, so the intermittent masquerade network of the local test
 * (test/integration/masquerade-lab.ts) is built here in network namespaces,
 * and `kubectl pwru node/NODE --on-drop` must report its drops from the debug
 * pod: each beside the last good packet, naming both sources and the
 * reverse-path filter; exit 3 with --fail-on-drop; nothing left behind. And
 * the same with the API connection cut (a TCP proxy between the CLI and the
 * API server) while the drops happen: reported after the CLI attached again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type * as k8s from '@kubernetes/client-node';
import type { TraceDropReport } from '../../../src/record/event';
import { intermittent, type MasqueradeLab, masqueradeLab } from '../../integration/masquerade-lab';
import { NetLab } from '../../integration/netlab';
import {
  api,
  apiProxy,
  createNamespace,
  debugObjects,
  deleteNamespace,
  jsonLines,
  KUBECONFIG,
  startCli,
  until,
} from './world';

const skip = KUBECONFIG ? false : 'no cluster (scripts/run-tests.js says why)';

describe('--on-drop through Kubernetes mode', { skip }, () => {
  const ns = `ondrop-e2e-${randomBytes(3).toString('hex')}`;
  const lab = new NetLab();
  let m: MasqueradeLab;
  let node = '';

  before(async () => {
    await createNamespace(ns, 'privileged');
    const nodes = await api.request<k8s.V1NodeList>('GET', '/api/v1/nodes');
    node = nodes.items[0]?.metadata?.name ?? '';
    m = await masqueradeLab(lab);
  });
  after(async () => {
    lab.destroy();
    await deleteNamespace(ns);
  });

  test('node/NODE --on-drop --drops 2 --fail-on-drop: two drops from the debug pod, each beside the last good packet; exit 3', async () => {
    const cli = startCli([
      `node/${node}`,
      '--debug-namespace',
      ns,
      '--on-drop',
      '--drops',
      '2',
      '--fail-on-drop',
      '--duration',
      '90s',
      '-o',
      'json',
      `udp and dst port ${m.port}`,
    ]);
    await cli.waitForStderr(/watching for drops/, 90_000);
    const traffic = intermittent(lab, m);
    const code = await cli.done;
    traffic.stop();

    assert.equal(code, 3, cli.stderr);
    const caught = (jsonLines(cli.stdout) as { type: string }[]).filter(
      (l): l is TraceDropReport => l.type === 'drop',
    );
    assert.equal(caught.length, 2, cli.stdout);
    for (const d of caught) {
      assert.ok(d.good, `drop #${d.n} has the last good packet beside it: ${d.sentence}`);
      assert.equal(d.verdict.reason, 'IP_RPFILTER');
      assert.ok(d.sentence.includes(`source ${m.borrowed} instead of ${m.right}`), d.sentence);
      assert.match(d.sentence, /reverse-path filter/);
    }
    // The debug pod and its Job are gone after the run.
    await until(
      'the debug objects gone',
      async () => ((await debugObjects(ns)).length === 0 ? true : undefined),
      60_000,
    );
  });

  test('the API connection cut while the drops happen: the CLI attaches again and reports them', async () => {
    const proxy = await apiProxy(mkdtempSync(join(tmpdir(), 'pwru-cut-')));
    m.masquerade(false);
    const sender = lab.background(m.client, ['udp-every', m.serverIp, String(m.port), '200']);
    try {
      const cli = startCli(
        [
          `node/${node}`,
          '--debug-namespace',
          ns,
          '--on-drop',
          '--drops',
          '2',
          '--fail-on-drop',
          '--duration',
          '150s',
          '-o',
          'json',
          `udp and dst port ${m.port}`,
        ],
        { KUBECONFIG: proxy.kubeconfig },
      );
      await cli.waitForStderr(/watching for drops/, 90_000);
      // Good packets first, so that each drop has its flow's last good packet; then the cut, and only while
      // the connection is down does the router borrow the wrong source: every drop happens while it is down.
      await new Promise((r) => setTimeout(r, 2000));
      proxy.down();
      m.masquerade(true);
      await new Promise((r) => setTimeout(r, 3000));
      m.masquerade(false);
      await new Promise((r) => setTimeout(r, 2000));
      assert.ok(proxy.cut > 0, 'the attach stream went through the proxy and was cut');
      assert.doesNotMatch(
        cli.stdout,
        /"type":"drop"/,
        'nothing reached the CLI while the connection was down',
      );
      proxy.up();
      const code = await cli.done;
      assert.equal(code, 3, cli.stderr);
      assert.match(cli.stderr, /the connection to the API server dropped .*; attaching again/);
      assert.match(cli.stderr, /attached again after [\d.]+ s/);
      const caught = (jsonLines(cli.stdout) as { type: string }[]).filter(
        (l): l is TraceDropReport => l.type === 'drop',
      );
      assert.equal(caught.length, 2, cli.stdout);
      for (const d of caught) {
        assert.ok(d.good, `drop #${d.n} has the last good packet beside it: ${d.sentence}`);
        assert.equal(d.verdict.reason, 'IP_RPFILTER');
        assert.ok(d.sentence.includes(`source ${m.borrowed} instead of ${m.right}`), d.sentence);
      }
      await until(
        'the debug objects gone',
        async () => ((await debugObjects(ns)).length === 0 ? true : undefined),
        60_000,
      );
    } finally {
      sender.kill();
      proxy.close();
    }
  });
});
