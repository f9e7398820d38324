/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A network namespace's netfilter rules with their counters, as the node's
 * tools print them (iptables-save -c, nft -a list ruleset), and which rules
 * that drop counted packets between two readings: how a NETFILTER_DROP is
 * named down to the rule when the kernel's own functions cannot be probed.
 */
#ifndef PWRU_CULPRIT_NETFILTER_H
#define PWRU_CULPRIT_NETFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "culprit_tools.h"

struct nf_rule {
	int tool;	/* enum nf_tool */
	char family[8]; /* ip, ip6, inet, arp, bridge, netdev */
	char *table, *chain;
	char *text;	   /* as the tool prints it: "-A INPUT -p udp ... -j DROP", or nft's statement (counter values left out) */
	char *target;	   /* the chain it jumps or goes to, NULL when none */
	char hook[16];	   /* a base chain's hook ("INPUT", nft's "input"); empty for other chains */
	unsigned position; /* 1-based position in its chain; 0 for a chain's policy */
	uint64_t handle;   /* nft's rule handle, 0 for iptables */
	uint64_t packets;  /* its counter */
	bool counter;	   /* it has one (iptables rules always do; nft rules only with a counter statement) */
	bool drops;	   /* its verdict drops: DROP, REJECT, drop, reject; a chain's DROP policy */
	bool policy;	   /* a chain's policy (":FORWARD DROP" in iptables-save) */
};

/* A rule's handle as nft lists it, for every table (iptables-nft's too): where it stands in its chain. */
struct nft_handle {
	char family[8];
	char *table, *chain;
	uint64_t handle;
};

struct nf_ruleset {
	struct nf_rule *v;
	size_t n, cap;
	struct nft_handle *h; /* in nft's order: a chain's rules in their order */
	size_t nh, caph;
	bool ran[TOOL_COUNT];  /* the tool answered (found, ran, exit 0) */
	bool missing[TOOL_COUNT]; /* not found on the node */
	char nft_compat[16][40]; /* "family table" of tables iptables-nft shows: nft's view of them is skipped */
	size_t ncompat;
};

/* Adds what one tool printed. */
void nf_parse(struct nf_ruleset *rs, int tool, const char *text, size_t len);
void nf_ruleset_free(struct nf_ruleset *rs);

/*
 * The rule of nf_tables with this handle in family table/chain, as its tool
 * prints it: nft's own, or for a table of iptables-nft (ip, ip6) its
 * iptables-save line, the one at the handle's rank among the chain's rules.
 * NULL when the reading has no such rule.
 */
const struct nf_rule *nf_rule_by_handle(const struct nf_ruleset *rs, const char *family, const char *table,
					const char *chain, uint64_t handle);

/* A rule that drops and counted packets between two readings. */
struct nf_moved {
	const struct nf_rule *rule; /* in the later reading */
	uint64_t delta;
	char hook[16]; /* the hook it was reached from: its chain's, or found through the jumps that counted */
};

/*
 * The rules of after that drop packets of family l3 (4, 6; 0: any) whose
 * counters moved since before. *uncounted: how many rules that drop have no
 * counter (they cannot be seen moving). Returns how many (at most max).
 */
size_t nf_moved_drops(const struct nf_ruleset *before, const struct nf_ruleset *after, int l3,
		      struct nf_moved *out, size_t max, size_t *uncounted);

#endif
