/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a tc or XDP program returned for a traced packet, learnt by fexit on
 * the programs themselves (bpf/prog_verdict.bpf.c, loaded per program by
 * helper/prog_exact.c) where the kernel lets them be traced. The layouts the
 * programs and the helper share; they travel in maps and in a ring buffer of
 * their own, not in the record stream (the helper writes PROG frames from
 * them, docs/record-stream.md).
 *
 * The includer provides __u8.. __u64 (and, in BPF programs, bpf_helpers.h: the shared maps at the end).
 */
#ifndef PWRU_PROG_VERDICT_H
#define PWRU_PROG_VERDICT_H

/* prog_run.kind */
#define PWRU_PROG_TC 1
#define PWRU_PROG_XDP 2

/*
 * Per CPU, the packet the probes last reported (bpf/pwru.bpf.c writes it,
 * sharing the map): a program's run is the traced packet's when its skb (tc)
 * or its buffer (XDP: data_hard_start is the skb's head, as it was reported
 * or as it is now) is this one. A tc or
 * XDP program runs right after the receive or transmit steps that report it.
 */
struct prog_seen {
	__u64 skb;
	__u64 head;
};

/* One run of a traced program on a traced packet (ring buffer prog_runs). */
struct prog_run {
	__u64 ts;
	__u64 skb;	/* the packet's skb (XDP: the one its buffer belongs to) */
	__u64 head;	/* skb->head, or XDP's data_hard_start */
	__u32 prog_id;
	__s32 ret;	/* what the program returned */
	__u32 ifindex;
	__u32 netns;
	__u8 kind;	/* PWRU_PROG_* */
	__u8 ingress;	/* tc: skb->tc_at_ingress; XDP: always 1 */
	__u8 pad[6];
	char ifname[16];
};

/*
 * A run that returned a drop (TC_ACT_SHOT; XDP_DROP, XDP_ABORTED), in
 * prog_drops by what the drop's skb carries: the skb (tc) or its head (XDP,
 * whose skb may be made after the program ran). Written for every such run,
 * traced packet or not. The drop tracepoint (bpf/pwru.bpf.c) moves it to
 * prog_noted under the skb and the drop event's own time, where the helper
 * reads it with the drop's event: the skb's address is soon another
 * packet's, dropped in the same burst.
 */
struct prog_drop_key {
	__u64 id;
	__u32 kind;
	__u32 pad;
};

struct prog_noted_key {
	__u64 skb;
	__u64 ts; /* the drop event's */
};

#ifdef __bpf__
/*
 * The maps bpf/pwru.bpf.c and bpf/prog_verdict.bpf.c share, declared once:
 * each object gets its own copy, and the helper gives the copies the probes'
 * descriptors (helper/prog_exact.c). Not for the helper's own includes.
 */

/* Per CPU, the packet the probes last reported (pwru.bpf.c writes it, the program copies read it). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct prog_seen);
} prog_last SEC(".maps");

/* The runs that returned a drop (the copies write them; pwru.bpf.c's drop tracepoint takes them). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 4096 by the helper (helper/loader.c) */
	__type(key, struct prog_drop_key);
	__type(value, struct prog_run);
} prog_drops SEC(".maps");
#endif

#endif
