/* SPDX-License-Identifier: Apache-2.0 */
/* The tracing loop: ring buffer to stdout, symbols and stacks, stats, and when to stop. */
#ifndef PWRU_EVENTS_H
#define PWRU_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "kallsyms.h"
#include "probes.h"

struct pwru_bpf;

struct loop_config {
	struct pwru_bpf *skel;
	const struct probe_set *probes;
	struct kallsyms *ksyms; /* loaded lazily when first needed */
	bool kprobe_backend;	/* events carry function addresses to map to probe ids */
	double duration_sec;
	uint64_t max_events;
	int signal_fd;	/* readable when a stop signal arrived */
	bool watch_stdin;
	/* --emit json: events as JSON lines (event_json.h) instead of binary records. */
	bool emit_json;
	const char *func_kind;		      /* "probe" of function probes: the backend's name */
	const char *const *drop_reason_names; /* by enum skb_drop_reason value */
	uint32_t ndrop_reasons;
	int64_t real_minus_mono_ns;	      /* for the lines' wall-clock times */
	const char *packet_starts;	      /* comma-separated functions where a packet starts (--packet-starts) */
};

struct loop_result {
	const char *reason; /* signal, stdin, duration, max-events, output-closed, error */
	uint64_t events;
	uint64_t lost;
};

/* Sets up the ring buffer reader; then events_loop() until told to stop, events_drain() after
 * the probes are detached (what fired meanwhile is still delivered), events_close(). */
int events_open(const struct loop_config *cfg);
int events_loop(struct loop_result *res);
void events_drain(void);
uint64_t events_delivered(void);
void events_close(void);

/* --emit json: what the summary needs of the events the client did not see (DIGEST frame). */
void events_write_digest(void);

/* Sums the per-CPU counters and writes a STATS frame. */
void events_write_stats(struct pwru_bpf *skel, bool final, uint64_t *lost_out);

#endif
