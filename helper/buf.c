// SPDX-License-Identifier: Apache-2.0
#include "buf.h"

#include <stdlib.h>

static bool memory_ran_out;

bool out_of_memory(void)
{
	return memory_ran_out;
}

void set_out_of_memory(void)
{
	memory_ran_out = true;
}

bool buf_grow(struct buf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : 256;

	if (b->len + extra <= b->cap)
		return true;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		memory_ran_out = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void buf_json_string(struct buf *b, const char *s, size_t max, enum text_kind kind)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;

	/* The longest a byte becomes is \u00XX. */
	if (!buf_reserve(b, 2 + 6 * max))
		return;
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < max && p[i]; i++) {
		unsigned char c = p[i];

		if (__builtin_expect(c >= 0x20 && c < 0x80 && c != '"' && c != '\\', 1)) {
			*o++ = (char)c; /* names are plain ASCII nearly always */
		} else if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c >= 0x80) {
			if (kind == TEXT_LATIN1) {
				*o++ = (char)(0xc0 | (c >> 6));
				*o++ = (char)(0x80 | (c & 0x3f));
			} else {
				*o++ = (char)c;
			}
		} else {
			const char *short_esc = c == '\b' ? "b" : c == '\f' ? "f" : c == '\n' ? "n" : c == '\r' ? "r"
						: c == '\t' ? "t" : NULL;
			*o++ = '\\';
			if (short_esc) {
				*o++ = *short_esc;
			} else {
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 0xf];
			}
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
}
