// SPDX-License-Identifier: Apache-2.0
#include "addr_names.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

static int by_addr(const void *a, const void *b)
{
	return strcmp(((const struct addr_name *)a)->addr, ((const struct addr_name *)b)->addr);
}

int addr_names_load(struct addr_names *n, const char *path)
{
	FILE *f = fopen(path, "re");
	size_t cap = 0, len = 0;

	*n = (struct addr_names){ 0 };
	if (!f)
		return -errno;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *t = realloc(n->text, cap = cap * 2 + 8192);
			if (!t) {
				fclose(f);
				addr_names_free(n);
				return -ENOMEM;
			}
			n->text = t;
		}
		size_t got = fread(n->text + len, 1, cap - len - 1, f);
		len += got;
		if (got == 0)
			break;
	}
	fclose(f);
	if (!n->text)
		return 0;
	n->text[len] = 0;
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += n->text[i] == '\n';
	n->v = calloc(lines, sizeof(*n->v));
	if (!n->v) {
		addr_names_free(n);
		return -ENOMEM;
	}
	for (char *line = n->text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		char *space = strchr(line, ' ');
		if (!space || space == line || !space[1])
			continue;
		*space = 0;
		n->v[n->n++] = (struct addr_name){ .addr = line, .name = space + 1 };
	}
	qsort(n->v, n->n, sizeof(*n->v), by_addr);
	return 0;
}

const char *addr_name_of(const struct addr_names *n, const char *addr)
{
	struct addr_name key = { .addr = (char *)addr };
	const struct addr_name *found;

	if (!n || !n->n)
		return NULL;
	found = bsearch(&key, n->v, n->n, sizeof(*n->v), by_addr);
	return found ? found->name : NULL;
}

void addr_names_of_pair(const struct addr_names *n, uint8_t family, const uint8_t *saddr, const uint8_t *daddr,
			const char **src, const char **dst)
{
	char text[48];

	format_addr(family, saddr, text, sizeof(text));
	*src = addr_name_of(n, text);
	format_addr(family, daddr, text, sizeof(text));
	*dst = addr_name_of(n, text);
}

void addr_names_free(struct addr_names *n)
{
	free(n->v);
	free(n->text);
	*n = (struct addr_names){ 0 };
}
