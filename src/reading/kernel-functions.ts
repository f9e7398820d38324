/**
 * What the kernel's functions and tracepoints mean for a packet: which hand it
 * to a socket, to the local stack, to a driver, which receive it from a
 * device, and where a packet starts down the transmit path. One table per
 * role; the tracker, the verdicts and the helper (--packet-starts) read them.
 */

/** Strips a tracepoint's "category:" and a symbol's "+0xoff" / ".isra.0" suffixes. */
const baseFuncs = new Map<string, string>();

export function baseFunc(name: string): string {
  // Called several times per event on a handful of distinct names: remember them.
  let base = baseFuncs.get(name);
  if (base === undefined) {
    const noCat = name.includes(':') ? name.slice(name.lastIndexOf(':') + 1) : name;
    base = noCat
      .replace(/\+0x[0-9a-f]+(\/0x[0-9a-f]+)?$/i, '')
      .replace(/\.(isra|constprop|part|cold)\.\d+$/, '');
    if (baseFuncs.size < 65536) baseFuncs.set(name, base);
  }
  return base;
}

/** Functions that hand a packet to a socket (or read it out of one). */
const SOCKET_FUNCS = new Set([
  'tcp_v4_do_rcv',
  'tcp_v6_do_rcv',
  'tcp_rcv_established',
  'tcp_rcv_state_process',
  'tcp_data_queue',
  'tcp_queue_rcv',
  'tcp_child_process',
  'udp_queue_rcv_skb',
  'udp_queue_rcv_one_skb',
  'udpv6_queue_rcv_skb',
  'udpv6_queue_rcv_one_skb',
  '__udp_enqueue_schedule_skb',
  'sock_queue_rcv_skb',
  'sock_queue_rcv_skb_reason',
  '__sock_queue_rcv_skb',
  'raw_rcv',
  'rawv6_rcv',
  'ping_rcv',
  'ping_queue_rcv_skb',
  'skb_copy_datagram_iovec',
  // tcp:tcp_probe fires as an established socket takes a segment in
  'tcp_probe',
  'skb_consume_udp',
  '__skb_recv_udp',
  '__skb_try_recv_datagram',
  'skb_recv_datagram',
  'unix_stream_recvmsg',
]);

/** The local IP stack: the packet was for this host (socket not yet known). */
const LOCAL_FUNCS = new Set([
  'ip_local_deliver',
  'ip_local_deliver_finish',
  'ip_protocol_deliver_rcu',
  'ip6_input',
  'ip6_input_finish',
  'ip6_protocol_deliver_rcu',
  'tcp_v4_rcv',
  'tcp_v6_rcv',
  'udp_rcv',
  '__udp4_lib_rcv',
  'udp_unicast_rcv_skb',
  'udpv6_rcv',
  '__udp6_lib_rcv',
  'icmp_rcv',
  'icmpv6_rcv',
  'igmp_rcv',
]);

/** Handing the packet to a device driver to send. */
const XMIT_FUNCS = new Set([
  'net_dev_xmit',
  'net_dev_start_xmit',
  'dev_hard_start_xmit',
  'xmit_one',
  'netdev_start_xmit',
  'sch_direct_xmit',
]);

/** Receiving from a device: after these, the packet is inside a (maybe other) host again. */
const RECV_FUNCS = new Set([
  'netif_rx_entry',
  'netif_rx_ni_entry',
  'napi_gro_frags_entry',
  'netif_rx',
  'netif_rx_internal',
  '__netif_rx',
  'netif_receive_skb',
  'netif_receive_skb_entry',
  '__netif_receive_skb',
  '__netif_receive_skb_core',
  '__netif_receive_skb_one_core',
  'napi_gro_receive',
  'napi_gro_receive_entry',
  'netif_receive_skb_list_entry',
  'ip_rcv',
  'ip_rcv_core',
  'ipv6_rcv',
  'veth_forward_skb',
  'dev_forward_skb',
  '__dev_forward_skb',
]);

/** Where a packet starts down the transmit path: a socket or the forwarding code hands it to a device. */
export const TX_START_FUNCS: ReadonlySet<string> = new Set([
  'net_dev_queue',
  'dev_queue_xmit',
  '__dev_queue_xmit',
  'ip_local_out',
  '__ip_local_out',
  'ip_output',
  'ip6_local_out',
  'ip6_output',
  '__ip_queue_xmit',
  'ip_queue_xmit',
  'ip_send_skb',
]);

export type StepRole = 'socket' | 'local' | 'xmit' | 'recv' | 'other';

export function stepRole(func: string): StepRole {
  const f = baseFunc(func);
  if (SOCKET_FUNCS.has(f)) return 'socket';
  if (LOCAL_FUNCS.has(f)) return 'local';
  if (XMIT_FUNCS.has(f) || /_xmit$/.test(f)) return 'xmit';
  if (RECV_FUNCS.has(f)) return 'recv';
  return 'other';
}
