/** Verdicts in English: a sentence for the packet's story, a short label for tables. */
import { droppedBy, explainDropReason } from './drop-reasons';
import type { Verdict } from './verdicts';

/** The verdict in words: "dropped at ip_rcv_finish_core by the reverse-path filter (IP_RPFILTER)". */
export function describeVerdict(v: Verdict): string {
  switch (v.kind) {
    case 'dropped': {
      if (v.noFailure) return `freed at ${v.func} (${v.reason}), not a failure: ${v.noFailure.why}`;
      const info = explainDropReason(v.reason);
      if (info.by) return `dropped at ${v.func} by ${droppedBy(v.reason)} (${v.reason})`;
      return `dropped at ${v.func} (${v.reason}: ${info.text})`;
    }
    case 'delivered':
      if (v.copy)
        return `delivered (a copy ${copyWhere(v.copy)}, packet #${v.copy.packet}); the original freed at ${v.copy.original.func} (${v.copy.original.reason})`;
      if (v.copyOf !== undefined)
        return `delivered to ${v.socket ? 'a local socket' : 'the local stack'} (${v.func}), a copy of packet #${v.copyOf}`;
      return v.socket
        ? `delivered to a local socket (${v.func})`
        : `delivered to the local stack (${v.func})`;
    case 'sent':
      if (v.copyOf !== undefined)
        return `sent out of ${v.iface || 'an interface'} (${v.func}), a copy of packet #${v.copyOf}`;
      return `sent out of ${v.iface || 'an interface'} (${v.func})`;
    case 'consumed':
      if (v.replacedBy)
        return `freed at ${v.func} as the kernel went on with a copy of it (packet #${v.replacedBy})`;
      return `freed without a drop at ${v.func}`;
    case 'continued':
      return `continues as packet #${v.as} (skb ${v.skb}): veth copied it into the buffer of XDP program ${v.run}, and freed it at ${v.func}`;
    case 'in-flight':
      if (v.received)
        return `received on ${v.iface || 'a device'} (${v.func}); its end was not traced (still queued, or freed by a path without a tracepoint)`;
      return v.iface
        ? `not freed when the trace ended: last seen at ${v.func} on ${v.iface} (queued or still in flight)`
        : `not freed when the trace ended: last seen at ${v.func} (queued or still in flight)`;
  }
}

/** Short form for tables: "dropped: IP_RPFILTER at ip_rcv_finish_core". */
export function verdictLabel(v: Verdict): string {
  switch (v.kind) {
    case 'dropped':
      return v.noFailure
        ? `freed at ${v.func}: ${v.reason} (not a failure)`
        : `dropped at ${v.func}: ${v.reason}`;
    case 'delivered':
      if (v.copy) return `delivered (a copy ${copyWhere(v.copy)})`;
      if (v.copyOf !== undefined) return `delivered, a copy of #${v.copyOf}`;
      return v.socket ? 'delivered to socket' : `delivered locally (${v.func})`;
    case 'sent':
      return v.copyOf !== undefined
        ? `sent out of ${v.iface || '?'}, a copy of #${v.copyOf}`
        : `sent out of ${v.iface || '?'}`;
    case 'consumed':
      return v.replacedBy ? `replaced by a copy: #${v.replacedBy}` : `freed at ${v.func}`;
    case 'continued':
      return `continues as #${v.as}`;
    case 'in-flight':
      if (v.received) return `received on ${v.iface || '?'}, end not traced`;
      return v.iface ? `in flight (last: ${v.func} on ${v.iface})` : `in flight (last: ${v.func})`;
  }
}

/** "to a raw socket", or "sent out of eth1" for a copy made of the packet and sent on. */
function copyWhere(c: { to: string; out?: string }): string {
  return c.out !== undefined ? `sent out of ${c.out}` : `to ${c.to}`;
}
