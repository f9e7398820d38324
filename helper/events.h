/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tracing loop: the ring buffer to the outputs (binary records with
 * their symbols and stacks, or JSON lines), periodic stats, and when to stop.
 * It never blocks on a reader: while the outputs are full it stops reading
 * the ring buffer, and the kernel counts what it cannot keep as lost.
 */
#ifndef PWRU_EVENTS_H
#define PWRU_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "output.h"
#include "probes.h"
#include "symbols.h"

struct pwru_bpf;

/* --emit text and --emit wide (struct options and struct loop_config emit_text). */
#define EMIT_TEXT 1
#define EMIT_WIDE 2

struct loop_config {
	struct pwru_bpf *skel;
	const struct probe_set *probes;
	struct symbols *symbols;
	bool kprobe_backend; /* plain kprobes: events carry function addresses to map to probe ids */
	double duration_sec; /* 0: until stopped */
	uint64_t max_events; /* 0: no limit */
	/* --emit json: events as JSON lines (event_json.h) instead of binary records. */
	bool emit_json;
	/* --emit text|wide (EMIT_TEXT, EMIT_WIDE): the text views' lines (event_text.h), finished packets as PACKET_DONE (packet_book.h). */
	uint8_t emit_text;
	const char *text_notes;
	const char *func_kind; /* "probe" of function probes: the backend's name */
	const struct drop_reasons *drop_reasons;
	struct clocks clocks;	   /* from HELLO, for the lines' wall-clock times */
	const char *packet_starts; /* --packet-starts */
	unsigned int snaplen;	   /* records may carry this many bytes of the packet (PACKET frames) */
	uint64_t max_rate;	   /* --max-rate: STATS/END say how many events it skipped */
	bool on_drop;		   /* --on-drop: events go to helper/on_drop.c, which writes only drop reports */
	const struct addr_names *owners; /* --addr-names: the lines name addresses' owners */
	const char *line_node;		 /* --line-node: the JSON lines name the node */
};

struct loop_result {
	/* signal, stdin, duration, max-events, output-closed; "output-failed", "out-of-memory" and "error" end in an ERROR */
	const char *reason;
	const struct out_fault *fault; /* output-closed, output-failed */
	int err;		       /* error: -errno */
	struct counts counts;	       /* final, after events_finish() */
	uint64_t events;	       /* delivered */
};

int events_open(const struct loop_config *cfg);
/* Runs until a stop is due. */
void events_loop(struct loop_result *res);
/*
 * After the probes are detached: delivers what fired before the stop, for as
 * long as the outputs keep up (bounded), then writes the DIGEST (--emit json)
 * and the final STATS.
 */
void events_finish(struct loop_result *res);
void events_close(void);

#endif
