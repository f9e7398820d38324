// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fexit on the kernel's netfilter table walkers: each traversal writes, per
 * CPU, which skb it was for and, when it returned NF_DROP, the table, chain
 * and hook. nf_hook_slow() frees a dropped skb right after the walker
 * returns, on the same CPU, so the drop tracepoint (bpf/pwru.bpf.c,
 * tp_kfree_skb_reason) finds its own verdict there. Loaded apart from the
 * probe programs (helper/nf_exact.c): where fentry/fexit is refused, or a
 * walker's module is not loaded, the trace goes on without it.
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
	in->e[d & (PWRU_NF_INSIDE_MAX - 1)].skb = (__u64)BPF_CORE_READ(pkt, skb);
	nft_where(&in->e[d & (PWRU_NF_INSIDE_MAX - 1)], pkt, priv);
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

	if (in && in->depth > 0)
		in->depth--;
	v = noted(BPF_CORE_READ(pkt, skb), ret);
	if (v)
		nft_where(v, pkt, priv);
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
