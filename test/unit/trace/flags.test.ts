/**
 * The trace command's command line as oclif reads it with the one flag table
 * (src/trace/flags.ts), in this process: runTrace is replaced by a recorder,
 * so nothing runs and no CLI is spawned. What reaches runTrace, the request
 * built from it and the helper's command line.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withDefaultCommand } from '../../../src/cli';
import Trace from '../../../src/commands/trace';
import * as runTraceModule from '../../../src/run-trace';
import { readWords } from '../../../src/trace/command-line';
import { KUBERNETES_FLAGS, TRACE_FLAGS, type TraceFlags } from '../../../src/trace/flags';
import { thisHost } from '../../../src/trace/place';
import { buildRequest, helperArgs } from '../../../src/trace/request';
import { ROOT } from '../fixtures';

interface Read {
  flags: TraceFlags;
  words: string[];
}

/** What oclif hands runTrace for argv (nothing runs), or the error the command ends with. */
async function oclifReads(argv: string[]): Promise<Read | Error> {
  const { run } = require('@oclif/core/run') as typeof import('@oclif/core/lib/main');
  const mod = runTraceModule as { runTrace: typeof runTraceModule.runTrace };
  const original = mod.runTrace;
  let got: Read | undefined;
  mod.runTrace = async (flags, words) => {
    got = { flags, words: [...words] };
    return 0;
  };
  // The command prints its errors itself and exits: keep its words, stop the exit.
  const write = process.stderr.write;
  let stderr = '';
  process.stderr.write = ((chunk: string) => {
    stderr += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    await run(withDefaultCommand(argv), ROOT);
  } catch (err) {
    const e = err as Error & { oclif?: { exit?: number } };
    return Object.assign(new Error(stderr || e.message), { exit: e.oclif?.exit });
  } finally {
    mod.runTrace = original;
    process.stderr.write = write;
  }
  return got ?? new Error('the trace command did not run');
}

async function reads(argv: string[]): Promise<Read> {
  const r = await oclifReads(argv);
  if (r instanceof Error) throw r;
  return r;
}

describe('the one flag table', () => {
  test('is the command’s: oclif parses with it, grouped for --help', () => {
    assert.equal(Trace.flags, TRACE_FLAGS);
    for (const [name, flag] of Object.entries(TRACE_FLAGS)) {
      assert.ok(flag.helpGroup, `${name} is in a group`);
      assert.ok(flag.description, `${name} says what it does`);
    }
    assert.ok(Object.values(KUBERNETES_FLAGS).every((f) => f.helpGroup === 'KUBERNETES'));
  });
});

describe('the command line, as the trace command receives it', () => {
  test('flags with their defaults; words in the order typed', async () => {
    const r = await reads(['--local', '--proto', 'udp', 'tcp', 'udp']);
    assert.deepEqual(r.words, ['tcp', 'udp']);
    assert.deepEqual(r.flags, { local: true, proto: 'udp', backend: 'auto', output: 'text' });
    // oclif's own argv would put "53" first (it sorts words by where each first appears).
    assert.deepEqual((await reads(['--local', '--port', '53', 'udp', 'port', '53'])).words, [
      'udp',
      'port',
      '53',
    ]);
  });

  test('a repeatable flag takes one value per use: the next word is the filter', async () => {
    const quoted = await reads(['--local', '--port', '53', 'host 10.0.0.1']);
    assert.deepEqual(quoted.flags.port, ['53']);
    assert.deepEqual(quoted.words, ['host 10.0.0.1']);
    const kube = await reads(['pod/web', '--port', '53', 'host 10.0.0.1']);
    assert.deepEqual(kube.words, ['pod/web', 'host 10.0.0.1']);
    const twice = await reads(['--local', '--port', '80', '--port=443', '--host', '10.0.0.0/8']);
    assert.deepEqual(twice.flags.port, ['80', '443']);
    assert.deepEqual(twice.words, []);
  });

  test("the helper's command line for the usual invocations", async () => {
    const cases: [string[], string[]][] = [
      [['--local'], ['--backend', 'auto']],
      [
        ['--local', 'udp and host 10.9.9.9'],
        ['--backend', 'auto', '--', 'udp and host 10.9.9.9'],
      ],
      [
        [
          '--local',
          '--backend',
          'tracepoint',
          '-o',
          'wide',
          '--duration',
          '300s',
          '--no-color',
          'udp',
          'port',
          '53',
        ],
        ['--backend', 'tracepoint', '--duration', '300', '--', 'udp port 53'],
      ],
      [
        ['trace', '--local', '--port', '80', '--port', '8000-8080', '--host', '10.0.0.0/8', '--proto', 'TCP'],
        ['--backend', 'auto', '--', 'tcp and (port 80 or portrange 8000-8080) and (net 10.0.0.0/8)'],
      ],
      [
        ['--local', '--port', '53', 'host 10.0.0.1'],
        ['--backend', 'auto', '--', '(port 53) and (host 10.0.0.1)'],
      ],
      [
        [
          '--local',
          '--filter-func',
          '^ip_',
          '--filter-netns',
          '/proc/1/ns/net',
          '--filter-mark',
          '0x1/0xff',
          '--filter-ifname',
          'eth0',
          '--filter-track-skb',
          '--all-kmods',
          '--output-stack',
          '--max-events',
          '007',
          '--ringbuf-size',
          '65536',
          '--duration',
          '1.5m',
          '--',
          '-1 > 0',
        ],
        [
          '--backend',
          'auto',
          '--filter-func',
          '^ip_',
          '--filter-netns',
          '/proc/1/ns/net',
          '--filter-mark',
          '0x1/0xff',
          '--filter-ifname',
          'eth0',
          '--filter-track-skb',
          '--all-kmods',
          '--output-stack',
          '--duration',
          '90',
          '--max-events',
          '7',
          '--ringbuf-size',
          '65536',
          '--',
          '-1 > 0',
        ],
      ],
    ];
    for (const [argv, helper] of cases) {
      const r = await reads(argv);
      const request = buildRequest(r.flags, readWords(r.flags, r.words), thisHost());
      assert.deepEqual(helperArgs(request), helper, argv.join(' '));
    }
  });

  test('`--port 80 --local 443` does not trace port 443: the lone number is refused', async () => {
    for (const argv of [
      ['--port', '80', '--local', '443'],
      ['--local', '--port', '80', '443'],
    ]) {
      const r = await reads(argv);
      assert.deepEqual(r.flags.port, ['80']);
      assert.throws(
        () => buildRequest(r.flags, readWords(r.flags, r.words), thisHost()),
        (err: Error & { exitCode?: number }) =>
          err.exitCode === 2 && /'443' is not a filter on its own.*--port/.test(err.message),
      );
    }
  });

  test('what oclif refuses: one plain line, exit code 2, with or without the command’s name', async () => {
    const cases: [string[], RegExp][] = [
      [['pod/web', '--ports', '8080'], /^error: unknown flag --ports: see kubectl pwru trace --help\n$/],
      [['--local', '--bogus'], /^error: unknown flag --bogus: see kubectl pwru trace --help\n$/],
      [['--local', '--backend', 'nope'], /^error: .*--backend.*auto, kprobe-multi, kprobe, tracepoint/],
      [
        ['--local', '--max-events', '0'],
        /^error: --max-events: expected an integer greater than or equal to 1/,
      ],
      [
        ['--local', '--ringbuf-size', '1.5'],
        /^error: --ringbuf-size: expected an integer but received: 1\.5/,
      ],
      [['--local', '--duration'], /^error: flag --duration expects a value/],
    ];
    for (const [argv, message] of cases) {
      for (const line of [argv, ['trace', ...argv]]) {
        const r = await oclifReads(line);
        assert.ok(r instanceof Error, line.join(' '));
        assert.match(r.message, message, line.join(' '));
        assert.equal((r as Error & { exit?: number }).exit, 2, line.join(' '));
      }
    }
  });
});
