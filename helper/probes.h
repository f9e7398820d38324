/* SPDX-License-Identifier: Apache-2.0 */
/* What to probe: kernel functions and tracepoints that take a struct sk_buff *, found in BTF. */
#ifndef PWRU_PROBES_H
#define PWRU_PROBES_H

#include <bpf/btf.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>

#include "event_json.h"
#include "kallsyms.h"

#define MAX_SKB_POS 5

enum probe_kind { PROBE_FUNC, PROBE_TRACEPOINT };

/* Tracepoints the program treats specially. */
enum tp_role {
	TP_GENERIC,
	TP_KFREE_SKB,	     /* skb:kfree_skb(skb, location): a drop, no reason (before 5.17) */
	TP_KFREE_SKB_REASON, /* skb:kfree_skb(skb, location, reason, ...) */
	TP_CONSUME_SKB,	     /* skb:consume_skb(skb): freed after normal use */
	TP_CONSUME_SKB_LOCATION, /* skb:consume_skb(skb, location) (6.3+) */
};

struct probe {
	char *name;
	enum probe_kind kind;
	int skb_pos;	  /* 1-based argument position of the skb */
	uint32_t btf_id;  /* FUNC id, or the btf_trace_<name> typedef id */
	enum tp_role role;
	uint64_t addr;	  /* the function's symbol (kallsyms), or ftrace's address for it (probe_set.ftrace_addrs); set by probes_place() */
	bool attached;
};

struct probe_set {
	struct probe *v;
	size_t cnt, cap;
	bool ftrace_addrs; /* the functions' addresses are ftrace's, not their symbols' */
};

/* Every tracepoint whose prototype takes a struct sk_buff * in its first five arguments. */
int probes_find_tracepoints(const struct btf *vmlinux, const regex_t *re, struct probe_set *out);

/* Every function with a struct sk_buff * among its first five parameters, by its BTF (probes_place() keeps those that can be probed). */
int probes_find_functions(const struct btf *btf, const regex_t *re, struct probe_set *out);

struct probe *probes_add(struct probe_set *set, const char *name);
void probes_free(struct probe_set *set);

/* What to probe: tracepoints only, or functions with the always-on drop and free tracepoints. */
struct probe_request {
	bool functions;
	const regex_t *re;	   /* --filter-func, or NULL */
	const char *filter_func;   /* its text, for the message when nothing matches */
	bool all_kmods;
};

/*
 * Chooses the probes from the kernel's BTF: tracepoints first, then functions
 * (probes_place() keeps the functions that can be probed, once the lists it
 * reads are in: the programs load meanwhile). Returns -ENOENT with the reason
 * in err when nothing matches; on success err may hold a warning ("" otherwise).
 */
int probes_choose(struct btf *vmlinux, const struct probe_request *req, struct probe_set *out, char *err,
		  size_t errlen);

struct fentry_sites;
/*
 * Keeps the functions the kernel can trace (traceable.h, or, given sites, by
 * their first bytes: fentry_site.h; without either, those kallsyms has), each
 * at ftrace's address when ftrace_addrs, else at its symbol's in ks.
 * Tracepoints keep their ids. -ENOENT with the reason in err when no function
 * is left.
 */
int probes_place(struct probe_set *set, const struct kallsyms *ks, bool ftrace_addrs,
		 const struct fentry_sites *sites, const char *filter_func, char *err, size_t errlen);

/* The kernel's enum skb_drop_reason, names without the SKB_DROP_REASON_ prefix (none before 5.17). */
struct drop_reason {
	uint32_t value;
	char *name;
};
struct drop_reasons {
	struct drop_reason *v; /* every enumerator */
	size_t cnt;
	const char **by_value; /* names by value below MAX_DROP_REASON; NULL where unnamed */
	uint32_t nvalues;
};
int drop_reasons_load(const struct btf *vmlinux, struct drop_reasons *out);
void drop_reasons_free(struct drop_reasons *d);
/* The reason of that name (without SKB_DROP_REASON_), or NULL when this kernel has none. */
const struct drop_reason *drop_reason_named(const struct drop_reasons *d, const char *name);

#endif
