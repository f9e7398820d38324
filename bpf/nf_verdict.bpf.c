// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fexit on the kernel's netfilter table walkers: each traversal writes, per
 * CPU, which skb it was for and, when it returned NF_DROP, the table, chain
 * and hook. nf_hook_slow() frees a dropped skb right after the walker
 * returns, on the same CPU, so the drop tracepoint (bpf/pwru.bpf.c,
 * tp_kfree_skb_reason) finds its own verdict there. Loaded apart from the
 * probe programs (helper/nf_exact.c): where fentry/fexit is refused, or a
 * walker's module is not loaded, the trace goes on without it.
 *
 * For nftables (and iptables-nft, whose -j DROP is an immediate verdict) the
 * rule too: fexit on nft_immediate_eval notes, in the nft_do_chain call under
 * way, the chains its jumps and gotos enter, and for a drop verdict finds the
 * rule whose expressions hold it by walking the rules of those chains
 * (struct nft_rule_dp, 5.17+): its handle. A drop no immediate verdict made
 * (a policy, reject, a vmap, an xt target) leaves the rule unknown.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "nf_verdict.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* nf_last and nf_inside, shared with the probes, are declared in nf_verdict.h. */

#define NF_DROP 0
#define NF_VERDICT_MASK 0xff
#define NFT_JUMP ((__u32)-3)
#define NFT_GOTO ((__u32)-4)
/* Rules walked at most in one chain to find a drop verdict's: past that, the rule stays unknown. */
#define RULES_MAX 16384

static __always_inline struct nf_verdict *noted(struct sk_buff *skb, unsigned int ret)
{
	__u32 zero = 0;
	struct nf_verdict *v = bpf_map_lookup_elem(&nf_last, &zero);

	if (!v)
		return NULL;
	v->skb = (__u64)skb;
	v->dropped = (ret & NF_VERDICT_MASK) == NF_DROP;
	return v->dropped ? v : NULL;
}

static __always_inline void hook_of(struct nf_verdict *v, const struct nf_hook_state *state)
{
	v->hook = BPF_CORE_READ(state, hook);
	v->pf = BPF_CORE_READ(state, pf);
}

/* The table, chain and hook of an nft_do_chain(pkt, priv) call: priv is the base chain. */
static __always_inline void nft_where(struct nf_verdict *v, struct nft_pktinfo *pkt, struct nft_chain *chain)
{
	struct nft_table *table = BPF_CORE_READ(chain, table);

	v->kind = PWRU_NF_NFT;
	hook_of(v, BPF_CORE_READ(pkt, state));
	v->family = BPF_CORE_READ_BITFIELD_PROBED(table, family);
	bpf_probe_read_kernel_str(v->table, sizeof(v->table), BPF_CORE_READ(table, name));
	bpf_probe_read_kernel_str(v->chain, sizeof(v->chain), BPF_CORE_READ(chain, name));
}

/* nft_do_chain begins: pushed, for a drop it makes itself (iptables-nft's tables come here too). */
SEC("fentry")
int BPF_PROG(nf_nft_enter, struct nft_pktinfo *pkt, void *priv)
{
	__u32 zero = 0;
	struct nf_inside *in = bpf_map_lookup_elem(&nf_inside, &zero);
	__u32 d;

	if (!in)
		return 0;
	d = in->depth;
	if (d >= PWRU_NF_INSIDE_MAX)
		d = 0; /* calls that returned on another CPU left these: start over */
	d &= PWRU_NF_INSIDE_MAX - 1;
	in->e[d].skb = (__u64)BPF_CORE_READ(pkt, skb);
	nft_where(&in->e[d], pkt, priv);
	in->e[d].rule = PWRU_NF_RULE_NONE;
	in->c[d].chain[0] = (__u64)priv;
	in->c[d].n = 1;
	in->depth = d + 1;
	return 0;
}

/* nft_do_chain returns: popped; a verdict of NF_DROP noted, for kernels where nf_hook_slow frees it. */
SEC("fexit")
int BPF_PROG(nf_nft_do_chain, struct nft_pktinfo *pkt, void *priv, unsigned int ret)
{
	__u32 zero = 0;
	struct nf_inside *in = bpf_map_lookup_elem(&nf_inside, &zero);
	struct nf_verdict *v;

	__u64 skb = (__u64)BPF_CORE_READ(pkt, skb);
	__u32 d = PWRU_NF_INSIDE_MAX;

	if (in && in->depth > 0 && in->depth <= PWRU_NF_INSIDE_MAX)
		d = --in->depth;
	v = noted((struct sk_buff *)skb, ret);
	if (!v)
		return 0;
	nft_where(v, pkt, priv);
	v->rule = PWRU_NF_RULE_NONE;
	/* The rule its call found, when the call was this skb's. */
	if (in && d < PWRU_NF_INSIDE_MAX && in->e[d].skb == skb) {
		v->rule = in->e[d].rule;
		v->handle = in->e[d].handle;
		__builtin_memcpy(v->rule_chain, in->e[d].rule_chain, sizeof(v->rule_chain));
	}
	return 0;
}

/* Walking a chain's rules to the one whose expressions hold expr (bpf_loop's state). */
struct rule_walk {
	__u64 at;   /* the rule looked at: a struct nft_rule_dp */
	__u64 expr; /* the drop verdict's struct nft_expr */
	__u64 handle;
	bool found;
};

/*
 * struct nft_rule_dp's header word: is_last:1, dlen:12, handle:42 from bit 0
 * (the helper checks this layout in the kernel's BTF before loading this
 * program: clang cannot relocate bitfields of a 64-bit word).
 */
#define RULE_IS_LAST(h) ((h) & 1)
#define RULE_DLEN(h) (((h) >> 1) & 0xfff)
#define RULE_HANDLE(h) (((h) >> 13) & ((1ULL << 42) - 1))

static long rule_step(__u32 i, void *ctx)
{
	struct rule_walk *w = ctx;
	__u64 data = w->at + bpf_core_field_offset(struct nft_rule_dp, data);
	__u64 h = 0;

	(void)i;
	if (bpf_probe_read_kernel(&h, sizeof(h), (void *)w->at) || RULE_IS_LAST(h))
		return 1;
	if (w->expr >= data && w->expr < data + RULE_DLEN(h)) {
		w->handle = RULE_HANDLE(h);
		w->found = true;
		return 1;
	}
	w->at = data + RULE_DLEN(h);
	return 0;
}

/* The first rule of the generation of chain's rules that holds expr, or 0. */
static __always_inline __u64 blob_holding(struct nft_chain *chain, __u64 expr)
{
	struct nft_rule_blob *blobs[2] = { BPF_CORE_READ(chain, blob_gen_0), BPF_CORE_READ(chain, blob_gen_1) };

	for (int g = 0; g < 2; g++) {
		__u64 data = (__u64)blobs[g] + bpf_core_field_offset(struct nft_rule_blob, data);

		if (blobs[g] && expr >= data && expr < data + BPF_CORE_READ(blobs[g], size))
			return data;
	}
	return 0;
}

/*
 * An immediate verdict ran in the nft_do_chain call under way for this skb:
 * a jump or goto enters a chain; a drop is the rule's own, found among the
 * rules of the chains entered.
 */
SEC("fexit")
int BPF_PROG(nf_nft_immediate, const struct nft_expr *expr, struct nft_regs *regs, const struct nft_pktinfo *pkt)
{
	__u32 zero = 0;
	struct nf_inside *in = bpf_map_lookup_elem(&nf_inside, &zero);
	struct rule_walk w = { .expr = (__u64)expr };
	struct nf_verdict *e;
	struct nf_chains *c;
	__u32 code, d;

	if (!bpf_core_type_exists(struct nft_rule_dp) || !in || in->depth == 0 || in->depth > PWRU_NF_INSIDE_MAX)
		return 0;
	d = (in->depth - 1) & (PWRU_NF_INSIDE_MAX - 1);
	e = &in->e[d];
	c = &in->c[d];
	if (e->skb != (__u64)BPF_CORE_READ(pkt, skb))
		return 0;
	code = BPF_CORE_READ(regs, verdict.code);
	if (code == NFT_JUMP || code == NFT_GOTO) {
		if (c->n < PWRU_NF_CHAINS_MAX)
			c->chain[c->n & (PWRU_NF_CHAINS_MAX - 1)] = (__u64)BPF_CORE_READ(regs, verdict.chain);
		c->n++; /* past the end: chains not noted, whose rules a drop may be in */
		return 0;
	}
	if ((code & NF_VERDICT_MASK) != NF_DROP)
		return 0;
	e->rule = PWRU_NF_RULE_LOST;
	for (int i = 0; i < PWRU_NF_CHAINS_MAX; i++) {
		struct nft_chain *chain;

		if ((__u32)i >= c->n)
			break;
		chain = (struct nft_chain *)c->chain[i];
		if (!(w.at = blob_holding(chain, w.expr)))
			continue;
		bpf_loop(RULES_MAX, rule_step, &w, 0);
		if (w.found) {
			e->rule = PWRU_NF_RULE_EXACT;
			e->handle = w.handle;
			bpf_probe_read_kernel_str(e->rule_chain, sizeof(e->rule_chain), BPF_CORE_READ(chain, name));
		}
		break;
	}
	return 0;
}

/* {ipt,ip6t,arpt}_do_table(priv, skb, state) since 5.16: priv is the table; the hook names the chain. */
static __always_inline int xt_verdict(__u8 kind, struct xt_table *table, struct sk_buff *skb,
				      const struct nf_hook_state *state, unsigned int ret)
{
	struct nf_verdict *v = noted(skb, ret);

	if (!v)
		return 0;
	v->kind = kind;
	hook_of(v, state);
	v->family = BPF_CORE_READ(table, af);
	bpf_probe_read_kernel_str(v->table, sizeof(v->table), &table->name);
	v->chain[0] = 0;
	return 0;
}

SEC("fexit")
int BPF_PROG(nf_ipt_do_table, void *priv, struct sk_buff *skb, const struct nf_hook_state *state, unsigned int ret)
{
	return xt_verdict(PWRU_NF_IPT, priv, skb, state, ret);
}

SEC("fexit")
int BPF_PROG(nf_ip6t_do_table, void *priv, struct sk_buff *skb, const struct nf_hook_state *state, unsigned int ret)
{
	return xt_verdict(PWRU_NF_IP6T, priv, skb, state, ret);
}

SEC("fexit")
int BPF_PROG(nf_arpt_do_table, void *priv, struct sk_buff *skb, const struct nf_hook_state *state, unsigned int ret)
{
	return xt_verdict(PWRU_NF_ARPT, priv, skb, state, ret);
}
