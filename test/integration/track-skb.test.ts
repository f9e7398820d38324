/**
 * --filter-track-skb: a packet that matched once stays in view after DNAT
 * rewrote the address the filter matched on.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NetLab } from './netlab';
import { startTrace } from './tracer';

describe('following a packet through DNAT', () => {
  const lab = new NetLab();
  let a = '';
  let b = '';
  let service = '';
  let backend = '';

  before(() => {
    [a, b] = lab.pair();
    service = lab.v4(9, 100);
    backend = lab.v4(1, 2);
    lab.exec(a, 'ip', ['route', 'add', `${lab.v4(9, 0)}/24`, 'via', backend]);
    lab.exec(b, 'iptables', [
      '-t',
      'nat',
      '-A',
      'PREROUTING',
      '-d',
      service,
      '-p',
      'udp',
      '-j',
      'DNAT',
      '--to-destination',
      backend,
    ]);
  });
  after(() => lab.destroy());

  async function traceOnce(extra: string[]) {
    const trace = startTrace([...extra, `udp and dst host ${service}`]);
    await trace.ready();
    lab.traffic(a, ['udp', service, '6100', '1']);
    return trace.stop();
  }

  test('without tracking, the packet vanishes from view once its address changed', async () => {
    const { events, code, stderr } = await traceOnce([]);
    assert.equal(code, 0, stderr);
    assert.ok(events.length > 0, 'the packet was not seen at all');
    assert.ok(events.every((e) => e.tuple?.dst === service));
    assert.ok(!events.some((e) => e.tuple?.dst === backend));
  });

  test('with --filter-track-skb, the rewritten packet is still followed to its end', async () => {
    const { events, code, stderr } = await traceOnce(['--filter-track-skb']);
    assert.equal(code, 0, stderr);
    const rewritten = events.filter((e) => e.tuple?.dst === backend);
    assert.ok(rewritten.length > 0, `no step after DNAT among ${events.map((e) => e.func).join(' ')}`);
    assert.ok(rewritten.every((e) => e.tracked === true));
    assert.ok(rewritten.every((e) => e.skb === events.find((x) => x.tuple?.dst === service)?.skb));
    // Nothing listens there: it ends as a drop, in plain view.
    assert.ok(rewritten.some((e) => e.drop?.reason === 'NO_SOCKET'));
  });
});
