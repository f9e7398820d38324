/**
 * How a packet's path ended: dropped (where, why), delivered to this host
 * (a socket, or the local stack), sent out of a device, freed without a drop,
 * or still in flight when the trace ended. Decided from its steps alone
 * (except `continued`: the summary links a packet to the one it went on as,
 * from the program run that says so, summary.ts); the words for each verdict
 * are in verdict-words.ts.
 */
import { noFailure } from './drop-rules';
import { baseFunc, stepRole } from './kernel-functions';
import type { Packet } from './packet-tracker';

export type Verdict =
  | {
      kind: 'dropped';
      func: string;
      reason: string;
      step: number;
      /** A drop on a normal path (drop-rules.ts): shown, but no failure, and why. */
      noFailure?: { rule: string; why: string };
    }
  | {
      kind: 'delivered';
      func: string;
      socket: boolean;
      step: number;
      /** Delivered as a copy (a raw socket's clone): which, where to, and how the original ended. */
      copy?: { packet: number; to: string; out?: string; original: { func: string; reason: string } };
      /** This packet is itself a copy of that one (copies.ts). */
      copyOf?: number;
    }
  | {
      kind: 'sent';
      iface: string;
      func: string;
      step: number;
      /** This packet is itself a copy of that one (copies.ts): a copy made of it and sent on (nft dup). */
      copyOf?: number;
    }
  | { kind: 'consumed'; func: string; step: number; replacedBy?: number }
  | {
      kind: 'continued';
      func: string;
      step: number;
      /** The packet it went on as, and that packet's skb: veth copied it into an XDP program's buffer. */
      as: number;
      skb: string;
      /** The program's run on the copy: "pwru_xdp (id 12) at XDP of veth1:2: XDP_PASS". */
      run: string;
    }
  | { kind: 'in-flight'; func: string; step: number; iface?: string; received?: boolean };

/** Where the drop happened: the caller (kfree_skb's location) when known, else the step before. */
export function dropLocation(p: Packet, index: number): string {
  const e = p.steps[index].event;
  if (e.caller) return baseFunc(e.caller);
  const before = p.steps[index - 1];
  return before ? baseFunc(before.event.func) : baseFunc(e.func);
}

/** A real loss: dropped, and no rule says the drop is normal (what --fail-on-drop counts). */
export function isLoss(v: Verdict): boolean {
  return v.kind === 'dropped' && !v.noFailure;
}

export function verdictOf(p: Packet): Verdict {
  const v = stepsVerdict(p);
  return (v.kind === 'delivered' || v.kind === 'sent') && p.copyOf !== undefined
    ? { ...v, copyOf: p.copyOf }
    : v;
}

function stepsVerdict(p: Packet): Verdict {
  const steps = p.steps;
  // A drop that is no failure is the verdict of a packet only when nothing else
  // dropped it, and never of a whole flow (diff --flow) whose packets got through.
  const drops = steps
    .map((s, i) => ({ index: i, reason: s.event.drop?.reason ?? 'UNKNOWN', event: s.event }))
    .filter((d) => d.event.drop)
    .map((d) => {
      const func = dropLocation(p, d.index);
      return { ...d, func, ok: noFailure({ reason: d.reason, at: func, event: d.event, packet: p }) };
    });
  const drop = drops.find((d) => !d.ok) ?? (p.packets ? undefined : drops[0]);
  // A flow nothing dropped ends the way the packet it was chosen by ended.
  if (!drop && p.seed) return verdictOf(p.seed);
  if (drop?.ok?.copy) {
    const { packet, to, out, func } = drop.ok.copy;
    return {
      kind: 'delivered',
      func,
      socket: out === undefined,
      step: drop.index,
      copy: {
        packet,
        to,
        ...(out !== undefined ? { out } : {}),
        original: { func: drop.func, reason: drop.reason },
      },
    };
  }
  if (drop) {
    const ok = drop.ok ? { noFailure: { rule: drop.ok.rule, why: drop.ok.why } } : {};
    return { kind: 'dropped', func: drop.func, reason: drop.reason, step: drop.index, ...ok };
  }
  let lastXmit = -1;
  let lastRecv = -1;
  let lastSocket = -1;
  let lastLocal = -1;
  steps.forEach((s, i) => {
    const role = stepRole(s.event.func);
    if (role === 'xmit') lastXmit = i;
    else if (role === 'recv') lastRecv = i;
    else if (role === 'socket') lastSocket = i;
    else if (role === 'local') lastLocal = i;
  });
  const sinceOut = Math.max(lastXmit, lastRecv);
  if (lastSocket >= 0 && lastSocket > lastXmit) {
    return {
      kind: 'delivered',
      func: baseFunc(steps[lastSocket].event.func),
      socket: true,
      step: lastSocket,
    };
  }
  if (lastLocal >= 0 && lastLocal > sinceOut) {
    return { kind: 'delivered', func: baseFunc(steps[lastLocal].event.func), socket: false, step: lastLocal };
  }
  if (lastXmit >= 0 && lastXmit > lastRecv) {
    const e = steps[lastXmit].event;
    return { kind: 'sent', iface: e.iface, func: baseFunc(e.func), step: lastXmit };
  }
  const last = steps.length - 1;
  const lastEvent = steps[last].event;
  const func = baseFunc(lastEvent.func);
  if (p.freed && last > 0 && lastRecv >= 0 && lastRecv > lastXmit) {
    // Freed without a drop after it was received and not sent on: this host
    // used it. With tracepoints only, the socket functions are invisible, but
    // a free with no device left means the socket layer had taken it over.
    return { kind: 'delivered', func, socket: lastEvent.iface === '' && !lastEvent.ifindex, step: last };
  }
  if (p.freed)
    return { kind: 'consumed', func, step: last, ...(p.replacedBy ? { replacedBy: p.replacedBy } : {}) };
  return {
    kind: 'in-flight',
    func,
    step: last,
    ...(lastEvent.iface ? { iface: lastEvent.iface } : {}),
    ...(stepRole(lastEvent.func) === 'recv' ? { received: true } : {}),
  };
}
