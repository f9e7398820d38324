/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel text symbols from /proc/kallsyms: which functions exist, and address to name. */
#ifndef PWRU_KALLSYMS_H
#define PWRU_KALLSYMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ksym {
	uint64_t addr;
	const char *name;
	bool bpf; /* a BPF program, trampoline or dispatcher ("[bpf]" in kallsyms) */
};

struct kallsyms {
	struct ksym *syms; /* text symbols, sorted by address */
	size_t cnt;
	char *names;	   /* string pool */
	uint32_t *hash;	   /* open addressing: index + 1 into syms, 0 = empty */
	size_t hash_cap;
	bool addrs_hidden; /* kptr_restrict hides addresses */
};

/* Loads text symbols; returns -errno. */
int kallsyms_load(struct kallsyms *ks);
void kallsyms_free(struct kallsyms *ks);
const struct ksym *kallsyms_by_name(const struct kallsyms *ks, const char *name);
/* The symbol containing addr (nearest at or below it), or NULL. */
const struct ksym *kallsyms_by_addr(const struct kallsyms *ks, uint64_t addr);
/* "name+0xoff" into buf. */
void kallsyms_describe(const struct kallsyms *ks, uint64_t addr, char *buf, size_t len);

#endif
