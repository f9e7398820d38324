// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The probe programs: one per position of the struct sk_buff * argument
 * (1..5) for each backend. Every program funnels into handle_skb(), which
 * applies the filters and writes one struct pwru_event to the ring buffer.
 *
 * The packet filter is not written here: pwru_pcap_filter() is a stub whose
 * body the helper replaces with the user's pcap expression compiled to eBPF
 * (helper/filter_inject.c). It must stay the only noinline function so that
 * libbpf places it last in every program.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Read-only configuration, set by the helper before load (see helper/probe_load.c). */
const volatile __u32 cfg_netns = 0;
const volatile __u32 cfg_mark = 0;
const volatile __u32 cfg_mark_mask = 0;
const volatile char cfg_ifname[16] = {};
const volatile bool cfg_filter_ifname = false;
const volatile bool cfg_track_skb = false;
const volatile bool cfg_output_stack = false;
const volatile bool cfg_pcap_l3 = false; /* an L3 (DLT_RAW) filter was injected */
const volatile bool cfg_pcap_l2 = false; /* an L2 (DLT_EN10MB) filter was injected */
const volatile bool cfg_has_func_ip = false; /* bpf_get_func_ip() works for kprobes */

/* Marker the helper replaces with each tracepoint program's probe id. */
#define PROBE_ID_MARKER 0x7e57ab1e

#define PCAP_MODE_L3 0
#define PCAP_MODE_L2 1

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
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} tracked_skbs SEC(".maps");

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
 */
#define SKB_READ(direct, skb, field) ((direct) ? (skb)->field : BPF_CORE_READ(skb, field))

static __always_inline bool match_pcap(struct sk_buff *skb, bool direct)
{
	if (!cfg_pcap_l3 && !cfg_pcap_l2)
		return true;

	unsigned char *head = SKB_READ(direct, skb, head);
	__u16 nh = SKB_READ(direct, skb, network_header);
	__u16 mh = SKB_READ(direct, skb, mac_header);
	__u32 tail = SKB_READ(direct, skb, tail);
	__u32 len = SKB_READ(direct, skb, len);
	__u32 data_off = SKB_READ(direct, skb, data) - head;

	/* Prefer L3: on transmit the Ethernet header is not built until late. */
	if (cfg_pcap_l3 && nh != 0 && nh != 0xffff && nh < tail)
		return pwru_pcap_filter((__u64)(head + nh), tail - nh, len + data_off - nh, PCAP_MODE_L3) != 0;
	if (cfg_pcap_l2 && mh != 0xffff && mh < tail)
		return pwru_pcap_filter((__u64)(head + mh), tail - mh, len + data_off - mh, PCAP_MODE_L2) != 0;
	return false;
}

static __always_inline __u32 skb_netns(struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);

	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	return BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline bool match_meta(struct sk_buff *skb)
{
	if (cfg_netns && skb_netns(skb) != cfg_netns)
		return false;
	if (cfg_mark_mask && (BPF_CORE_READ(skb, mark) & cfg_mark_mask) != cfg_mark)
		return false;
	if (cfg_filter_ifname) {
		char name[16];
		struct net_device *dev = BPF_CORE_READ(skb, dev);

		if (!dev)
			return false;
		BPF_CORE_READ_STR_INTO(&name, dev, name);
#pragma unroll
		for (int i = 0; i < 16; i++) {
			if (name[i] != cfg_ifname[i])
				return false;
			if (name[i] == 0)
				break;
		}
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

/* Reads the IP and L4 headers the packet has at its network header, if set. */
static __always_inline void fill_tuple(struct pwru_event *ev, struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u32 tail = BPF_CORE_READ(skb, tail);
	__u32 l4_off;
	__u8 first;

	if (nh == 0 || nh == 0xffff || nh >= tail)
		return;
	if (bpf_probe_read_kernel(&first, 1, head + nh))
		return;
	if ((first >> 4) == 4) {
		struct wire_iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return;
		ev->l3 = 4;
		ev->l4 = ip.protocol;
		__builtin_memcpy(ev->saddr, &ip.saddr, 4);
		__builtin_memcpy(ev->daddr, &ip.daddr, 4);
		l4_off = nh + (ip.ver_ihl & 0xf) * 4;
		/* Later fragments carry no L4 header. */
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			goto done;
	} else if ((first >> 4) == 6) {
		struct wire_ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return;
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
	if (ev->l4 == 6 /* TCP */) {
		__u8 tcp[14];

		if (!bpf_probe_read_kernel(tcp, sizeof(tcp), head + l4_off)) {
			ev->sport = (tcp[0] << 8) | tcp[1];
			ev->dport = (tcp[2] << 8) | tcp[3];
			ev->tcp_flags = tcp[13];
		}
	} else if (ev->l4 == 17 /* UDP */) {
		__u8 udp[4];

		if (!bpf_probe_read_kernel(udp, sizeof(udp), head + l4_off)) {
			ev->sport = (udp[0] << 8) | udp[1];
			ev->dport = (udp[2] << 8) | udp[3];
		}
	} else if (ev->l4 == 1 /* ICMP */ || ev->l4 == 58 /* ICMPv6 */) {
		__u8 icmp[2];

		if (!bpf_probe_read_kernel(icmp, sizeof(icmp), head + l4_off)) {
			ev->icmp_type = icmp[0];
			ev->icmp_code = icmp[1];
		}
	}
done:
	ev->flags |= PWRU_F_HAS_TUPLE;
}

struct probe_hit {
	__u64 addr;
	__u64 caller;
	__u32 probe_id;
	__u32 drop_reason;
	__u8 flags;
};

static __always_inline int handle_skb(void *ctx, struct sk_buff *skb, struct probe_hit *hit, bool direct)
{
	__u64 key = (__u64)skb;
	bool tracked = false;
	struct pwru_event *ev;
	struct net_device *dev;

	if (!skb)
		return 0;
	count(PWRU_CNT_SEEN);
	if (cfg_track_skb && bpf_map_lookup_elem(&tracked_skbs, &key))
		tracked = true;
	if (!tracked) {
		if (!match_meta(skb) || !match_pcap(skb, direct))
			return 0;
		if (cfg_track_skb && !(hit->flags & PWRU_F_FREED)) {
			__u8 one = 1;

			bpf_map_update_elem(&tracked_skbs, &key, &one, BPF_ANY);
		}
	}
	/* A freed skb's address is soon reused by an unrelated packet. */
	if (tracked && (hit->flags & PWRU_F_FREED))
		bpf_map_delete_elem(&tracked_skbs, &key);

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(PWRU_CNT_LOST);
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts = bpf_ktime_get_ns();
	ev->skb = key;
	ev->addr = hit->addr;
	ev->caller = hit->caller;
	ev->probe_id = hit->probe_id;
	ev->drop_reason = hit->drop_reason;
	ev->flags = hit->flags | (tracked ? PWRU_F_TRACKED : 0);
	ev->cpu = bpf_get_smp_processor_id();
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->mark = BPF_CORE_READ(skb, mark);
	ev->len = BPF_CORE_READ(skb, len);
	ev->protocol = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	ev->pkt_type = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	ev->netns = skb_netns(skb);
	dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		ev->ifindex = BPF_CORE_READ(dev, ifindex);
		ev->mtu = BPF_CORE_READ(dev, mtu);
		BPF_CORE_READ_STR_INTO(&ev->ifname, dev, name);
	}
	fill_tuple(ev, skb);
	ev->stack_id = cfg_output_stack ? bpf_get_stackid(ctx, &stacks, 0) : -1;
	bpf_ringbuf_submit(ev, 0);
	count(PWRU_CNT_EMITTED);
	return 0;
}

/* ---- kprobe backend: one link per function, address from the registers ---- */

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

#define KPROBE_SKB(N)                                                          \
	SEC("kprobe")                                                          \
	int kprobe_skb_##N(struct pt_regs *ctx)                                \
	{                                                                      \
		struct probe_hit hit = {                                       \
			.addr = cfg_has_func_ip ? bpf_get_func_ip(ctx) : PT_REGS_IP(ctx), \
			.caller = kprobe_caller(ctx),                          \
		};                                                             \
		return handle_skb(ctx, (struct sk_buff *)PT_REGS_PARM##N(ctx), &hit, false); \
	}

KPROBE_SKB(1)
KPROBE_SKB(2)
KPROBE_SKB(3)
KPROBE_SKB(4)
KPROBE_SKB(5)

/* ---- kprobe-multi backend: one link per program for all its functions ---- */

#define KMULTI_SKB(N)                                                          \
	SEC("kprobe.multi")                                                    \
	int kmulti_skb_##N(struct pt_regs *ctx)                                \
	{                                                                      \
		struct probe_hit hit = {                                       \
			.addr = bpf_get_func_ip(ctx),                          \
			.caller = kprobe_caller(ctx),                          \
		};                                                             \
		return handle_skb(ctx, (struct sk_buff *)PT_REGS_PARM##N(ctx), &hit, false); \
	}

KMULTI_SKB(1)
KMULTI_SKB(2)
KMULTI_SKB(3)
KMULTI_SKB(4)
KMULTI_SKB(5)

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
		return handle_skb(ctx, (struct sk_buff *)ctx[N - 1], &hit, true); \
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

	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, true);
}

/* skb:consume_skb(skb, location) on 6.3+: also says who freed it (e.g. the socket that read it). */
SEC("tp_btf")
int tp_consume_skb_location(__u64 *ctx)
{
	struct probe_hit hit = { .probe_id = probe_id_marker(), .caller = ctx[1], .flags = PWRU_F_FREED };

	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, true);
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
	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, true);
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

	return handle_skb(ctx, (struct sk_buff *)ctx[0], &hit, true);
}
