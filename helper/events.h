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
	int signal_fd;
	bool watch_stdin;
};

struct loop_result {
	const char *reason; /* signal, stdin, duration, max-events, output-closed, error */
	uint64_t events;
	uint64_t lost;
};

int events_loop(const struct loop_config *cfg, struct loop_result *res);

/* Sums the per-CPU counters and writes a STATS frame. */
void events_write_stats(struct pwru_bpf *skel, bool final, uint64_t *lost_out);

#endif
