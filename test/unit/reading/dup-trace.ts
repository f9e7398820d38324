/**
 * The steps of nf_dup_ipv4 (nft `dup to`, iptables TEE) as the kprobe
 * backends report them: the copy's first step is inside the copy function
 * (skb_copy_header), its link comes with the step after the copy function
 * returned, and the original is dropped afterwards by a later rule.
 */
import type { TraceEvent } from '../../../src/record/event';
import { event } from '../fixtures';

const ORIG = { skb: '0xffff888004a1c000', head: '0xffff888005b2d000' };
const COPY = { skb: '0xffff888004a1d100', head: '0xffff888005c3e000' };

export function dupTrace(copyEnd: 'sent' | 'local' | 'dropped' | 'none'): TraceEvent[] {
  let ts = 1000;
  const at = (skb: typeof ORIG, func: string, over: Partial<TraceEvent> = {}) =>
    event({
      ts: String(ts++),
      skb: skb.skb,
      head: skb.head,
      func,
      probe: 'kprobe',
      iface: '',
      ifindex: 0,
      ...over,
    });
  const events = [
    at(ORIG, 'ip_local_out'),
    at(ORIG, 'nf_hook_slow'),
    at(ORIG, '__pskb_copy_fclone'),
    ...(copyEnd === 'none'
      ? []
      : [
          at(COPY, 'skb_copy_header'),
          at(COPY, 'ip_local_out', { copiedFrom: { ...ORIG } }),
          at(COPY, 'ip_output', { iface: 'veth0', ifindex: 3 }),
          ...(copyEnd === 'local'
            ? [
                at(COPY, 'dev_queue_xmit', { iface: 'veth0', ifindex: 3 }),
                at(COPY, 'ip_rcv', { iface: 'veth1', ifindex: 4 }),
                at(COPY, 'ip_local_deliver', { iface: 'veth1', ifindex: 4 }),
                at(COPY, 'consume_skb', { probe: 'tracepoint', freed: true }),
              ]
            : []),
          copyEnd === 'local'
            ? undefined
            : copyEnd === 'sent'
              ? at(COPY, 'dev_queue_xmit', { iface: 'veth0', ifindex: 3 })
              : at(COPY, 'kfree_skb', {
                  iface: 'veth0',
                  ifindex: 3,
                  probe: 'tracepoint',
                  drop: { reason: 'NETFILTER_DROP', code: 6 },
                  freed: true,
                  caller: 'nf_hook_slow+0x8d',
                }),
        ]),
    at(ORIG, 'kfree_skb', {
      probe: 'tracepoint',
      drop: { reason: 'NETFILTER_DROP', code: 6 },
      freed: true,
      caller: 'nf_hook_slow+0x8d',
    }),
  ];
  return events.filter((e) => e !== undefined);
}
