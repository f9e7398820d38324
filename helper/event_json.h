/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One event as a JSON line, byte for byte what the client writes for it
 * (src/record/json-line.ts eventJson plus the packet annotations of
 * src/output/json.ts): with --emit json the helper writes the lines itself,
 * so that a firehose of events reaches a file without the client decoding
 * each one. docs/json-schema.md documents the fields;
 * test/unit/record/twins.test.ts holds the two writers to the same bytes.
 */
#ifndef PWRU_EVENT_JSON_H
#define PWRU_EVENT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "addr_names.h"
#include "buf.h"
#include "packet_track.h"

/* The version of the JSON lines (TRACE_SCHEMA_VERSION in src/record/event.ts). */
#define PWRU_JSON_SCHEMA_VERSION 1

/* Drop reasons are named by value below this; larger values are subsystem bits, not reasons. */
#define MAX_DROP_REASON 4096

/* What the lines name that the events only number. */
struct event_names {
	const char *const *probe_name; /* by probe id; NULL = unknown */
	const char *const *probe_kind;
	uint32_t nprobes;
	const char *const *drop_reason; /* by enum value; NULL = unnamed */
	uint32_t ndrop_reasons;
	int64_t mono_ns, real_ns; /* the clocks read together at HELLO, for the lines' wall-clock times */
	/* "name+0xoff" of a kernel address into out (its hex when it has no name). */
	void (*describe)(void *ctx, uint64_t addr, char *out, size_t len);
	/* The stack's frames as a JSON array into b; false when the stack is unknown. */
	bool (*stack_json)(void *ctx, int32_t id, struct buf *b);
	/* The stack's frames as the text views show them ("\n    frame" each); false when unknown. */
	bool (*stack_text)(void *ctx, int32_t id, struct buf *b);
	void *ctx;
	/* --addr-names: owners of addresses, or NULL (tuples then name none). */
	const struct addr_names *owners;
	/* --line-node: the node every JSON line names, or NULL. */
	const char *node;
};

/*
 * The text of a group of fields, kept with the event bytes it was made from:
 * a packet's steps through one device, and the packets of one flow, repeat
 * them event after event, and copying text is cheaper than making it again.
 */
struct group_memo {
	uint8_t key[64];
	bool set;
	struct buf text;
};

#define WHERE_MEMOS 8 /* by CPU: each CPU's events are a run of one packet's steps */

/* Everything the writer keeps from one line to the next. */
struct json_writer {
	const struct event_names *names;
	double real_ms, mono_base_ms; /* the clocks as src/record/decode.ts turns them into times */
	struct group_memo ts_high, skb;
	struct group_memo comms[8], ifnames[16], callers[16];
	struct group_memo where[WHERE_MEMOS], tuple[WHERE_MEMOS];
	struct buf *probe_texts; /* `","func":NAME,"probe":KIND` by probe id, made once */
	struct {
		uint32_t v4;
		bool set;
		uint8_t len;
		char text[20];
	} v4_text[256]; /* IPv4 addresses repeat: the JSON text of the last few */
	struct {
		int64_t ms, sec;
		char day[24], text[32];
		size_t len;
	} time; /* events come in bursts within one millisecond */
};

int json_writer_init(struct json_writer *w, const struct event_names *names);
void json_writer_free(struct json_writer *w);

/* Appends ev's line (with its '\n') to line; tun and cp, when the event has them (bpf/event.h), or NULL. */
void event_json(struct json_writer *w, const struct pwru_event *ev, const struct pwru_tunnel *tun,
		const struct pwru_copy *cp, const struct step_info *step, struct buf *line);

#endif
