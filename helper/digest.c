// SPDX-License-Identifier: Apache-2.0
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DROP_KINDS 256

int digest_init(struct digest *d)
{
	d->ndrops = 0;
	d->drops = calloc(MAX_DROP_KINDS, sizeof(*d->drops));
	return d->drops ? 0 : -1;
}

void digest_free(struct digest *d)
{
	free(d->drops);
	memset(d, 0, sizeof(*d));
}

static struct drop_count *find(struct digest *d, const char *reason, const char *at)
{
	for (size_t i = 0; i < d->ndrops; i++)
		if (strcmp(d->drops[i].reason, reason) == 0 && strcmp(d->drops[i].at, at) == 0)
			return &d->drops[i];
	return NULL;
}

/* The place is src/reading/verdicts.ts dropLocation's. */
void digest_drop(struct digest *d, const struct event_names *names, const struct pwru_event *ev,
		 const struct step_info *step)
{
	char reason[64], at[128];
	const char *name = NULL;

	if (!(ev->flags & PWRU_F_HAS_REASON))
		snprintf(reason, sizeof(reason), "UNKNOWN");
	else if (ev->drop_reason < names->ndrop_reasons && (name = names->drop_reason[ev->drop_reason]))
		snprintf(reason, sizeof(reason), "%s", name);
	else
		snprintf(reason, sizeof(reason), "REASON_%u", ev->drop_reason);
	if (ev->caller) {
		char sym[320];
		names->describe(names->ctx, ev->caller, sym, sizeof(sym));
		base_func(sym, at, sizeof(at));
	} else {
		uint32_t probe = step->first ? ev->probe_id : step->prev_probe;
		const char *func = probe < names->nprobes ? names->probe_name[probe] : NULL;
		base_func(func ? func : "?", at, sizeof(at));
	}
	struct drop_count *c = find(d, reason, at);

	if (!c && d->ndrops == MAX_DROP_KINDS) {
		/* More kinds than anyone reads: lump the rest together. */
		snprintf(at, sizeof(at), "(other places)");
		c = find(d, reason, at);
	}
	if (!c && d->ndrops < MAX_DROP_KINDS) {
		c = &d->drops[d->ndrops++];
		snprintf(c->reason, sizeof(c->reason), "%s", reason);
		snprintf(c->at, sizeof(c->at), "%s", at);
	}
	if (c)
		c->count++;
}
