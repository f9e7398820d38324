// SPDX-License-Identifier: Apache-2.0
#include "symbols.h"

#include <string.h>

static void *load(void *arg)
{
	struct symbols *s = arg;

	/*
	 * Not at a lower priority: the first event with a caller waits for the
	 * names, and under a flood of packets a starved thread took seconds, while
	 * the ring buffer overflowed.
	 */
	s->err = kallsyms_load(&s->ks);
	return NULL;
}

void symbols_start(struct symbols *s)
{
	memset(s, 0, sizeof(*s));
	s->started = pthread_create(&s->thread, NULL, load, s) == 0;
	if (!s->started) {
		/* No thread: load them now. */
		s->err = kallsyms_load(&s->ks);
		s->loaded = true;
	}
}

const struct kallsyms *symbols_get(struct symbols *s)
{
	if (s->started) {
		pthread_join(s->thread, NULL);
		s->started = false;
		s->loaded = true;
	}
	return s->loaded && s->err == 0 ? &s->ks : NULL;
}

int symbols_error(const struct symbols *s)
{
	return s->err;
}

void symbols_free(struct symbols *s)
{
	symbols_get(s);
	kallsyms_free(&s->ks);
	memset(s, 0, sizeof(*s));
}
