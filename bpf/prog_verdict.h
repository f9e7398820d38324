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
	__u64 ts; /* when it was reported */
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
	__u16 data_off; /* XDP: where the frame began after the run (data - data_hard_start) */
	__u32 cpu;	/* where it ran */
	char ifname[16];
	/*
	 * XDP on a buffer veth made: the skb the kernel built the run's skb
	 * from (skb_copy_header(new, old), prog_built) and that skb's data
	 * buffer; 0 when not seen. Set by the probes at the tie, only when the
	 * skb tied is the one built.
	 */
	__u64 from_skb;
	__u64 from_head;
};

/*
 * An XDP run that did not return a drop and is not on the packet last
 * reported on its CPU. Native XDP on veth: veth runs the program on a copy
 * of the packet in a buffer of its own (when the skb is shared, cloned,
 * paged or short of headroom, as a sent one is), and on XDP_PASS the skb
 * that goes on is the one built around that buffer (6.1: build_skb in
 * veth_convert_skb_to_xdp_buff; 6.12: napi_build_skb in skb_pp_cow_data;
 * both before the program runs, so the skb's head is the run's
 * data_hard_start; the sent skb is consumed there). The run waits in
 * prog_pending under the buffer, with the frame's first bytes as the run
 * left them; the probes tie it to the first skb reported with that head on
 * the run's CPU, within PROG_PENDING_NS, whose MAC header is where the
 * program left the frame (eth_type_trans right after the run resets it
 * there) and whose frame starts with those bytes. Anything else takes the
 * run out unshown: a buffer is soon another packet's (a freed skb's head is
 * often the next one's, an untraced packet's run may wait under it), and
 * the bytes (Ethernet and IPv4 headers with the ID and checksum, the ports)
 * tell that packet from this one.
 */
#define PROG_PENDING_NS 10000000ULL
#define PROG_FRAME_BYTES 40

struct prog_pending_run {
	struct prog_run run;
	__u8 frame[PROG_FRAME_BYTES]; /* from data (the frame's start) after the run */
	__u64 built_skb; /* the skb prog_built says was made around this buffer, if any */
};

/*
 * An skb the kernel built from another by copying it (skb_copy_header(new,
 * old): veth's private copy of a sent skb before its XDP run, 6.1 in
 * veth_convert_skb_to_xdp_buff, 6.12 in skb_pp_cow_data; also skb_copy and
 * its kin), in prog_built under the new skb's data buffer, noted by fentry
 * (prog_built_note) once the probes report packets. An XDP run waiting under
 * that buffer on the same CPU within PROG_PENDING_NS takes it (built_skb, from_*): when the probes tie the run to that very
 * skb, the run says which skb the packet was before (from_skb): the kernel
 * copied that one into the run's buffer and consumed it.
 */
struct prog_built {
	__u64 skb;	/* the new skb */
	__u64 from_skb; /* the skb it was built from */
	__u64 from_head;
	__u64 ts;
	__u32 cpu;
	__u32 pad;
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

/*
 * The runs on traced packets, read by the helper (PROG frames): the copies
 * write those they tie to a packet themselves, the probes those tied later
 * (prog_pending). Sized by the helper (helper/loader.c).
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} prog_runs SEC(".maps");

/* Native XDP runs waiting for the skb built around their buffer, by data_hard_start (the copies write, the probes take). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 4096 by the helper (helper/loader.c) */
	__type(key, __u64);
	__type(value, struct prog_pending_run);
} prog_pending SEC(".maps");

/* skbs built from another (prog_built_note writes them by the new data buffer, the XDP copies take them). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 4096 by the helper (helper/loader.c) */
	__type(key, __u64);
	__type(value, struct prog_built);
} prog_built SEC(".maps");

/* The runs that returned a drop (the copies write them; pwru.bpf.c's drop tracepoint takes them). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 4096 by the helper (helper/loader.c) */
	__type(key, struct prog_drop_key);
	__type(value, struct prog_run);
} prog_drops SEC(".maps");
#endif

#endif
