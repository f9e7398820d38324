/* SPDX-License-Identifier: Apache-2.0 */
/* The helper's command line: read and checked for form, nothing looked up (main.c does that). */
#ifndef PWRU_OPTIONS_H
#define PWRU_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader.h"
#include "output.h"

struct options {
	enum backend backend;
	const char *filter_func;
	const char *filter_netns; /* an inode number or a path */
	unsigned int mark, mark_mask;
	const char *filter_ifname;
	bool track_skb;
	bool all_kmods;
	bool output_stack;
	unsigned int snaplen;	/* --snaplen: 0 = no packet bytes */
	const char *tunnel_filter; /* --tunnel-filter: a pcap expression for the inner packet of a tunnel */
	unsigned int vxlan_port, geneve_port; /* 0: the usual ports (4789 and 8472; 6081) */
	bool verify_only;	/* load (kernel verifier) without attaching, then exit */
	bool check;		/* check the input without privileges, load nothing, then exit */
	bool bench_floor;	/* benchmarks: the programs return at once (the cost of being attached) */
	double duration_sec;	/* 0 = until stopped */
	uint64_t max_events;	/* 0 = unlimited */
	unsigned int ringbuf_bytes;
	bool emit_json;		   /* --emit json: events as JSON lines */
	uint8_t emit_text;	   /* --emit text|wide: the text views' lines (EMIT_TEXT, EMIT_WIDE), no colour */
	const char *text_notes;	   /* --text-notes: their words, from the client (text_notes.h) */
	const char *packet_starts; /* --packet-starts LIST */
	bool on_drop;		   /* --on-drop: only drop reports (helper/on_drop.c) */
	uint64_t max_rate;	   /* --max-rate N: matching events per second, 0 = no cap */
	int line_fds[MAX_LINE_FDS]; /* --lines-fd N (repeatable): JSON lines go straight there */
	const char *line_names[MAX_LINE_FDS]; /* --lines-name, or "descriptor N" */
	char line_default_names[MAX_LINE_FDS][24];
	int nline_fds;
	bool lines_stream;	/* --lines-stream: the lines as LINES frames on stdout */
	bool deflate;		/* --deflate: the record stream compressed (output.c) */
	const char *line_node;	/* --line-node: the node named in every JSON line */
	const char *addr_names; /* --addr-names FILE: "ADDRESS NAME" lines (addr_names.h) */
	char *pcap_filter; /* the remaining arguments joined; "" = everything */
};

enum options_result {
	OPTIONS_OK,
	OPTIONS_BAD, /* err says why */
	OPTIONS_NO_MEMORY,
	OPTIONS_HELP,
	OPTIONS_VERSION,
};

enum options_result options_parse(int argc, char **argv, struct options *o, char *err, size_t errlen);
void options_usage(void);

#endif
