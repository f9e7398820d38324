/* SPDX-License-Identifier: Apache-2.0 */
/* The helper's command line. */
#ifndef PWRU_OPTIONS_H
#define PWRU_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "loader.h"

struct options {
	enum backend backend;
	const char *filter_func;
	const char *filter_netns;
	unsigned int netns_inode; /* resolved from filter_netns */
	unsigned int mark, mark_mask;
	const char *filter_ifname;
	bool track_skb;
	bool all_kmods;
	bool output_stack;
	bool verify_only;	/* load (kernel verifier) without attaching, then exit */
	double duration_sec;	/* 0 = until stopped */
	uint64_t max_events;	/* 0 = unlimited */
	unsigned int ringbuf_bytes;
	bool emit_json;		/* --emit json: events as JSON lines */
	const char *packet_starts; /* --packet-starts LIST */
	int line_fds[2];	   /* --lines-fd N (repeatable): JSON lines go straight there */
	int nline_fds;
	char *pcap_filter;	/* the remaining arguments joined; "" = everything */
};

/* Parses argv; on bad input writes the reason to err and returns -1. Exits for --help/--version. */
int options_parse(int argc, char **argv, struct options *o, char *err, size_t errlen);

#endif
