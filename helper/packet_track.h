/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which packet each event belongs to, and what changed since that packet's
 * previous step: the `packet` and `changes` annotations of a JSON line when
 * the helper writes the lines itself (--emit json). The rules are those of
 * src/reading/packet-tracker.ts (PacketTracker, startsNewPacket), changes.ts (detectChanges),
 * which reads saved traces back; test/unit/record/twins.test.ts holds the two
 * to the same answers on recorded traces.
 */
#ifndef PWRU_PACKET_TRACK_H
#define PWRU_PACKET_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/types.h>

#include "../bpf/event.h"

enum change_field {
	CH_PROTO,
	CH_SRC,
	CH_SPORT,
	CH_DST,
	CH_DPORT,
	CH_IFACE,
	CH_NETNS,
	CH_MARK,
	CH_L3PROTO,
};

/* The fields of a step a change is read from. */
struct step_state {
	bool has_tuple;
	uint8_t family, l4;
	bool has_ports;
	uint16_t sport, dport;
	uint8_t saddr[16], daddr[16];
	/* From the header the tuple came from: what tells packets apart (startsNewPacket). */
	bool has_ip_id, has_seq;
	uint16_t ip_id;
	uint32_t seq;
	uint64_t head;	  /* the data buffer, 0 = not seen yet */
	char iface[16];	  /* "" = not seen yet */
	uint32_t netns;	  /* 0 = not seen yet */
	bool has_mark;
	uint32_t mark;
	bool has_l3;
	uint16_t l3proto;
};

struct step_info {
	uint32_t packet;       /* 1-based packet number */
	bool first;	       /* the packet's first step */
	uint32_t prev_probe;   /* probe id of the packet's previous step (when !first) */
	uint64_t first_ts;     /* the packet's first step's ts (wide's time since it) */
	uint32_t ended;	       /* a packet this event's address ended (reused by a new packet), 0 = none */
	bool forgot_all;       /* every packet in flight was forgotten (ended) before this one started */
	uint32_t changes;      /* bit (1 << enum change_field) per changed field */
	struct step_state before; /* the packet's state before this step (what changed from) */
};

/* What the tracker keeps of a packet in flight. */
struct live {
	uint32_t packet;
	uint32_t last_probe;
	uint64_t first_ts;
	struct step_state last;
};

/*
 * The packets in flight: open addressing with linear probing. The keys (skb
 * addresses, 0 = empty) are an array of their own beside the states: a lookup
 * probes a run of keys in one or two cache lines instead of a ~100-byte slot
 * per probe (the table reaches 16,384 slots, over a MiB of states).
 */
struct packet_tracker {
	uint64_t *keys;
	struct live *states;
	size_t cap, used;
	uint32_t count;	      /* packets numbered so far */
	const bool *starts_tx; /* by probe id: where a packet starts down the transmit path */
	uint32_t nprobes;
};

int packet_track_init(struct packet_tracker *t, const bool *starts_tx, uint32_t nprobes);
/* Assigns ev to a packet; fills *out. */
void packet_track_step(struct packet_tracker *t, const struct pwru_event *ev, struct step_info *out);
uint32_t packet_track_count(const struct packet_tracker *t);
void packet_track_free(struct packet_tracker *t);

/* A function's name without a tracepoint's "category:" and a symbol's "+0xoff" (src/reading/kernel-functions.ts baseFunc). */
void base_func(const char *name, char *out, size_t len);
/* starts[probe id]: the probe is one of list's (--packet-starts: comma-separated functions). Free it. */
bool *packet_starts_of(const char *const *probe_names, uint32_t nprobes, const char *list);

/* The addresses of a tuple as it prints: IPv4 has four bytes. */
static inline size_t event_addr_len(const struct pwru_event *e)
{
	return e->l3 == 6 ? 16 : 4;
}

static inline bool l4_has_ports(uint8_t l4)
{
	return l4 == 6 || l4 == 17 || l4 == 132;
}

/* src/reading/tuple-format.ts flowText of two tuples: the same flow (TCP flags aside); NULL only as NULL. */
bool packet_same_flow(const struct pwru_event *a, const struct pwru_event *b);

/*
 * A clone reads the bytes its original holds: the same header, IPv4 ID and
 * TCP sequence (src/reading/copies.ts sameBytes). The data buffer's address
 * alone is no evidence: the tracepoint backend misses some frees (TCP's
 * __kfree_skb), so the packet seen at a buffer may be gone and the buffer
 * another packet's. last: the original's latest step (NULL: none, false).
 */
bool packet_same_bytes(const struct pwru_event *last, const struct pwru_event *ev);

/* The state an event describes (for the "to" side of its changes). */
void step_state_of(const struct pwru_event *ev, struct step_state *st);

#endif
