/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The words of the text views' bracketed notes, as the client sends them
 * (--text-notes; src/output/text-notes.ts declares the format and builds it
 * from the one place each fact lives): drop reasons' texts, the drops that are
 * no failure by their place, the tunnels that tell encapsulation from NAT.
 */
#ifndef PWRU_TEXT_NOTES_H
#define PWRU_TEXT_NOTES_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* One entry: its kind letter and up to three fields (pointers into text). */
struct text_note {
	char kind;
	const char *f[3];
};

struct text_notes {
	char *text; /* the argument, copied; its separators made NULs */
	struct text_note *v;
	size_t n;
};

/* Reads the notes; -1 on a malformed entry (or out of memory). An empty text gives no notes. */
int text_notes_parse(struct text_notes *n, const char *text);
void text_notes_free(struct text_notes *n);

/*
 * A drop's note, as src/output/text.ts annotations() words it (without
 * brackets): "not a failure: WHY" when a rule says so of this reason at this
 * place (a base function name), else what the reason means.
 */
void text_notes_drop(const struct text_notes *n, const char *reason, const char *at, struct buf *out);
/* The tunnel a UDP port or IP protocol (as the change values name them) means; NULL if none. */
const char *text_notes_tunnel(const struct text_notes *n, bool by_port, const char *key);

#endif
