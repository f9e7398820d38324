/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One event as a JSON line, byte for byte what the client writes for it
 * (src/record/json-line.ts eventJson plus the packet annotations of
 * src/output/json.ts): with --emit json the helper writes the lines itself,
 * so that a firehose of events reaches a file without the client decoding
 * each one. docs/json-schema.md documents the fields.
 */
#ifndef PWRU_EVENT_JSON_H
#define PWRU_EVENT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "packet_track.h"

/* The version of the JSON lines (TRACE_SCHEMA_VERSION in src/record/event.ts). */
#define PWRU_JSON_SCHEMA_VERSION 1

struct line_buf {
	char *p;
	size_t len, cap;
};

struct event_names {
	const char *const *probe_name; /* by probe id; NULL = unknown */
	const char *const *probe_kind;
	uint32_t nprobes;
	const char *const *drop_reason; /* by enum value; NULL = unnamed */
	uint32_t ndrop_reasons;
	int64_t real_minus_mono_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC */
	/* "name+0xoff" of a kernel address into buf, or its hex when symbols are not loaded yet. */
	void (*describe)(uint64_t addr, char *buf, size_t len);
	/* The stack's frames as a JSON array into lb; false when the stack is unknown. */
	int (*stack_json)(int32_t id, struct line_buf *lb);
};

void line_buf_put(struct line_buf *lb, const char *s, size_t n);
void line_buf_str(struct line_buf *lb, const char *s, size_t max); /* JSON string of a latin1 C string */
void line_buf_free(struct line_buf *lb);

/* Appends ev's line (with its '\n') to lb. */
void event_json(const struct event_names *names, const struct pwru_event *ev, const struct step_info *step,
		struct line_buf *lb);

#endif
