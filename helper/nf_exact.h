/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which netfilter table and chain dropped a packet, from the kernel itself:
 * fexit programs on the table walkers (nft_do_chain, ipt_do_table,
 * ip6t_do_table, arpt_do_table; bpf/nf_verdict.bpf.c) where the kernel lets
 * them attach, with a function backend. The drop tracepoint takes each
 * NETFILTER_DROP's verdict into a map under the drop's time (bpf/pwru.bpf.c);
 * the culprit of that drop (culprit.c) looks it up with the drop's event.
 * For nf_tables, the rule too when an immediate verdict (nft's drop,
 * iptables-nft's -j DROP) dropped it; else the rule comes from the counters.
 */
#ifndef PWRU_NF_EXACT_H
#define PWRU_NF_EXACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct btf;

/* What the kernel said for one NETFILTER_DROP. */
struct nf_exact {
	bool known;	 /* a table walker returned NF_DROP for this packet just before it was freed */
	const char *by;	 /* the walker: "nft_do_chain", "ipt_do_table", ... */
	const char *family; /* nft's words: ip, ip6, inet, arp, bridge, netdev */
	bool nft;	 /* nf_tables (native nft or iptables-nft), not a legacy x_tables table */
	char table[33];
	char chain[33]; /* nft's base chain; for x_tables, the hook's built-in chain (INPUT) */
	const char *hook; /* nft's hook name (input), or iptables' (INPUT) */
	/* nft only: the rule whose verdict dropped it, when an immediate verdict did (bpf/nf_verdict.bpf.c). */
	enum nf_rule_known {
		NF_RULE_NOT_PROBED,   /* x_tables, or nft_immediate_eval cannot be probed on this kernel */
		NF_RULE_EXACT,	      /* handle and rule_chain are its */
		NF_RULE_NO_IMMEDIATE, /* no immediate verdict dropped it: a policy, reject, vmap, xt target ... */
		NF_RULE_LOST,	      /* one did, but in a chain not seen entered (a vmap's jump), or past the rules walked */
	} rule;
	uint64_t handle;
	char rule_chain[33]; /* the chain that holds it: the base chain, or one jumped to */
};

/*
 * Whether the walkers can be probed on this kernel: some exist (in vmlinux,
 * or in a loaded module's BTF) with the arguments bpf/nf_verdict.bpf.c reads.
 * Keeps a copy of vmlinux for loading them later.
 */
bool nf_exact_possible(const struct btf *vmlinux);
/*
 * Makes the maps the probe programs share with the fentry/fexit programs
 * (nf_last, nf_inside: for loader.c to reuse) and loads and attaches those
 * programs in a thread, beside the probes' load (each is ~0.3 s of the
 * kernel's verifier and ftrace under emulation). False (with why) when
 * nothing was begun.
 */
bool nf_exact_begin(int *nf_last_fd, int *nf_inside_fd, char *why, size_t len);
/*
 * Waits for what nf_exact_begin() began; nf_drops is where the drops'
 * verdicts are read. False (with why) when the kernel refused the programs:
 * drops are then named by counters alone.
 */
bool nf_exact_wait(int nf_drops_fd, char *why, size_t len);
bool nf_exact_active(void);
/* The verdict of the NETFILTER_DROP of skb at ts (its event's); false when there is none to read. */
bool nf_exact_of(uint64_t skb, uint64_t ts, struct nf_exact *out);
/* Its links, to the kernel to remove after the helper (link_handoff.h). */
void nf_exact_hand_off(void);
void nf_exact_end(void);

#endif
