/**
 * Large filters are bounded in time: 2000 `host` terms (libpcap's optimizer
 * needs minutes for their Ethernet form) start tracing in seconds on the raw
 * IP form, with a WARNING that says so, and match what they should.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runHelper, startHelper } from '../integration/helper-process';
import { NetLab } from '../integration/netlab';
import { assertGoneFromKernel, assertNoHelperLeft, heldBy } from './harness';

describe('a 2000-term filter', () => {
  const lab = new NetLab();
  let a = '';
  let filter = '';

  before(() => {
    [a] = lab.pair();
    // The lab's server among 1999 addresses nobody uses.
    const hosts = Array.from({ length: 1999 }, (_, i) => `host 10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    hosts.splice(1000, 0, `host ${lab.v4(1, 2)}`);
    filter = hosts.join(' or ');
  });
  after(() => lab.destroy());

  test('traces on the IP form, and says so', async () => {
    const h = startHelper(['--backend', 'tracepoint', '--duration', '60', '--', filter]);
    // A bound against the Ethernet form's minutes, not a timing: how fast is for `npm run bench`.
    await h.ready(90_000);
    const held = heldBy(h.child.pid ?? 0);
    assert.deepEqual(
      h.records.warnings.map((w) => w.code),
      ['filter_ip_only'],
    );
    lab.traffic(a, ['udp', lab.v4(1, 2), '6500', '2']);
    await h.until('the traffic to the one address in use', (r) =>
      r.events.some((e) => e.tuple?.dst === lab.v4(1, 2) && e.tuple.dport === 6500),
    );
    h.child.kill('SIGINT');
    const r = await h.finished();
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      r.events.every((e) => !e.tuple || e.tuple.src === lab.v4(1, 2) || e.tuple.dst === lab.v4(1, 2)),
      'only the one address in use',
    );
    await assertGoneFromKernel(held);
    await assertNoHelperLeft();
  });

  test('--check of it needs only the IP form: valid', async () => {
    const r = await runHelper(['--check', '--', filter], { unprivileged: true });
    assert.equal(r.code, 0, r.error?.message);
    assert.equal(r.end?.reason, 'check');
  });
});
