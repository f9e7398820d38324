import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, tracePath, traceText } from '../fixtures';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'kubectl-pwru'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('show --fail-on-drop: 3 when a packet was dropped, 0 when none was', () => {
  assert.equal(cli('show', tracePath('bad-masquerade-rpfilter.jsonl'), '--fail-on-drop').code, 3);
  const ok = cli('show', tracePath('good-masquerade.jsonl'), '--fail-on-drop', '--summary');
  assert.equal(ok.code, 0);
  assert.match(ok.out, /delivered to socket/);
});

test('show of a truncated file: what it has, then exit 4 and an error naming the line, no stack', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'pwru-cli-')), 'cut.jsonl');
  const text = traceText('no-socket.jsonl');
  writeFileSync(file, text.slice(0, text.length - 50));
  const n = text.trimEnd().split('\n').length;
  const r = cli('show', file);
  assert.equal(r.code, 4);
  // what came before the cut is shown (streamed); the error is the last line
  assert.match(r.out, /kfree_skb|netif_receive_skb/);
  const last = r.err.trimEnd().split('\n').pop() ?? '';
  assert.ok(last.startsWith(`error: ${file}:${n}: `), last);
  assert.match(r.err, /not valid JSON .*truncated/);
  assert.doesNotMatch(r.err, /\n {4}at /);
});

test('show -o json through the real CLI reproduces the saved file; stdout holds nothing else', () => {
  const r = cli('show', tracePath('netfilter-drop.jsonl'), '-o', 'json');
  assert.equal(r.code, 0);
  assert.equal(r.out, traceText('netfilter-drop.jsonl'));
});

test('diff prints both paths side by side, marks where they part and says it in one sentence', () => {
  const r = cli('diff', tracePath('good-masquerade.jsonl'), tracePath('bad-masquerade-rpfilter.jsonl'));
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /^>> +\d+ net_dev_queue rs \[SNAT src 10\.244\.0\.5 → 10\.0\.0\.1, iface rc → rs\] +≠ +net_dev_queue rs \[SNAT src 10\.244\.0\.5 → 192\.168\.50\.1/m,
  );
  assert.match(r.out, /consume_skb +\| +kfree_skb\(IP_RPFILTER\) s0/);
  assert.match(
    r.out,
    /leaves with source 192\.168\.50\.1 instead of 10\.0\.0\.1 and is dropped by the reverse-path filter at ip_rcv_finish_core/,
  );
  const j = cli(
    'diff',
    tracePath('good-masquerade.jsonl'),
    tracePath('good-masquerade-again.jsonl'),
    '-o',
    'json',
  );
  const d = JSON.parse(j.out);
  assert.equal(d.divergence, null);
  assert.match(d.sentence, /^Both packets take the same/);
});

test('diff with a packet number the trace does not have is a usage error', () => {
  const r = cli(
    'diff',
    tracePath('good-masquerade.jsonl'),
    tracePath('netfilter-drop.jsonl'),
    '--bad-packet',
    '9',
  );
  assert.equal(r.code, 2);
  assert.match(r.err, /^error: .*netfilter-drop\.jsonl has packets #1 to #1; there is no #9\n$/);
});
