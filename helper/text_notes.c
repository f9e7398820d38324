// SPDX-License-Identifier: Apache-2.0
#include "text_notes.h"

#include <stdlib.h>
#include <string.h>

/* src/output/text-notes.ts: fields by ASCII unit separators, entries by record separators. */
#define UNIT_SEP '\x1f'
#define RECORD_SEP '\x1e'

/* Fields each kind of entry has (src/output/text-notes.ts). */
static int fields_of(char kind)
{
	switch (kind) {
	case 'R':
	case 'P':
	case 'U':
	case 'T':
	case 'G':
		return 2;
	case 'N':
		return 3;
	}
	return -1;
}

int text_notes_parse(struct text_notes *n, const char *text)
{
	size_t lines = 0;

	memset(n, 0, sizeof(*n));
	n->text = strdup(text ? text : "");
	if (!n->text)
		return -1;
	for (const char *p = n->text; *p; p++)
		lines += *p == RECORD_SEP;
	n->v = calloc(lines + 1, sizeof(*n->v));
	if (!n->v)
		return -1;
	for (char *line = n->text, *next; *line; line = next) {
		char *end = strchr(line, RECORD_SEP);
		struct text_note *e = &n->v[n->n];
		int want;

		next = end ? end + 1 : line + strlen(line);
		if (end)
			*end = 0;
		if (!*line)
			continue;
		want = fields_of(line[0]);
		if (want < 0 || line[1] != UNIT_SEP)
			return -1;
		e->kind = line[0];
		char *f = line + 2;
		for (int i = 0; i < want; i++) {
			char *tab = strchr(f, UNIT_SEP);

			if (i < want - 1 && !tab)
				return -1;
			if (tab)
				*tab = 0;
			e->f[i] = f;
			f = tab ? tab + 1 : f + strlen(f);
		}
		n->n++;
	}
	return 0;
}

void text_notes_free(struct text_notes *n)
{
	free(n->v);
	free(n->text);
	memset(n, 0, sizeof(*n));
}

/* name is one of list's comma-separated names. */
static bool listed(const char *list, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);

		if (n == len && strncmp(p, name, n) == 0)
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

void text_notes_drop(const struct text_notes *n, const char *reason, const char *at, struct buf *out)
{
	const char *key = reason, *prefix = NULL, *unknown[2] = { "", "" };

	/* src/reading/drop-rules.ts noFailureByPlace: the first rule of this reason and place. */
	for (size_t i = 0; i < n->n; i++) {
		const struct text_note *e = &n->v[i];

		if (e->kind == 'N' && listed(e->f[0], reason) && (!*e->f[1] || listed(e->f[1], at))) {
			BUF_PUT_LIT(out, "not a failure: ");
			buf_put(out, e->f[2], strlen(e->f[2]));
			return;
		}
	}
	/* src/reading/drop-reasons.ts explainDropReason: by name, then by prefix, else the name itself. */
	if (strncmp(key, "SKB_DROP_REASON_", 16) == 0)
		key += 16;
	for (size_t i = 0; i < n->n; i++) {
		const struct text_note *e = &n->v[i];

		if (e->kind == 'R' && strcmp(e->f[0], key) == 0) {
			buf_put(out, e->f[1], strlen(e->f[1]));
			return;
		}
		if (e->kind == 'P' && !prefix && strncmp(key, e->f[0], strlen(e->f[0])) == 0)
			prefix = e->f[1];
		if (e->kind == 'U') {
			unknown[0] = e->f[0];
			unknown[1] = e->f[1];
		}
	}
	if (prefix) {
		buf_put(out, prefix, strlen(prefix));
		return;
	}
	buf_put(out, unknown[0], strlen(unknown[0]));
	buf_put(out, key, strlen(key));
	buf_put(out, unknown[1], strlen(unknown[1]));
}

const char *text_notes_tunnel(const struct text_notes *n, bool by_port, const char *key)
{
	for (size_t i = 0; i < n->n; i++)
		if (n->v[i].kind == (by_port ? 'T' : 'G') && strcmp(n->v[i].f[0], key) == 0)
			return n->v[i].f[1];
	return NULL;
}
