/** --output-file rotation: whole lines, the header at the top of every file, the backups capped. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RotatingOutput } from '../../../src/output/rotating-output';

describe('RotatingOutput', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pwru-rotate-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('rotates before a line would pass the size, keeps N backups, repeats the header', async () => {
    const path = join(dir, 'trace.jsonl');
    const faults: string[] = [];
    const out = new RotatingOutput(path, openSync(path, 'w+'), { maxBytes: 1000, maxBackups: 2 }, (o) =>
      faults.push(o.name),
    );
    const header = '{"type":"header","v":1}';
    out.push(header);
    const lines = Array.from(
      { length: 100 },
      (_, i) => `{"type":"event","n":${i},"pad":"${'x'.repeat(40)}"}`,
    );
    for (const l of lines) out.push(l);
    out.flush();
    await out.end();

    assert.deepEqual(faults, []);
    assert.equal(out.fd, undefined, 'the helper never writes a rotating file');
    assert.ok(existsSync(`${path}.1`) && existsSync(`${path}.2`));
    assert.ok(!existsSync(`${path}.3`), 'only 2 backups');
    const files = [`${path}.2`, `${path}.1`, path].map((f) => readFileSync(f, 'utf8'));
    const kept: string[] = [];
    for (const text of files) {
      assert.ok(
        Buffer.byteLength(text) <= 1000,
        `a file holds at most 1000 bytes (${Buffer.byteLength(text)})`,
      );
      const ls = text.trimEnd().split('\n');
      assert.equal(ls[0], header, 'each file starts with the header');
      for (const l of ls.slice(1)) JSON.parse(l); // whole lines only
      kept.push(...ls.slice(1));
    }
    // The newest lines are all there, in order, up to the last one.
    assert.deepEqual(kept, lines.slice(lines.length - kept.length));
  });

  test('no backups: the old lines are dropped and the file starts again', async () => {
    const path = join(dir, 'zero.jsonl');
    const out = new RotatingOutput(path, openSync(path, 'w+'), { maxBytes: 200, maxBackups: 0 }, () => {});
    out.push('{"type":"header","v":1}');
    for (let i = 0; i < 20; i++) out.push(`{"type":"event","n":${i}}`);
    out.flush();
    await out.end();
    assert.ok(!existsSync(`${path}.1`));
    const ls = readFileSync(path, 'utf8').trimEnd().split('\n');
    assert.equal(ls[0], '{"type":"header","v":1}');
    assert.equal(ls.at(-1), '{"type":"event","n":19}');
  });
});
