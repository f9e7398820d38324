/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which netfilter table and chain returned NF_DROP for a packet, learnt from
 * the kernel's own functions where they can be probed (fexit on nft_do_chain,
 * ipt_do_table, ip6t_do_table, arpt_do_table: bpf/nf_verdict.bpf.c). The one
 * layout the programs and the helper (helper/nf_exact.c) share; it travels in
 * maps, not in the record stream.
 *
 * The includer provides __u8.. __u64 (and, in BPF programs, bpf_helpers.h: the shared maps at the end).
 */
#ifndef PWRU_NF_VERDICT_H
#define PWRU_NF_VERDICT_H

/* nf_verdict.kind: which function returned the verdict. */
#define PWRU_NF_NFT 1	/* nft_do_chain: table and base chain of nftables (native, or iptables-nft) */
#define PWRU_NF_IPT 2	/* ipt_do_table: an iptables-legacy table */
#define PWRU_NF_IP6T 3	/* ip6t_do_table: an ip6tables-legacy table */
#define PWRU_NF_ARPT 4	/* arpt_do_table: an arptables-legacy table */

#define PWRU_NF_NAME_LEN 32

/* nf_verdict.rule: whether the nft rule whose verdict dropped it is known. */
#define PWRU_NF_RULE_NONE 0  /* no immediate drop verdict ran for it: a policy, reject, vmap, xt target ... */
#define PWRU_NF_RULE_EXACT 1 /* handle and rule_chain are the rule's */
#define PWRU_NF_RULE_LOST 2  /* an immediate drop verdict ran, but its rule was not found in the chains seen */

/*
 * Per CPU, the last table traversal that returned there (written by every
 * traversal: a drop's own is the last one before the kernel frees it); then,
 * keyed by skb in nf_drops, what it said for a NETFILTER_DROP.
 */
struct nf_verdict {
	__u64 skb;
	__u64 drop_ts;	/* nf_drops: the drop event's ts, which this entry belongs to */
	__u8 known;	/* nf_drops: the traversal just before the drop returned NF_DROP for this skb */
	__u8 dropped;	/* nf_last: the traversal returned NF_DROP */
	__u8 kind;	/* PWRU_NF_* */
	__u8 hook;	/* nf_hook_state.hook */
	__u8 pf;	/* nf_hook_state.pf */
	__u8 family;	/* the table's family (NFPROTO_*: nft's inet is 1) */
	__u8 rule;	/* PWRU_NF_RULE_*: nft only */
	__u8 pad;
	char table[PWRU_NF_NAME_LEN];
	char chain[PWRU_NF_NAME_LEN]; /* nft's base chain; empty for x_tables (the hook names it) */
	__u64 handle;			   /* the rule's handle, with PWRU_NF_RULE_EXACT */
	char rule_chain[PWRU_NF_NAME_LEN]; /* the chain that holds it: the base chain, or one jumped to */
};

/*
 * Per CPU, the nft_do_chain calls under way (fentry pushes, fexit pops): since
 * 6.x nft_do_chain frees a dropped skb itself (NF_DROP_REASON, returning
 * NF_STOLEN), so the drop comes before the walker returns. Entries are
 * trusted only for their own skb: a call that moved CPUs leaves one behind.
 */
#define PWRU_NF_INSIDE_MAX 4
/*
 * The chains an nft_do_chain call has been in: its base chain, then those an
 * immediate verdict jumped or went to (a vmap's jumps are not seen). A drop
 * verdict's expression is looked for in their rules.
 */
#define PWRU_NF_CHAINS_MAX 8
struct nf_chains {
	__u64 chain[PWRU_NF_CHAINS_MAX]; /* struct nft_chain * */
	__u32 n;
	__u32 pad;
};
struct nf_inside {
	__u32 depth;
	__u32 pad;
	struct nf_verdict e[PWRU_NF_INSIDE_MAX];
	struct nf_chains c[PWRU_NF_INSIDE_MAX];
};

/* nf_drops' key: a drop (the skb's address is soon another packet's, dropped in the same burst). */
struct nf_drop_key {
	__u64 skb;
	__u64 ts; /* the drop event's */
};

#ifdef __bpf__
/*
 * The maps bpf/pwru.bpf.c and bpf/nf_verdict.bpf.c share, declared once: each
 * object gets its own copy, and the helper gives the second the first's
 * descriptors (helper/nf_exact.c). Not for the helper's own includes.
 */

/* Per CPU, the last table traversal (nf_verdict.bpf.c writes it; pwru.bpf.c's drop tracepoint reads it). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_verdict);
} nf_last SEC(".maps");

/* Per CPU, the nft_do_chain calls under way. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_inside);
} nf_inside SEC(".maps");
#endif

#endif
