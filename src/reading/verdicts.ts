/**
 * How a packet's path ended: dropped (where, why), delivered to this host
 * (a socket, or the local stack), sent out of a device, freed without a drop,
 * or still in flight when the trace ended. Decided from its steps alone; the
 * words for each verdict are in verdict-words.ts.
 */
import { explainDropReason } from './drop-reasons';
import { baseFunc, stepRole } from './kernel-functions';
import type { Packet } from './packet-tracker';

export type Verdict =
  | { kind: 'dropped'; func: string; reason: string; step: number }
  | { kind: 'delivered'; func: string; socket: boolean; step: number }
  | { kind: 'sent'; iface: string; func: string; step: number }
  | { kind: 'consumed'; func: string; step: number; replacedBy?: number }
  | { kind: 'in-flight'; func: string; step: number; iface?: string; received?: boolean };

/** Where the drop happened: the caller (kfree_skb's location) when known, else the step before. */
export function dropLocation(p: Packet, index: number): string {
  const e = p.steps[index].event;
  if (e.caller) return baseFunc(e.caller);
  const before = p.steps[index - 1];
  return before ? baseFunc(before.event.func) : baseFunc(e.func);
}

export function verdictOf(p: Packet): Verdict {
  const steps = p.steps;
  // A socket-teardown purge is the verdict of a packet only when nothing else
  // dropped it, and never of a whole flow (diff --flow) whose packets got through.
  const drops = steps.map((s, i) => [s, i] as const).filter(([s]) => s.event.drop);
  const real = drops.find(([s]) => !explainDropReason(s.event.drop?.reason ?? '').housekeeping);
  const dropIndex = (real ?? (p.packets ? undefined : drops[0]))?.[1] ?? -1;
  // A flow nothing dropped ends the way the packet it was chosen by ended.
  if (dropIndex < 0 && p.seed) return verdictOf(p.seed);
  if (dropIndex >= 0) {
    const drop = steps[dropIndex].event.drop;
    return {
      kind: 'dropped',
      func: dropLocation(p, dropIndex),
      reason: drop?.reason ?? 'UNKNOWN',
      step: dropIndex,
    };
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
