/**
 * The one filter composer: the user's filter flags (--port, --host, --proto),
 * the positional pcap expression and the target's addresses, joined into one
 * pcap-filter expression in which every part keeps its own meaning. libpcap
 * gives `and` and `or` the same precedence, left to right, so a part is
 * parenthesised whenever it is joined to another: `--proto tcp '(port 80) or
 * (port 443)'` is `tcp and ((port 80) or (port 443))`, never a filter that
 * also takes UDP port 443. The expression is compiled by libpcap in the helper
 * (`--check` before anything loads); here we refuse what we can say better
 * than libpcap would, and what would change meaning once joined.
 */
import { isIP } from 'node:net';
import { BadInput } from '../errors';

export interface FilterFlags {
  port?: string[];
  host?: string[];
  proto?: string;
}

/** Everything a trace's filter is made of. */
export interface FilterParts extends FilterFlags {
  /** The positional pcap expression, as typed. */
  expression: string;
  /** The target's own addresses (pod IPs, cluster IPs): the packet must have one of them. */
  addresses?: readonly string[];
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
      throw new BadInput(`--port ${spec}: expected a range like 8000-8080`);
    return `portrange ${lo}-${hi}`;
  }
  const n = Number(spec);
  if (!/^\d+$/.test(spec) || !valid(n)) throw new BadInput(`--port ${spec}: expected a port from 1 to 65535`);
  return `port ${n}`;
}

function hostTerm(spec: string): string {
  const [addr, bits, extra] = spec.split('/');
  const family = isIP(addr);
  if (!family || extra !== undefined) {
    throw new BadInput(`--host ${spec}: expected an IPv4 or IPv6 address or CIDR (names are not resolved)`);
  }
  if (bits === undefined) return `host ${addr}`;
  const n = Number(bits);
  if (!/^\d+$/.test(bits) || n > (family === 4 ? 32 : 128)) {
    throw new BadInput(`--host ${spec}: bad prefix length /${bits}`);
  }
  return `net ${addr}/${n}`;
}

function protoTerm(spec: string): string {
  const proto = PROTOS[spec.toLowerCase()];
  if (!proto) throw new BadInput(`--proto ${spec}: expected one of ${PROTO_NAMES.join(', ')}`);
  return proto;
}

/** The user's expression, refused when it could not be kept whole or means something else than it seems. */
function checkedExpression(text: string): string {
  const expression = text.trim();
  // What a repeatable flag's next word would have been: libpcap reads a bare number as a host address.
  if (/^\d+(?:-\d+)?(?:\s+\d+(?:-\d+)?)*$/.test(expression)) {
    throw new BadInput(
      `'${expression}' is not a filter on its own (libpcap would read a number as a host address): ` +
        'for a port write --port before each one, or put it in the expression as `port N`',
    );
  }
  // An unbalanced expression could close the parentheses it is put in, and escape them.
  let depth = 0;
  for (const c of expression) {
    depth += c === '(' ? 1 : c === ')' ? -1 : 0;
    if (depth < 0) break;
  }
  if (depth !== 0) throw new BadInput(`the filter '${expression}' has unbalanced parentheses`);
  return expression;
}

/** True when the whole text is one pair of parentheses and what they enclose. */
function enclosed(text: string): boolean {
  if (!text.startsWith('(') || !text.endsWith(')')) return false;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    depth += text[i] === '(' ? 1 : text[i] === ')' ? -1 : 0;
    if (depth === 0 && i < text.length - 1) return false;
  }
  return true;
}

/** Any of the terms. */
function anyOf(terms: readonly string[]): string {
  return terms.length === 1 ? terms[0] : `(${terms.join(' or ')})`;
}

interface Part {
  text: string;
  /** One protocol keyword of ours (`tcp`): whole as it is. */
  keyword?: boolean;
}

/** All parts must hold: each part parenthesised unless it already is, or is a keyword. */
function allOf(parts: readonly Part[]): string {
  const kept = parts.filter((p) => p.text.length > 0);
  if (kept.length <= 1) return kept[0]?.text ?? '';
  return kept.map((p) => (p.keyword || enclosed(p.text) ? p.text : `(${p.text})`)).join(' and ');
}

/** The one pcap expression for all the parts; '' traces everything. */
export function composeFilter(parts: FilterParts): string {
  const addresses = (parts.addresses ?? []).filter((ip) => isIP(ip) !== 0);
  return allOf([
    // The target's addresses stay a parenthesised group even alone: the header shows it as such.
    { text: addresses.length > 0 ? `(${addresses.map((ip) => `host ${ip}`).join(' or ')})` : '' },
    { text: parts.proto !== undefined ? protoTerm(parts.proto) : '', keyword: true },
    { text: parts.port?.length ? anyOf(parts.port.map(portTerm)) : '' },
    { text: parts.host?.length ? anyOf(parts.host.map(hostTerm)) : '' },
    { text: checkedExpression(parts.expression) },
  ]);
}
