import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createSink, type SinkOptions } from '../../../src/output/create-sink';
import { hasNodes, replay } from '../../../src/reading/replay';
import type { TraceSummary } from '../../../src/reading/summary';
import { FrameType } from '../../../src/record/decode';
import { HelperStream } from '../../../src/trace/helper-stream';
import { traceLines, traceText } from '../fixtures';
import { frame, HELLO, json, READY } from '../record-stream';
import { Capture } from './capture';

async function render(name: string, over: Partial<SinkOptions> = {}) {
  const stdout = new Capture();
  const stderr = new Capture();
  const sink = createSink({
    format: 'text',
    summary: false,
    color: false,
    showNode: false,
    stdout,
    stderr,
    ...over,
  });
  await replay(traceLines(name), sink);
  await sink.close();
  return { out: stdout.text, err: stderr.text, dropped: sink.dropped() };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for ANSI escapes
const ESC = /\u001b\[/;

test('show -o json of a trace recorded with -o json reproduces it line for line', async () => {
  for (const name of ['bad-masquerade-rpfilter.jsonl', 'good-masquerade.jsonl', 'netfilter-drop.jsonl']) {
    const { out, err } = await render(name, { format: 'json' });
    assert.equal(out, traceText(name), name);
    assert.match(err, /PKT/, 'the human summary goes to stderr in JSON mode');
  }
});

test('show of a file saved with --output-file prints the same lines the live text view did', async () => {
  const live = traceText('no-socket.txt');
  const { out } = await render('no-socket.jsonl');
  const stream = (s: string) => s.slice(0, s.indexOf('\n\n'));
  assert.equal(stream(out), stream(live));
});

test('--output-file writes a header, the events and the final stats while the view prints', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'pwru-out-')), 'trace.jsonl');
  const { out } = await render('bad-masquerade-rpfilter.jsonl', { format: 'wide', outputFile: file });
  assert.equal(readFileSync(file, 'utf8'), traceText('bad-masquerade-rpfilter.jsonl'));
  assert.match(out, /^TIME +SINCE +PKT +SKB/);
});

test('an output file that cannot be opened fails before anything is traced', () => {
  assert.throws(
    () =>
      createSink({
        format: 'text',
        summary: false,
        color: false,
        showNode: false,
        stdout: new Capture(),
        stderr: new Capture(),
        outputFile: '/nonexistent-dir/trace.jsonl',
      }),
    /cannot write the trace to \/nonexistent-dir\/trace\.jsonl: ENOENT/,
  );
});

test('text view: pwru columns, the drop reason in FUNC, markers and the plain-words reason', async () => {
  const { out, dropped } = await render('bad-masquerade-rpfilter.jsonl');
  assert.equal(dropped, true);
  const lines = out.split('\n');
  assert.match(lines[0], /^SKB +CPU PROCESS +NETNS +MARK\/x +IFACE +PROTO +MTU +LEN +TUPLE +FUNC$/);
  assert.match(
    lines[1],
    /^0xffff[0-9a-f]{12} +\d +\[python3\] +\d+ +0 +c0:2 +0x0800 1500 +48 +10\.244\.0\.5:\d+->10\.0\.0\.2:9000\(udp\) +net_dev_queue$/,
  );
  const snat = lines.find((l) => l.includes('SNAT'));
  assert.match(
    snat ?? '',
    /192\.168\.50\.1:\d+->10\.0\.0\.2:9000\(udp\) +net_dev_queue +\[SNAT src 10\.244\.0\.5 → 192\.168\.50\.1, iface rc → rs\]$/,
  );
  const drop = lines.find((l) => l.includes('kfree_skb'));
  assert.match(drop ?? '', /kfree_skb\(IP_RPFILTER\) +\[reverse-path filter: /);
  assert.doesNotMatch(out, ESC);
  // the closing tables
  assert.match(
    out,
    /│ #1 +│ 10\.244\.0\.5:\d+->10\.0\.0\.2:9000\(udp\) +│ net_dev_queue │ kfree_skb\(IP_RPFILTER\) │ 13 +│ dropped at ip_rcv_finish_core: IP_RPFILTER/,
  );
  assert.match(out, /│ IP_RPFILTER │ 2 +│ ip_rcv_finish_core │ reverse-path filter/);
  assert.match(out, /what to check:\n {2}- the packet's source address on the drop line/);
  assert.match(out, /2 packets: 2 dropped\. 26 events, 0 lost\.\n$/);
});

test('colour only when asked: packet colours, red drops, yellow markers', async () => {
  const { out } = await render('bad-masquerade-rpfilter.jsonl', { color: true });
  const esc = '\u001b[';
  assert.ok(out.includes(`${esc}31m${esc}1mkfree_skb(IP_RPFILTER)`));
  assert.ok(out.includes(`${esc}33m[SNAT src`));
  // two packets with the same address get different colours
  assert.ok(out.includes(`${esc}36m0xffff`));
  assert.ok(out.includes(`${esc}35m0xffff`));
});

test('wide view: packet numbers, time since the first step, and the drop location', async () => {
  const { out } = await render('bad-masquerade-rpfilter.jsonl', { format: 'wide' });
  const lines = out.split('\n');
  assert.match(lines[1], /^\d\d:\d\d:\d\d\.\d{3} \+0\.0µs +#1 +0xffff/);
  assert.ok(lines.some((l) => / #2 +0xffff/.test(l)));
  assert.match(out, /kfree_skb\(IP_RPFILTER\) +ip_rcv_finish_core\+0x[0-9a-f]+/);
});

test('--summary: tables instead of the lines; -o json --summary is one summary object', async () => {
  const { out } = await render('netfilter-drop.jsonl', { summary: true });
  assert.doesNotMatch(out, /^SKB/m);
  assert.match(out, /NETFILTER_DROP/);
  assert.match(out, /│ FUNCTION +│ HITS │/);
  const json = await render('netfilter-drop.jsonl', { summary: true, format: 'json' });
  const lines = json.out.trimEnd().split('\n');
  assert.equal(lines.length, 1);
  const s = JSON.parse(lines[0]) as TraceSummary;
  assert.equal(s.type, 'summary');
  assert.equal(s.packets[0].verdict.kind, 'dropped');
  assert.deepEqual(
    s.dropReasons.map((r) => [r.reason, r.count, r.at]),
    [['NETFILTER_DROP', 1, { nft_do_chain: 1 }]],
  );
});

test('dropped() is false when nothing was dropped (for --fail-on-drop)', async () => {
  assert.equal((await render('good-masquerade.jsonl')).dropped, false);
  assert.equal((await render('no-socket.jsonl')).dropped, true);
});

test('Kubernetes traces: a NODE column, and one packet per node even when addresses coincide', async () => {
  const lines = traceLines('netfilter-drop.jsonl').flatMap((l) =>
    ['worker-1', 'worker-2'].map((node) => ({ ...l, node })),
  );
  assert.equal(hasNodes(lines), true);
  const stdout = new Capture();
  const sink = createSink({
    format: 'text',
    summary: false,
    color: false,
    showNode: true,
    stdout,
    stderr: new Capture(),
    replay: true,
  });
  await replay(lines, sink);
  await sink.close();
  const out = stdout.text.split('\n');
  assert.match(out[0], /^NODE +SKB +CPU/);
  assert.match(out[1], /^worker-1 +0xffff/);
  assert.match(out[2], /^worker-2 +0xffff/);
  assert.match(stdout.text, /│ NODE +│ PKT │/);
  assert.match(stdout.text, /│ worker-2 │ #2 +│/);
  assert.match(stdout.text, /2 packets: 2 dropped/);
});

test('many packets: one row per flow with verdict counts', async () => {
  // 60 copies of the iptables-DROP packet, each with its own address, in 3 flows
  const base = traceLines('netfilter-drop.jsonl');
  const lines = [base[0]];
  for (let i = 0; i < 60; i++) {
    for (const l of base) {
      if (l.type !== 'event') continue;
      const tuple = l.tuple && { ...l.tuple, sport: 40000 + (i % 3) };
      lines.push({ ...l, skb: `0xffff0000${String(i).padStart(8, '0')}`, ...(tuple ? { tuple } : {}) });
    }
  }
  const stdout = new Capture();
  const sink = createSink({
    format: 'text',
    summary: true,
    color: false,
    showNode: false,
    stdout,
    stderr: new Capture(),
  });
  await replay(lines, sink);
  await sink.close();
  assert.match(stdout.text, /^60 packets, one row per flow:/m);
  assert.match(stdout.text, /│ FLOW +│ PACKETS │ FIRST STEP +│ LAST STEP +│ VERDICTS/);
  const rows = stdout.text
    .split('\n')
    .filter((l) => /│ 10\.244\.0\.5:4000\d->10\.0\.0\.2:9001\(udp\) +│ 20 /.test(l));
  assert.equal(rows.length, 3);
  assert.match(rows[0], /20 × dropped at nft_do_chain: NETFILTER_DROP/);
  assert.match(stdout.text, /│ NETFILTER_DROP │ 60 +│ nft_do_chain │/);
});

test('lost events: a warning on stderr as they happen, and in the totals', async () => {
  const lines = traceLines('netfilter-drop.jsonl').map((l) => (l.type === 'stats' ? { ...l, lost: 7 } : l));
  const withStack = lines.map((l) =>
    l.type === 'event' && l.drop ? { ...l, stack: ['kfree_skb_reason+0x5', 'nft_do_chain+0x3c2'] } : l,
  );
  const stdout = new Capture();
  const stderr = new Capture();
  const sink = createSink({ format: 'text', summary: false, color: false, showNode: false, stdout, stderr });
  await replay(withStack, sink);
  await sink.close();
  assert.match(stderr.text, /warning: 7 events lost so far \(ring buffer full\)/);
  assert.match(stdout.text, /1 packet: 1 dropped\. 13 events, 7 LOST \(ring buffer full/);
  assert.match(
    stdout.text,
    /kfree_skb\(NETFILTER_DROP\).*\n {4}kfree_skb_reason\+0x5\n {4}nft_do_chain\+0x3c2\n/,
  );
});

test('live events (no annotations yet) come out exactly as the recorded -o json lines', async () => {
  for (const name of ['tcp-good.jsonl', 'vxlan.jsonl', 'dnat.jsonl']) {
    const bare = traceLines(name).map((l) => {
      if (l.type !== 'event') return l;
      const { packet: _p, changes: _c, ...e } = l;
      return e;
    });
    const stdout = new Capture();
    const sink = createSink({
      format: 'json',
      summary: false,
      color: false,
      showNode: false,
      stdout,
      stderr: new Capture(),
    });
    await replay(bare, sink);
    await sink.close();
    assert.equal(stdout.text, traceText(name), name);
  }
});

test('a big trace summarizes in short per-flow cells, whatever the packet count', async () => {
  const base = traceLines('tcp-good.jsonl').filter((l) => l.type === 'event');
  const lines = [traceLines('tcp-good.jsonl')[0]];
  for (let i = 0; i < 150; i++) {
    for (const l of base)
      lines.push({ ...l, skb: `${l.skb.slice(0, -6)}${i.toString(16).padStart(6, '0')}` });
  }
  const stdout = new Capture();
  const sink = createSink({
    format: 'text',
    summary: true,
    color: false,
    showNode: false,
    stdout,
    stderr: new Capture(),
  });
  await replay(lines, sink);
  await sink.close();
  assert.match(stdout.text, /│ 150 × replaced by a copy +│/);
  assert.doesNotMatch(stdout.text, /replaced by a copy: #/);
  const tableLines = stdout.text.split('\n').filter((l) => l.startsWith('│'));
  assert.ok(tableLines.length < 40, `${tableLines.length} table lines`);
});

test('with the helper writing the JSON lines to the outputs, they follow the header and the sink closes with its digest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pwru-lines-'));
  // A stdout with a descriptor, as process.stdout has; a file, so the sink writes to the descriptor too.
  const stdoutFile = join(dir, 'stdout');
  const stdout = Object.assign(new Capture(), { fd: openSync(stdoutFile, 'w') });
  const stderr = new Capture();
  const file = join(dir, 'trace.jsonl');
  const sink = createSink({
    format: 'json',
    summary: false,
    color: false,
    showNode: false,
    stdout,
    stderr,
    outputFile: file,
  });
  assert.equal(sink.acceptsLines, 'json');
  const header = traceLines('netfilter-drop.jsonl')[0];
  assert.equal(header.type, 'header');
  if (header.type === 'header') sink.header(header);
  const outputs = sink.lineOutputs?.();
  assert.ok(outputs, 'both outputs have descriptors');
  assert.equal(outputs.fds.length, 2);
  // What the helper does: wait for the header to be out, then write the lines to the descriptors.
  await outputs.ready();
  const lines = '{"type":"event","packet":1}\n{"type":"event","packet":2}\n';
  for (const fd of outputs.fds) writeSync(fd, lines);
  sink.stats({ type: 'stats', v: 1, seen: 9, events: 2, lost: 0, final: true });
  sink.digest?.({
    packets: 2,
    events: 2,
    drops: [
      { reason: 'NETFILTER_DROP', at: 'nf_hook_slow+0x9e', count: 1 },
      { reason: 'SOCKET_CLOSE', at: 'tcp_v4_rcv', count: 1 },
    ],
  });
  await sink.close();
  const stats = '{"type":"stats","v":1,"seen":9,"events":2,"lost":0,"final":true}\n';
  assert.equal(stdout.text, '', 'a file is written through its descriptor');
  assert.equal(readFileSync(stdoutFile, 'utf8'), `${JSON.stringify(header)}\n${lines}${stats}`);
  assert.equal(readFileSync(file, 'utf8'), `${JSON.stringify(header)}\n${lines}${stats}`);
  assert.match(stderr.text, /NETFILTER_DROP +│ 1 +│ nf_hook_slow /);
  assert.match(stderr.text, /2 packets: 2 dropped\. 2 events, 0 lost\./);
  assert.match(stderr.text, new RegExp(`kubectl pwru show ${file}`));
  assert.equal(sink.dropped(), true, 'NETFILTER_DROP is a real drop');
});

/** -o json to outputs that are streams only (no descriptor). */
function streamJsonSink() {
  return createSink({
    format: 'json',
    summary: false,
    color: false,
    showNode: false,
    stdout: new Capture(),
    stderr: new Capture(),
  });
}

test('a digest with only socket-teardown purges is not a drop for --fail-on-drop', async () => {
  const sink = streamJsonSink();
  sink.digest?.({
    packets: 1,
    events: 3,
    drops: [{ reason: 'QUEUE_PURGE', at: 'sk_stream_kill_queues+0x57', count: 1 }],
  });
  await sink.close();
  assert.equal(sink.dropped(), false);
});

test('an output without a descriptor takes events, decoded here', () => {
  const sink = streamJsonSink();
  assert.equal(sink.acceptsLines, 'json');
  assert.equal(sink.lineOutputs?.(), undefined);
});

test('the text views take the helper lines only to a file or pipe without colour; --summary never', () => {
  const base = { summary: false, color: false, showNode: false, stderr: new Capture() };
  const tty = () => Object.assign(new Capture(), { isTTY: true });
  const dir = mkdtempSync(join(tmpdir(), 'pwru-accepts-'));
  for (const [over, want] of [
    [{ format: 'text' as const }, 'text'],
    [{ format: 'wide' as const }, 'wide'],
    [{ format: 'text' as const, color: true }, undefined],
    [{ format: 'text' as const, stdout: tty() }, undefined],
    [{ format: 'wide' as const, outputFile: join(dir, 'trace.jsonl') }, undefined],
    [{ format: 'json' as const, summary: true }, undefined],
  ] as const) {
    const sink = createSink({ ...base, stdout: new Capture(), ...over });
    assert.equal(sink.acceptsLines, want, JSON.stringify(over));
  }
  rmSync(dir, { recursive: true, force: true });
});

test("the helper's lines inside its record stream (Kubernetes mode, --lines-stream): copied to every output, in order with the frames around them", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pwru-stream-lines-'));
  try {
    const stdout = new Capture();
    const stderr = new Capture();
    const file = join(dir, 'trace.jsonl');
    // A rotating file takes the lines one by one (a rotation never cuts one).
    const sink = createSink({
      format: 'json',
      summary: false,
      color: false,
      showNode: false,
      stdout,
      stderr,
      outputFile: file,
      rotation: { maxBytes: 1 << 20, maxBackups: 1 },
    });
    const stream = new HelperStream(sink, { node: 'kit-node' });
    const a = '{"type":"event","node":"kit-node","packet":1}\n';
    const b =
      '{"type":"event","node":"kit-node","packet":2}\n{"type":"event","node":"kit-node","packet":3}\n';
    const bytes = Buffer.concat([
      json(FrameType.Hello, HELLO),
      json(FrameType.Ready, READY),
      frame(FrameType.Lines, Buffer.from(a)),
      frame(FrameType.Lines, Buffer.from(b)),
      json(FrameType.Digest, { packets: 3, events: 3, drops: [] }),
      json(FrameType.Stats, { seen: 3, emitted: 3, lost: 0, discarded: 0, final: true }),
      json(FrameType.End, { reason: 'stdin', events: 3, lost: 0, discarded: 0 }),
    ]);
    // Split anywhere: a frame cut between two chunks is joined by the decoder.
    const source = { pause() {}, resume() {} };
    for (let off = 0; off < bytes.length; off += 7) stream.feed(bytes.subarray(off, off + 7), source);
    stream.finish({ cutOffExpected: false });
    await sink.close();
    for (const text of [stdout.text, readFileSync(file, 'utf8')]) {
      const lines = text.split('\n').filter((l) => l);
      assert.equal(lines.length, 5, text);
      assert.match(lines[0], /^\{"type":"header",.*"node":"kit-node"/);
      assert.equal(`${lines.slice(1, 4).join('\n')}\n`, a + b);
      assert.match(
        lines[4],
        /^\{"type":"stats","v":1,"node":"kit-node","seen":3,"events":3,"lost":0,.*"final":true\}$/,
      );
    }
    assert.match(stderr.text, /3 packets\. 3 events, 0 lost\./);
    assert.equal(stream.outcome.events, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
