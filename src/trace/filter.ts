/**
 * The user's filter flags (--port, --host, --proto) and the positional pcap
 * expression, combined into one pcap-filter expression. The expression is
 * compiled by libpcap inside the helper; here we only check what we can say
 * better than libpcap would.
 */
import { isIP } from 'node:net';
import { UserError } from '../errors';

export interface FilterFlags {
  port?: string[];
  host?: string[];
  proto?: string;
}

const PROTOS: Record<string, string> = {
  tcp: 'tcp',
  udp: 'udp',
  icmp: 'icmp',
  icmp6: 'icmp6',
  icmpv6: 'icmp6',
  sctp: 'sctp',
};
export const PROTO_NAMES = Object.keys(PROTOS);

function portTerm(spec: string): string {
  const range = /^(\d+)-(\d+)$/.exec(spec);
  const valid = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (range) {
    const [lo, hi] = [Number(range[1]), Number(range[2])];
    if (!valid(lo) || !valid(hi) || lo > hi)
      throw new UserError(`--port ${spec}: expected a range like 8000-8080`, 2);
    return `portrange ${lo}-${hi}`;
  }
  const n = Number(spec);
  if (!/^\d+$/.test(spec) || !valid(n))
    throw new UserError(`--port ${spec}: expected a port from 1 to 65535`, 2);
  return `port ${n}`;
}

function hostTerm(spec: string): string {
  const [addr, bits, extra] = spec.split('/');
  const family = isIP(addr);
  if (!family || extra !== undefined) {
    throw new UserError(
      `--host ${spec}: expected an IPv4 or IPv6 address or CIDR (names are not resolved)`,
      2,
    );
  }
  if (bits === undefined) return `host ${addr}`;
  const n = Number(bits);
  if (!/^\d+$/.test(bits) || n > (family === 4 ? 32 : 128)) {
    throw new UserError(`--host ${spec}: bad prefix length /${bits}`, 2);
  }
  return `net ${addr}/${n}`;
}

/** Joins alternatives with "or", parenthesised when there are several. */
export function anyOf(terms: string[]): string {
  return terms.length === 1 ? terms[0] : `(${terms.join(' or ')})`;
}

/** All parts must hold; each part is parenthesised so "or" inside stays inside. */
export function allOf(parts: string[]): string {
  const kept = parts.map((p) => p.trim()).filter((p) => p.length > 0);
  if (kept.length <= 1) return kept[0] ?? '';
  return kept.map((p) => (/^\(.*\)$/.test(p) || !/\s/.test(p) ? p : `(${p})`)).join(' and ');
}

export function composeFilter(flags: FilterFlags, expression: string): string {
  // What a repeatable flag's next word would have been: libpcap reads a bare number as a host address.
  if (/^\s*\d+(?:-\d+)?(?:\s+\d+(?:-\d+)?)*\s*$/.test(expression)) {
    throw new UserError(
      `'${expression.trim()}' is not a filter on its own (libpcap would read a number as a host address): ` +
        'for a port write --port before each one, or put it in the expression as `port N`',
      2,
    );
  }
  const parts: string[] = [];
  if (flags.proto !== undefined) {
    const proto = PROTOS[flags.proto.toLowerCase()];
    if (!proto) throw new UserError(`--proto ${flags.proto}: expected one of ${PROTO_NAMES.join(', ')}`, 2);
    parts.push(proto);
  }
  if (flags.port?.length) parts.push(anyOf(flags.port.map(portTerm)));
  if (flags.host?.length) parts.push(anyOf(flags.host.map(hostTerm)));
  parts.push(expression);
  return allOf(parts);
}
