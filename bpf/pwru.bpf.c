// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The probe programs: one per position of the struct sk_buff * argument
 * (1..5) for each backend. Every program funnels into handle_skb(), which
 * applies the filters and writes one struct pwru_event to the ring buffer.
 *
 * The packet filter is not written here: pwru_pcap_filter() is a stub whose
 * body the helper replaces with the user's pcap expression compiled to eBPF
 * (helper/filter_translate.c, spliced in by helper/loader.c). It must stay the only noinline function so that
 * libbpf places it last in every program.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"
#include "kmulti.h"
#include "nf_verdict.h"
#include "prog_verdict.h"
#include "copy_link.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Read-only configuration, set by the helper before load (see helper/loader.c). */
const volatile __u32 cfg_netns = 0;
const volatile __u32 cfg_mark = 0;
const volatile __u32 cfg_mark_mask = 0;
/* --filter-ifname: the device's index in its namespace (pwru's way: a name alone matches every netns's eth0). */
const volatile __u32 cfg_ifindex = 0;
const volatile __u32 cfg_ifindex_netns = 0;
const volatile bool cfg_track_skb = false;
const volatile bool cfg_output_stack = false;
const volatile bool cfg_pcap_l3 = false; /* an L3 (DLT_RAW) filter was injected */
const volatile bool cfg_pcap_l2 = false; /* an L2 (DLT_EN10MB) filter was injected */
const volatile bool cfg_has_func_ip = false; /* bpf_get_func_ip() works for kprobes */
/* tp_btf may load through skb->dev directly (see DEV_READ): kernels 6.1 and later. */
const volatile bool cfg_direct_dev = false;
/*
 * tp_btf may load packet bytes directly from skb->head (see PKT_DIRECT):
 * kernels 6.17 and later; the helper's filter uses its direct form then.
 */
const volatile bool cfg_direct_pkt = false;
/*
 * Ring buffer notifications (see "Waking the reader" in ARCHITECTURE.md):
 * events are submitted without waking the reader, which polls with a short
 * timeout; the reader is woken early once cfg_wakeup_bytes are pending,
 * checked on every (cfg_wakeup_mask + 1)th event of a CPU. 0: wake on every
 * event as the kernel does by default.
 */
const volatile __u32 cfg_wakeup_bytes = 0;
const volatile __u32 cfg_wakeup_mask = 0;
/* --snaplen: bytes of a packet captured at its first step and where its headers changed; 0 = none. */
const volatile __u32 cfg_snaplen = 0;
/* --tunnel-filter: its forms for an inner IP packet (IP-in-IP, GRE) and an inner Ethernet frame (VXLAN, Geneve, gretap). */
const volatile bool cfg_tunnel_l3 = false;
const volatile bool cfg_tunnel_l2 = false;
/* The UDP ports that mean VXLAN (IANA's, and Linux's old default that flannel and Cilium use) and Geneve. */
const volatile __u16 cfg_vxlan_ports[2] = { 4789, 8472 };
const volatile __u16 cfg_geneve_port = 6081;
/* --bench-floor: every program returns at once (the cost of the attachment itself, for benchmarks). */
const volatile bool cfg_bench_floor = false;
/*
 * The value of NETFILTER_DROP, and whether the table walkers are probed
 * (bpf/nf_verdict.bpf.c, loaded by helper/nf_exact.c): then each
 * NETFILTER_DROP takes its own verdict from nf_last into nf_drops.
 */
const volatile bool cfg_nf_exact = false;
const volatile __u32 cfg_nf_drop_reason = 0;
/*
 * tc and XDP programs may be traced (bpf/prog_verdict.bpf.c, loaded by
 * helper/prog_exact.c): once prog_traced is set, each reported packet is
 * noted in prog_last, by which a program's run is known to be this packet's.
 */
const volatile bool cfg_prog_exact = false;
/*
 * The copy functions are probed (bpf/copy_link.bpf.c, loaded by
 * helper/copy_link.c): a copy's next reported step says what it was copied from.
 */
const volatile bool cfg_copy_link = false;
/* Set by the helper at a stop, before it writes the final STATS and END and detaches (attach.c). */
volatile bool pwru_stopped = false;
/*
 * Set by the helper once the first program is traced, which may be after the
 * trace began (a program loaded later, helper/prog_exact.c): until then, and
 * where the kernel refuses fexit on programs, nothing is noted.
 */
volatile bool prog_traced = false;

/* From the kernel's uapi (vmlinux_min.h declares only what it reads). */
#define RB_NO_WAKEUP 1	  /* BPF_RB_NO_WAKEUP */
#define RB_FORCE_WAKEUP 2 /* BPF_RB_FORCE_WAKEUP */
#define RB_AVAIL_DATA 0	  /* BPF_RB_AVAIL_DATA */

/* Marker the helper replaces with each tracepoint program's probe id. */
#define PROBE_ID_MARKER 0x7e57ab1e

/* The filter's forms (helper/filter_translate.h, enum pcap_mode). */
#define PCAP_MODE_L3 0
#define PCAP_MODE_L2 1
#define PCAP_MODE_TUNNEL_L3 2
#define PCAP_MODE_TUNNEL_L2 3

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the helper (--ringbuf-size) */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PWRU_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* skbs that matched once, followed regardless of later rewrites (--filter-track-skb). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 65536 with --filter-track-skb: preallocating it costs ~17 ms */
	__type(key, __u64);
	__type(value, __u8);
} tracked_skbs SEC(".maps");

/* What was last captured of an skb (--snaplen): a step whose tuple differs from it is captured again. */
struct capture_state {
	__u64 head;	/* skb->head: another buffer at the same skb address is another packet */
	__u64 saddr[2]; /* as in struct pwru_event */
	__u64 daddr[2];
	__u16 sport, dport;
	__u8 l3, l4;	/* l3 0: no tuple seen yet */
	__u8 captured;	/* bytes went out at least once */
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized with --snaplen */
	__type(key, __u64);
	__type(value, struct capture_state);
} captured_skbs SEC(".maps");

/* A NETFILTER_DROP's verdict by skb, for the helper to read with the drop's event (helper/nf_exact.c). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 4096 with cfg_nf_exact */
	__type(key, struct nf_drop_key);
	__type(value, struct nf_verdict);
} nf_drops SEC(".maps");

/* A drop's run, under the skb and the drop's time, for the helper to read with the drop's event (helper/prog_exact.c). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 4096 with cfg_prog_exact */
	__type(key, struct prog_noted_key);
	__type(value, struct prog_run);
} prog_noted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1); /* resized to 16384 when --output-stack is on */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 50 * sizeof(__u64));
} stacks SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);

	if (v)
		*v += 1;
}

/* count() that also says this CPU's new total (0 if the slot is missing). */
static __always_inline __u64 count_ret(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);

	if (!v)
		return 0;
	return ++*v;
}

/*
 * When this CPU first found the ring buffer full: the helper tells a loss
 * before its stop (a --max-events stop is an event from the past) from what
 * the kernel dropped after it.
 */
static __always_inline void note_first_loss(void)
{
	__u32 slot = PWRU_CNT_FIRST_LOST_TS;
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);

	if (v && !*v)
		*v = bpf_ktime_get_ns();
}

/*
 * ---- --max-rate: matching events per second for the whole node ----
 *
 * A budget per window shared by every CPU (the helper picks the window: one
 * second for small rates, 1/16 s above 16 events/s so that a second's budget
 * is not spent in its first instant). Plain loads and stores plus one
 * fetch-less atomic add, which every kernel from 5.10 verifies: CPUs racing
 * at a window's turn may let a few events more through, never fewer. What is
 * over the budget is counted (PWRU_CNT_RATE_SKIPPED), not written.
 */
const volatile __u64 cfg_rate_window_ns = 0; /* 0: no cap */
const volatile __u64 cfg_rate_budget = 0;    /* events per window */

struct rate_window {
	__u64 window; /* bpf_ktime_get_ns() / cfg_rate_window_ns */
	__u64 used;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_window);
} rate SEC(".maps");

static __always_inline bool rate_allows(void)
{
	__u32 zero = 0;
	struct rate_window *r;
	__u64 w;

	if (!cfg_rate_window_ns)
		return true;
	r = bpf_map_lookup_elem(&rate, &zero);
	if (!r)
		return true;
	w = bpf_ktime_get_ns() / cfg_rate_window_ns;
	if (r->window != w) {
		r->window = w;
		r->used = 0;
	}
	if (r->used >= cfg_rate_budget) {
		count(PWRU_CNT_RATE_SKIPPED);
		return false;
	}
	__sync_fetch_and_add(&r->used, 1);
	return true;
}

/*
 * Replaced by the helper with the compiled pcap expression. Returns non-zero
 * when the packet at [data, data + linear_len) matches. pkt_len is the whole
 * packet's length from the same header on (what the "len" keyword sees).
 * mode picks the L3 or the L2 form of the filter.
 */
static __noinline int pwru_pcap_filter(__u64 data, __u32 linear_len, __u32 pkt_len, __u32 mode)
{
	int match;

	/* Opaque to the compiler, so that callers keep the call and its result. */
	asm volatile("%0 = 1" : "=r"(match) : "r"(data), "r"(linear_len), "r"(pkt_len), "r"(mode));
	return match;
}

/*
 * Reads a field of the skb. tp_btf programs get a typed pointer and may load
 * directly (no helper call: this runs for every packet the filter rejects);
 * kprobe programs only have a number and must use probe reads. "direct" is a
 * constant in every program, so the other branch is compiled out.
 *
 * Pointers stored in the skb need care: skb->dev shares its storage with
 * dev_scratch (UDP keeps sizes there while the skb waits in a socket) and
 * skb->sk with ip_defrag_offset, so either can hold a value that is no
 * address. A direct load from such a value faults, and on 5.10 the fault
 * handling for BPF programs itself crashed the kernel (seen in the qemu kernel
 * matrix). Probe reads fail cleanly; skb->sk is always read that way.
 */
#define SKB_READ(direct, skb, field) ((direct) ? (skb)->field : BPF_CORE_READ(skb, field))

/*
 * Reads a field of the skb's device: directly where the kernel makes a load
 * from a non-address safe (6.1 and later: the JIT skips user-range addresses
 * and fixes up faults; the helper sets cfg_direct_dev), a few ns against the
 * tens of a probe read; probe reads elsewhere. Five of these per event.
 */
#define DEV_DIRECT(direct) ((direct) && cfg_direct_dev)
#define DEV_READ(direct, dev, field) (DEV_DIRECT(direct) ? (dev)->field : BPF_CORE_READ(dev, field))

/*
 * Whether this program may load packet bytes from skb->head directly: the
 * verifier of 6.17 and later types it as read-only untrusted memory, whose
 * loads are fault-checked like probe reads at the cost of a plain load.
 */
#define PKT_DIRECT(direct) ((direct) && cfg_direct_pkt)

/* ---- tunnels ---- */

/*
 * Where the packet's IP header starts, as an offset from skb->head; 0 when
 * it has none (ARP, or no header set yet). Early on receive only the
 * Ethernet header is set: the IP header follows it.
 */
static __always_inline __u32 ip_start(struct sk_buff *skb, bool direct, unsigned char *head, __u32 tail)
{
	__u16 nh = SKB_READ(direct, skb, network_header);
	__u16 mh = SKB_READ(direct, skb, mac_header);
	__u32 start;
	__u8 first;

	if (nh != 0 && nh != 0xffff && nh < tail) {
		start = nh;
	} else if (mh != 0xffff && (__u32)mh + 15 < tail) {
		__be16 type;

		if (bpf_probe_read_kernel(&type, sizeof(type), head + mh + 12) ||
		    (type != bpf_htons(0x0800) && type != bpf_htons(0x86dd)))
			return 0;
		start = mh + 14;
	} else {
		return 0;
	}
	if (bpf_probe_read_kernel(&first, 1, head + start) || ((first >> 4) != 4 && (first >> 4) != 6))
		return 0;
	return start;
}

/*
 * The inner packet of a tunnel whose outer IP header is at ip: where it
 * starts (an offset from skb->head) and the filter form it takes
 * (PCAP_MODE_TUNNEL_L3 for an IP packet, _L2 for an Ethernet frame). t, if
 * given, gets the kind and the VNI or key. False when the packet is no tunnel
 * this knows.
 */
static __always_inline bool tunnel_inner(unsigned char *head, __u32 ip, __u32 tail, __u32 *inner, __u32 *mode,
					 struct pwru_tunnel *t)
{
	__u8 hdr[40];
	__u8 proto, kind;
	__u32 l4, off, vni = 0;
	__u16 ptype;

	if (bpf_probe_read_kernel(hdr, sizeof(hdr), head + ip))
		return false;
	if ((hdr[0] >> 4) == 4) {
		if (((hdr[6] & 0x1f) << 8 | hdr[7]) != 0)
			return false; /* a later fragment: no headers */
		proto = hdr[9];
		l4 = ip + (hdr[0] & 0xf) * 4;
	} else if ((hdr[0] >> 4) == 6) {
		proto = hdr[6];
		l4 = ip + 40;
	} else {
		return false;
	}
	if (proto == 4 || proto == 41) { /* IPv4 or IPv6 in IP */
		kind = PWRU_TUNNEL_IPIP;
		off = l4;
		ptype = 0x0800;
	} else if (proto == 17) {
		__u8 u[16]; /* UDP, then VXLAN's or Geneve's first 8 bytes */
		__u16 dport;

		if (bpf_probe_read_kernel(u, sizeof(u), head + l4))
			return false;
		dport = u[2] << 8 | u[3];
		vni = u[12] << 16 | u[13] << 8 | u[14];
		if ((dport == cfg_vxlan_ports[0] || dport == cfg_vxlan_ports[1]) && (u[8] & 0x08)) {
			kind = PWRU_TUNNEL_VXLAN;
			off = l4 + 16;
			ptype = 0x6558;
		} else if (dport == cfg_geneve_port && (u[8] >> 6) == 0) {
			kind = PWRU_TUNNEL_GENEVE;
			off = l4 + 16 + (u[8] & 0x3f) * 4;
			ptype = u[10] << 8 | u[11];
		} else {
			return false;
		}
	} else if (proto == 47) {
		__u8 g[12]; /* flags, version, protocol; then checksum, key, sequence as the flags say */
		__u32 key_at = 4;

		if (bpf_probe_read_kernel(g, sizeof(g), head + l4) || (g[1] & 0x07))
			return false;
		kind = PWRU_TUNNEL_GRE;
		ptype = g[2] << 8 | g[3];
		if (g[0] & 0x80)
			key_at = 8;
		if (g[0] & 0x20)
			vni = key_at == 4 ? (g[4] << 24 | g[5] << 16 | g[6] << 8 | g[7])
					  : (g[8] << 24 | g[9] << 16 | g[10] << 8 | g[11]);
		off = l4 + 4 + ((g[0] & 0x80) ? 4 : 0) + ((g[0] & 0x20) ? 4 : 0) + ((g[0] & 0x10) ? 4 : 0);
	} else {
		return false;
	}
	if (ptype == 0x6558)
		*mode = PCAP_MODE_TUNNEL_L2; /* transparent Ethernet bridging */
	else if (ptype == 0x0800 || ptype == 0x86dd)
		*mode = PCAP_MODE_TUNNEL_L3;
	else
		return false;
	if (off >= tail)
		return false;
	*inner = off;
	if (t) {
		t->kind = kind;
		t->vni = vni;
	}
	return true;
}

/* Whether the --tunnel-filter matches the packet's inner packet. */
static __always_inline bool match_inner(struct sk_buff *skb, bool direct, unsigned char *head, __u32 tail,
					__u32 pkt_end)
{
	__u32 ip = ip_start(skb, direct, head, tail), inner, mode;

	if (!ip || !tunnel_inner(head, ip, tail, &inner, &mode, NULL))
		return false;
	if (mode == PCAP_MODE_TUNNEL_L3 ? !cfg_tunnel_l3 : !cfg_tunnel_l2)
		return false;
	return pwru_pcap_filter((__u64)(head + inner), tail - inner, pkt_end - inner, mode) != 0;
}

/*
 * The inner packet's tuple into t (kind and VNI already there): l3 stays 0
 * when the inner packet is not IP.
 */
static __always_inline void inner_tuple(unsigned char *head, __u32 inner, __u32 mode, __u32 tail,
					struct pwru_tunnel *t)
{
	__u8 hdr[40];
	__u32 ip = inner, l4;

	if (mode == PCAP_MODE_TUNNEL_L2) {
		__u8 eth[18];

		if (bpf_probe_read_kernel(eth, sizeof(eth), head + inner))
			return;
		ip = inner + 14;
		if (eth[12] == 0x81 && eth[13] == 0x00) { /* one VLAN tag */
			ip += 4;
			eth[12] = eth[16];
			eth[13] = eth[17];
		}
		if (!(eth[12] == 0x08 && eth[13] == 0x00) && !(eth[12] == 0x86 && eth[13] == 0xdd))
			return;
	}
	if (ip >= tail || bpf_probe_read_kernel(hdr, sizeof(hdr), head + ip))
		return;
	if ((hdr[0] >> 4) == 4) {
		t->l3 = 4;
		t->l4 = hdr[9];
		__builtin_memcpy(t->saddr, &hdr[12], 4);
		__builtin_memcpy(t->daddr, &hdr[16], 4);
		l4 = ip + (hdr[0] & 0xf) * 4;
		if (((hdr[6] & 0x1f) << 8 | hdr[7]) != 0)
			return;
	} else if ((hdr[0] >> 4) == 6) {
		t->l3 = 6;
		t->l4 = hdr[6];
		__builtin_memcpy(t->saddr, &hdr[8], 16);
		__builtin_memcpy(t->daddr, &hdr[24], 16);
		l4 = ip + 40;
	} else {
		return;
	}
	if (t->l4 == 6 || t->l4 == 17) {
		__u8 ports[4];

		if (l4 + 4 <= tail && !bpf_probe_read_kernel(ports, sizeof(ports), head + l4)) {
			t->sport = ports[0] << 8 | ports[1];
			t->dport = ports[2] << 8 | ports[3];
		}
	}
}

/* Whether the event's packet is a tunnel (by its outer tuple): then t describes its inner packet. */
static __always_inline bool tunnel_of(const struct pwru_event *ev, unsigned char *head, __u32 nh, __u32 tail,
				      struct pwru_tunnel *t)
{
	__u32 inner, mode;

	if (!(ev->flags & PWRU_F_HAS_TUPLE))
		return false;
	if (ev->l4 != 4 && ev->l4 != 41 && ev->l4 != 47 &&
	    !(ev->l4 == 17 && (ev->dport == cfg_vxlan_ports[0] || ev->dport == cfg_vxlan_ports[1] ||
			       ev->dport == cfg_geneve_port)))
		return false;
	if (!tunnel_inner(head, nh, tail, &inner, &mode, t))
		return false;
	t->ts = ev->ts;
	t->skb = ev->skb;
	inner_tuple(head, inner, mode, tail, t);
	return true;
}

/* The pcap filter on the packet, or the --tunnel-filter on its inner packet: either matching is a match. */
static __always_inline bool match_pcap(struct sk_buff *skb, bool direct)
{
	if (!cfg_pcap_l3 && !cfg_pcap_l2 && !cfg_tunnel_l3 && !cfg_tunnel_l2)
		return true;

	unsigned char *head = SKB_READ(direct, skb, head);
	__u16 nh = SKB_READ(direct, skb, network_header);
	__u16 mh = SKB_READ(direct, skb, mac_header);
	__u32 tail = SKB_READ(direct, skb, tail);
	__u32 len = SKB_READ(direct, skb, len);
	__u32 data_off = SKB_READ(direct, skb, data) - head;
	__be16 proto = SKB_READ(direct, skb, protocol);
	/*
	 * The raw form reads an IP header: a packet known to be something else
	 * (ARP...) is matched by the Ethernet form, or "(udp and …) or arp" would
	 * never see its ARP. 0 is an IP packet the stack has not labelled yet
	 * (locally sent, before ip_output).
	 */
	bool ip_like = proto == 0 || proto == bpf_htons(0x0800) || proto == bpf_htons(0x86dd) ||
		       proto == bpf_htons(0x8100) || proto == bpf_htons(0x88a8);

	/* The link header of a packet being sent exists before mac_header says so (set at dev_queue_xmit). */
	if (mh == 0xffff && nh != 0xffff && data_off + 14 == nh)
		mh = nh - 14;
	/* Prefer L3: on transmit the Ethernet header is not built until late. */
	if (cfg_pcap_l3 && ip_like && nh != 0 && nh != 0xffff && nh < tail) {
		if (pwru_pcap_filter((__u64)(head + nh), tail - nh, len + data_off - nh, PCAP_MODE_L3))
			return true;
	} else if (cfg_pcap_l2 && mh != 0xffff && mh < tail) {
		if (pwru_pcap_filter((__u64)(head + mh), tail - mh, len + data_off - mh, PCAP_MODE_L2))
			return true;
	}
	return (cfg_tunnel_l3 || cfg_tunnel_l2) && match_inner(skb, direct, head, tail, len + data_off);
}

static __always_inline __u32 skb_netns(struct sk_buff *skb, struct net_device *dev, bool direct)
{
	struct sock *sk;

	if (dev && DEV_DIRECT(direct))
		return dev->nd_net.net->ns.inum;
	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	/*
	 * Only when the skb has no device yet: a probe read even for tp_btf, because
	 * a direct load of a socket pointer from the skb costs each program load
	 * ~1 ms in the verifier (it searches the kernel's BTF for trust annotations).
	 */
	sk = BPF_CORE_READ(skb, sk);
	return sk ? BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) : 0;
}

static __always_inline bool match_meta(struct sk_buff *skb, bool direct)
{
	if (cfg_netns && skb_netns(skb, SKB_READ(direct, skb, dev), direct) != cfg_netns)
		return false;
	if (cfg_mark_mask && (SKB_READ(direct, skb, mark) & cfg_mark_mask) != cfg_mark)
		return false;
	if (cfg_ifindex) {
		struct net_device *dev = SKB_READ(direct, skb, dev);

		if (!dev || (__u32)DEV_READ(direct, dev, ifindex) != cfg_ifindex ||
		    skb_netns(skb, dev, direct) != cfg_ifindex_netns)
			return false;
	}
	return true;
}

struct wire_iphdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct wire_ipv6hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/*
 * The headers at the network header, read in one go: an IPv6 header or an
 * option-less IPv4 header with the 14 bytes of TCP that are reported. The
 * read cannot fail while nh < tail (skb_shared_info follows the data area);
 * if it does, the headers are read one at a time as before.
 */
#define HDRS_READ 56

/* Reads the IP and L4 headers the packet has at its network header, if set. */
static __always_inline void fill_tuple(struct pwru_event *ev, struct sk_buff *skb, bool direct)
{
	unsigned char *head = SKB_READ(direct, skb, head);
	__u16 nh = SKB_READ(direct, skb, network_header);
	__u32 tail = SKB_READ(direct, skb, tail);
	__u8 hdrs[HDRS_READ] __attribute__((aligned(8)));
	__u32 have = HDRS_READ; /* bytes of hdrs that were read */
	__u32 l4_off;
	__u8 first;

	if (nh == 0 || nh == 0xffff || nh >= tail)
		return;
	if (PKT_DIRECT(direct)) {
		/* Eight bytes a load (unaligned loads are fine where the kernel allows these). */
#pragma unroll
		for (int i = 0; i < HDRS_READ / 8; i++)
			((__u64 *)hdrs)[i] = ((const __u64 *)(head + nh))[i];
	} else if (bpf_probe_read_kernel(hdrs, sizeof(hdrs), head + nh)) {
		have = 0;
		if (bpf_probe_read_kernel(hdrs, 1, head + nh))
			return;
	}
	first = hdrs[0];
	if ((first >> 4) == 4) {
		struct wire_iphdr ip;

		if (have) {
			__builtin_memcpy(&ip, hdrs, sizeof(ip));
		} else if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh)) {
			return;
		}
		ev->l3 = 4;
		ev->l4 = ip.protocol;
		ev->ip_id = bpf_ntohs(ip.id);
		__builtin_memcpy(ev->saddr, &ip.saddr, 4);
		__builtin_memcpy(ev->daddr, &ip.daddr, 4);
		l4_off = nh + (ip.ver_ihl & 0xf) * 4;
		/* Later fragments carry no L4 header. */
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			goto done;
		/* The L4 header is in hdrs only without IP options (a constant offset). */
		if ((ip.ver_ihl & 0xf) != 5)
			have = 0;
	} else if ((first >> 4) == 6) {
		struct wire_ipv6hdr ip6;

		if (have) {
			__builtin_memcpy(&ip6, hdrs, sizeof(ip6));
		} else if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh)) {
			return;
		}
		ev->l3 = 6;
		ev->l4 = ip6.nexthdr;
		__builtin_memcpy(ev->saddr, ip6.saddr, 16);
		__builtin_memcpy(ev->daddr, ip6.daddr, 16);
		l4_off = nh + sizeof(ip6);
	} else {
		return;
	}
	if (l4_off + 4 > tail)
		goto done;
	/* In hdrs, the L4 header follows the fixed IP header. */
	if (ev->l4 == 6 /* TCP */) {
		__u8 tcp[14];

		if (have)
			__builtin_memcpy(tcp, &hdrs[ev->l3 == 4 ? 20 : 40], sizeof(tcp));
		if (have || !bpf_probe_read_kernel(tcp, sizeof(tcp), head + l4_off)) {
			ev->sport = (tcp[0] << 8) | tcp[1];
			ev->dport = (tcp[2] << 8) | tcp[3];
			ev->tcp_flags = tcp[13];
			ev->tcp_seq = ((__u32)tcp[4] << 24) | ((__u32)tcp[5] << 16) | ((__u32)tcp[6] << 8) | tcp[7];
		}
	} else if (ev->l4 == 17 /* UDP */) {
		__u8 udp[4];

		if (have)
			__builtin_memcpy(udp, &hdrs[ev->l3 == 4 ? 20 : 40], sizeof(udp));
		if (have || !bpf_probe_read_kernel(udp, sizeof(udp), head + l4_off)) {
			ev->sport = (udp[0] << 8) | udp[1];
			ev->dport = (udp[2] << 8) | udp[3];
		}
	} else if (ev->l4 == 1 /* ICMP */ || ev->l4 == 58 /* ICMPv6 */) {
		__u8 icmp[2];

		if (have)
			__builtin_memcpy(icmp, &hdrs[ev->l3 == 4 ? 20 : 40], sizeof(icmp));
		if (have || !bpf_probe_read_kernel(icmp, sizeof(icmp), head + l4_off)) {
			ev->icmp_type = icmp[0];
			ev->icmp_code = icmp[1];
		}
	}
done:
	ev->flags |= PWRU_F_HAS_TUPLE;
}

/*
 * The data buffer and how many skbs hold it: clones share it (a raw socket's
 * copy of an echo reply), so the client can link them and tell a freed
 * original from the last living copy. A probe read: the shared info sits
 * past the data, at skb->head + skb->end.
 */
static __always_inline void fill_data(struct pwru_event *ev, struct sk_buff *skb, bool direct)
{
	unsigned char *head = SKB_READ(direct, skb, head);
	struct skb_shared_info *shinfo;
	int refs;

	ev->head = (__u64)head;
	if (!head)
		return;
	shinfo = (struct skb_shared_info *)(head + SKB_READ(direct, skb, end));
	refs = BPF_CORE_READ(shinfo, dataref.counter) & 0xffff; /* the high half counts payload-only holders */
	ev->dataref = refs > 255 ? 255 : refs;
}

struct probe_hit {
	__u64 ts; /* the event's time when the caller took it already (0: handle_skb takes it) */
	__u64 addr;
	__u64 caller;
	__u32 probe_id;
	__u32 drop_reason;
	__u8 flags;
};

/* Where a program's probe_hit comes from; a constant in every program. */
enum hit_kind {
	HIT_TP,	    /* tp_btf: the caller fills the hit; the skb is read directly */
	HIT_KPROBE, /* kprobe: address and caller from the registers, after the filter */
	HIT_KMULTI, /* kprobe-multi: the caller likewise; the address and the probe id filled by the program */
};

/* The kprobe'd function's return address. */
static __always_inline __u64 kprobe_caller(struct pt_regs *ctx)
{
	__u64 ret = 0;

#if defined(__TARGET_ARCH_x86)
	bpf_probe_read_kernel(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx));
#elif defined(__TARGET_ARCH_arm64)
	ret = ctx->regs[30];
#endif
	return ret;
}

/* The flags for bpf_ringbuf_submit(): see cfg_wakeup_bytes. */
static __always_inline __u64 wakeup_flags(__u64 emitted)
{
	if (!cfg_wakeup_bytes)
		return 0;
	if ((emitted & cfg_wakeup_mask) == 0 && bpf_ringbuf_query(&events, RB_AVAIL_DATA) >= cfg_wakeup_bytes)
		return RB_FORCE_WAKEUP;
	return RB_NO_WAKEUP;
}

/* ---- packet bytes (--snaplen) ---- */

static __always_inline bool same_tuple(const struct capture_state *a, const struct capture_state *b)
{
	return a->l3 == b->l3 && a->l4 == b->l4 && a->sport == b->sport && a->dport == b->dport &&
	       a->saddr[0] == b->saddr[0] && a->saddr[1] == b->saddr[1] && a->daddr[0] == b->daddr[0] &&
	       a->daddr[1] == b->daddr[1];
}

/*
 * Whether this step's bytes are captured (PWRU_CAPTURE_*, 0: not). *now is
 * what the map is to remember of the skb, and *remember whether it differs
 * from what the map holds.
 */
static __always_inline __u32 capture_why(const struct pwru_event *ev, __u64 head, struct capture_state *now,
					 bool *remember)
{
	struct capture_state *st = bpf_map_lookup_elem(&captured_skbs, &ev->skb);

	now->head = head;
	if (ev->flags & PWRU_F_HAS_TUPLE) {
		__builtin_memcpy(now->saddr, ev->saddr, sizeof(now->saddr));
		__builtin_memcpy(now->daddr, ev->daddr, sizeof(now->daddr));
		now->sport = ev->sport;
		now->dport = ev->dport;
		now->l3 = ev->l3;
		now->l4 = ev->l4;
	}
	*remember = true;
	if (!st || st->head != head || !st->captured)
		return PWRU_CAPTURE_FIRST;
	now->captured = 1;
	if (now->l3 && !st->l3)
		return 0; /* the tuple's first sight (no IP header was set before): no change */
	if (!now->l3 || same_tuple(st, now)) {
		*remember = false;
		return 0;
	}
	return PWRU_CAPTURE_CHANGED;
}

/* The packet's bytes after the header pkt; false when they cannot be read. */
static __always_inline bool put_bytes(struct pwru_packet *pkt, const struct pwru_event *ev, struct sk_buff *skb,
				      bool direct, unsigned char *head, __u32 tail, __u32 start, __u32 why)
{
	__u64 cap = (__u64)tail - start; /* 64 bits: the verifier bounds the very register passed to the read */

	if (cap > cfg_snaplen)
		cap = cfg_snaplen;
	if (bpf_probe_read_kernel(pkt + 1, cap, head + start))
		return false;
	pkt->ts = ev->ts;
	pkt->skb = ev->skb;
	pkt->orig_len = SKB_READ(direct, skb, len) + (__u32)(SKB_READ(direct, skb, data) - head) - start;
	pkt->cap_len = (__u32)cap;
	pkt->why = why;
	pkt->pad = 0;
	return true;
}

/*
 * The record to submit for the event in ev: ev itself, or a bigger record
 * that takes its place (ev discarded) when a struct pwru_tunnel (the packet
 * is a tunnel) or a struct pwru_packet and the bytes (a step to capture,
 * --snaplen) follow it (bpf/event.h). The sizes are constants for the verifier.
 */
static __always_inline void *with_extensions(struct pwru_event *ev, struct sk_buff *skb, bool direct)
{
	unsigned char *head = SKB_READ(direct, skb, head);
	__u32 tail = SKB_READ(direct, skb, tail);
	__u16 nh = SKB_READ(direct, skb, network_header);
	struct capture_state now = {};
	struct pwru_tunnel tun;
	bool remember = false, has_tun, bytes = false;
	__u32 why = 0, start = 0;
	__u8 *rec = NULL;

	/*
	 * Zeroed on every path, before anything may set it: verifiers before
	 * 5.12 refuse a read of stack the program never wrote, and the compiler
	 * keeps fields of tun in stack slots it may read on paths that do not use them.
	 */
	__builtin_memset(&tun, 0, sizeof(tun));
	has_tun = tunnel_of(ev, head, nh, tail, &tun);
	if (cfg_snaplen) {
		why = capture_why(ev, (__u64)head, &now, &remember);
		if (why)
			start = ip_start(skb, direct, head, tail);
	}
	if (start && has_tun) {
		rec = bpf_ringbuf_reserve(&events, sizeof(*ev) + sizeof(tun) + sizeof(struct pwru_packet) + cfg_snaplen, 0);
		if (rec)
			bytes = put_bytes((struct pwru_packet *)(rec + sizeof(*ev) + sizeof(tun)), ev, skb, direct, head,
					  tail, start, why);
	} else if (start) {
		rec = bpf_ringbuf_reserve(&events, sizeof(*ev) + sizeof(struct pwru_packet) + cfg_snaplen, 0);
		if (rec)
			bytes = put_bytes((struct pwru_packet *)(rec + sizeof(*ev)), ev, skb, direct, head, tail, start,
					  why);
	} else if (has_tun) {
		rec = bpf_ringbuf_reserve(&events, sizeof(*ev) + sizeof(tun), 0);
	}
	if (start && !rec)
		count(PWRU_CNT_BYTES_LOST);
	if (bytes)
		now.captured = 1;
	if (cfg_snaplen) {
		/* A freed skb's address is soon another packet's. */
		if (ev->flags & PWRU_F_FREED)
			bpf_map_delete_elem(&captured_skbs, &ev->skb);
		else if (remember)
			bpf_map_update_elem(&captured_skbs, &ev->skb, &now, BPF_ANY);
	}
	if (!rec)
		return ev;
	if (has_tun) {
		ev->flags |= PWRU_F_TUNNEL;
		__builtin_memcpy(rec + sizeof(*ev), &tun, sizeof(tun));
	}
	__builtin_memcpy(rec, ev, sizeof(*ev));
	bpf_ringbuf_discard(ev, RB_NO_WAKEUP);
	return rec;
}

/*
 * If skb is a copy not reported since it was made, a struct pwru_copy record
 * just before its event (same ts and skb): what it was copied from. A note
 * whose data buffer is not this skb's was left by a copy never reported.
 */
static __always_inline void report_copy(struct sk_buff *skb, __u64 key, __u64 ts)
{
	struct copy_origin *o = bpf_map_lookup_elem(&copy_origins, &key);
	struct pwru_copy *c = NULL;

	if (!o)
		return;
	if (o->copy_head == (__u64)BPF_CORE_READ(skb, head))
		c = bpf_ringbuf_reserve(&events, sizeof(*c), 0);
	if (c) {
		c->ts = ts;
		c->skb = key;
		c->orig_skb = o->skb;
		c->orig_head = o->head;
		bpf_ringbuf_submit(c, RB_NO_WAKEUP);
	}
	bpf_map_delete_elem(&copy_origins, &key);
}

/*
 * An XDP run waiting under this skb's data buffer (prog_pending, see
 * bpf/prog_verdict.h): this skb's, when reported on the run's CPU soon after
 * it with its MAC header where the program left the frame, and the frame's
 * first bytes as the program left them; sent as a run on
 * this skb at this step's time (the run came just before it). Taken out
 * either way: the buffer is soon another packet's.
 */
static __always_inline void prog_pending_take(struct sk_buff *skb, const struct pwru_event *ev, bool direct)
{
	__u64 head = ev->head, frame[PROG_FRAME_BYTES / 8];
	struct prog_pending_run *p = bpf_map_lookup_elem(&prog_pending, &head);
	const __u64 *want;
	struct prog_run *out;
	bool same;

	if (!p)
		return;
	same = p->run.cpu == ev->cpu && ev->ts >= p->run.ts && ev->ts - p->run.ts <= PROG_PENDING_NS &&
	       SKB_READ(direct, skb, mac_header) == p->run.data_off &&
	       bpf_probe_read_kernel(frame, sizeof(frame), (void *)(head + p->run.data_off)) == 0;
	want = (const __u64 *)p->frame;
	for (int i = 0; same && i < PROG_FRAME_BYTES / 8; i++)
		same = frame[i] == want[i];
	if (same && (out = bpf_ringbuf_reserve(&prog_runs, sizeof(*out), 0))) {
		__builtin_memcpy(out, &p->run, sizeof(*out));
		out->skb = ev->skb;
		out->ts = ev->ts;
		/* What the packet was before: only when this skb is the one the kernel built from it. */
		if (p->built_skb != ev->skb)
			out->from_skb = out->from_head = 0;
		bpf_ringbuf_submit(out, 0);
	}
	bpf_map_delete_elem(&prog_pending, &head);
}

static __always_inline int handle_skb(void *ctx, struct sk_buff *skb, struct probe_hit *hit, enum hit_kind kind)
{
	bool direct = kind == HIT_TP;
	__u64 key = (__u64)skb;
	bool tracked = false;
	struct pwru_event *ev;
	struct net_device *dev;

	if (cfg_bench_floor || pwru_stopped || !skb)
		return 0;
	count(PWRU_CNT_SEEN);
	if (cfg_track_skb && bpf_map_lookup_elem(&tracked_skbs, &key))
		tracked = true;
	if (!tracked) {
		if (!match_meta(skb, direct) || !match_pcap(skb, direct))
			return 0;
		if (cfg_track_skb && !(hit->flags & PWRU_F_FREED)) {
			__u8 one = 1;

			bpf_map_update_elem(&tracked_skbs, &key, &one, BPF_ANY);
		}
	}
	/* A freed skb's address is soon reused by an unrelated packet. */
	if (tracked && (hit->flags & PWRU_F_FREED))
		bpf_map_delete_elem(&tracked_skbs, &key);
	if (!rate_allows())
		return 0;
	if (!hit->ts)
		hit->ts = bpf_ktime_get_ns();
	if (cfg_copy_link)
		report_copy(skb, key, hit->ts);

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(PWRU_CNT_LOST);
		note_first_loss();
		return 0;
	}
	/* Only now, for a packet that is reported: kprobe_caller() is a probe read. */
	if (kind == HIT_KPROBE) {
		hit->addr = cfg_has_func_ip ? bpf_get_func_ip(ctx) : PT_REGS_IP((struct pt_regs *)ctx);
		hit->caller = kprobe_caller(ctx);
	} else if (kind == HIT_KMULTI) {
		hit->caller = kprobe_caller(ctx);
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts = hit->ts;
	ev->skb = key;
	ev->addr = hit->addr;
	ev->caller = hit->caller;
	ev->probe_id = hit->probe_id;
	ev->drop_reason = hit->drop_reason;
	ev->flags = hit->flags | (tracked ? PWRU_F_TRACKED : 0);
	ev->cpu = bpf_get_smp_processor_id();
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->mark = SKB_READ(direct, skb, mark);
	ev->len = SKB_READ(direct, skb, len);
	ev->protocol = bpf_ntohs(SKB_READ(direct, skb, protocol));
	ev->pkt_type = direct ? BPF_CORE_READ_BITFIELD(skb, pkt_type) : BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	dev = SKB_READ(direct, skb, dev);
	ev->netns = skb_netns(skb, dev, direct);
	if (dev) {
		ev->ifindex = DEV_READ(direct, dev, ifindex);
		ev->mtu = DEV_READ(direct, dev, mtu);
		/* The copy takes all 16 bytes, the probe read stops at the NUL: readers stop there too. */
		if (DEV_DIRECT(direct))
			__builtin_memcpy(ev->ifname, dev->name, sizeof(ev->ifname));
		else
			BPF_CORE_READ_STR_INTO(&ev->ifname, dev, name);
	}
	fill_tuple(ev, skb, direct);
	fill_data(ev, skb, direct);
	if (cfg_prog_exact && prog_traced) {
		__u32 zero = 0;
		struct prog_seen *seen = bpf_map_lookup_elem(&prog_last, &zero);

		if (seen) {
			seen->skb = key;
			seen->head = ev->head;
			seen->ts = hit->ts;
		}
		prog_pending_take(skb, ev, direct);
	}
	ev->stack_id = cfg_output_stack ? bpf_get_stackid(ctx, &stacks, 0) : -1;
	bpf_ringbuf_submit(with_extensions(ev, skb, direct), wakeup_flags(count_ret(PWRU_CNT_EMITTED)));
	return 0;
}

/* ---- kprobe backend: one link per function, address from the registers ---- */

#define KPROBE_SKB(N)                                                          \
	SEC("kprobe")                                                          \
	int kprobe_skb_##N(struct pt_regs *ctx)                                \
	{                                                                      \
		struct probe_hit hit = {};                                     \
		return handle_skb(ctx, (struct sk_buff *)PT_REGS_PARM##N(ctx), &hit, HIT_KPROBE); \
	}

KPROBE_SKB(1)
KPROBE_SKB(2)
KPROBE_SKB(3)
KPROBE_SKB(4)
KPROBE_SKB(5)

/*
 * ---- kprobe-multi backend: one program and one link for every function ----
 * One program to verify and one link to attach and detach, where one per skb
 * position cost the kernel a verification, an ftrace update and, on detach,
 * an RCU tasks grace period each. Each function's skb position and probe id
 * are found by the address the kernel reports it by (bpf_get_func_ip(), the
 * function's start): the helper attaches by ftrace's own addresses, which it
 * reads with the list of traceable functions where the kernel lists them
 * (available_filter_functions_addrs, 6.5+), and ftrace's address is 4 bytes
 * past the start when the function begins with endbr64 (IBT), which only the
 * kernel text shows. The helper enters each function under both, so no
 * symbol table is needed before tracing (a cookie is found by the address
 * attached, so it cannot serve).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* sized by the helper: two entries a function */
	__type(key, __u64);
	__type(value, struct kmulti_func);
} kmulti_funcs SEC(".maps");

SEC("kprobe.multi")
int kmulti_skb_pos(struct pt_regs *ctx)
{
	/*
	 * Every argument register is read, at its fixed offset, and one chosen:
	 * the verifier refuses a context load at an offset chosen at run time,
	 * which is what the compiler makes of a switch over the loads.
	 */
#define ARG(n) (*(volatile unsigned long *)&PT_REGS_PARM##n(ctx))
	unsigned long a1 = ARG(1), a2 = ARG(2), a3 = ARG(3), a4 = ARG(4), a5 = ARG(5);
#undef ARG
	__u64 ip = bpf_get_func_ip(ctx);
	struct kmulti_func *f = bpf_map_lookup_elem(&kmulti_funcs, &ip);
	struct probe_hit hit = { .addr = ip };
	unsigned long skb;
	__u32 pos;

	if (!f)
		return 0;
	pos = f->skb_pos;
	hit.probe_id = f->probe_id;
	skb = pos == 1 ? a1 : pos == 2 ? a2 : pos == 3 ? a3 : pos == 4 ? a4 : a5;
	return handle_skb(ctx, (struct sk_buff *)skb, &hit, HIT_KMULTI);
}

/* ---- tracepoint backend: tp_btf, one loaded copy per tracepoint ---- */

static __always_inline __u32 probe_id_marker(void)
{
	__u32 id;

	/* A mov the helper finds and rewrites with this copy's probe id. */
	asm volatile("%0 = %1" : "=r"(id) : "i"(PROBE_ID_MARKER));
	return id;
}

#define TP_SKB(N)                                                              \
	SEC("tp_btf")                                                          \
	int tp_skb_##N(__u64 *ctx)                                             \
	{                                                                      \
		struct probe_hit hit = { .probe_id = probe_id_marker() };      \
		return handle_skb(ctx, (struct sk_buff *)ctx[N - 1], &hit, HIT_TP); \
	}

TP_SKB(1)
TP_SKB(2)
TP_SKB(3)
TP_SKB(4)
TP_SKB(5)

/* skb:consume_skb(skb): freed after normal use, not dropped. */
SEC("tp_btf")
int tp_consume_skb(__u64 *ctx)
{
	struct probe_hit hit = { .probe_id = probe_id_marker(), .flags = PWRU_F_FREED };

	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, HIT_TP);
}

/* skb:consume_skb(skb, location) on 6.3+: also says who freed it (e.g. the socket that read it). */
SEC("tp_btf")
int tp_consume_skb_location(__u64 *ctx)
{
	struct probe_hit hit = { .probe_id = probe_id_marker(), .caller = ctx[1], .flags = PWRU_F_FREED };

	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, HIT_TP);
}

/*
 * A NETFILTER_DROP: made inside an nft_do_chain call for this skb (6.x frees
 * it there), that call's table and chain; else the last table traversal on
 * this CPU, when it returned NF_DROP for this skb (nf_hook_slow frees it
 * right after). What it said, or that neither was this skb's, goes to
 * nf_drops under the skb and the drop's time, which its event then carries:
 * the helper matches the two exactly.
 */
static __always_inline void nf_drop_note(__u64 skb, __u64 ts)
{
	struct nf_drop_key key = { .skb = skb, .ts = ts };
	__u32 zero = 0;
	struct nf_inside *in = bpf_map_lookup_elem(&nf_inside, &zero);
	struct nf_verdict *v;

	if (in) {
		__u32 d = in->depth;

#pragma unroll
		for (int i = PWRU_NF_INSIDE_MAX - 1; i >= 0; i--) {
			if ((__u32)i < d && in->e[i].skb == skb) {
				in->e[i].known = 1;
				in->e[i].drop_ts = ts;
				bpf_map_update_elem(&nf_drops, &key, &in->e[i], BPF_ANY);
				return;
			}
		}
	}
	v = bpf_map_lookup_elem(&nf_last, &zero);
	if (!v)
		return;
	v->known = v->skb == skb && v->dropped;
	v->skb = skb;
	v->drop_ts = ts;
	bpf_map_update_elem(&nf_drops, &key, v, BPF_ANY);
	v->skb = 0;
	v->dropped = 0;
}

/*
 * A drop that a tc or XDP program returned for this skb (by its address) or
 * its buffer (XDP: by its head, which data_hard_start was): that run goes to
 * prog_noted under the skb and the drop's time, and is taken out of
 * prog_drops (a later packet at the same address is another one's).
 */
static __always_inline void prog_drop_note(struct sk_buff *skb, __u64 ts)
{
	struct prog_drop_key tc = { .id = (__u64)skb, .kind = PWRU_PROG_TC };
	struct prog_drop_key xdp = { .id = (__u64)BPF_CORE_READ(skb, head), .kind = PWRU_PROG_XDP };
	struct prog_noted_key key = { .skb = (__u64)skb, .ts = ts };
	struct prog_run *r = bpf_map_lookup_elem(&prog_drops, &tc);

	if (r && r->head == xdp.id) {
		bpf_map_update_elem(&prog_noted, &key, r, BPF_ANY);
		bpf_map_delete_elem(&prog_drops, &tc);
		return;
	}
	if ((r = bpf_map_lookup_elem(&prog_drops, &xdp))) {
		bpf_map_update_elem(&prog_noted, &key, r, BPF_ANY);
		bpf_map_delete_elem(&prog_drops, &xdp);
	}
}

/* skb:kfree_skb(skb, location, reason[, rx_sk]): kernels 5.17+ say why. */
SEC("tp_btf")
int tp_kfree_skb_reason(__u64 *ctx)
{
	struct probe_hit hit = {
		.probe_id = probe_id_marker(),
		.caller = ctx[1],
		.drop_reason = (__u32)ctx[2],
		.flags = PWRU_F_FREED | PWRU_F_HAS_REASON,
	};

	if (!bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) ||
	    hit.drop_reason != bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		hit.flags |= PWRU_F_DROP;
	if (cfg_nf_exact && hit.drop_reason == cfg_nf_drop_reason) {
		hit.ts = bpf_ktime_get_ns();
		nf_drop_note(ctx[0], hit.ts);
	}
	if (cfg_prog_exact && prog_traced && (hit.flags & PWRU_F_DROP)) {
		if (!hit.ts)
			hit.ts = bpf_ktime_get_ns();
		prog_drop_note((struct sk_buff *)ctx[0], hit.ts);
	}
	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, HIT_TP);
}

/* skb:kfree_skb(skb, location) before 5.17: every call is a drop. */
SEC("tp_btf")
int tp_kfree_skb(__u64 *ctx)
{
	struct probe_hit hit = {
		.probe_id = probe_id_marker(),
		.caller = ctx[1],
		.flags = PWRU_F_FREED | PWRU_F_DROP,
	};

	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, HIT_TP);
}
