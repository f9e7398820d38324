/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The helper's one growable byte buffer and its one JSON string escaper.
 * Running out of memory does not end the process here: the append is dropped,
 * a flag is raised, and main() ends the run with an out_of_memory ERROR frame
 * (the frame buffers themselves are static, so that frame can always be
 * written).
 */
#ifndef PWRU_BUF_H
#define PWRU_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct buf {
	char *p;
	size_t len, cap;
};

/* Makes room for extra more bytes; false (and out_of_memory() from then on) when memory ran out. */
bool buf_grow(struct buf *b, size_t extra);

static inline bool buf_reserve(struct buf *b, size_t extra)
{
	return b->len + extra <= b->cap || buf_grow(b, extra);
}

/* The hot path of every JSON line: a few dozen small appends. */
static inline void buf_put(struct buf *b, const void *s, size_t n)
{
	if (__builtin_expect(b->len + n > b->cap, 0) && !buf_grow(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

#define BUF_PUT_LIT(b, lit) buf_put(b, lit, sizeof(lit) - 1)

void buf_free(struct buf *b);

/* How the bytes of a string are meant. */
enum text_kind {
	TEXT_UTF8,   /* our own text and the user's: bytes from 0x80 up are copied as they are */
	TEXT_LATIN1, /* raw kernel bytes (names), which the client decodes as latin1: each becomes its UTF-8 form */
};

/*
 * s (at most max bytes, up to a NUL) as a quoted JSON string, escaped as
 * JSON.stringify escapes it: \" \\ \b \f \n \r \t, other control bytes \u00XX.
 */
void buf_json_string(struct buf *b, const char *s, size_t max, enum text_kind kind);

/* Whether an allocation failed since the start: the run must end with an out_of_memory ERROR. */
bool out_of_memory(void);
/* Raised by callers whose own allocation failed. */
void set_out_of_memory(void);

#endif
