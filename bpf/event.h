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

#define PWRU_EVENT_VERSION 2

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
	/*
	 * What tells packets apart where the skb address does not (the kernel
	 * reuses it after a free no tracepoint sees) and links clones, which
	 * share their data buffer (src/reading/packet-tracker.ts).
	 */
	__u64 head;	   /* skb->head: the data buffer */
	__u32 tcp_seq;	   /* TCP sequence number, host order (l4 == 6) */
	__u16 ip_id;	   /* IPv4 identification, host order (l3 == 4) */
	__u8 dataref;	   /* skbs holding the data buffer (skb_shinfo()->dataref, at most 255); 0: not read */
	__u8 pad_end;
};

/*
 * The layout, asserted: the compiler holds the struct to these offsets, and
 * test/unit/record/layout.test.ts holds src/record/decode.ts to the same ones
 * (it reads them from here). docs/record-stream.md lists them for people.
 */
#define PWRU_EVENT_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct pwru_event, field) == (offset), "pwru_event." #field " at " #offset)
PWRU_EVENT_AT(ts, 0);
PWRU_EVENT_AT(skb, 8);
PWRU_EVENT_AT(addr, 16);
PWRU_EVENT_AT(caller, 24);
PWRU_EVENT_AT(probe_id, 32);
PWRU_EVENT_AT(cpu, 36);
PWRU_EVENT_AT(pid, 40);
PWRU_EVENT_AT(netns, 44);
PWRU_EVENT_AT(mark, 48);
PWRU_EVENT_AT(ifindex, 52);
PWRU_EVENT_AT(mtu, 56);
PWRU_EVENT_AT(len, 60);
PWRU_EVENT_AT(drop_reason, 64);
PWRU_EVENT_AT(stack_id, 68);
PWRU_EVENT_AT(protocol, 72);
PWRU_EVENT_AT(sport, 74);
PWRU_EVENT_AT(dport, 76);
PWRU_EVENT_AT(l3, 78);
PWRU_EVENT_AT(l4, 79);
PWRU_EVENT_AT(tcp_flags, 80);
PWRU_EVENT_AT(flags, 81);
PWRU_EVENT_AT(icmp_type, 82);
PWRU_EVENT_AT(icmp_code, 83);
PWRU_EVENT_AT(pkt_type, 84);
PWRU_EVENT_AT(pad, 85);
PWRU_EVENT_AT(saddr, 88);
PWRU_EVENT_AT(daddr, 104);
PWRU_EVENT_AT(comm, 120);
PWRU_EVENT_AT(ifname, 136);
PWRU_EVENT_AT(head, 152);
PWRU_EVENT_AT(tcp_seq, 160);
PWRU_EVENT_AT(ip_id, 164);
PWRU_EVENT_AT(dataref, 166);
PWRU_EVENT_AT(pad_end, 167);
_Static_assert(sizeof(struct pwru_event) == 168, "pwru_event is 168 bytes");

/*
 * Packet bytes (--snaplen), a section of its own: struct pwru_event stays as
 * it is. When the program captures a packet's bytes (its first step, and each
 * step where its tuple changed: NAT, encap, decap), the ring buffer record is
 * a struct pwru_event followed by a struct pwru_packet and cfg_snaplen bytes;
 * otherwise it is the event alone. The helper writes the event as an EVENT
 * frame, and what follows it as a PACKET frame just before that: the header and
 * cap_len bytes, which start at the packet's IP header (pcap's LINKTYPE_RAW).
 */
struct pwru_packet {
	__u64 ts;	/* the event's ts: a PACKET frame belongs to the next EVENT */
	__u64 skb;	/* the event's skb */
	__u32 orig_len; /* the packet's length from its IP header on */
	__u32 cap_len;	/* bytes that follow: at most --snaplen, and what the skb holds in line */
	__u32 why;	/* PWRU_CAPTURE_*: the first step, or the headers changed */
	__u32 pad;
};
#define PWRU_CAPTURE_FIRST 1   /* the first step the program captured of this skb */
#define PWRU_CAPTURE_CHANGED 2 /* the addresses, ports or protocol changed since the last capture */
#define PWRU_PACKET_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct pwru_packet, field) == (offset), "pwru_packet." #field " at " #offset)
PWRU_PACKET_AT(ts, 0);
PWRU_PACKET_AT(skb, 8);
PWRU_PACKET_AT(orig_len, 16);
PWRU_PACKET_AT(cap_len, 20);
PWRU_PACKET_AT(why, 24);
_Static_assert(sizeof(struct pwru_packet) == 32, "pwru_packet is 32 bytes");

/*
 * Tunnels, a section of its own too. When an event's packet is VXLAN, Geneve,
 * IP-in-IP or GRE (by its outer tuple), the program reads the inner packet's
 * tuple, sets PWRU_F_TUNNEL in the event's flags, and a struct pwru_tunnel
 * follows the event in the ring buffer record (before any struct
 * pwru_packet). The helper writes it as a TUNNEL frame before the EVENT.
 */
#define PWRU_F_TUNNEL 0x20 /* event.flags: a struct pwru_tunnel follows the event */
struct pwru_tunnel {
	__u64 ts;	/* the event's ts: a TUNNEL frame belongs to the next EVENT */
	__u64 skb;	/* the event's skb */
	__u32 vni;	/* VXLAN/Geneve VNI, GRE key; 0 when none */
	__u8 kind;	/* PWRU_TUNNEL_* */
	__u8 l3;	/* the inner packet: 4, 6, or 0 when it is not IP (ARP) or was not read */
	__u8 l4;	/* its IP protocol */
	__u8 pad;
	__u16 sport;	/* TCP/UDP ports, host order */
	__u16 dport;
	__u8 pad2[4];
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
};
#define PWRU_TUNNEL_VXLAN 1
#define PWRU_TUNNEL_GENEVE 2
#define PWRU_TUNNEL_IPIP 3 /* IPv4 or IPv6 in IPv4 or IPv6 */
#define PWRU_TUNNEL_GRE 4
#define PWRU_TUNNEL_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct pwru_tunnel, field) == (offset), "pwru_tunnel." #field " at " #offset)
PWRU_TUNNEL_AT(ts, 0);
PWRU_TUNNEL_AT(skb, 8);
PWRU_TUNNEL_AT(vni, 16);
PWRU_TUNNEL_AT(kind, 20);
PWRU_TUNNEL_AT(l3, 21);
PWRU_TUNNEL_AT(l4, 22);
PWRU_TUNNEL_AT(sport, 24);
PWRU_TUNNEL_AT(dport, 26);
PWRU_TUNNEL_AT(saddr, 32);
PWRU_TUNNEL_AT(daddr, 48);
_Static_assert(sizeof(struct pwru_tunnel) == 64, "pwru_tunnel is 64 bytes");

/*
 * Copies (bpf/copy_link.h): a ring buffer record of its own, told from an
 * event by its size, just before the first event of a new skb reported
 * after a copy function made it from another (skb_copy, pskb_copy,
 * skb_copy_expand). The helper writes it as a COPY frame before that EVENT.
 */
struct pwru_copy {
	__u64 ts;	/* the event's ts: a COPY frame belongs to the next EVENT */
	__u64 skb;	/* the event's skb: the copy */
	__u64 orig_skb;	/* the skb it was copied from */
	__u64 orig_head; /* that skb's data buffer (skb->head) when it was copied */
};
#define PWRU_COPY_AT(field, offset) \
	_Static_assert(__builtin_offsetof(struct pwru_copy, field) == (offset), "pwru_copy." #field " at " #offset)
PWRU_COPY_AT(ts, 0);
PWRU_COPY_AT(skb, 8);
PWRU_COPY_AT(orig_skb, 16);
PWRU_COPY_AT(orig_head, 24);
_Static_assert(sizeof(struct pwru_copy) == 32, "pwru_copy is 32 bytes");

/* The largest --snaplen. */
#define PWRU_SNAPLEN_MAX 65535

/* Slots of the per-CPU counters map. */
enum pwru_counter {
	PWRU_CNT_SEEN = 0,	/* probe hits before filtering */
	PWRU_CNT_EMITTED = 1,	/* events written to the ring buffer */
	PWRU_CNT_LOST = 2,	/* events dropped: ring buffer full */
	PWRU_CNT_FIRST_LOST_TS = 3, /* not a count: when this CPU first dropped one (bpf_ktime_get_ns), 0 = never */
	PWRU_CNT_BYTES_LOST = 4,	/* events sent without their bytes (--snaplen): no room in the ring buffer */
	PWRU_CNT_RATE_SKIPPED = 5, /* events not written: over --max-rate */
	PWRU_CNT_MAX = 6,
};


/*
 * The helper's record stream (stdout), read by src/record/decode.ts:
 * a sequence of frames, each a header followed by its payload. Integers are
 * little-endian. EVENT payloads are a struct pwru_event; every other payload
 * is one JSON object (UTF-8, no trailing newline). The first frame is always
 * HELLO. See docs/record-stream.md.
 */
#define PWRU_STREAM_VERSION 1

struct pwru_frame_header {
	__u32 len;	/* payload length in bytes */
	__u16 type;	/* enum pwru_frame_type */
	__u16 reserved;
};
_Static_assert(sizeof(struct pwru_frame_header) == 8, "frame header is 8 bytes");

enum pwru_frame_type {
	PWRU_FRAME_HELLO = 1,	 /* {stream, event_version, event_size, helper, kernel, arch, hostname, ...}: first, always */
	PWRU_FRAME_PROGRESS = 2, /* {phase, done, total, message} */
	PWRU_FRAME_READY = 3,	 /* {backend, probes:[{id,name,kind}], attached, attach_ms, drop_reasons, filter, ...} */
	PWRU_FRAME_EVENT = 4,	 /* struct pwru_event */
	PWRU_FRAME_STATS = 5,	 /* {seen, emitted, lost, discarded, final} */
	PWRU_FRAME_ERROR = 6,	 /* {code, message}: the helper exits non-zero after it */
	PWRU_FRAME_END = 7,	 /* {reason, events, lost, discarded[, output]} */
	PWRU_FRAME_SYMBOL = 8,	 /* {addr, name}: a kernel address seen in a later event's caller */
	PWRU_FRAME_STACK = 9,	 /* {id, frames:[name]}: a stack id seen in a later event */
	PWRU_FRAME_WARNING = 10, /* {code, message} */
	/* 11 was LINES: --emit json now writes its lines to the --lines-fd descriptors only. */
	PWRU_FRAME_DIGEST = 12,	 /* --emit json, before END, when packets went unsent: {packets, events, drops:[{reason, at, count}]} */
	PWRU_FRAME_PACKET = 14,	 /* struct pwru_packet + cap_len bytes: the bytes of the next EVENT (--snaplen) */
	PWRU_FRAME_CULPRIT = 15, /* {ts, skb, netns, kind, method, rule?, why?, candidates?}: who dropped a packet */
	/* --on-drop (helper/on_drop.c): a drop, then bad.steps + good.steps EVENT frames that belong to it. */
	PWRU_FRAME_DROP_REPORT = 16, /* {n, flow, bad:{packet, steps, forgotten_steps}, good?, forgotten_*} */
	PWRU_FRAME_WATCH = 17,	     /* --on-drop, with each STATS: {packets, flows, drops, unreported, forgotten_*, final} */
	PWRU_FRAME_TUNNEL = 18,	     /* struct pwru_tunnel: the inner packet of the next EVENT's tunnel */
	PWRU_FRAME_PROG = 19,	     /* {ts, skb, netns, kind, iface, ifindex, direction?, program, ret, verdict}: a tc/XDP program's run */
	PWRU_FRAME_PACKET_DONE = 20, /* --emit text|wide|json: {id, count, steps, copy_of?, replaced_by?, copies?, open?} + steps EVENTs */
	PWRU_FRAME_COPY = 21,	     /* struct pwru_copy: the next EVENT's skb is a copy of that one */
	PWRU_FRAME_LINES = 22,	     /* --lines-stream: complete lines of --emit json|text|wide, as they would go to a --lines-fd */
};

#endif
