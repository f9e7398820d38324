/**
 * --on-drop on the product's founding story, made intermittent: a router
 * whose POSTROUTING rule switches every 1.5 s between SNAT to the right
 * address and a MASQUERADE that borrows an address from another interface, a
 * server whose reverse-path filter drops the second kind, and one flow's
 * datagrams every 200 ms (a new source port each). The trace runs unattended
 * and must hand back each drop beside the last good packet of the flow.
 * Also: a drop with no good packet before it, and memory with more flows than
 * the helper keeps.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TraceDropReport, TraceLine } from '../../src/record/event';
import { intermittent, type MasqueradeLab, masqueradeLab } from './masquerade-lab';
import { NetLab } from './netlab';
import { CLI, startTrace } from './tracer';

function reports(lines: TraceLine[]): TraceDropReport[] {
  return lines.filter((l): l is TraceDropReport => l.type === 'drop');
}

/** Source addresses a packet's steps had. */
function sources(events: { tuple?: { src: string } }[]): Set<string> {
  return new Set(events.flatMap((e) => (e.tuple ? [e.tuple.src] : [])));
}

describe('--on-drop: an intermittent drop caught unattended', () => {
  const lab = new NetLab();
  const dir = mkdtempSync(join(tmpdir(), 'pwru-on-drop-'));
  let m: MasqueradeLab;

  before(async () => {
    m = await masqueradeLab(lab);
  });
  after(() => {
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('--drops 2 reports two drops, each beside the last good packet, naming both sources and the reverse-path filter; exit 3 with --fail-on-drop', async () => {
    const file = join(dir, 'caught.jsonl');
    const { port, serverIp: server, right, borrowed } = m;
    const trace = startTrace([
      '--on-drop',
      '--drops',
      '2',
      '--fail-on-drop',
      '--output-file',
      file,
      `udp and dst port ${port}`,
    ]);
    await trace.ready();
    const traffic = intermittent(lab, m);
    const res = await trace.finished(); // --drops 2 ends it; startTrace's --duration 60s bounds it
    traffic.stop();

    assert.equal(res.code, 3, res.stderr);
    assert.equal(res.events.length, 0, 'nothing is printed per event');
    const caught = reports(res.lines);
    assert.equal(caught.length, 2, res.stdout);
    for (const d of caught) {
      assert.ok(d.good, `drop #${d.n} has the last good packet beside it: ${d.sentence}`);
      assert.deepEqual(d.flow, { family: 4, proto: 'UDP', src: m.clientIp, dst: server, dport: port });
      assert.ok(sources(d.bad.events).has(borrowed), `the dropped one left with ${borrowed}`);
      assert.ok(sources(d.good.events).has(right), `the good one left with ${right}`);
      assert.equal(d.verdict.reason, 'IP_RPFILTER');
      assert.match(
        d.sentence,
        new RegExp(`source ${borrowed.replaceAll('.', '\\.')} instead of ${right.replaceAll('.', '\\.')}`),
      );
      assert.match(d.sentence, /reverse-path filter/);
    }
    assert.match(res.stderr, /2 drops reported/);

    // The file reads back: `show` prints the reports as they were shown live, `diff` compares one.
    const saved = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as TraceLine);
    assert.deepEqual(
      saved.map((l) => l.type),
      ['header', 'drop', 'drop', 'stats'],
    );
    const shown = execFileSync(process.execPath, [CLI, 'show', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
    });
    assert.match(shown, /WORKING\s+FAILING/);
    assert.match(shown, /drop #2/);
    assert.match(shown, /kfree_skb\(IP_RPFILTER\)/);
    const diffed = JSON.parse(
      execFileSync(process.execPath, [CLI, 'diff', file, '--report', '2', '-o', 'json'], {
        encoding: 'utf8',
      }),
    ) as { sentence: string };
    assert.equal(diffed.sentence, caught[1].sentence);
  });

  test('a drop with no earlier good packet of its flow is reported alone, and says so', async () => {
    m.masquerade(true);
    const trace = startTrace(['--on-drop', '--drops', '1', `udp and dst port ${m.port}`]);
    await trace.ready();
    const sender = lab.background(m.client, ['udp-every', m.serverIp, String(m.port), '200']);
    const res = await trace.finished();
    sender.kill();

    assert.equal(res.code, 0, res.stderr);
    const [d] = reports(res.lines);
    assert.ok(d, res.stdout);
    assert.equal(d.good, undefined);
    assert.equal(d.verdict.reason, 'IP_RPFILTER');
    assert.match(d.sentence, /no earlier packet of this flow got through/);
  });
});
