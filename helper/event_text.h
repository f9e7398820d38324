/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One event as a line of the text views, byte for byte what the client
 * writes for it without colour (src/output/text.ts formatTextLine, wide.ts
 * formatWideLine): with --emit text or --emit wide the helper writes the
 * lines itself, so that a firehose reaches a file or a pipe without the
 * client decoding each event. test/unit/record/text-twins.test.ts holds the
 * two writers to the same bytes.
 */
#ifndef PWRU_EVENT_TEXT_H
#define PWRU_EVENT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "buf.h"
#include "event_json.h"
#include "packet_track.h"
#include "text_notes.h"

/* The text of a drop's note, kept: a flood of drops repeats one reason at one place. */
struct drop_note_memo {
	char reason[64], at[128];
	struct buf text;
	bool set;
};

/* A group of columns' text, kept with the event bytes it was made from (per CPU: runs of one packet's steps). */
struct text_memo {
	uint8_t key[64];
	bool set;
	struct buf text;
};

#define TEXT_MEMOS 8

/* Everything the writer keeps from one line to the next: the columns that grow, like the client's layout. */
struct text_writer {
	const struct event_names *names;
	const struct text_notes *notes;
	bool wide;
	double real_ms, mono_base_ms;
	size_t tuple_width, func_width, process_width, iface_width;
	struct {
		int64_t ms;
		bool set;
		char text[16];
	} clock; /* wide's HH:MM:SS.mmm: events come in bursts within one millisecond */
	struct drop_note_memo drop_note;
	struct text_memo where[TEXT_MEMOS], tuple[TEXT_MEMOS];
	struct buf scratch;
};

int text_writer_init(struct text_writer *w, const struct event_names *names, const struct text_notes *notes,
		     bool wide);
void text_writer_free(struct text_writer *w);

/* Appends ev's line (with its '\n', and its stack's lines under it) to line. */
void event_text(struct text_writer *w, const struct pwru_event *ev, const struct pwru_tunnel *tun,
		const struct step_info *step, struct buf *line);

#endif
