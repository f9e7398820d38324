/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --emit text|wide: the helper writes the lines, and the client still gives
 * the closing verdict table with its own code (src/reading). For that the
 * client needs finished packets, not events: this book keeps each packet's
 * steps until it is finished, by the rules of src/reading/packet-tracker.ts
 * and copies.ts (a packet that shares its data buffer with another waits for
 * it; a lone free may be replaced by a copy), and then either sends it whole
 * (PACKET_DONE and its EVENT frames) or counts it under its shape: the path's
 * steps (probe, drop and reason, caller, device) and its flow. Packets of one
 * shape get one verdict from the client's code, so one representative and a
 * count stand for them all. Sent whole: the first packets (the table shows
 * each of them), copies and their originals, lone frees, packets dropped while
 * their data was shared, and every packet still in flight at the end.
 * test/unit/record/text-twins.test.ts holds the client's table from these to
 * its table from every event.
 */
#ifndef PWRU_PACKET_BOOK_H
#define PWRU_PACKET_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "packet_track.h"

/* What the client is told of a finished packet before its steps (the PACKET_DONE frame). */
struct book_unit {
	uint32_t id;	      /* the packet's number; for a shape, its lowest */
	uint64_t count;	      /* how many packets it stands for */
	uint32_t copy_of;     /* 0 = none */
	bool copied;	      /* a copy with its own data buffer (copiedFrom), not a clone */
	uint32_t replaced_by; /* 0 = none */
	const uint32_t *copies;
	uint32_t ncopies;
	bool open; /* not finished when the trace ended */
};

typedef void (*book_send_fn)(const struct book_unit *u, const struct pwru_event *steps, uint32_t nsteps);

struct book_packet;
struct book_orphan;
struct book_shape;
struct book_map {
	uint64_t *keys;
	void **vals;
	size_t cap, used;
};

struct packet_book {
	book_send_fn send;
	uint32_t whole_first; /* packets numbered up to this go whole */
	struct book_map live;	   /* id → packet in flight */
	struct book_map heads;	   /* data buffer → the live packet there (CopyLinker.liveHeads) */
	struct book_map orphans;   /* data buffer → node of the orphan list */
	struct book_orphan *oldest, *newest; /* dropped while shared, waiting for a copy: in order */
	size_t norphans;
	struct book_packet *lone;  /* a lone free held back: the next packet may be its copy */
	struct book_packet *pending; /* held back until their copies finish (a list) */
	struct book_shape **shapes;
	size_t nshapes, cap_shapes;
	struct book_map shape_index; /* shape hash → shape */
	struct book_packet *retired; /* released at the end while a copy still pointed at them */
};

/* The closing table shows each packet's row up to this many packets (src/output/summary-view.ts): these go whole. */
#define BOOK_WHOLE_FIRST 40

int packet_book_init(struct packet_book *b, book_send_fn send, uint32_t whole_first);
/* After packet_track_step gave step for ev; cp: its COPY record (what it was copied from), or NULL. */
void packet_book_step(struct packet_book *b, const struct pwru_event *ev, const struct pwru_copy *cp,
		      const struct step_info *step);
/* The end of the trace: what was held back, the packets in flight, then every shape. */
void packet_book_finish(struct packet_book *b);
void packet_book_free(struct packet_book *b);

#endif
