/* SPDX-License-Identifier: Apache-2.0 */
/*
 * With --emit text|wide the helper writes every line of the view, so that no
 * other writer's line lands inside one of its own: the culprit under a drop
 * and a program's run under its packet are written here too, as
 * "    ↳ 0xSKB <words>". The words are twins of src/reading/culprits.ts
 * (describeCulprit, describeProgRun), checked against them by
 * test/integration/emit-text.test.ts.
 */
#ifndef PWRU_CULPRIT_WORDS_H
#define PWRU_CULPRIT_WORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "culprit_netfilter.h"

/* What the kernel's table walkers said of a netfilter drop (the culprit's "chain"). */
struct chain_words {
	bool exact;
	const char *by, *family, *table, *chain, *hook; /* exact */
	const char *why;				/* not exact */
};

/* Where a tc or XDP program ran: "tc ingress of eth0:2", "XDP of eth0:2". */
struct hook_words {
	bool xdp;
	const char *iface;
	uint32_t ifindex;
	const char *direction; /* tc only */
};

/* A program as a culprit names it (attach: tcx, clsact, xdp-native ...; detail: clsact's filter, or empty). */
struct prog_words {
	uint32_t id;
	const char *name, *tag, *attach, *detail;
};

/* A netfilter culprit's line; chain NULL when the kernel was not asked; rule NULL when it could not be told. */
void words_netfilter_culprit(struct buf *b, uint64_t skb, const char *method, const struct chain_words *chain,
			     const struct nf_moved *rule, const char *why, const struct nf_moved *cands, size_t ncands);

/* A tc or XDP culprit's line; why: with "none", why not; with "attached", why not exactly (empty: not said). */
void words_program_culprit(struct buf *b, uint64_t skb, const char *method, const struct hook_words *h,
			   const char *verdict, const struct prog_words *progs, size_t nprogs, const char *why);

/*
 * A program's run on a packet: "handled by BPF program NAME (id N, tag T) at tc ingress of eth0:2: TC_ACT_OK";
 * from_skb, when not 0: the skb veth copied into the program's buffer, which the packet continues.
 */
void words_prog_run(struct buf *b, uint64_t skb, const struct hook_words *h, uint32_t id, const char *name,
		    const char *tag, const char *verdict, uint64_t from_skb);

#endif
