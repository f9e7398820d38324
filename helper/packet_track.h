/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which packet each event belongs to, and what changed since that packet's
 * previous step: the `packet` and `changes` annotations of a JSON line when
 * the helper writes the lines itself (--emit json). The rules are those of
 * src/reading/packets.ts (PacketTracker, detectChanges, startsNewPacket),
 * which reads saved traces back; test/integration/emit-json.test.ts holds the
 * two to the same answers on real traces.
 */
#ifndef PWRU_PACKET_TRACK_H
#define PWRU_PACKET_TRACK_H

#include <stdbool.h>
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
	uint32_t changes;      /* bit (1 << enum change_field) per changed field */
	struct step_state before; /* the packet's state before this step (what changed from) */
};

/* starts_tx[probe id]: the probe is where a packet starts down the transmit path. */
int packet_track_init(const bool *starts_tx, uint32_t nprobes);
/* Assigns ev to a packet; fills *out. */
void packet_track_step(const struct pwru_event *ev, struct step_info *out);
uint32_t packet_track_count(void);
void packet_track_free(void);

/* The state an event describes (for the "to" side of its changes). */
void step_state_of(const struct pwru_event *ev, struct step_state *st);

#endif
