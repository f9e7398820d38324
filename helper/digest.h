/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --emit json: what the client's closing summary needs of the events it did
 * not decode when the finished packets could not all be sent (PACKET_DONE),
 * sent as the DIGEST frame: drops by reason and place.
 */
#ifndef PWRU_DIGEST_H
#define PWRU_DIGEST_H

#include <stddef.h>

#include "event_json.h"
#include "packet_track.h"

struct drop_count {
	char reason[64];
	char at[128];
	uint64_t count;
};

struct digest {
	struct drop_count *drops;
	size_t ndrops;
};

int digest_init(struct digest *d);
/* Counts ev, a drop, where the packet died: its caller when known, else the packet's step before. */
void digest_drop(struct digest *d, const struct event_names *names, const struct pwru_event *ev,
		 const struct step_info *step);
void digest_free(struct digest *d);

#endif
