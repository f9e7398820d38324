/**
 * What makes a trace cheap and bounded enough to leave on for hours:
 * --max-rate caps the events the kernel program writes (and counts the rest),
 * and --on-drop's memory stays bounded with more flows than it keeps.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { TraceStats } from '../../src/record/event';
import { NetLab, run } from './netlab';
import { startTrace } from './tracer';

/** The helper the CLI started (its only child named pwru-helper). */
function helperPid(cliPid: number): number | undefined {
  const out = run('ps', ['-o', 'pid=,comm=', '--ppid', String(cliPid)]);
  const line = out.split('\n').find((l) => l.includes('pwru-helper'));
  return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

describe('long runs: the rate cap and bounded memory', () => {
  const lab = new NetLab();
  let a = '';
  let b = '';

  before(async () => {
    [a, b] = lab.pair();
    // Every UDP port of b answers: a datagram to any port is delivered to the one socket.
    lab.exec(b, 'iptables', [
      '-t',
      'nat',
      '-A',
      'PREROUTING',
      '-p',
      'udp',
      '-j',
      'REDIRECT',
      '--to-ports',
      '9000',
    ]);
    await lab.serve(b, ['udp-serve', '9000']);
  });
  after(() => lab.destroy());

  test('--max-rate 160: the kernel program writes at most ~160 events a second, and counts the skipped ones', async () => {
    const dst = lab.v4(1, 2);
    const trace = startTrace(['--max-rate', '160', `udp and dst host ${dst}`]);
    await trace.ready();
    const started = Date.now();
    lab.traffic(a, ['udp-spread', dst, '20000', '4000', '0']);
    const res = await trace.stop();
    const seconds = (Date.now() - started) / 1000;

    assert.equal(res.code, 0, res.stderr);
    const stats = res.lines.filter((l): l is TraceStats => l.type === 'stats').at(-1);
    assert.ok(stats?.skipped && stats.skipped > 0, `skipped counted: ${JSON.stringify(stats)}`);
    // Windows of 1/16 s with 10 events each; a window's turn may let a few more through.
    const allowed = 160 * Math.ceil(seconds + 1) + 32;
    assert.ok(
      res.events.length <= allowed,
      `${res.events.length} events in ${seconds} s, at most ${allowed}`,
    );
    assert.ok(res.events.length >= 10, `some events still written (${res.events.length})`);
    assert.match(res.stderr, /skipped \(over --max-rate/);
  });

  test('--fail-on-drop cannot say "no drop" when events were skipped (exit 6), and says so; without the cap it can (exit 0)', async () => {
    const dst = lab.v4(1, 2);
    for (const [cap, code] of [
      [['--max-rate', '16'], 6],
      [[], 0],
    ] as const) {
      const trace = startTrace([...cap, '--fail-on-drop', `udp and dst host ${dst}`]);
      await trace.ready();
      lab.traffic(a, ['udp-spread', dst, '2000', '400', '0']);
      const res = await trace.stop();
      assert.equal(res.code, code, `${cap.join(' ') || 'no cap'}: ${res.stderr}`);
      if (code === 6)
        assert.match(res.stderr, /cannot say "no drop": \d+ matching events were lost or skipped/);
      else assert.doesNotMatch(res.stderr, /cannot say/);
    }
  });

  test('--on-drop with more flows than it keeps: the helper stays under 32 MiB and says what it forgot', async () => {
    const dst = lab.v4(1, 2);
    const trace = startTrace(['--on-drop', `udp and dst host ${dst}`]);
    await trace.ready();
    const pid = helperPid(trace.child.pid as number);
    assert.ok(pid, 'the helper is a child of the CLI');
    let peak = rssKiB(pid);
    const sample = setInterval(() => {
      peak = Math.max(peak, rssKiB(pid));
    }, 100);
    // 6000 flows (one destination port each), paced so that the one socket keeps up.
    // In the background, so that the sampling above runs meanwhile.
    for (const base of [10000, 13000])
      await once(lab.background(a, ['udp-spread', dst, String(base), '3000', '1']), 'exit');
    peak = Math.max(peak, rssKiB(pid));
    clearInterval(sample);
    const res = await trace.stop();

    assert.equal(res.code, 0, res.stderr);
    assert.ok(peak < 32 * 1024, `helper RSS peaked at ${peak} KiB`);
    const m = /(\d+) packets watched in (\d+) flows; forgotten to stay bounded: (\d+) flows/.exec(res.stderr);
    assert.ok(m, res.stderr);
    assert.ok(Number(m[1]) >= 6000, `packets watched: ${m[1]}`);
    assert.ok(Number(m[3]) > 0, `flows forgotten: ${m[3]}`);
    process.stderr.write(
      `# helper RSS peak ${peak} KiB with ${m[1]} packets in ${Number(m[2]) + Number(m[3])} flows\n`,
    );
  });
});
