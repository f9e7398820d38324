/**
 * `pwru-helper --check`: the user's input checked without privileges and
 * without loading anything (docs/record-stream.md, "--check"). The helper
 * runs as nobody with no capabilities: it could not load a BPF program if it
 * tried. Every answer starts with HELLO, errors included.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runHelper } from './helper-process';
import { NetLab } from './netlab';

describe('pwru-helper --check', () => {
  const lab = new NetLab();
  let a = '';

  before(() => {
    [a] = lab.pair();
  });
  after(() => lab.destroy());

  test('valid input: HELLO, END "check", exit 0, as nobody', async () => {
    const r = await runHelper(
      ['--check', '--filter-mark', '0x10/0xff', '--filter-func', '^ip_', '--', 'udp port 53'],
      {
        unprivileged: true,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.order, ['hello', 'end']);
    assert.equal(r.end?.reason, 'check');
    assert.equal(r.streamError, undefined);
  });

  for (const [what, args, code] of [
    ['a pcap filter libpcap refuses', ['--check', '--', 'udp and hst 10.0.0.1'], 'bad_filter'],
    ['an unknown option', ['--check', '--ports', '80'], 'usage'],
    ['a bad --filter-mark', ['--check', '--filter-mark', '0x10/zz'], 'usage'],
    ['a bad --duration', ['--check', '--duration', '-1'], 'usage'],
    [
      'a --filter-netns that does not exist',
      ['--check', '--filter-netns', '/run/netns/no-such-ns-x'],
      'usage',
    ],
    ['a --filter-func that is no regex', ['--check', '--filter-func', 'ip_(rcv'], 'bad_regex'],
    ['an interface the namespace does not have', ['--check', '--filter-ifname', 'nosuchif0'], 'no_interface'],
  ] as const) {
    test(`${what}: HELLO, ERROR ${code}, exit 2`, async () => {
      const r = await runHelper([...args], { unprivileged: true });
      assert.equal(r.code, 2, r.stderr);
      assert.deepEqual(r.order, ['hello', 'error']);
      assert.equal(r.error?.code, code, r.error?.message);
      assert.equal(r.streamError, undefined);
    });
  }

  test('the Ethernet form is compiled when the raw form cannot say it (ether host)', async () => {
    const r = await runHelper(['--check', '--', 'ether host 02:00:00:00:00:01'], { unprivileged: true });
    assert.equal(r.code, 0, r.error?.message);
    assert.equal(r.end?.reason, 'check');
  });

  test("--filter-ifname is looked up in --filter-netns's namespace", async () => {
    const there = await runHelper(['--check', '--filter-netns', `/run/netns/${a}`, '--filter-ifname', 'va1']);
    assert.equal(there.code, 0, there.error?.message);
    assert.equal(there.end?.reason, 'check');
    const missing = await runHelper([
      '--check',
      '--filter-netns',
      `/run/netns/${a}`,
      '--filter-ifname',
      'vb1',
    ]);
    assert.equal(missing.code, 2);
    assert.equal(missing.error?.code, 'no_interface');
    assert.match(
      missing.error?.message ?? '',
      new RegExp(`vb1: no such interface in network namespace ${lab.inode(a)}`),
    );
    // By inode number, as the runner in a debug pod gives it: found through the namespace's /run/netns name.
    const byInode = await runHelper([
      '--check',
      '--filter-netns',
      String(lab.inode(a)),
      '--filter-ifname',
      'va1',
    ]);
    assert.equal(byInode.code, 0, byInode.error?.message);
  });

  test('without the privileges to enter the namespace, the interface is left to the trace (a WARNING)', async () => {
    const r = await runHelper(['--check', '--filter-netns', `/run/netns/${a}`, '--filter-ifname', 'va1'], {
      unprivileged: true,
    });
    assert.equal(r.code, 0, r.error?.message);
    assert.deepEqual(r.order, ['hello', 'warning', 'end']);
    assert.equal(r.warnings[0].code, 'interface_unchecked');
  });

  test('a trace refuses the same input the same way, before anything is loaded', async () => {
    const r = await runHelper(['--backend', 'tracepoint', '--filter-ifname', 'nosuchif0', '--', 'udp']);
    assert.equal(r.code, 2);
    assert.deepEqual(r.order, ['hello', 'error']);
    assert.equal(r.error?.code, 'no_interface');
  });

  test('a bad option to a trace: HELLO first, then ERROR usage', async () => {
    const r = await runHelper(['--filter-mark', 'x', '--', 'udp']);
    assert.equal(r.code, 2);
    assert.deepEqual(r.order, ['hello', 'error']);
    assert.equal(r.error?.code, 'usage');
  });
});
