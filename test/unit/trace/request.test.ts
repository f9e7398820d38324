import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withDefaultCommand } from '../../../src/cli';
import { parseDuration } from '../../../src/trace/duration';
import { composeFilter } from '../../../src/trace/filter';
import { helperArgs } from '../../../src/trace/request';

describe('composing the pcap filter from flags', () => {
  test('flags and the expression are ANDed, alternatives ORed, each part kept whole', () => {
    assert.equal(composeFilter({}, ''), '');
    assert.equal(composeFilter({ port: ['443'] }, ''), 'port 443');
    assert.equal(
      composeFilter(
        { proto: 'TCP', port: ['80', '8000-8080'], host: ['10.0.0.1', 'fd00::/64'] },
        'src net 10.0.0.0/8 or icmp',
      ),
      'tcp and (port 80 or portrange 8000-8080) and (host 10.0.0.1 or net fd00::/64) and (src net 10.0.0.0/8 or icmp)',
    );
  });

  test('bad values are refused with the flag named', () => {
    assert.throws(() => composeFilter({ port: ['0'] }, ''), /--port 0: expected a port from 1 to 65535/);
    assert.throws(() => composeFilter({ port: ['90-80'] }, ''), /--port 90-80: expected a range/);
    assert.throws(
      () => composeFilter({ host: ['example.com'] }, ''),
      /--host example.com: expected an IPv4 or IPv6/,
    );
    assert.throws(() => composeFilter({ host: ['10.0.0.0/33'] }, ''), /bad prefix length/);
    assert.throws(() => composeFilter({ proto: 'gre' }, ''), /--proto gre: expected one of/);
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
