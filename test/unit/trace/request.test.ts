import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withDefaultCommand } from '../../../src/cli';
import { parseDuration } from '../../../src/trace/duration';
import { composeFilter } from '../../../src/trace/filter';
import { helperArgs } from '../../../src/trace/request';

describe('composing the pcap filter from flags', () => {
  test('flags and the expression are ANDed, alternatives ORed, each part kept whole', () => {
    assert.equal(composeFilter({ expression: '' }), '');
    assert.equal(composeFilter({ port: ['443'], expression: '' }), 'port 443');
    assert.equal(
      composeFilter({
        proto: 'TCP',
        port: ['80', '8000-8080'],
        host: ['10.0.0.1', 'fd00::/64'],
        expression: 'src net 10.0.0.0/8 or icmp',
      }),
      'tcp and (port 80 or portrange 8000-8080) and (host 10.0.0.1 or net fd00::/64) and (src net 10.0.0.0/8 or icmp)',
    );
  });

  test('an expression that would break precedence is kept whole', () => {
    const f = (parts: Partial<Parameters<typeof composeFilter>[0]>) =>
      composeFilter({ expression: '', ...parts });
    // `or` at the top level
    assert.equal(
      f({ proto: 'tcp', expression: '(port 80) or (port 443)' }),
      'tcp and ((port 80) or (port 443))',
    );
    assert.equal(f({ port: ['53'], expression: 'udp or icmp' }), '(port 53) and (udp or icmp)');
    // parentheses that do not enclose the whole expression
    assert.equal(
      f({ host: ['10.0.0.1'], expression: '(udp) and port 53 or icmp' }),
      '(host 10.0.0.1) and ((udp) and port 53 or icmp)',
    );
    // `not`
    assert.equal(f({ proto: 'udp', expression: 'not port 53 or icmp' }), 'udp and (not port 53 or icmp)');
    // already whole: not wrapped again
    assert.equal(
      f({ proto: 'udp', expression: ' (port 53 or port 5353) ' }),
      'udp and (port 53 or port 5353)',
    );
    // alone: as typed
    assert.equal(f({ expression: 'tcp or udp' }), 'tcp or udp');
  });

  test("the target's addresses join through the same composer", () => {
    assert.equal(composeFilter({ addresses: [], expression: 'udp port 53' }), 'udp port 53');
    assert.equal(composeFilter({ addresses: ['10.0.0.1'], expression: '' }), '(host 10.0.0.1)');
    assert.equal(
      composeFilter({ addresses: ['10.0.0.1', 'fd00::1'], expression: 'tcp port 443' }),
      '(host 10.0.0.1 or host fd00::1) and (tcp port 443)',
    );
    // Only addresses ever reach the filter, whatever an API object holds.
    assert.equal(
      composeFilter({ addresses: ['10.0.0.1', '1.2.3.4 or tcp', 'None'], expression: 'udp' }),
      '(host 10.0.0.1) and (udp)',
    );
    assert.equal(
      composeFilter({
        addresses: ['10.0.0.1'],
        proto: 'udp',
        port: ['53'],
        expression: 'src net 10.0.0.0/8 or icmp',
      }),
      '(host 10.0.0.1) and udp and (port 53) and (src net 10.0.0.0/8 or icmp)',
    );
  });

  test('an expression that would escape its parentheses, or a lone number, is refused', () => {
    for (const expression of ['port 80) or (udp', 'port 80)', '(udp', ')(']) {
      assert.throws(
        () => composeFilter({ proto: 'tcp', expression }),
        (e: Error & { exitCode?: number }) => e.exitCode === 2 && /unbalanced parentheses/.test(e.message),
        expression,
      );
    }
    assert.throws(() => composeFilter({ expression: '443' }), /'443' is not a filter on its own/);
    assert.throws(() => composeFilter({ expression: '80 8000-8080' }), /is not a filter on its own/);
  });

  test('bad values are refused with the flag named', () => {
    assert.throws(
      () => composeFilter({ port: ['0'], expression: '' }),
      /--port 0: expected a port from 1 to 65535/,
    );
    assert.throws(() => composeFilter({ port: ['90-80'], expression: '' }), /--port 90-80: expected a range/);
    assert.throws(
      () => composeFilter({ host: ['example.com'], expression: '' }),
      /--host example.com: expected an IPv4 or IPv6/,
    );
    assert.throws(() => composeFilter({ host: ['10.0.0.0/33'], expression: '' }), /bad prefix length/);
    assert.throws(() => composeFilter({ proto: 'gre', expression: '' }), /--proto gre: expected one of/);
  });
});

describe('the rest of a trace request', () => {
  test('durations as kubectl users write them', () => {
    assert.equal(parseDuration('--duration', '30s'), 30);
    assert.equal(parseDuration('--duration', '2m'), 120);
    assert.equal(parseDuration('--duration', '500ms'), 0.5);
    assert.equal(parseDuration('--duration', '7'), 7);
    assert.throws(() => parseDuration('--duration', 'soon'), /--duration soon: expected a duration/);
    assert.throws(() => parseDuration('--duration', '0s'), /expected a duration/);
  });

  test('the helper gets the filter after "--", so it can never be read as an option', () => {
    assert.deepEqual(
      helperArgs({
        pcapFilter: '-1 > 0 or udp',
        backend: 'tracepoint',
        trackSkb: true,
        allKmods: false,
        outputStack: false,
        maxEvents: 5,
      }),
      ['--backend', 'tracepoint', '--filter-track-skb', '--max-events', '5', '--', '-1 > 0 or udp'],
    );
  });

  test('trace is the default command', () => {
    assert.deepEqual(withDefaultCommand(['pod/foo', '--port', '443']), ['trace', 'pod/foo', '--port', '443']);
    assert.deepEqual(withDefaultCommand(['show', 'x.jsonl']), ['show', 'x.jsonl']);
    assert.deepEqual(withDefaultCommand(['--help']), ['--help']);
    assert.deepEqual(withDefaultCommand(['--local', '--help']), ['trace', '--local', '--help']);
    assert.deepEqual(withDefaultCommand([]), ['trace']);
    assert.deepEqual(withDefaultCommand(['help', 'show']), ['show', '--help']);
    assert.deepEqual(withDefaultCommand(['help']), ['--help']);
    assert.deepEqual(withDefaultCommand(['help', 'nonsense']), ['--help']);
  });
});
