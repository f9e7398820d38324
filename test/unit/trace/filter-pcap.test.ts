/**
 * The filter composer held to libpcap itself: for each way the flags, the
 * expression and the target's addresses combine, the composed filter and the
 * filter it means (written by hand, often in another form) must match the
 * same packets, over a set of crafted ones (IPv4 and IPv6; TCP SYN and ACK,
 * UDP, ICMP; several addresses and ports). The old composition, which lost
 * precedence, is shown to differ, so the test can fail. Compiles
 * test/unit/trace/pcap-match.c with libpcap (as the helper's build needs).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { composeFilter, type FilterParts } from '../../../src/trace/filter';
import { ROOT } from '../fixtures';

type Proto = 'tcp' | 'udp' | 'icmp';

interface Packet {
  src: string;
  dst: string;
  proto: Proto;
  sport?: number;
  dport?: number;
  syn?: boolean;
}

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];

function v4(addr: string): number[] {
  return addr.split('.').map(Number);
}

function v6(addr: string): number[] {
  const [head, tail] = addr.split('::');
  const groups = (s: string) => (s ? s.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail ?? '');
  return [...h, ...Array(8 - h.length - t.length).fill(0), ...t].flatMap(u16);
}

function transport(p: Packet, ipv6: boolean): number[] {
  if (p.proto === 'icmp') return ipv6 ? [128, 0, 0, 0, 0, 1, 0, 1] : [8, 0, 0, 0, 0, 1, 0, 1];
  const ports = [...u16(p.sport ?? 0), ...u16(p.dport ?? 0)];
  if (p.proto === 'udp') return [...ports, ...u16(8), 0, 0];
  return [...ports, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, p.syn ? 0x02 : 0x10, 0xff, 0xff, 0, 0, 0, 0];
}

/** An Ethernet frame carrying the packet. */
function frame(p: Packet): number[] {
  const ipv6 = p.src.includes(':');
  const l4 = transport(p, ipv6);
  const next = { tcp: 6, udp: 17, icmp: ipv6 ? 58 : 1 }[p.proto];
  const ether = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, ...(ipv6 ? [0x86, 0xdd] : [0x08, 0x00])];
  const ip = ipv6
    ? [0x60, 0, 0, 0, ...u16(l4.length), next, 64, ...v6(p.src), ...v6(p.dst)]
    : [0x45, 0, ...u16(20 + l4.length), 0, 1, 0x40, 0, 64, next, 0, 0, ...v4(p.src), ...v4(p.dst)];
  return [...ether, ...ip, ...l4];
}

function packets(): Packet[] {
  const out: Packet[] = [];
  const flows = [
    ...['10.0.0.1', '10.0.0.9', '192.168.1.5'].flatMap((src) =>
      ['10.0.0.2', '10.0.0.1'].map((dst) => ({ src, dst })),
    ),
    ...['fd00::9', 'fd00::1'].flatMap((src) => ['fd00::1', 'fd00::2'].map((dst) => ({ src, dst }))),
  ];
  for (const { src, dst } of flows) {
    out.push({ src, dst, proto: 'icmp' });
    for (const sport of [40000, 53]) {
      for (const dport of [53, 80, 443, 8080]) {
        out.push({ src, dst, proto: 'udp', sport, dport });
        out.push({ src, dst, proto: 'tcp', sport, dport, syn: true });
        out.push({ src, dst, proto: 'tcp', sport, dport, syn: false });
      }
    }
  }
  return out;
}

let dir = '';
let matcher = '';
let packetFile = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pwru-pcap-match-'));
  matcher = join(dir, 'pcap-match');
  execFileSync('cc', [
    '-Wall',
    '-Werror',
    '-o',
    matcher,
    join(ROOT, 'test', 'unit', 'trace', 'pcap-match.c'),
    '-lpcap',
  ]);
  packetFile = join(dir, 'packets.hex');
  writeFileSync(
    packetFile,
    packets()
      .map((p) =>
        frame(p)
          .map((b) => b.toString(16).padStart(2, '0'))
          .join(''),
      )
      .join('\n'),
  );
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Which packets each filter matches: a string of 0 and 1 per filter. */
function matches(...filters: string[]): string[] {
  return execFileSync(matcher, [packetFile, ...filters], { encoding: 'utf8' })
    .trim()
    .split('\n');
}

interface Case {
  what: string;
  parts: FilterParts;
  /** What the user means, as a person would write it. */
  means: string;
  /** How the composer used to join the parts (precedence lost), when that differs in meaning. */
  before?: string;
}

const CASES: Case[] = [
  {
    what: '`or` at the top level, each side parenthesised',
    parts: { proto: 'tcp', expression: '(port 80) or (port 443)' },
    means: 'tcp and (port 80 or port 443)',
    before: 'tcp and (port 80) or (port 443)',
  },
  {
    what: '`or` at the top level, bare',
    parts: { port: ['53'], expression: 'udp or icmp' },
    means: 'udp port 53',
    before: 'port 53 and udp or icmp',
  },
  {
    what: 'parentheses around part of the expression',
    parts: { host: ['10.0.0.1'], expression: '(udp) and port 53 or icmp' },
    means: 'host 10.0.0.1 and ((udp and port 53) or icmp)',
    before: 'host 10.0.0.1 and (udp) and port 53 or icmp',
  },
  {
    what: '`not` heading an `or`',
    parts: { proto: 'udp', expression: 'not port 53 or icmp' },
    means: 'udp and not port 53',
    before: 'udp and not port 53 or icmp',
  },
  {
    what: "the target's addresses, flags and an `or`",
    parts: {
      addresses: ['10.0.0.2', 'fd00::1'],
      proto: 'udp',
      port: ['53', '80'],
      expression: 'src host 10.0.0.9 or src host fd00::9',
    },
    means:
      '(dst host 10.0.0.2 and src host 10.0.0.9 and udp and (port 53 or port 80)) or (dst host fd00::1 and src host fd00::9 and udp and (port 53 or port 80))',
    before:
      '(host 10.0.0.2 or host fd00::1) and (udp and (port 53 or port 80) and src host 10.0.0.9) or src host fd00::9',
  },
  {
    what: 'a CIDR and TCP flags or UDP',
    parts: { host: ['10.0.0.0/24'], expression: 'tcp[tcpflags] & tcp-syn != 0 or udp' },
    means: 'net 10.0.0.0/24 and ((tcp and tcp[13] & 2 != 0) or udp)',
    before: 'net 10.0.0.0/24 and tcp[tcpflags] & tcp-syn != 0 or udp',
  },
  {
    what: 'several ports and hosts, no expression',
    parts: { port: ['53', '8000-8080'], host: ['10.0.0.1', 'fd00::9'], expression: '' },
    means: '(port 53 or (portrange 8000-8080)) and (host 10.0.0.1 or host fd00::9)',
  },
];

describe('the composed filter matches what it means, as libpcap compiles both', () => {
  for (const c of CASES) {
    test(c.what, () => {
      const composed = composeFilter(c.parts);
      const [got, meant, old] = matches(composed, c.means, ...(c.before ? [c.before] : []));
      assert.ok(meant.includes('1') && meant.includes('0'), `${c.means}: matches some packets, not all`);
      assert.equal(got, meant, `${composed}\nmeans: ${c.means}`);
      if (old !== undefined) assert.notEqual(old, meant, `the old composition ${c.before} differs`);
    });
  }
});
