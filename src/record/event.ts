/**
 * The events a trace is made of, as the client sees them after decoding the
 * helper's record stream (see docs/record-stream.md). This is also the shape
 * of `-o json` lines and of saved trace files (`--output-file`), so it is a
 * public, versioned schema: add fields freely, never change or remove one
 * without bumping TRACE_SCHEMA_VERSION. Documented in docs/json-schema.md.
 */

export const TRACE_SCHEMA_VERSION = 1;

export type ProbeKind = 'kprobe' | 'kprobe-multi' | 'tracepoint';

export interface Tuple {
  /** 4 or 6 */
  family: 4 | 6;
  /** 'TCP', 'UDP', 'ICMP', 'ICMPv6' or the protocol number as a string. */
  proto: string;
  src: string;
  dst: string;
  /** Ports for TCP and UDP, absent otherwise. */
  sport?: number;
  dport?: number;
  /** ICMP type and code, absent otherwise. */
  icmpType?: number;
  icmpCode?: number;
  /** TCP flags in tcpdump's letters, e.g. "S", "S.", "F.", "R." (absent for non-TCP). */
  tcpFlags?: string;
  /** Kubernetes mode: who src/dst belong to, "namespace/pod" or "svc/namespace/name". */
  srcName?: string;
  dstName?: string;
}

/**
 * A packet's bytes at one step (--snaplen): the kernel program captures them
 * at the packet's first step and again where its addresses, ports or
 * protocol changed (NAT, encap, decap).
 */
export interface PacketBytes {
  /** 'first': the first step captured of this skb; 'changed': its headers changed since the last capture. */
  capture: 'first' | 'changed';
  /** The packet's length from its IP header on (data holds at most --snaplen of it). */
  len: number;
  /** The bytes from the IP header on, base64. */
  data: string;
}

/** An encapsulated packet's tunnel and the packet inside it (the event's `tuple` is the outer one). */
export interface Tunnel {
  kind: 'vxlan' | 'geneve' | 'ipip' | 'gre' | 'unknown';
  /** VXLAN/Geneve VNI or GRE key, when not 0. */
  vni?: number;
  /** The inner packet's addresses (ports for TCP and UDP), when it is IP. */
  inner?: { family: 4 | 6; proto: string; src: string; dst: string; sport?: number; dport?: number };
}

/** One step of one packet: a kernel function or tracepoint it passed. */
export interface TraceEvent {
  type: 'event';
  /** Schema version of this line. */
  v: number;
  /** Kernel monotonic time of the step, nanoseconds, as a decimal string (exceeds 2^53). */
  ts: string;
  /** Wall-clock time of the step (ISO 8601), derived from ts and the trace's start. */
  time: string;
  /** Address of the struct sk_buff, hex: identifies the packet while it lives. */
  skb: string;
  /** Function or tracepoint name. */
  func: string;
  probe: ProbeKind;
  cpu: number;
  pid: number;
  process: string;
  /** Network namespace inode. */
  netns: number;
  mark: number;
  ifindex: number;
  /** Interface name ('' when the skb has no device yet). */
  iface: string;
  /** skb->protocol as a name ('IPv4', 'IPv6', 'ARP') or hex ('0x88cc'). */
  l3proto: string;
  mtu: number;
  len: number;
  /** Linux packet type: 'host', 'broadcast', 'multicast', 'otherhost', 'outgoing', 'loopback', ... */
  pktType: string;
  /** Return address or drop location as "symbol+0xoff", when known. */
  caller?: string;
  tuple?: Tuple;
  /** The packet is VXLAN, Geneve, IP-in-IP or GRE: the tunnel and its inner packet. */
  tunnel?: Tunnel;
  /** Set on the step where the kernel dropped the packet. */
  drop?: {
    /** The kernel's name without the SKB_DROP_REASON_ prefix, e.g. 'NETFILTER_DROP'; 'UNKNOWN' before 5.17. */
    reason: string;
    /** Raw enum value, when the kernel reported one. */
    code?: number;
  };
  /** The skb was freed here (consumed after delivery, or dropped). */
  freed?: boolean;
  /** Shown only because the skb matched earlier (--filter-track-skb). */
  tracked?: boolean;
  /** Address of the packet's data buffer (skb->head), hex: clones share it. */
  head?: string;
  /** How many skbs hold that data buffer (this one and its clones), when more than one. */
  shared?: number;
  /**
   * This skb is a copy with a data buffer of its own (skb_copy, pskb_copy,
   * skb_copy_expand: nft dup, TEE), made from that skb and data buffer: on
   * the copy's first step reported after the copy function returned
   * (function backends only; bpf/copy_link.h).
   */
  copiedFrom?: { skb: string; head: string };
  /** IPv4 identification of the header at this step (IPv4 only). */
  ipId?: number;
  /** TCP sequence number of the header at this step (TCP only). */
  seq?: number;
  /** Kernel stack, innermost first, when --output-stack was given. */
  stack?: string[];
  /** The packet's bytes at this step, when --snaplen was given and this step is one the kernel captured. */
  bytes?: PacketBytes;
  /** Node name, in Kubernetes mode. */
  node?: string;
  /**
   * Added by the client's views, never by the helper: which packet of the
   * trace this step belongs to (1-based; an skb address reused after a free
   * is a new packet). Readers of saved traces recompute it.
   */
  packet?: number;
  /** Added by the client's views: what differs from this packet's previous step (NAT, device, netns, mark). */
  changes?: { field: string; from: string; to: string }[];
}

/** Describes the trace as a whole; the first line of a saved trace file. */
export interface TraceHeader {
  type: 'header';
  v: number;
  tool: 'kubectl-pwru';
  toolVersion: string;
  /** Kernel release of the traced host (per node in Kubernetes mode). */
  kernel: string;
  node?: string;
  /** The traced host's name (the helper's hostname: the node's, in Kubernetes mode). */
  host?: string;
  backend: ProbeKind;
  probes: number;
  attachMs: number;
  filter: string;
  startedAt: string;
  /** Drop reason names by code, as read from the kernel's BTF. */
  dropReasons: Record<string, string>;
  /** Traced with --on-drop: the trace holds drop reports, not events. */
  onDrop?: boolean;
}

/** Counters the helper reports periodically and at the end. */
export interface TraceStats {
  type: 'stats';
  v: number;
  node?: string;
  /** Probe hits before filtering. */
  seen: number;
  /** Events delivered. */
  events: number;
  /** Events of the run not delivered: the ring buffer was full, or the output too slow to take them before the stop. */
  lost: number;
  /** --snaplen: events delivered without their bytes (ring buffer full), when any. */
  bytesLost?: number;
  /** Events that fired after the stop (past --max-events, or while the probes were detached): not shown, not lost. */
  discarded?: number;
  /** --max-rate: matching events the kernel program did not write (over the rate). */
  skipped?: number;
  final: boolean;
}

/**
 * What the closing summary needs of events the client did not read one by one
 * (the helper wrote their JSON lines itself): counts made by the helper.
 * Not a trace line: it is never written to the output.
 */
export interface TraceDigest {
  packets: number;
  events: number;
  /** Drops by reason and place (the drop's caller, or the step before it). */
  drops: { reason: string; at: string; count: number }[];
}

/** A netfilter rule as the node's own tools print it (iptables-save, nft -a list ruleset). */
export interface CulpritRule {
  /** Which tool printed it: 'iptables-legacy', 'ip6tables-legacy', 'iptables-nft', 'ip6tables-nft' or 'nft'. */
  tool: string;
  /** nftables family: 'ip', 'ip6', 'inet', 'bridge', 'netdev', 'arp'. */
  family: string;
  table: string;
  chain: string;
  /** The hook the packet was on: the base chain's (iptables 'INPUT', nft 'input'), found through jumps for other chains. */
  hook?: string;
  /** 1-based position in its chain (absent for a chain's policy). */
  position?: number;
  /** A built-in chain's policy (text "-P FORWARD DROP", or nft's "policy drop"). */
  policy?: boolean;
  /** nft's rule handle (of an iptables-nft rule too, when it was named exactly). */
  handle?: number;
  /** The rule as the tool prints it: "-A KUBE-FORWARD … -j DROP", or nft's statement (counter values left out). */
  text: string;
  /** Packets its counter counted since the previous reading. */
  counted?: number;
}

/**
 * The netfilter table and chain that returned NF_DROP, as the kernel's own
 * table walkers said it (fexit on nft_do_chain, ipt_do_table, ...), where the
 * helper could probe them; or why it could not tell.
 */
export interface CulpritChain {
  /** 'exact': from the kernel's own functions; 'none': they did not say (why says why). */
  method: 'exact' | 'none';
  /** The function that returned the verdict: 'nft_do_chain', 'ipt_do_table', 'ip6t_do_table', 'arpt_do_table'. */
  by?: string;
  /** nft's family words: 'ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev'. */
  family?: string;
  table?: string;
  /** nft's base chain; for iptables-legacy, the hook's built-in chain ('INPUT'). */
  chain?: string;
  /** nft's hook name ('input'), or iptables' ('INPUT'). */
  hook?: string;
  why?: string;
}

/** A BPF program attached where a packet was dropped (tc or XDP). */
export interface CulpritProgram {
  id: number;
  /** The program's own name (at most 15 characters, as the kernel keeps it). */
  name: string;
  /** Its tag (hex), as `bpftool prog` shows it. */
  tag: string;
  /** How it is attached: 'tcx', 'clsact', 'xdp-native', 'xdp-generic', 'xdp-offload'. */
  attach: string;
  /** clsact: the filter's name, priority and handle. */
  detail?: string;
}

/**
 * Who dropped a packet: written after the drop's event, once the helper knows
 * (docs/json-schema.md, "culprit"). ts and skb are those of the drop's event.
 */
export interface TraceCulprit {
  type: 'culprit';
  v: number;
  node?: string;
  ts: string;
  skb: string;
  netns: number;
  /** What dropped it: a netfilter rule, a tc program, an XDP program. */
  kind: 'netfilter' | 'tc' | 'xdp';
  /**
   * How it was known: 'counters' (the rule's counter moved in that namespace), 'exact' (tc/XDP: the
   * program that returned the drop, traced with fexit; netfilter: the nft rule, or iptables-nft's, whose
   * drop verdict the kernel ran, by its handle), 'attached' (the programs attached where the
   * kernel dropped it), or 'none': could not tell (why says why).
   */
  method: 'counters' | 'exact' | 'attached' | 'none';
  rule?: CulpritRule;
  /**
   * 'none': why it could not be told. tc and XDP 'attached', where programs are traced in this run: why
   * the drop was not named exactly, for each program attached there ("pwru_tc (id 12): loaded after the
   * trace began and not traced yet").
   */
  why?: string;
  /** netfilter, with function probes on the kernel's table walkers: the table and chain, exactly. */
  chain?: CulpritChain;
  /** When several rules could have: each of them. */
  candidates?: CulpritRule[];
  /** tc and XDP: the interface and, for tc, the direction of the hook. */
  iface?: string;
  ifindex?: number;
  direction?: 'ingress' | 'egress';
  /** What the program returned: exactly ('TC_ACT_SHOT', 'XDP_ABORTED'), or as the kernel's drop path says ('XDP_DROP or XDP_ABORTED'). */
  verdict?: string;
  /** The programs attached there, in the order they run. */
  programs?: CulpritProgram[];
  /** --on-drop: the report it names (that drop line's n). */
  drop?: number;
}

/**
 * A tc or XDP program's run on a traced packet, from fexit on the program
 * itself where the kernel lets programs be traced (docs/json-schema.md,
 * "prog"): which program, where, and what it returned. ts is the run's; skb
 * the packet's (for XDP, the skb its buffer belongs to).
 */
export interface TraceProgRun {
  type: 'prog';
  v: number;
  node?: string;
  ts: string;
  skb: string;
  netns: number;
  kind: 'tc' | 'xdp';
  iface: string;
  ifindex: number;
  /** tc: the hook's direction. */
  direction?: 'ingress' | 'egress';
  program: { id: number; name: string; tag: string };
  /** The program's return value, and its name: 'TC_ACT_OK', 'TC_ACT_REDIRECT', 'XDP_PASS', 'XDP_TX', … */
  ret: number;
  verdict: string;
  /**
   * XDP on a buffer veth copied the packet into (native XDP on veth): the skb the kernel built the run's
   * skb from (skb_copy_header) and its data buffer. That skb was consumed there: the packet goes on as
   * this run's skb. Only when the run's skb is the one built.
   */
  from?: { skb: string; head: string };
}

/**
 * --on-drop: one caught drop (src/reading/drop-report.ts builds it). The
 * dropped packet's steps, and those of the last packet of its flow that got
 * through, compared in one sentence as `diff` compares them.
 */
export interface TraceDropReport {
  type: 'drop';
  v: number;
  /** 1-based, in the order reported. */
  n: number;
  /** Wall-clock time of the drop. */
  time: string;
  node?: string;
  /** The packet's addresses, protocol and destination port as it entered the trace; absent without an IP header. */
  flow?: { family: 4 | 6; proto: string; src: string; dst: string; dport?: number };
  bad: ReportedPath;
  /** The last packet of the flow that got through; absent when there was none. */
  good?: ReportedPath & {
    /** freed: its end was traced; quiet: not seen for a while, not dropped; in-flight: still going. */
    ended: string;
  };
  /**
   * The dropped packet's copies and clones (a raw socket's, a tap's, nft dup's): what its verdict reads
   * (a copy that got through makes its drop no failure, docs/reading-traces.md); absent when none.
   */
  copies?: (ReportedPath & {
    /** freed, quiet, in-flight as good's; dropped: the copy was dropped too. */
    ended: string;
  })[];
  /** The dropped packet's verdict (as `diff -o json` gives verdicts). */
  verdict: { kind: string; func?: string; reason?: string; step?: number };
  /** The difference in one sentence (or, alone, why it is alone). */
  sentence: string;
  /** What the helper had forgotten so far to stay within its bounds. */
  forgotten: { flows: number; packets: number; steps: number };
}

export interface ReportedPath {
  /** The packet's steps in order; when steps were forgotten, the ones after gapAfter are its last ones. */
  events: TraceEvent[];
  /** Steps not kept (a path longer than the helper keeps). */
  forgottenSteps: number;
  gapAfter?: number;
}

export type TraceLine = TraceEvent | TraceHeader | TraceStats | TraceCulprit | TraceProgRun | TraceDropReport;
