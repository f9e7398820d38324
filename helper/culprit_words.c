// SPDX-License-Identifier: Apache-2.0
#include "culprit_words.h"

#include <string.h>

#include "culprit_tools.h"
#include "fmt.h"

static void put(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void put_lead(struct buf *b, uint64_t skb)
{
	BUF_PUT_LIT(b, "    \xe2\x86\xb3 "); /* ↳ */
	put_hex(b, skb);
	BUF_PUT_LIT(b, " ");
}

static bool nft(const struct nf_rule *r)
{
	return r->tool == TOOL_NFT;
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

/* ruleWhere: "filter/FORWARD", or nft's "inet mine/in". */
static void rule_where(struct buf *b, const struct nf_rule *r, const char *hook)
{
	if (nft(r)) {
		put(b, r->family);
		BUF_PUT_LIT(b, " ");
	}
	put(b, or_empty(r->table));
	BUF_PUT_LIT(b, "/");
	put(b, nft(r) || !*hook ? or_empty(r->chain) : hook);
}

/* describeRule: "`-A INPUT ... -j DROP` in filter/INPUT (rule 2 of INPUT, iptables-nft)". */
static void rule_words(struct buf *b, const struct nf_moved *m)
{
	const struct nf_rule *r = m->rule;

	BUF_PUT_LIT(b, "`");
	put(b, or_empty(r->text));
	BUF_PUT_LIT(b, "` in ");
	rule_where(b, r, m->hook);
	BUF_PUT_LIT(b, " (");
	if (nft(r)) {
		bool any = true;

		if (r->policy) {
			BUF_PUT_LIT(b, "policy of chain ");
			put(b, or_empty(r->chain));
		} else if (r->handle) {
			BUF_PUT_LIT(b, "handle ");
			put_u64(b, r->handle);
		} else {
			any = false;
		}
		if (*m->hook) {
			if (any)
				BUF_PUT_LIT(b, ", ");
			BUF_PUT_LIT(b, "hook ");
			put(b, m->hook);
			any = true;
		}
		if (any)
			BUF_PUT_LIT(b, ", ");
	} else {
		if (r->policy) {
			BUF_PUT_LIT(b, "policy of ");
		} else {
			BUF_PUT_LIT(b, "rule ");
			put_u64(b, r->position);
			BUF_PUT_LIT(b, " of ");
		}
		put(b, or_empty(r->chain));
		BUF_PUT_LIT(b, ", ");
		if (!r->policy && r->handle) { /* iptables-nft's rule named exactly: nft's handle of it */
			BUF_PUT_LIT(b, "handle ");
			put_u64(b, r->handle);
			BUF_PUT_LIT(b, ", ");
		}
	}
	put(b, tool_names[r->tool]);
	BUF_PUT_LIT(b, ")");
}

/* chainWhere: "ip filter/INPUT, exactly (ipt_do_table returned NF_DROP)". */
static void chain_where(struct buf *b, const struct chain_words *c)
{
	const char *hook = or_empty(c->hook);

	put(b, c->family);
	BUF_PUT_LIT(b, " ");
	put(b, c->table);
	BUF_PUT_LIT(b, "/");
	put(b, c->chain);
	if (*hook && strcmp(hook, c->chain) != 0) {
		BUF_PUT_LIT(b, ", hook ");
		put(b, hook);
	}
	BUF_PUT_LIT(b, ", exactly (");
	put(b, c->by);
	BUF_PUT_LIT(b, " returned NF_DROP)");
}

static void why_words(struct buf *b, const char *why)
{
	put(b, why ? why : "no reason given");
}

static void candidates(struct buf *b, const struct nf_moved *cands, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		put(b, i ? "; " : "; it was one of: ");
		rule_words(b, &cands[i]);
	}
}

/* " (the chain: could not tell: WHY)" when the kernel was asked and could not say. */
static void chain_note(struct buf *b, const struct chain_words *c)
{
	if (!c || c->exact)
		return;
	BUF_PUT_LIT(b, " (the chain: could not tell: ");
	why_words(b, c->why);
	BUF_PUT_LIT(b, ")");
}

void words_netfilter_culprit(struct buf *b, uint64_t skb, const char *method, const struct chain_words *chain,
			     const struct nf_moved *rule, const char *why, const struct nf_moved *cands, size_t ncands)
{
	bool exact = chain && chain->exact;

	put_lead(b, skb);
	if (strcmp(method, "exact") == 0 && rule) {
		BUF_PUT_LIT(b, "dropped by ");
		rule_words(b, rule);
		BUF_PUT_LIT(b, "; known exactly (its drop verdict ran, and ");
		put(b, exact ? chain->by : "nft_do_chain");
		BUF_PUT_LIT(b, " returned NF_DROP)");
	} else if (strcmp(method, "none") != 0 && rule) {
		const char *how = strcmp(method, "counters") == 0 ? "its counter moved" : method;

		if (exact) {
			BUF_PUT_LIT(b, "dropped in ");
			chain_where(b, chain);
			BUF_PUT_LIT(b, "; the rule, by counters: ");
			rule_words(b, rule);
			BUF_PUT_LIT(b, ", since ");
			put(b, how);
		} else {
			BUF_PUT_LIT(b, "dropped by ");
			rule_words(b, rule);
			BUF_PUT_LIT(b, "; known because ");
			put(b, how);
			chain_note(b, chain);
		}
	} else {
		if (exact) {
			BUF_PUT_LIT(b, "dropped in ");
			chain_where(b, chain);
			BUF_PUT_LIT(b, "; which rule: could not tell (");
		} else {
			BUF_PUT_LIT(b, "which rule dropped it: could not tell (");
		}
		why_words(b, why);
		BUF_PUT_LIT(b, ")");
		candidates(b, cands, ncands);
		chain_note(b, chain);
	}
	BUF_PUT_LIT(b, "\n");
}

/* hookWhere: "tc ingress of eth0:2", "XDP of eth0:2". */
static void hook_where(struct buf *b, const struct hook_words *h)
{
	if (h->xdp) {
		BUF_PUT_LIT(b, "XDP of ");
	} else {
		BUF_PUT_LIT(b, "tc ");
		put(b, or_empty(h->direction));
		BUF_PUT_LIT(b, " of ");
	}
	if (h->ifindex) {
		put(b, or_empty(h->iface));
		BUF_PUT_LIT(b, ":");
		put_u64(b, h->ifindex);
	} else {
		put(b, h->iface ? h->iface : "?");
	}
}

static void name_words(struct buf *b, const char *name)
{
	put(b, name && *name ? name : "(no name)");
}

static void tag_words(struct buf *b, uint32_t id, const char *tag)
{
	BUF_PUT_LIT(b, " (id ");
	put_u64(b, id);
	BUF_PUT_LIT(b, ", tag ");
	put(b, tag && *tag ? tag : "?");
}

/* describeProgram: "drop_all (id 7, tag 16eac7fc5d88876c, clsact filter drop.o:[tc] pref 49152 handle 0x1)". */
static void program_words(struct buf *b, const struct prog_words *p)
{
	name_words(b, p->name);
	tag_words(b, p->id, p->tag);
	BUF_PUT_LIT(b, ", ");
	put(b, or_empty(p->attach));
	if (p->detail && *p->detail) {
		BUF_PUT_LIT(b, " ");
		put(b, p->detail);
	}
	BUF_PUT_LIT(b, ")");
}

/* Programs traced in this run, but not this drop's: " (not known exactly: WHY)". */
static void not_exact_words(struct buf *b, const char *why)
{
	if (!why || !*why)
		return;
	BUF_PUT_LIT(b, " (not known exactly: ");
	put(b, why);
	BUF_PUT_LIT(b, ")");
}

void words_program_culprit(struct buf *b, uint64_t skb, const char *method, const struct hook_words *h,
			   const char *verdict, const struct prog_words *progs, size_t nprogs, const char *why)
{
	bool exact = strcmp(method, "exact") == 0, attached = strcmp(method, "attached") == 0;

	put_lead(b, skb);
	if ((exact || attached) && nprogs == 1) {
		BUF_PUT_LIT(b, "dropped by BPF program ");
		program_words(b, &progs[0]);
		BUF_PUT_LIT(b, " at ");
		hook_where(b, h);
		if (verdict && *verdict) {
			BUF_PUT_LIT(b, ", which returned ");
			put(b, verdict);
		}
		put(b, exact ? "; known exactly (the program traced as it returned)"
			     : "; known because it is the one program attached there");
		if (attached)
			not_exact_words(b, why);
	} else {
		BUF_PUT_LIT(b, "dropped at ");
		hook_where(b, h);
		if (verdict && *verdict) {
			BUF_PUT_LIT(b, " (");
			put(b, verdict);
			BUF_PUT_LIT(b, ")");
		}
		if (attached && nprogs > 1) {
			BUF_PUT_LIT(b, " by one of the BPF programs attached there, in the order they run: ");
			for (size_t i = 0; i < nprogs; i++) {
				if (i)
					BUF_PUT_LIT(b, "; ");
				program_words(b, &progs[i]);
			}
			not_exact_words(b, why);
		} else {
			BUF_PUT_LIT(b, "; which program: could not tell (");
			why_words(b, why);
			BUF_PUT_LIT(b, ")");
		}
	}
	BUF_PUT_LIT(b, "\n");
}

void words_prog_run(struct buf *b, uint64_t skb, const struct hook_words *h, uint32_t id, const char *name,
		    const char *tag, const char *verdict, uint64_t from_skb)
{
	put_lead(b, skb);
	BUF_PUT_LIT(b, "handled by BPF program ");
	name_words(b, name);
	tag_words(b, id, tag);
	BUF_PUT_LIT(b, ") at ");
	hook_where(b, h);
	BUF_PUT_LIT(b, ": ");
	put(b, or_empty(verdict));
	if (from_skb) {
		BUF_PUT_LIT(b, "; continues skb ");
		put_hex(b, from_skb);
		BUF_PUT_LIT(b, ", which veth copied into the program's buffer");
	}
	BUF_PUT_LIT(b, "\n");
}
