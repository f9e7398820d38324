/**
 * --filter-ifname NAME is the interface of that name in the namespace
 * --filter-netns names (the host's without it), as pwru has it: two
 * namespaces each with a veth called va1, and only the one asked for is traced.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runHelper } from './helper-process';
import { NetLab } from './netlab';
import { startTrace } from './tracer';

describe('--filter-ifname in a namespace', () => {
  const lab = new NetLab();
  let a = '';
  let c = '';

  before(() => {
    [a] = lab.pair(); // a:va1 -- b:vb1 on subnet 1
    c = lab.ns('c');
    const d = lab.ns('d');
    lab.link(c, d, 2, ['va1', 'vb1']); // the same names, on subnet 2
  });
  after(() => lab.destroy());

  test('only the va1 of the namespace asked for', async () => {
    const filter = `udp and (host ${lab.v4(1, 2)} or host ${lab.v4(2, 2)})`;
    const trace = startTrace(['--filter-netns', `/run/netns/${c}`, '--filter-ifname', 'va1', filter]);
    await trace.ready();
    lab.traffic(a, ['udp', lab.v4(1, 2), '6401', '2']);
    lab.traffic(c, ['udp', lab.v4(2, 2), '6402', '2']);
    const { events, code, stderr } = await trace.stop();
    assert.equal(code, 0, stderr);
    assert.ok(events.length > 0, 'nothing traced on c:va1');
    for (const e of events) {
      assert.equal(e.iface, 'va1', `${e.func} on ${e.iface}`);
      assert.equal(e.netns, lab.inode(c), `${e.func} in netns ${e.netns}`);
    }
    assert.ok(!events.some((e) => e.tuple?.dport === 6401), "a's va1 was traced too");
  });

  test('a name the namespace does not have is refused before anything is loaded', async () => {
    // The host has no va1: without --filter-netns the name is looked up there.
    const r = await runHelper(['--backend', 'tracepoint', '--filter-ifname', 'va1', '--', 'udp']);
    assert.equal(r.code, 2);
    assert.deepEqual(r.order, ['hello', 'error']);
    assert.equal(r.error?.code, 'no_interface');
    assert.match(r.error?.message ?? '', /--filter-ifname va1: no such interface in network namespace \d+/);
  });
});
