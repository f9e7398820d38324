// SPDX-License-Identifier: Apache-2.0
#include "culprit_netfilter.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define MAX_TOKENS 512
#define JUMP_DEPTH 8

/* ---- reading the tools' text ---- */

/* A line's words, double-quoted strings kept whole (a comment saying "-j DROP" is not a verdict). */
struct words {
	const char *w[MAX_TOKENS];
	size_t len[MAX_TOKENS];
	size_t n;
};

static void split_words(const char *s, size_t len, struct words *out)
{
	const char *end = s + len;

	out->n = 0;
	while (s < end && out->n < MAX_TOKENS) {
		while (s < end && isspace((unsigned char)*s))
			s++;
		if (s >= end)
			break;
		const char *start = s;
		bool quoted = false;

		while (s < end && (quoted || !isspace((unsigned char)*s))) {
			if (*s == '\\' && s + 1 < end)
				s++;
			else if (*s == '"')
				quoted = !quoted;
			s++;
		}
		out->w[out->n] = start;
		out->len[out->n++] = (size_t)(s - start);
	}
}

static bool word_is(const struct words *w, size_t i, const char *s)
{
	return i < w->n && w->len[i] == strlen(s) && memcmp(w->w[i], s, w->len[i]) == 0;
}

static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p) {
		set_out_of_memory();
		return NULL;
	}
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

static struct nf_rule *add_rule(struct nf_ruleset *rs)
{
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct nf_rule *v = realloc(rs->v, cap * sizeof(*v));

		if (!v) {
			set_out_of_memory();
			return NULL;
		}
		rs->v = v;
		rs->cap = cap;
	}
	memset(&rs->v[rs->n], 0, sizeof(rs->v[rs->n]));
	return &rs->v[rs->n++];
}

static void copy_word(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = 0;
}

/* ---- iptables-save -c ---- */

struct ipt_state {
	const char *family;
	char table[32];
	/* Built-in chains of the current table: they have a policy, and are their own hook. */
	char builtin[8][16];
	size_t nbuiltin;
	char last_chain[128];
	unsigned position;
};

static bool ipt_builtin(const struct ipt_state *st, const char *chain, size_t n)
{
	for (size_t i = 0; i < st->nbuiltin; i++)
		if (strlen(st->builtin[i]) == n && memcmp(st->builtin[i], chain, n) == 0)
			return true;
	return false;
}

static bool ipt_verdict_drops(const char *t, size_t n)
{
	return (n == 4 && memcmp(t, "DROP", 4) == 0) || (n == 6 && memcmp(t, "REJECT", 6) == 0);
}

/* ":CHAIN POLICY [packets:bytes]": a built-in chain's policy is a rule of its own, with a counter. */
static void ipt_chain(struct nf_ruleset *rs, int tool, struct ipt_state *st, const char *line, size_t len)
{
	struct words w;
	unsigned long long pk = 0, by = 0;
	char text[160];
	struct nf_rule *r;

	split_words(line + 1, len - 1, &w);
	if (w.n < 2 || word_is(&w, 1, "-") || st->nbuiltin >= 8)
		return; /* a user chain */
	copy_word(st->builtin[st->nbuiltin++], sizeof(st->builtin[0]), w.w[0], w.len[0]);
	if (w.n >= 3)
		sscanf(w.w[2], "[%llu:%llu]", &pk, &by);
	snprintf(text, sizeof(text), "-P %.*s %.*s", (int)w.len[0], w.w[0], (int)w.len[1], w.w[1]);
	if (!(r = add_rule(rs)))
		return;
	r->tool = tool;
	snprintf(r->family, sizeof(r->family), "%s", st->family);
	r->table = dup_n(st->table, strlen(st->table));
	r->chain = dup_n(w.w[0], w.len[0]);
	r->text = dup_n(text, strlen(text));
	copy_word(r->hook, sizeof(r->hook), w.w[0], w.len[0]);
	r->packets = pk;
	r->counter = true;
	r->policy = true;
	r->drops = ipt_verdict_drops(w.w[1], w.len[1]);
}

/* "[packets:bytes] -A CHAIN ...". */
static void ipt_rule(struct nf_ruleset *rs, int tool, struct ipt_state *st, const char *line, size_t len)
{
	unsigned long long pk = 0, by = 0;
	const char *rule = memchr(line, ']', len);
	struct words w;
	struct nf_rule *r;

	if (!rule || sscanf(line, "[%llu:%llu]", &pk, &by) != 2)
		return;
	rule++;
	while (rule < line + len && *rule == ' ')
		rule++;
	split_words(rule, (size_t)(line + len - rule), &w);
	if (w.n < 2 || !word_is(&w, 0, "-A"))
		return;
	if (strlen(st->last_chain) != w.len[1] || memcmp(st->last_chain, w.w[1], w.len[1]) != 0) {
		copy_word(st->last_chain, sizeof(st->last_chain), w.w[1], w.len[1]);
		st->position = 0;
	}
	if (!(r = add_rule(rs)))
		return;
	r->tool = tool;
	snprintf(r->family, sizeof(r->family), "%s", st->family);
	r->table = dup_n(st->table, strlen(st->table));
	r->chain = dup_n(w.w[1], w.len[1]);
	r->text = dup_n(rule, (size_t)(line + len - rule));
	r->position = ++st->position;
	r->packets = pk;
	r->counter = true;
	if (ipt_builtin(st, w.w[1], w.len[1]))
		copy_word(r->hook, sizeof(r->hook), w.w[1], w.len[1]);
	for (size_t i = 2; i + 1 < w.n; i++) {
		if (!word_is(&w, i, "-j") && !word_is(&w, i, "-g") && !word_is(&w, i, "--jump") &&
		    !word_is(&w, i, "--goto"))
			continue;
		r->drops = ipt_verdict_drops(w.w[i + 1], w.len[i + 1]);
		r->target = dup_n(w.w[i + 1], w.len[i + 1]);
		break;
	}
}

static void parse_iptables(struct nf_ruleset *rs, int tool, const char *text, size_t len)
{
	struct ipt_state st = { .family = tool == TOOL_IP6T_LEGACY || tool == TOOL_IP6T_NFT ? "ip6" : "ip" };
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (n && p[0] == '*') {
			copy_word(st.table, sizeof(st.table), p + 1, n - 1);
			st.nbuiltin = 0;
			st.last_chain[0] = 0;
			if ((tool == TOOL_IPT_NFT || tool == TOOL_IP6T_NFT) &&
			    rs->ncompat < sizeof(rs->nft_compat) / sizeof(rs->nft_compat[0]))
				snprintf(rs->nft_compat[rs->ncompat++], sizeof(rs->nft_compat[0]), "%s %s", st.family,
					 st.table);
		} else if (n && p[0] == ':') {
			ipt_chain(rs, tool, &st, p, n);
		} else if (n && p[0] == '[') {
			ipt_rule(rs, tool, &st, p, n);
		}
		p += n + 1;
	}
}

/* ---- nft -a list ruleset ---- */

static bool nft_compat_table(const struct nf_ruleset *rs, const char *family, const char *table)
{
	char key[40];

	snprintf(key, sizeof(key), "%s %s", family, table);
	for (size_t i = 0; i < rs->ncompat; i++)
		if (strcmp(rs->nft_compat[i], key) == 0)
			return true;
	return false;
}

/* Braces that open minus those that close, outside quoted strings. */
static int brace_balance(const char *s, size_t n)
{
	bool quoted = false;
	int d = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		else if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == '{')
			d++;
		else if (!quoted && s[i] == '}')
			d--;
	}
	return d;
}

struct nft_state {
	char family[8], table[64], chain[128], hook[16];
	bool skip_table, in_chain;
	int depth;
	unsigned position;
};

static void add_handle(struct nf_ruleset *rs, const struct nft_state *st, uint64_t handle)
{
	struct nft_handle *h;

	if (rs->nh == rs->caph) {
		size_t cap = rs->caph ? rs->caph * 2 : 64;
		struct nft_handle *v = realloc(rs->h, cap * sizeof(*v));

		if (!v) {
			set_out_of_memory();
			return;
		}
		rs->h = v;
		rs->caph = cap;
	}
	h = &rs->h[rs->nh++];
	snprintf(h->family, sizeof(h->family), "%s", st->family);
	h->table = dup_n(st->table, strlen(st->table));
	h->chain = dup_n(st->chain, strlen(st->chain));
	h->handle = handle;
}

/* A rule line of a table iptables-nft shows: its handle only. */
static void nft_compat_rule(struct nf_ruleset *rs, struct nft_state *st, const char *line, size_t n)
{
	struct words w;

	split_words(line, n, &w);
	if (w.n >= 3 && word_is(&w, w.n - 3, "#") && word_is(&w, w.n - 2, "handle"))
		add_handle(rs, st, strtoull(w.w[w.n - 1], NULL, 10));
}

/* A rule line: its text without the counter's values and the handle, whether it drops, where it jumps. */
static void nft_rule(struct nf_ruleset *rs, struct nft_state *st, const char *line, size_t n)
{
	unsigned long long handle = 0, pk = 0, by = 0;
	struct buf text = { 0 };
	struct words w;
	struct nf_rule *r;
	bool counter = false, drops = false;
	char *target = NULL;

	split_words(line, n, &w);
	if (w.n < 3 || !word_is(&w, w.n - 3, "#") || !word_is(&w, w.n - 2, "handle"))
		return; /* not a rule: a chain's type, comment or device line */
	handle = strtoull(w.w[w.n - 1], NULL, 10);
	add_handle(rs, st, handle);
	for (size_t i = 0; i + 3 < w.n; i++) {
		if (word_is(&w, i, "counter") && word_is(&w, i + 1, "packets") && i + 4 < w.n - 3 &&
		    word_is(&w, i + 3, "bytes")) {
			counter = true;
			pk = strtoull(w.w[i + 2], NULL, 10);
			by = strtoull(w.w[i + 4], NULL, 10);
			(void)by;
			if (text.len)
				BUF_PUT_LIT(&text, " ");
			BUF_PUT_LIT(&text, "counter");
			i += 4;
			continue;
		}
		if (word_is(&w, i, "drop") || word_is(&w, i, "reject"))
			drops = true;
		if ((word_is(&w, i, "jump") || word_is(&w, i, "goto")) && i + 1 < w.n - 3 && !target)
			target = dup_n(w.w[i + 1], w.len[i + 1]);
		if (text.len)
			BUF_PUT_LIT(&text, " ");
		buf_put(&text, w.w[i], w.len[i]);
	}
	if (!(r = add_rule(rs))) {
		buf_free(&text);
		free(target);
		return;
	}
	r->tool = TOOL_NFT;
	snprintf(r->family, sizeof(r->family), "%s", st->family);
	r->table = dup_n(st->table, strlen(st->table));
	r->chain = dup_n(st->chain, strlen(st->chain));
	r->text = dup_n(text.p ? text.p : "", text.len);
	r->target = target;
	snprintf(r->hook, sizeof(r->hook), "%s", st->hook);
	r->position = ++st->position;
	r->handle = handle;
	r->packets = pk;
	r->counter = counter;
	r->drops = drops;
	buf_free(&text);
}

/* "type filter hook input priority filter; policy drop;": the chain's hook, and a policy that drops (no counter). */
static void nft_chain_type(struct nf_ruleset *rs, struct nft_state *st, const char *line, size_t n)
{
	struct words w;

	split_words(line, n, &w);
	for (size_t i = 0; i + 1 < w.n; i++) {
		if (word_is(&w, i, "hook"))
			copy_word(st->hook, sizeof(st->hook), w.w[i + 1], w.len[i + 1]);
		if (word_is(&w, i, "policy") && w.len[i + 1] >= 4 && memcmp(w.w[i + 1], "drop", 4) == 0) {
			struct nf_rule *r = add_rule(rs);

			if (!r)
				return;
			r->tool = TOOL_NFT;
			snprintf(r->family, sizeof(r->family), "%s", st->family);
			r->table = dup_n(st->table, strlen(st->table));
			r->chain = dup_n(st->chain, strlen(st->chain));
			r->text = dup_n("policy drop", 11);
			snprintf(r->hook, sizeof(r->hook), "%s", st->hook);
			r->policy = true;
			r->drops = true;
		}
	}
}

static void parse_nft(struct nf_ruleset *rs, const char *text, size_t len)
{
	struct nft_state st = { 0 };
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *s = p;
		size_t sn = n;
		struct words w;

		while (sn && isspace((unsigned char)*s))
			s++, sn--;
		split_words(s, sn, &w);
		if (st.depth == 0 && word_is(&w, 0, "table") && w.n >= 3) {
			copy_word(st.family, sizeof(st.family), w.w[1], w.len[1]);
			copy_word(st.table, sizeof(st.table), w.w[2], w.len[2]);
			st.skip_table = nft_compat_table(rs, st.family, st.table);
		} else if (st.depth == 1 && word_is(&w, 0, "chain") && w.n >= 2) {
			copy_word(st.chain, sizeof(st.chain), w.w[1], w.len[1]);
			st.hook[0] = 0;
			st.in_chain = true;
			st.position = 0;
		} else if (st.depth == 2 && st.in_chain && word_is(&w, 0, "type")) {
			if (!st.skip_table)
				nft_chain_type(rs, &st, s, sn);
		} else if (st.depth == 2 && st.in_chain) {
			if (st.skip_table)
				nft_compat_rule(rs, &st, s, sn);
			else
				nft_rule(rs, &st, s, sn);
		}
		st.depth += brace_balance(s, sn);
		if (st.depth < 2)
			st.in_chain = false;
		if (st.depth < 0)
			st.depth = 0;
		p += n + 1;
	}
}

void nf_parse(struct nf_ruleset *rs, int tool, const char *text, size_t len)
{
	if (tool == TOOL_NFT)
		parse_nft(rs, text, len);
	else
		parse_iptables(rs, tool, text, len);
}

void nf_ruleset_free(struct nf_ruleset *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->v[i].table);
		free(rs->v[i].chain);
		free(rs->v[i].text);
		free(rs->v[i].target);
	}
	free(rs->v);
	for (size_t i = 0; i < rs->nh; i++) {
		free(rs->h[i].table);
		free(rs->h[i].chain);
	}
	free(rs->h);
	memset(rs, 0, sizeof(*rs));
}

const struct nf_rule *nf_rule_by_handle(const struct nf_ruleset *rs, const char *family, const char *table,
					const char *chain, uint64_t handle)
{
	unsigned rank = 0;
	bool seen = false;
	int tool;

	for (size_t i = 0; i < rs->n; i++) {
		const struct nf_rule *r = &rs->v[i];

		if (r->tool == TOOL_NFT && !r->policy && r->handle == handle && strcmp(r->family, family) == 0 &&
		    str_eq(r->table, table) && str_eq(r->chain, chain))
			return r;
	}
	/* Not nft's own: a table of iptables-nft, whose tool numbers its rules by their order. */
	tool = strcmp(family, "ip") == 0 ? TOOL_IPT_NFT : strcmp(family, "ip6") == 0 ? TOOL_IP6T_NFT : -1;
	if (tool < 0 || !nft_compat_table(rs, family, table))
		return NULL;
	for (size_t i = 0; i < rs->nh && !seen; i++) {
		const struct nft_handle *h = &rs->h[i];

		if (strcmp(h->family, family) != 0 || !str_eq(h->table, table) || !str_eq(h->chain, chain))
			continue;
		rank++;
		seen = h->handle == handle;
	}
	if (!seen)
		return NULL;
	for (size_t i = 0; i < rs->n; i++) {
		const struct nf_rule *r = &rs->v[i];

		if (r->tool == tool && !r->policy && r->position == rank && str_eq(r->table, table) &&
		    str_eq(r->chain, chain))
			return r;
	}
	return NULL;
}

/* ---- what moved ---- */

static bool same_rule(const struct nf_rule *a, const struct nf_rule *b)
{
	return a->tool == b->tool && a->policy == b->policy && strcmp(a->family, b->family) == 0 &&
	       str_eq(a->table, b->table) && str_eq(a->chain, b->chain) && str_eq(a->text, b->text);
}

/*
 * The same rule in the earlier reading: the same text in the same chain, the
 * same how-many-th of its identical twins (positions shift when rules are
 * added). NULL when it did not exist then.
 */
static const struct nf_rule *earlier(const struct nf_ruleset *before, const struct nf_ruleset *after,
				     const struct nf_rule *r)
{
	size_t twin = 0;

	for (const struct nf_rule *x = after->v; x < r; x++)
		twin += same_rule(x, r);
	for (size_t i = 0; i < before->n; i++)
		if (same_rule(&before->v[i], r) && twin-- == 0)
			return &before->v[i];
	return NULL;
}

static uint64_t moved(const struct nf_ruleset *before, const struct nf_ruleset *after, const struct nf_rule *r)
{
	const struct nf_rule *b;

	if (!r->counter || !before->ran[r->tool])
		return 0;
	b = earlier(before, after, r);
	/* A rule added since counted all its packets since; a counter that went back was reset (zeroed): all new. */
	if (!b || b->packets > r->packets)
		return r->packets;
	return r->packets - b->packets;
}

static bool family_fits(const char *family, int l3)
{
	if (l3 == 4)
		return strcmp(family, "ip6") != 0;
	if (l3 == 6)
		return strcmp(family, "ip") != 0;
	return true;
}

/* The hook a chain is reached from: its own, or that of a rule that jumped to it and counted packets. */
static const char *hook_of(const struct nf_ruleset *before, const struct nf_ruleset *after, const struct nf_rule *r,
			   int depth)
{
	if (r->hook[0] || depth >= JUMP_DEPTH)
		return r->hook;
	for (size_t i = 0; i < after->n; i++) {
		const struct nf_rule *j = &after->v[i];

		if (j->tool == r->tool && str_eq(j->target, r->chain) && str_eq(j->table, r->table) &&
		    strcmp(j->family, r->family) == 0 && moved(before, after, j) > 0) {
			const char *h = hook_of(before, after, j, depth + 1);

			if (*h)
				return h;
		}
	}
	return "";
}

size_t nf_moved_drops(const struct nf_ruleset *before, const struct nf_ruleset *after, int l3,
		      struct nf_moved *out, size_t max, size_t *uncounted)
{
	size_t n = 0;

	*uncounted = 0;
	for (size_t i = 0; i < after->n; i++) {
		const struct nf_rule *r = &after->v[i];
		uint64_t d;

		if (!r->drops || !family_fits(r->family, l3))
			continue;
		if (!r->counter) {
			(*uncounted)++;
			continue;
		}
		if (!(d = moved(before, after, r)) || n >= max)
			continue;
		out[n].rule = r;
		out[n].delta = d;
		snprintf(out[n].hook, sizeof(out[n].hook), "%s", hook_of(before, after, r, 0));
		n++;
	}
	return n;
}
