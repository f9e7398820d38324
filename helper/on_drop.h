/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --on-drop: nothing goes out per event. Each flow's recent packets are kept
 * here, in bounded memory, and when a packet is dropped the helper writes a
 * DROP_REPORT frame followed by that packet's steps and those of the last
 * packet of the same flow that got through, as EVENT frames
 * (docs/record-stream.md, "--on-drop"). A flow is the addresses, protocol and
 * destination port a packet had when it entered the trace, before any
 * rewrite; the source port may differ.
 *
 * Copies and clones (src/reading/copies.ts, which the client reads the
 * report with) go with their original: a drop whose data lived on in another
 * skb (a clone for a raw socket or a tap, a copy made by nft dup) is held
 * back until those copies ended, and its report carries their steps too, so
 * that the client can tell a copy that got through from a loss.
 *
 * Bounds (all counted when they forget something, in the WATCH frame): flows,
 * packets in flight, steps kept of a packet, steps kept in all; flows idle
 * for long and packets quiet for a while are aged out.
 */
#ifndef PWRU_ON_DROP_H
#define PWRU_ON_DROP_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "probes.h"

/* Output room a report may need: its events, their symbols and stacks. */
#define ON_DROP_REPORT_ROOM (512 << 10)

/*
 * Writes one event of a report to the stream (with the SYMBOL/STACK frames it
 * needs); made: the COPY record that goes before it (NULL: none); ask_culprit:
 * it is the reported drop, and who dropped it is to be found out.
 */
typedef void (*on_drop_emit_fn)(const struct pwru_event *ev, const struct pwru_copy *made, bool ask_culprit);
/* Asks for a drop's culprit at once, for a report that is held back (it is read close to the drop). */
typedef void (*on_drop_culprit_fn)(const struct pwru_event *drop);

struct on_drop_counts {
	uint64_t packets;	   /* packets watched */
	uint64_t drops;		   /* drops reported (DROP_REPORT frames) */
	uint64_t unreported;	   /* drops not reported: no room in the output */
	uint32_t flows;		   /* flows remembered now */
	uint64_t forgot_flows;	   /* flows forgotten: idle, or for room */
	uint64_t forgot_packets;   /* packets forgotten in flight: too many at once */
	uint64_t forgot_steps;	   /* steps forgotten in the middle of long paths */
	uint64_t stored_steps;	   /* steps held now */
	uint32_t held;		   /* drops held back now, waiting for their copies */
};

/* packet_starts: --packet-starts (how packets are told apart, as in --emit json). Returns 0 or -ENOMEM. */
int on_drop_open(const struct probe_set *probes, const char *packet_starts, on_drop_emit_fn emit,
		 on_drop_culprit_fn ask_culprit);
/*
 * One event, its probe id resolved; made: its COPY record (NULL: none). Writes
 * a report when it is a drop (or holds it back for its copies).
 */
void on_drop_event(const struct pwru_event *ev, const struct pwru_copy *made);
/* Ages flows and packets out, and writes held reports whose wait is over; now is CLOCK_MONOTONIC in ns (the events' clock). Cheap: call often. */
void on_drop_tick(uint64_t now_ns);
/* At the end of the trace: the reports still held back, with the copies seen so far. */
void on_drop_flush(void);
void on_drop_counts(struct on_drop_counts *c);
/* WATCH: the counts as a frame, with each STATS. */
void on_drop_write_watch(bool final);
void on_drop_close(void);

#endif
