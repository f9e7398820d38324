/** Wireshark's tshark reading a pcapng file, for the tests of --pcapng (Debian's package: scripts/setup.sh). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

/**
 * The fields asked for, one array per packet. tshark must read the file
 * without a word on stderr (the notice it prints when run as root aside).
 */
export function tshark(file: string, fields: string[]): string[][] {
  const r = spawnSync('tshark', ['-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const complaints = r.stderr
    .split('\n')
    .filter((l) => l.trim() && !/^Running as user "root"/.test(l))
    .join('\n');
  assert.equal(complaints, '', `tshark complained about ${file}`);
  return r.stdout
    .split('\n')
    .filter((l) => l)
    .map((l) => l.split('\t'));
}
