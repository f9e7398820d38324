/**
 * The kernel's drop reasons in plain words. Names come from the traced node's
 * BTF at run time (TraceHeader.dropReasons) and reach us without the
 * SKB_DROP_REASON_ prefix; this catalogue only explains them, so a reason a
 * newer kernel adds still shows, under its own name, with a generic line.
 *
 * Source of the one-liners: the kernel-doc comments of enum skb_drop_reason in
 * include/net/dropreason-core.h (up to 6.18), reworded for someone who is
 * debugging a network, not the kernel. The common reasons also say what
 * usually causes them and what to check.
 */

export interface DropReasonInfo {
  /** The kernel's name, e.g. 'IP_RPFILTER'. */
  name: string;
  /** One line: what happened to the packet. */
  text: string;
  /** Short noun phrase for sentences: "dropped by the reverse-path filter". */
  by?: string;
  /** The usual cause, for the common reasons. */
  cause?: string;
  /** What to look at next, for the common reasons. */
  check?: string[];
  /** False when the name is not in this catalogue (a newer kernel's reason). */
  known: boolean;
}

type Entry = Omit<DropReasonInfo, 'name' | 'known'>;

const CATALOGUE: Record<string, Entry> = {
  NOT_SPECIFIED: {
    text: 'dropped without a specific reason: the code path that freed it does not report one',
    cause: 'Many older code paths still call kfree_skb() without a reason.',
    check: [
      'the function on the drop line (its caller is where the drop happened)',
      'run with --output-stack (kprobe backends) to see the whole call chain',
    ],
  },
  UNKNOWN: {
    text: 'dropped; the kernel is older than 5.17 and does not report drop reasons',
    check: ['the function on the drop line, and the step before it'],
  },
  NO_SOCKET: {
    text: 'no socket is listening for this packet (no established or listening socket matched)',
    by: 'the transport layer because no socket matched',
    cause:
      'Nothing listens on the destination port in that network namespace, or the service bound to another address.',
    check: [
      'the destination port and address: is the server up and listening (ss -lntu in the right netns)?',
      'a DNAT or service rule that rewrote the port to one nothing listens on',
      'for replies: was the connection already closed, or did the reply come back to the wrong host?',
    ],
  },
  SOCKET_CLOSE: { text: 'the receiving socket was being closed' },
  SOCKET_FILTER: {
    text: 'rejected by a filter attached to the socket (SO_ATTACH_FILTER / BPF socket filter)',
    check: ['socket-level BPF filters of the receiving program (ss -0 -b, bpftool prog)'],
  },
  SOCKET_RCVBUFF: {
    text: "the receiving socket's buffer is full: the application does not read fast enough",
    by: 'the socket because its receive buffer was full',
    cause: 'The application reads slower than packets arrive, or its receive buffer (SO_RCVBUF) is small.',
    check: [
      'ss -m for the socket (rb vs r)',
      'net.core.rmem_max / rmem_default',
      'the application: is it stuck?',
    ],
  },
  UNIX_DISCONNECT: {
    text: 'a UNIX socket re-connected or its peer closed; its queued messages were purged',
  },
  UNIX_SKIP_OOB: {
    text: 'out-of-band data on a UNIX socket was skipped by a read without MSG_OOB',
  },
  PKT_TOO_SMALL: { text: 'the packet is shorter than its headers say it should be' },
  TCP_CSUM: {
    text: 'TCP checksum is wrong',
    by: 'a bad TCP checksum',
    cause: 'Corruption on the wire, or checksum offload misconfigured on a virtual device or tunnel.',
    check: [
      'ethtool -k DEV (tx-checksumming) on the sending side',
      'NIC or veth offload settings after encapsulation',
    ],
  },
  UDP_CSUM: {
    text: 'UDP checksum is wrong',
    by: 'a bad UDP checksum',
    cause:
      'Corruption, or a tunnel/NAT path that rewrote addresses without fixing the checksum (offload misconfiguration).',
    check: ['ethtool -k DEV (tx-checksumming) on the sender', 'tunnel devices (vxlan udpcsum settings)'],
  },
  NETFILTER_DROP: {
    text: 'dropped by a netfilter rule (iptables, nftables, or conntrack)',
    by: 'netfilter (an iptables/nftables rule)',
    cause:
      'A DROP/REJECT rule or chain policy matched, or conntrack marked the packet INVALID and a rule drops invalid packets.',
    check: [
      'iptables-save -c / nft list ruleset in the netns where it was dropped: look for counters that move',
      'conntrack -S (invalid counter) and rules matching ctstate INVALID',
      'kube-proxy / network-policy chains (KUBE-*, cali-*, cilium) for the destination',
    ],
  },
  OTHERHOST: {
    text: 'the frame was addressed to another host (seen only because the interface is promiscuous)',
    by: 'the IP layer because the frame was for another host',
    cause:
      'The destination MAC is not this interface: a stale ARP/neighbour entry on the sender, or a bridge flooding.',
    check: ['the neighbour table of the sender (ip neigh)', 'MAC addresses of the receiving interface'],
  },
  IP_CSUM: { text: 'the IP header checksum is wrong', by: 'a bad IP header checksum' },
  IP_INHDR: {
    text: 'the IP header is invalid (bad version, length or options)',
    by: 'the IP layer because the header was invalid',
  },
  IP_RPFILTER: {
    text: 'reverse-path filter: the source address is not reachable back through the interface it arrived on',
    by: 'the reverse-path filter',
    cause:
      'The source address does not route back via the receiving interface: typically SNAT/MASQUERADE picked an address from an unexpected interface, the source was spoofed, or routing is asymmetric.',
    check: [
      "the packet's source address on the drop line: is it the one you expect?",
      'sysctl net.ipv4.conf.<iface>.rp_filter and net.ipv4.conf.all.rp_filter on the receiving host (1 = strict, 2 = loose; the maximum of the two applies)',
      'ip route get <source> from <destination> iif <iface> on the receiving host',
      'whether MASQUERADE picked its address from an unexpected interface (the out interface had no address, or a route with a different src)',
    ],
  },
  UNICAST_IN_L2_MULTICAST: { text: 'a unicast IP packet arrived in a multicast or broadcast frame' },
  XFRM_POLICY: {
    text: 'an IPsec (xfrm) policy check failed',
    by: 'an IPsec policy',
    check: ['ip xfrm policy / ip xfrm state on this host'],
  },
  IP_NOPROTO: { text: 'no handler for this IP protocol number on this host' },
  PROTO_MEM: {
    text: 'the protocol is over its memory limit (e.g. udp_mem / tcp_mem)',
    check: ['sysctl net.ipv4.udp_mem / tcp_mem and /proc/net/sockstat'],
  },
  TCP_AUTH_HDR: { text: 'TCP-MD5 or TCP-AO option present twice or malformed' },
  TCP_MD5NOTFOUND: { text: 'TCP-MD5 signature expected but missing' },
  TCP_MD5UNEXPECTED: { text: 'TCP-MD5 signature present but not expected' },
  TCP_MD5FAILURE: { text: 'TCP-MD5 signature is wrong' },
  TCP_AONOTFOUND: { text: 'TCP-AO signature expected but missing' },
  TCP_AOUNEXPECTED: { text: 'TCP-AO signature present but not expected' },
  TCP_AOKEYNOTFOUND: { text: 'TCP-AO key is unknown' },
  TCP_AOFAILURE: { text: 'TCP-AO signature is wrong' },
  SOCKET_BACKLOG: {
    text: "the socket's backlog is full (the socket was busy in user context)",
    check: ['netstat -s | grep -i backlog', 'the receiving application (is it slow?)'],
  },
  TCP_FLAGS: { text: 'invalid combination of TCP flags' },
  TCP_ABORT_ON_DATA: {
    text: 'data arrived for a TCP socket that was already shut down; the connection is aborted',
  },
  TCP_ZEROWINDOW: {
    text: 'the TCP receive window is zero: the receiver has no room',
    check: ['the receiving application: it is not reading'],
  },
  TCP_OLD_DATA: {
    text: 'TCP data that was already received (a retransmission that was not needed)',
    cause: 'Spurious retransmission: an ACK got lost or delayed on the way back.',
    check: ['packet loss or delay on the reverse path', 'retransmission counters (nstat TcpRetransSegs)'],
  },
  TCP_OVERWINDOW: { text: 'TCP data beyond the right edge of the receive window' },
  TCP_OFOMERGE: { text: 'out-of-order TCP data that was already queued' },
  TCP_RFC7323_PAWS: {
    text: 'TCP timestamp is older than the last one seen (PAWS check, RFC 7323)',
    cause:
      'Several clients behind one NAT address with different timestamp clocks, or a reused connection tuple.',
    check: ['NAT in front of the clients', 'net.ipv4.tcp_timestamps on both sides'],
  },
  TCP_RFC7323_PAWS_ACK: { text: 'PAWS check failed on an old ACK' },
  TCP_RFC7323_TW_PAWS: { text: 'PAWS check failed against a TIME-WAIT socket' },
  TCP_RFC7323_TSECR: { text: 'the echoed TCP timestamp (TSecr) is invalid' },
  TCP_LISTEN_OVERFLOW: {
    text: "the listening socket's accept queue is full",
    cause: 'The server accepts connections slower than they arrive, or its backlog is too small.',
    check: ['ss -lnt (Recv-Q vs Send-Q of the listener)', 'net.core.somaxconn', 'the server application'],
  },
  TCP_OLD_SEQUENCE: { text: 'TCP segment with an old sequence number (a duplicate)' },
  TCP_INVALID_SEQUENCE: {
    text: 'TCP sequence number not acceptable: outside the receive window',
    by: 'TCP because the sequence number was outside the window',
    cause:
      'The two ends disagree about the connection state: a middlebox or NAT rewrote or mixed up connections, or the peer restarted.',
    check: [
      'conntrack entries for the tuple',
      'NAT port reuse between different clients',
      'a peer that restarted',
    ],
  },
  TCP_INVALID_END_SEQUENCE: { text: 'the end of the TCP segment is beyond the receive window' },
  TCP_INVALID_ACK_SEQUENCE: {
    text: 'TCP ACK number outside what was sent (not between snd_una and snd_nxt)',
  },
  TCP_RESET: { text: 'invalid TCP RST (not acceptable for this connection)' },
  TCP_INVALID_SYN: { text: 'unexpected SYN on an established TCP connection' },
  TCP_CLOSE: { text: 'the TCP socket is closed' },
  TCP_FASTOPEN: { text: 'dropped by a TCP Fast Open request socket' },
  TCP_OLD_ACK: { text: 'TCP ACK is old but inside the window' },
  TCP_TOO_OLD_ACK: { text: 'TCP ACK is too old' },
  TCP_ACK_UNSENT_DATA: { text: 'TCP ACK for data that was never sent' },
  TCP_OFO_QUEUE_PRUNE: { text: 'pruned from the TCP out-of-order queue (memory pressure)' },
  TCP_OFO_DROP: { text: 'out-of-order TCP data already in the receive queue' },
  IP_OUTNOROUTES: {
    text: 'no route to the destination (output route lookup failed)',
    by: 'routing because there was no route',
    cause:
      'The routing table in this network namespace has no route for the destination (missing default route).',
    check: [
      'ip route get <destination> in the netns on the drop line',
      'ip rule (policy routing) and the fwmark',
    ],
  },
  BPF_CGROUP_EGRESS: {
    text: 'dropped by a cgroup BPF program on egress',
    check: ['bpftool cgroup tree (programs attached to the cgroup of the sender)'],
  },
  IPV6DISABLED: {
    text: 'IPv6 is disabled on the device',
    check: ['sysctl net.ipv6.conf.<iface>.disable_ipv6'],
  },
  NEIGH_CREATEFAIL: {
    text: 'could not create a neighbour (ARP/NDP) entry',
    check: ['net.ipv4.neigh.default.gc_thresh3'],
  },
  NEIGH_FAILED: {
    text: 'the next hop did not answer ARP/neighbour discovery (neighbour entry FAILED)',
    by: 'the neighbour layer because the next hop did not answer ARP',
    cause:
      'The next hop or destination is down, on another L2 segment, or refuses the ARP request (arp_ignore / rp_filter on ARP).',
    check: [
      'ip neigh show (FAILED/INCOMPLETE entries)',
      'the next hop address of the route',
      'arp_ignore / arp_filter',
    ],
  },
  NEIGH_QUEUEFULL: {
    text: 'too many packets waiting for an ARP/neighbour answer',
    check: ['ip neigh show', 'net.ipv4.neigh.<iface>.unres_qlen_bytes'],
  },
  NEIGH_DEAD: { text: 'the neighbour entry was removed while the packet waited (device going down?)' },
  NEIGH_HH_FILLFAIL: { text: 'could not build the link-layer header for the neighbour' },
  TC_EGRESS: {
    text: 'dropped by a tc program or action on egress',
    by: 'a tc egress program',
    check: ['tc filter show dev <iface> egress', 'bpftool net (eBPF datapaths such as Cilium)'],
  },
  SECURITY_HOOK: { text: 'dropped by a security module hook (LSM, e.g. SELinux)' },
  QDISC_DROP: {
    text: 'the queueing discipline refused the packet (queue full or policy)',
    by: 'the queueing discipline',
    cause: 'The interface queue is full (burst, slow device) or a qdisc policy drops it.',
    check: ['tc -s qdisc show dev <iface> (dropped/overlimits)', 'txqueuelen of the device'],
  },
  QDISC_OVERLIMIT: {
    text: 'the qdisc is over its total buffer limit',
    check: ['tc -s qdisc show dev <iface>'],
  },
  QDISC_CONGESTED: { text: "dropped by the qdisc's active queue management because of congestion" },
  CAKE_FLOOD: { text: 'dropped by the flood protection of the CAKE qdisc' },
  FQ_BAND_LIMIT: { text: 'the fq qdisc band is full' },
  FQ_HORIZON_LIMIT: { text: 'the fq qdisc refused a packet timestamped too far in the future' },
  FQ_FLOW_LIMIT: { text: 'the flow is over its limit in the fq qdisc' },
  CPU_BACKLOG: {
    text: "the CPU's receive backlog is full (netdev_max_backlog or RPS flow limit)",
    check: ['sysctl net.core.netdev_max_backlog', '/proc/net/softnet_stat (second column)'],
  },
  XDP: {
    text: 'dropped by an XDP program on receive',
    by: 'an XDP program',
    check: ['ip link show (xdp prog id)', 'bpftool net'],
  },
  TC_INGRESS: {
    text: 'dropped by a tc program or action on ingress',
    by: 'a tc ingress program',
    check: ['tc filter show dev <iface> ingress', 'bpftool net (eBPF datapaths such as Cilium)'],
  },
  UNHANDLED_PROTO: { text: 'protocol not implemented or not supported here' },
  SKB_CSUM: { text: 'checksum computation on the packet failed' },
  SKB_GSO_SEG: { text: 'segmentation of a large (GSO) packet failed' },
  SKB_UCOPY_FAULT: { text: 'copying data from user space failed' },
  DEV_HDR: { text: 'the device-specific header or metadata is invalid' },
  DEV_READY: {
    text: 'the device is not ready (down, or its queues not set up)',
    check: ['ip link show <iface> (UP, LOWER_UP?)', 'the peer of a veth or the tap user'],
  },
  FULL_RING: { text: 'the device ring buffer is full' },
  NOMEM: { text: 'out of memory' },
  HDR_TRUNC: { text: 'the protocol header could not be read: the packet is truncated' },
  TAP_FILTER: { text: 'dropped by an eBPF filter attached to a tun/tap device' },
  TAP_TXFILTER: { text: 'dropped by the transmit filter of a tun/tap device' },
  ICMP_CSUM: { text: 'ICMP checksum is wrong' },
  INVALID_PROTO: { text: 'the packet breaks its protocol rules (e.g. a broadcast ICMP timestamp)' },
  IP_INADDRERRORS: {
    text: 'host unreachable: invalid destination address for this host',
    check: ['ip route get <destination> iif <iface>'],
  },
  IP_INNOROUTES: {
    text: 'network unreachable: no route for the incoming packet',
    by: 'routing because there was no route',
    cause:
      'The host receiving it has no route to the destination (forwarding) or the destination is not local.',
    check: ['ip route get <destination> from <source> iif <iface> on the drop host', 'net.ipv4.ip_forward'],
  },
  IP_LOCAL_SOURCE: {
    text: "the source address is one of this host's own addresses (martian)",
    check: ['duplicate addresses, or a loop', 'net.ipv4.conf.<iface>.accept_local'],
  },
  IP_INVALID_SOURCE: { text: 'invalid source address (multicast, broadcast, or zero)' },
  IP_LOCALNET: {
    text: 'source or destination is a loopback (127/8) address on a non-loopback interface',
    check: ['net.ipv4.conf.<iface>.route_localnet'],
  },
  IP_INVALID_DEST: { text: 'invalid destination address (zero)' },
  PKT_TOO_BIG: {
    text: 'the packet is bigger than the MTU and may not be fragmented',
    by: 'the IP layer because the packet was larger than the MTU',
    cause: 'An MTU mismatch, often after encapsulation (VXLAN/IPIP/WireGuard add headers) with DF set.',
    check: [
      'the MTU column on the steps before the drop',
      'MTU of tunnel and pod interfaces',
      'ICMP "frag needed" being filtered',
    ],
  },
  DUP_FRAG: { text: 'duplicate IP fragment' },
  FRAG_REASM_TIMEOUT: { text: 'IP fragment reassembly timed out (a fragment never arrived)' },
  FRAG_TOO_FAR: { text: 'IPv4 fragment too far out of order (ipfrag_max_dist)' },
  TCP_MINTTL: { text: 'TTL or hop limit below the minimum the socket requires (IP_MINTTL)' },
  IPV6_BAD_EXTHDR: { text: 'bad IPv6 extension header' },
  IPV6_NDISC_FRAG: { text: 'fragmented neighbour discovery message (not allowed)' },
  IPV6_NDISC_HOP_LIMIT: { text: 'neighbour discovery message with a hop limit other than 255' },
  IPV6_NDISC_BAD_CODE: { text: 'neighbour discovery message with an invalid ICMPv6 code' },
  IPV6_NDISC_BAD_OPTIONS: { text: 'neighbour discovery message with invalid options' },
  IPV6_NDISC_NS_OTHERHOST: { text: 'neighbour solicitation for another host' },
  QUEUE_PURGE: {
    text: 'freed in bulk when a queue was purged: usually a socket closed while this packet still sat in its queue (e.g. a FIN the application never read)',
  },
  TC_COOKIE_ERROR: { text: 'error while processing a tc extension cookie' },
  PACKET_SOCK_ERROR: { text: 'a packet socket (AF_PACKET) failed to take a copy after its filter matched' },
  TC_CHAIN_NOTFOUND: { text: 'tc jumped to a chain that does not exist' },
  TC_RECLASSIFY_LOOP: { text: 'tc reclassified the packet too many times' },
  VXLAN_INVALID_HDR: { text: 'invalid VXLAN header' },
  VXLAN_VNI_NOT_FOUND: {
    text: 'no VXLAN device for this VNI',
    check: ['ip -d link show type vxlan (id and dstport) on the receiving host'],
  },
  MAC_INVALID_SOURCE: { text: 'invalid source MAC address' },
  VXLAN_ENTRY_EXISTS: { text: 'VXLAN tried to move a static forwarding entry' },
  NO_TX_TARGET: { text: 'no target found to transmit to' },
  IP_TUNNEL_ECN: { text: 'dropped while decapsulating because of inconsistent ECN bits (RFC 6040)' },
  TUNNEL_TXINFO: {
    text: 'a packet without tunnel metadata reached a tunnel device in external (collect_md) mode',
  },
  LOCAL_MAC: { text: "the source MAC address is this device's own" },
  ARP_PVLAN_DISABLE: { text: 'ARP for the same interface while proxy_arp_pvlan is off' },
  MAC_IEEE_MAC_CONTROL: { text: 'destination MAC is an IEEE MAC control address' },
  BRIDGE_INGRESS_STP_STATE: {
    text: 'the bridge port is not forwarding (spanning tree state)',
    check: ['bridge link show (port state)'],
  },
  BLACKHOLE: {
    text: 'a blackhole route discarded it',
    by: 'a blackhole route',
    check: ['ip route show type blackhole'],
  },
  CAN_RX_INVALID_FRAME: { text: 'invalid CAN frame' },
  CANFD_RX_INVALID_FRAME: { text: 'invalid CAN FD frame' },
  CANXL_RX_INVALID_FRAME: { text: 'invalid CAN XL frame' },
  PFMEMALLOC: { text: 'packet in emergency memory reserves, not for this socket' },
  DUALPI2_STEP_DROP: { text: 'dropped by the DualPI2 qdisc step threshold (L4S)' },
  PSP_INPUT: { text: 'PSP (encryption) check failed on input' },
  PSP_OUTPUT: { text: 'PSP (encryption) check failed on output' },
  RECURSION_LIMIT: { text: 'too many nested transmits (device recursion limit)' },
};

/** Open vSwitch reasons (subsystem 2) reach us with their own prefix. */
const OVS: Record<string, string> = {
  OVS_DROP_LAST_ACTION: 'Open vSwitch: the flow had no further action (dropped by the flow table)',
  OVS_DROP_ACTION_ERROR: 'Open vSwitch: an action failed',
  OVS_DROP_EXPLICIT: 'Open vSwitch: an explicit drop action',
  OVS_DROP_EXPLICIT_WITH_ERROR: 'Open vSwitch: an explicit drop action with an error',
  OVS_DROP_METER: 'Open vSwitch: over the meter rate',
  OVS_DROP_RECURSION_LIMIT: 'Open vSwitch: recursion limit',
  OVS_DROP_DEFERRED_LIMIT: 'Open vSwitch: too many deferred actions',
  OVS_DROP_FRAG_L2_TOO_LONG: 'Open vSwitch: fragment with an L2 header too long',
  OVS_DROP_FRAG_INVALID_PROTO: 'Open vSwitch: fragment of an unsupported protocol',
  OVS_DROP_CONNTRACK: 'Open vSwitch: conntrack action failed',
  OVS_DROP_IP_TTL: 'Open vSwitch: TTL exceeded',
};

/** Reasons of a whole subsystem, by the prefix of their names. */
const PREFIXES: readonly (readonly [string, string])[] = [
  ['MAC80211_', 'mac80211 (Wi-Fi stack) dropped a frame it could not use'],
];

function unknownText(key: string): string {
  return `the kernel reports ${key}; this version of kubectl-pwru has no description (see include/net/dropreason-core.h)`;
}

export function explainDropReason(name: string): DropReasonInfo {
  const key = name.replace(/^SKB_DROP_REASON_/, '');
  const entry = CATALOGUE[key];
  if (entry) return { name: key, known: true, ...entry };
  const ovs = OVS[key];
  if (ovs) return { name: key, known: true, text: ovs, by: 'Open vSwitch' };
  const prefix = PREFIXES.find(([p]) => key.startsWith(p));
  if (prefix) return { name: key, known: true, text: prefix[1] };
  return { name: key, known: false, text: unknownText(key) };
}

/**
 * The one-line texts as tables, for the helper's text lines (--emit text,
 * src/output/text-notes.ts): by name, by prefix, and the text of a name
 * neither knows, split around the name.
 */
export function dropReasonTexts(): {
  names: [string, string][];
  prefixes: readonly (readonly [string, string])[];
  unknown: [string, string];
} {
  const mark = '\u0000';
  const [before, after] = unknownText(mark).split(mark);
  return {
    names: [
      ...Object.entries(CATALOGUE).map(([k, e]): [string, string] => [k, e.text]),
      ...Object.entries(OVS),
    ],
    prefixes: PREFIXES,
    unknown: [before ?? '', after ?? ''],
  };
}

/** "the reverse-path filter" / "netfilter (…)" or, lacking one, the reason's name. */
export function droppedBy(name: string): string {
  const info = explainDropReason(name);
  return info.by ?? `the kernel (${info.name})`;
}

/** Every reason the catalogue explains, for tests and the docs. */
export function catalogueNames(): string[] {
  return [...Object.keys(CATALOGUE), ...Object.keys(OVS)];
}
