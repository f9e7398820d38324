/* SPDX-License-Identifier: Apache-2.0 */
/* Classic BPF (from libpcap) to eBPF, as the body of the probe program's filter stub. */
#ifndef PWRU_FILTER_TRANSLATE_H
#define PWRU_FILTER_TRANSLATE_H

#include <linux/bpf.h>
#include <stdbool.h>
#include <stddef.h>

#include "pcap_compile.h"

struct pcap_filter {
	struct bpf_insn *insns; /* the whole stub body, ready to splice */
	size_t cnt;
	/*
	 * The same reading the packet with plain loads: for tp_btf programs on
	 * kernels whose verifier types skb->head as read-only untrusted memory
	 * (6.17+), where a load costs one instruction instead of a helper call.
	 */
	struct bpf_insn *direct_insns;
	size_t direct_cnt;
	bool l3;		/* an L3 (raw IP) form exists */
	bool l2;		/* an L2 (Ethernet) form exists */
	bool tunnel_l3;		/* --tunnel-filter: its raw IP form, for an inner IP packet */
	bool tunnel_l2;		/* its Ethernet form, for an inner Ethernet frame (VXLAN, Geneve, gretap) */
};

/* The mode argument: which form of the filter a packet is given to (bpf/pwru.bpf.c has the same). */
enum pcap_mode { PCAP_MODE_L3, PCAP_MODE_L2, PCAP_MODE_TUNNEL_L3, PCAP_MODE_TUNNEL_L2, PCAP_MODES };

/*
 * Translates the forms libpcap compiled (raw IP, Ethernet: at least one; and
 * the --tunnel-filter's two forms, or NULL for both) into one eBPF function
 * with the stub's signature:
 *   int f(u64 data, u32 linear_len, u32 pkt_len, u32 mode)  (enum pcap_mode)
 * Packet bytes are read with bpf_probe_read_kernel, because probes see the
 * skb, not a packet context (and, in direct_insns, with plain loads). A form
 * that is missing rejects every packet given to it. Returns -1 with the
 * reason in err.
 */
int pcap_filter_build(const struct cbpf_prog *raw, const struct cbpf_prog *eth, const struct cbpf_prog *tunnel_raw,
		      const struct cbpf_prog *tunnel_eth, struct pcap_filter *out, char *err, size_t errlen);

/* The stub body when there is no filter: match everything. */
void pcap_filter_match_all(struct pcap_filter *out);

void pcap_filter_free(struct pcap_filter *f);

#endif
