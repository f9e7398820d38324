// SPDX-License-Identifier: Apache-2.0
#include "kallsyms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static int cmp_addr(const void *a, const void *b)
{
	const struct ksym *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int build_hash(struct kallsyms *ks)
{
	ks->hash_cap = 1;
	while (ks->hash_cap < ks->cnt * 2)
		ks->hash_cap <<= 1;
	ks->hash = calloc(ks->hash_cap, sizeof(*ks->hash));
	if (!ks->hash)
		return -ENOMEM;
	for (size_t i = 0; i < ks->cnt; i++) {
		size_t slot = name_hash(ks->syms[i].name) & (ks->hash_cap - 1);

		while (ks->hash[slot]) {
			/* Keep the first of duplicate names (static functions in several files). */
			if (strcmp(ks->syms[ks->hash[slot] - 1].name, ks->syms[i].name) == 0)
				goto next;
			slot = (slot + 1) & (ks->hash_cap - 1);
		}
		ks->hash[slot] = (uint32_t)(i + 1);
next:;
	}
	return 0;
}

int kallsyms_load(struct kallsyms *ks)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	size_t names_len = 0, names_cap = 1 << 20, cap = 1 << 16;
	char line[512];
	bool any_addr = false;

	memset(ks, 0, sizeof(*ks));
	if (!f)
		return -errno;
	ks->syms = malloc(cap * sizeof(*ks->syms));
	ks->names = malloc(names_cap);
	if (!ks->syms || !ks->names) {
		fclose(f);
		return -ENOMEM;
	}
	/* Names are stored as offsets first: the pool moves while it grows. */
	while (fgets(line, sizeof(line), f)) {
		unsigned long long addr;
		char type, name[256], module[16] = "";

		if (sscanf(line, "%llx %c %255s %15s", &addr, &type, name, module) < 3)
			continue;
		if (type != 't' && type != 'T')
			continue;
		size_t n = strlen(name) + 1;
		if (names_len + n > names_cap) {
			char *p = realloc(ks->names, names_cap * 2);
			if (!p)
				goto oom;
			ks->names = p;
			names_cap *= 2;
		}
		if (ks->cnt == cap) {
			struct ksym *p = realloc(ks->syms, cap * 2 * sizeof(*p));
			if (!p)
				goto oom;
			ks->syms = p;
			cap *= 2;
		}
		memcpy(ks->names + names_len, name, n);
		ks->syms[ks->cnt].addr = addr;
		ks->syms[ks->cnt].name = (const char *)(uintptr_t)names_len;
		ks->syms[ks->cnt].bpf = strcmp(module, "[bpf]") == 0;
		ks->cnt++;
		names_len += n;
		any_addr |= addr != 0;
	}
	fclose(f);
	for (size_t i = 0; i < ks->cnt; i++)
		ks->syms[i].name = ks->names + (uintptr_t)ks->syms[i].name;
	ks->addrs_hidden = !any_addr;
	qsort(ks->syms, ks->cnt, sizeof(*ks->syms), cmp_addr);
	return build_hash(ks);
oom:
	fclose(f);
	kallsyms_free(ks);
	return -ENOMEM;
}

void kallsyms_free(struct kallsyms *ks)
{
	free(ks->syms);
	free(ks->names);
	free(ks->hash);
	memset(ks, 0, sizeof(*ks));
}

const struct ksym *kallsyms_by_name(const struct kallsyms *ks, const char *name)
{
	if (!ks->hash_cap)
		return NULL;
	for (size_t slot = name_hash(name) & (ks->hash_cap - 1); ks->hash[slot];
	     slot = (slot + 1) & (ks->hash_cap - 1)) {
		const struct ksym *s = &ks->syms[ks->hash[slot] - 1];

		if (strcmp(s->name, name) == 0)
			return s;
	}
	return NULL;
}

const struct ksym *kallsyms_by_addr(const struct kallsyms *ks, uint64_t addr)
{
	size_t lo = 0, hi = ks->cnt;

	if (!ks->cnt || addr < ks->syms[0].addr)
		return NULL;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (ks->syms[mid].addr <= addr)
			lo = mid;
		else
			hi = mid;
	}
	return &ks->syms[lo];
}

void kallsyms_describe(const struct kallsyms *ks, uint64_t addr, char *buf, size_t len)
{
	const struct ksym *s = kallsyms_by_addr(ks, addr);

	if (s)
		snprintf(buf, len, "%s+0x%llx", s->name, (unsigned long long)(addr - s->addr));
	else
		snprintf(buf, len, "0x%llx", (unsigned long long)addr);
}
