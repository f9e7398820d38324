import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { constants, deflateRawSync } from 'node:zlib';
import { BatchedInflater } from '../../../src/kube/runner-link';

/** The runner's stream: raw deflate, a sync flush after each piece, never finished. */
function pieces(data: Buffer[]): Buffer[] {
  // One stream: each piece compressed on its own with a sync flush is still one valid raw deflate stream.
  return data.map((d) => deflateRawSync(d, { level: 1, finishFlush: constants.Z_SYNC_FLUSH }));
}

test('pieces written while a batch inflates come out whole and in order; past 1 MiB waiting it says it is behind, then caught up', async () => {
  const input = Array.from({ length: 200 }, (_, i) =>
    Buffer.concat([Buffer.from(`piece ${i} `), randomBytes(8 * 1024)]),
  );
  const out: Buffer[] = [];
  const behind: boolean[] = [];
  const inflater = new BatchedInflater(
    (d) => out.push(d),
    (err) => assert.fail(err),
    (b) => behind.push(b),
  );
  // Random bytes do not compress: 200 × 8 KiB is over 1 MiB, written at once.
  for (const p of pieces(input)) inflater.write(p);
  assert.equal(behind[0], true, 'over 1 MiB waiting: behind');
  await inflater.drained();
  assert.equal(inflater.waiting, 0);
  assert.equal(behind.at(-1), false, 'all inflated: caught up');
  assert.deepEqual(Buffer.concat(out), Buffer.concat(input));
});

test('a corrupt stream is reported once and what waits is dropped', async () => {
  const errors: Error[] = [];
  const inflater = new BatchedInflater(
    () => {},
    (err) => errors.push(err),
    () => {},
  );
  inflater.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  inflater.write(Buffer.from('more'));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(errors.length, 1);
  assert.equal(inflater.waiting, 0);
  await inflater.drained();
});

test('while the sink is behind (held) what waits stays compressed; released, the rest comes whole and in order', async () => {
  // JSON-like lines compress many times: one piece of ~100 KiB compressed is several MiB inflated.
  const lines = Array.from(
    { length: 40_000 },
    (_, i) => `{"type":"event","n":${i},"x":"${randomBytes(6).toString('hex')}","pad":"${'a'.repeat(60)}"}\n`,
  );
  const input = [Buffer.from(lines.join(''))];
  const [compressed] = pieces(input);
  assert.ok(compressed.length > 64 * 1024, 'more than one batch of compressed bytes');
  let got = 0;
  const out: Buffer[] = [];
  const inflater = new BatchedInflater(
    (d) => {
      out.push(d);
      got += d.length;
    },
    (err) => assert.fail(err),
    () => {},
  );
  inflater.write(compressed);
  inflater.hold(true);
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(got > 0, 'the batch under way came out');
  assert.ok(got < input[0].length / 2, `held: ${got} of ${input[0].length} bytes inflated`);
  assert.ok(inflater.waiting > 0, 'the rest waits, compressed');
  inflater.hold(false);
  await inflater.drained();
  assert.equal(inflater.waiting, 0);
  assert.deepEqual(Buffer.concat(out), input[0]);
});
