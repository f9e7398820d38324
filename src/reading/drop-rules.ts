/**
 * Drops that are not failures: the one table of them. The kernel frees
 * packets through kfree_skb() with a reason on normal paths too (a socket
 * closed with a packet still in its queue; the original of an echo reply
 * whose copy the raw socket took). Those are shown, marked as no failure and
 * why, and --fail-on-drop does not count them.
 *
 * Each rule names the reason(s), optionally the places (the drop's caller, as
 * the verdict names it) and a condition on the packet. Every rule has a test
 * on a real trace (test/unit/reading/drop-rules.test.ts).
 */
import type { TraceEvent } from '../record/event';
import { baseFunc, stepRole } from './kernel-functions';
import type { Packet } from './packet-tracker';

/** A drop as the rules see it. */
export interface DropSite {
  reason: string;
  /** Where: the drop's caller (base name), else the step before. */
  at: string;
  event: TraceEvent;
  packet: Packet;
}

/** What a rule says of a drop. */
export interface NoFailure {
  rule: string;
  why: string;
  /** The copy of the packet that was delivered, for a rule about copies. */
  copy?: DeliveredCopy;
}

export interface DeliveredCopy {
  packet: number;
  /** "a raw socket", "a ping socket", "a local socket"; "the network" for a copy sent out. */
  to: string;
  /** A copy made of the packet (nft dup, TEE) that was sent out of this interface. */
  out?: string;
  /** Where the copy was delivered. */
  func: string;
}

interface DropRule {
  rule: string;
  /** The reasons it is about; 'any' for a rule that decides on the packet alone. */
  reasons: readonly string[] | 'any';
  at?: readonly string[];
  when?: (d: DropSite) => boolean;
  why: string;
}

const RULES: readonly DropRule[] = [
  {
    // ping as root: the raw socket took a clone of the echo reply; ping_rcv found no ping socket.
    rule: 'copy-delivered',
    reasons: ['NO_SOCKET'],
    when: (d) => deliveredCopy(d.packet) !== undefined,
    why: 'a copy of it was delivered to a local socket; no other socket wanted the original',
  },
  {
    // nft `dup to`, iptables TEE, mirroring: the packet was copied (a data buffer of its own) and
    // the copy got through; the original, dropped, was not the last living copy.
    rule: 'copy-got-through',
    reasons: 'any',
    when: (d) => deliveredCopy(d.packet, true) !== undefined,
    why: 'a copy made of it (nft dup, TEE, mirroring) got through; the original was not the last living copy',
  },
  {
    rule: 'queue-purged-on-close',
    reasons: ['QUEUE_PURGE'],
    why: 'a socket was closed with this packet still in its queue: it had reached the socket',
  },
  {
    // 6.1 (before QUEUE_PURGE existed): the same purge as a closing socket is destroyed, given no reason.
    rule: 'queue-purged-on-close-unnamed',
    reasons: ['NOT_SPECIFIED'],
    at: ['sk_stream_kill_queues'],
    why: 'a socket was closed with this packet still in its queue: it had reached the socket (older kernels give this free no reason)',
  },
  {
    rule: 'unix-peer-changed',
    reasons: ['UNIX_DISCONNECT'],
    why: 'a UNIX socket connected elsewhere (or its peer went away) with this message unread in its queue',
  },
  {
    rule: 'unix-oob-skipped',
    reasons: ['UNIX_SKIP_OOB'],
    why: 'the application read past this out-of-band byte without MSG_OOB, as it may',
  },
];

/** The rule that makes this drop no failure, if any. */
export function noFailure(site: DropSite): NoFailure | undefined {
  for (const r of RULES) {
    if (r.reasons !== 'any' && !r.reasons.includes(site.reason)) continue;
    if (r.at && !r.at.includes(site.at)) continue;
    if (r.when && !r.when(site)) continue;
    const copy =
      r.rule === 'copy-delivered'
        ? deliveredCopy(site.packet)
        : r.rule === 'copy-got-through'
          ? deliveredCopy(site.packet, true)
          : undefined;
    return { rule: r.rule, why: r.why, ...(copy ? { copy } : {}) };
  }
  return undefined;
}

/**
 * The rules that decide on the reason and place alone (no packet needed): what
 * the helper's DIGEST, which counts drops by reason and place, and a drop line
 * printed as it happens can be judged by. Returns why, or undefined.
 */
export function noFailureByPlace(reason: string, at: string): string | undefined {
  return RULES.find(
    (r) =>
      !r.when && r.reasons !== 'any' && r.reasons.includes(reason) && (!r.at || r.at.includes(baseFunc(at))),
  )?.why;
}

/** The rules noFailureByPlace reads, in its order: for the helper's text lines (src/output/text-notes.ts). */
export function placeRules(): { reasons: readonly string[]; at?: readonly string[]; why: string }[] {
  return RULES.filter((r) => !r.when && r.reasons !== 'any').map((r) => ({
    reasons: r.reasons as readonly string[],
    ...(r.at ? { at: r.at } : {}),
    why: r.why,
  }));
}

/** Functions that say which kind of socket a copy went to (steps or the callers of its frees). */
const RAW_SOCKET = new Set(['raw_rcv', 'rawv6_rcv', 'raw_local_deliver', 'raw_recvmsg', 'rawv6_recvmsg']);
const PING_SOCKET = new Set(['ping_queue_rcv_skb', 'ping_recvmsg']);
/** Taps (tcpdump): a copy there watched the packet, it did not deliver it. */
const PACKET_SOCKET = new Set(['packet_rcv', 'tpacket_rcv', 'packet_rcv_spkt', 'packet_recvmsg']);

/**
 * A copy of p that reached a socket (not a tap): a socket took it, or it was
 * freed by a drop that is itself no failure (purged from the socket's queue
 * as it closed). A copy dropped for real was the last living copy: no delivery.
 * made: only copies made by a copy function (copies.ts), which also get
 * through by being sent out of an interface (nft dup to a gateway).
 */
export function deliveredCopy(p: Packet, made = false): DeliveredCopy | undefined {
  for (const c of p.copies ?? []) {
    if (made && !c.copied) continue;
    const names = c.steps.flatMap((s) => [
      baseFunc(s.event.func),
      ...(s.event.caller ? [baseFunc(s.event.caller)] : []),
    ]);
    if (names.some((n) => PACKET_SOCKET.has(n))) continue;
    const drop = c.steps.find((s) => s.event.drop);
    const socket = c.steps.find((s) => stepRole(s.event.func) === 'socket');
    // A copy made of it also got through by reaching a host's IP stack (socket functions may not be probed).
    const local = made ? c.steps.find((s) => stepRole(s.event.func) === 'local') : undefined;
    const sent = made && !drop && !socket && !local ? lastSent(c) : undefined;
    if (sent)
      return {
        packet: c.id,
        to: 'the network',
        out: sent.event.iface || '?',
        func: baseFunc(sent.event.func),
      };
    if (drop) {
      const at = drop.event.caller ? baseFunc(drop.event.caller) : baseFunc(drop.event.func);
      const reason = drop.event.drop?.reason ?? 'UNKNOWN';
      if (!noFailure({ reason, at, event: drop.event, packet: c })) continue;
    } else if (!socket && !local) {
      continue;
    }
    const to = names.some((n) => RAW_SOCKET.has(n))
      ? 'a raw socket'
      : names.some((n) => PING_SOCKET.has(n))
        ? 'a ping socket'
        : socket || drop
          ? 'a local socket'
          : 'the local stack';
    return { packet: c.id, to, func: baseFunc((socket ?? drop ?? local ?? c.steps[0]).event.func) };
  }
  return undefined;
}

/** The copy's last step out of a device, when nothing received it after (verdicts.ts's 'sent'). */
function lastSent(c: Packet): Packet['steps'][number] | undefined {
  let out: Packet['steps'][number] | undefined;
  for (const s of c.steps) {
    const role = stepRole(s.event.func);
    if (role === 'xmit') out = s;
    else if (role === 'recv' || role === 'local') out = undefined;
  }
  return out;
}
