/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel symbols, to name callers and stack frames. Reading /proc/kallsyms
 * takes ~150 ms (~0.8 s under emulation), so it runs in a thread: while the
 * programs load and attach, at a lower priority until events are about to
 * flow, or, when nothing needs it before tracing (kprobe-multi at ftrace's
 * addresses, traceable.h), from READY on. The first event that needs a name
 * waits for it (once), so that no line ever names a caller by its address only
 * because the names were not loaded yet.
 */
#ifndef PWRU_SYMBOLS_H
#define PWRU_SYMBOLS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "kallsyms.h"

struct symbols {
	struct kallsyms ks;
	pthread_t thread;
	bool started; /* the thread runs or ran, and is not joined yet */
	bool loaded;  /* ks is complete (and joined) */
	bool background; /* at a lower priority until symbols_urgent() */
	int err;      /* -errno of the load */
	_Atomic int tid; /* the loading thread, once it runs */
};

/* Starts loading in a thread: at a lower priority when background, until symbols_urgent(). */
void symbols_start(struct symbols *s, bool background);
/* The names are needed soon (events are about to flow): the load gets a normal priority. */
void symbols_urgent(struct symbols *s);
/* The symbols, waiting for the load if it is still running; NULL when they could not be read. */
const struct kallsyms *symbols_get(struct symbols *s);
/* -errno of a load that failed (after symbols_get). */
int symbols_error(const struct symbols *s);
void symbols_free(struct symbols *s);

#endif
