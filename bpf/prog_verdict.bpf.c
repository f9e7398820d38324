// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fexit on a tc or XDP program: what it returned, for which packet, where.
 * One copy is loaded per program traced (helper/prog_exact.c sets
 * cfg_prog_id and attaches it to that program); all copies share the maps.
 * Runs on the packet the probes last reported on this CPU go to prog_runs
 * (the helper writes them as PROG frames); other XDP runs wait in
 * prog_pending for the skb built around their buffer (prog_verdict.h);
 * runs that drop go to prog_drops too, for the drop's culprit (helper/culprit.c; the drop tracepoint of
 * bpf/pwru.bpf.c notes it under the drop). Loaded apart from the
 * probes: where the kernel refuses fexit on programs, the trace goes on
 * without it.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "prog_verdict.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* prog_last, prog_runs, prog_pending, prog_built and prog_drops, shared with the probes, are declared in prog_verdict.h. */

/* The traced program's id (each copy its own). */
const volatile __u32 cfg_prog_id = 0;

#define TC_ACT_SHOT 2
#define XDP_ABORTED 0
#define XDP_DROP 1

static __always_inline __u32 dev_netns(struct net_device *dev)
{
	return BPF_CORE_READ(dev, nd_net.net, ns.inum);
}

static __always_inline int noted(struct prog_run *r, __u64 id, bool dropped, const void *frame)
{
	__u32 zero = 0;
	struct prog_seen *seen = bpf_map_lookup_elem(&prog_last, &zero);
	bool traced = false;
	struct prog_run *out;

	if (seen && r->kind == PWRU_PROG_TC)
		traced = seen->skb == r->skb;
	/* Generic XDP may give the skb a new head first (pskb_expand_head): the skb's head now is the buffer's. */
	else if (seen && seen->skb) {
		struct sk_buff *skb = (struct sk_buff *)seen->skb; /* apart: CO-RE must not relocate seen->skb */

		traced = seen->head == r->head || (__u64)BPF_CORE_READ(skb, head) == r->head;
	}

	r->ts = bpf_ktime_get_ns();
	r->prog_id = cfg_prog_id;
	/*
	 * Maybe a buffer the skb that goes on is built around: the probes tie it
	 * when they report that skb. Only on a CPU that reported a packet
	 * lately (veth runs XDP on the CPU that sent the packet, right after),
	 * so that a busy XDP program on untraced traffic costs no map update.
	 */
	if (!traced && !dropped && frame && seen && r->ts - seen->ts <= PROG_PENDING_NS) {
		struct prog_pending_run p = {};
		struct prog_built *b = bpf_map_lookup_elem(&prog_built, &r->head);

		r->cpu = bpf_get_smp_processor_id();
		/* The skb veth built around this buffer, just before the run, from the skb sent. */
		if (b && b->cpu == r->cpu && r->ts >= b->ts && r->ts - b->ts <= PROG_PENDING_NS) {
			r->from_skb = b->from_skb;
			r->from_head = b->from_head;
			p.built_skb = b->skb;
		}
		if (b)
			bpf_map_delete_elem(&prog_built, &r->head);
		p.run = *r;
		if (bpf_probe_read_kernel(p.frame, sizeof(p.frame), frame) == 0)
			bpf_map_update_elem(&prog_pending, &r->head, &p, BPF_ANY);
		return 0;
	}
	if (!traced && !dropped)
		return 0;
	if (traced && r->kind == PWRU_PROG_XDP)
		r->skb = seen->skb;
	if (dropped) {
		struct prog_drop_key key = { .id = id, .kind = r->kind };

		bpf_map_update_elem(&prog_drops, &key, r, BPF_ANY);
	}
	if (traced && (out = bpf_ringbuf_reserve(&prog_runs, sizeof(*r), 0))) {
		__builtin_memcpy(out, r, sizeof(*r));
		bpf_ringbuf_submit(out, 0);
	}
	return 0;
}

SEC("fexit")
int BPF_PROG(prog_tc, struct sk_buff *skb, int ret)
{
	struct prog_run r = { .kind = PWRU_PROG_TC, .ret = ret };
	struct net_device *dev;

	r.skb = (__u64)skb;
	r.head = (__u64)BPF_CORE_READ(skb, head);
	r.ingress = BPF_CORE_READ_BITFIELD_PROBED(skb, tc_at_ingress);
	dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		r.ifindex = BPF_CORE_READ(dev, ifindex);
		r.netns = dev_netns(dev);
		BPF_CORE_READ_STR_INTO(&r.ifname, dev, name);
	}
	return noted(&r, r.skb, ret == TC_ACT_SHOT, NULL);
}

/*
 * skb_copy_header(new, old): new is being built from old (veth's copy for
 * XDP; skb_copy and its kin). Noted under new's data buffer, once the probes
 * report packets, for the XDP run on that buffer (prog_built). Not only on a
 * CPU that reported a packet lately: veth's NAPI poll may run well after the
 * CPU's last report (17 ms seen under emulation), and copies are rare enough
 * for a map update each. Loaded once, not per program (helper/prog_exact.c).
 */
SEC("fentry/skb_copy_header")
int BPF_PROG(prog_built_note, struct sk_buff *new, const struct sk_buff *old)
{
	__u32 zero = 0;
	struct prog_seen *seen = bpf_map_lookup_elem(&prog_last, &zero);
	struct prog_built b = {};
	__u64 head;

	if (!seen || !seen->ts)
		return 0;
	b.ts = bpf_ktime_get_ns();
	head = (__u64)BPF_CORE_READ(new, head);
	b.skb = (__u64)new;
	b.from_skb = (__u64)old;
	b.from_head = (__u64)BPF_CORE_READ(old, head);
	b.cpu = bpf_get_smp_processor_id();
	bpf_map_update_elem(&prog_built, &head, &b, BPF_ANY);
	return 0;
}

SEC("fexit")
int BPF_PROG(prog_xdp, struct xdp_buff *xdp, int ret)
{
	struct prog_run r = { .kind = PWRU_PROG_XDP, .ret = ret, .ingress = 1 };
	struct net_device *dev;

	void *data = BPF_CORE_READ(xdp, data);

	r.head = (__u64)BPF_CORE_READ(xdp, data_hard_start);
	r.data_off = (__u16)((__u64)data - r.head);
	dev = BPF_CORE_READ(xdp, rxq, dev);
	if (dev) {
		r.ifindex = BPF_CORE_READ(dev, ifindex);
		r.netns = dev_netns(dev);
		BPF_CORE_READ_STR_INTO(&r.ifname, dev, name);
	}
	return noted(&r, r.head, ret == XDP_DROP || ret == XDP_ABORTED, data);
}
