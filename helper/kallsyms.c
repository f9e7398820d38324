// SPDX-License-Identifier: Apache-2.0
#include "kallsyms.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Appends one text symbol; names are stored as offsets while the pool grows. */
static int add_sym(struct kallsyms *ks, size_t *cap, size_t *names_len, size_t *names_cap, uint64_t addr,
		   const char *name, size_t n, bool bpf)
{
	if (*names_len + n + 1 > *names_cap) {
		size_t grown = *names_cap * 2;
		char *p = realloc(ks->names, grown);

		if (!p)
			return -ENOMEM;
		ks->names = p;
		*names_cap = grown;
	}
	if (ks->cnt == *cap) {
		struct ksym *p = realloc(ks->syms, *cap * 2 * sizeof(*p));

		if (!p)
			return -ENOMEM;
		ks->syms = p;
		*cap *= 2;
	}
	memcpy(ks->names + *names_len, name, n);
	ks->names[*names_len + n] = 0;
	ks->syms[ks->cnt++] = (struct ksym){ .addr = addr, .name = (const char *)(uintptr_t)*names_len, .bpf = bpf };
	*names_len += n + 1;
	return 0;
}

/*
 * One line, "ADDR TYPE NAME[\t[MODULE]]": text symbols are kept. Parsed by
 * hand: ~165k lines, where sscanf() took twice as long as the kernel takes to
 * write them (~1 s more under emulation).
 */
static int parse_line(struct kallsyms *ks, const char *l, const char *end, size_t *cap, size_t *names_len,
		      size_t *names_cap, bool *any_addr)
{
	uint64_t addr = 0;
	int v;

	while (l < end && (v = hexval(*l)) >= 0) {
		addr = addr << 4 | (uint64_t)v;
		l++;
	}
	if (end - l < 4 || l[0] != ' ' || (l[1] != 't' && l[1] != 'T') || l[2] != ' ')
		return 0;
	const char *name = l + 3, *e = name;
	while (e < end && *e != '\t' && *e != ' ')
		e++;
	if (e == name)
		return 0;
	/* The module follows a tab: "[bpf]" marks BPF programs, trampolines and dispatchers. */
	const char *mod = e;
	while (mod < end && (*mod == '\t' || *mod == ' '))
		mod++;
	bool bpf = end - mod == 5 && memcmp(mod, "[bpf]", 5) == 0;
	*any_addr |= addr != 0;
	return add_sym(ks, cap, names_len, names_cap, addr, name, (size_t)(e - name), bpf);
}

int kallsyms_load(struct kallsyms *ks)
{
	int fd = open("/proc/kallsyms", O_RDONLY | O_CLOEXEC);
	size_t names_len = 0, names_cap = 1 << 20, cap = 1 << 16, have = 0;
	const size_t chunk = 1 << 20;
	bool any_addr = false;
	char *buf;
	ssize_t n;
	int ret = 0;

	memset(ks, 0, sizeof(*ks));
	if (fd < 0)
		return -errno;
	buf = malloc(chunk + 1024);
	ks->syms = malloc(cap * sizeof(*ks->syms));
	ks->names = malloc(names_cap);
	if (!buf || !ks->syms || !ks->names) {
		ret = -ENOMEM;
		goto out;
	}
	/* Big reads: the kernel fills each from its symbol table, a line at a time. */
	while ((n = read(fd, buf + have, chunk + 1024 - have)) > 0) {
		const char *p = buf, *end = buf + have + n, *nl;

		while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
			if ((ret = parse_line(ks, p, nl, &cap, &names_len, &names_cap, &any_addr)))
				goto out;
			p = nl + 1;
		}
		/* A part line waits for the rest; a line longer than any symbol's is dropped. */
		have = (size_t)(end - p);
		if (have > 1024)
			have = 0;
		memmove(buf, p, have);
	}
	if (n < 0)
		ret = -errno;
out:
	close(fd);
	free(buf);
	if (ret) {
		kallsyms_free(ks);
		return ret;
	}
	for (size_t i = 0; i < ks->cnt; i++)
		ks->syms[i].name = ks->names + (uintptr_t)ks->syms[i].name;
	ks->addrs_hidden = !any_addr;
	qsort(ks->syms, ks->cnt, sizeof(*ks->syms), cmp_addr);
	return build_hash(ks);
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
