/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one declaration of what the kernel program reports for every traced
 * step of a packet. The BPF program fills it, the helper forwards it verbatim
 * (after resolving addresses to probe ids), and src/record/decode.ts reads it.
 * Any change here must bump PWRU_EVENT_VERSION and the decoder with it.
 *
 * The includer provides __u8.. __u64 (vmlinux_min.h in BPF, <linux/types.h>
 * in the helper).
 */
#ifndef PWRU_EVENT_H
#define PWRU_EVENT_H

#define PWRU_EVENT_VERSION 1

/* event.flags */
#define PWRU_F_DROP 0x01	 /* the kernel dropped the packet here (drop tracepoint) */
#define PWRU_F_HAS_REASON 0x02	 /* drop_reason is meaningful (kernel 5.17+) */
#define PWRU_F_TRACKED 0x04	 /* shown because the skb matched earlier (--filter-track-skb) */
#define PWRU_F_HAS_TUPLE 0x08	 /* saddr/daddr/ports were read from the packet */
#define PWRU_F_FREED 0x10	 /* the skb was freed here (consumed or dropped) */

struct pwru_event {
	__u64 ts;	   /* bpf_ktime_get_ns() */
	__u64 skb;	   /* address of the struct sk_buff: the packet's identity */
	__u64 addr;	   /* probed function's address (kprobe backends), 0 for tracepoints */
	__u64 caller;	   /* return address / drop location, 0 when unknown */
	__u32 probe_id;	   /* index into the helper's probe table */
	__u32 cpu;
	__u32 pid;
	__u32 netns;	   /* network namespace inode */
	__u32 mark;
	__u32 ifindex;
	__u32 mtu;
	__u32 len;	   /* skb->len */
	__u32 drop_reason; /* enum skb_drop_reason, when PWRU_F_HAS_REASON */
	__s32 stack_id;	   /* kernel stack id, -1 when not collected */
	__u16 protocol;	   /* skb->protocol, host order (ETH_P_*) */
	__u16 sport;	   /* host order */
	__u16 dport;	   /* host order */
	__u8 l3;	   /* 4, 6 or 0 */
	__u8 l4;	   /* IPPROTO_* */
	__u8 tcp_flags;	   /* FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 */
	__u8 flags;	   /* PWRU_F_* */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pkt_type;	   /* PACKET_HOST, PACKET_OTHERHOST, ... */
	__u8 pad[3];
	__u8 saddr[16];	   /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[16];
	char ifname[16];
};

/* Slots of the per-CPU counters map. */
enum pwru_counter {
	PWRU_CNT_SEEN = 0,	/* probe hits before filtering */
	PWRU_CNT_EMITTED = 1,	/* events written to the ring buffer */
	PWRU_CNT_LOST = 2,	/* events dropped: ring buffer full */
	PWRU_CNT_MAX = 3,
};

#endif
