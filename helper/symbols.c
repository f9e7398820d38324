// SPDX-License-Identifier: Apache-2.0
#include "symbols.h"

#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *load(void *arg)
{
	struct symbols *s = arg;

	/* While the programs load and attach, they come first (symbols_urgent() says when no longer). */
	atomic_store(&s->tid, (int)syscall(SYS_gettid));
	if (s->background)
		setpriority(PRIO_PROCESS, (id_t)atomic_load(&s->tid), 10);
	s->err = kallsyms_load(&s->ks);
	return NULL;
}

void symbols_start(struct symbols *s, bool background)
{
	memset(s, 0, sizeof(*s));
	s->background = background;
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

void symbols_urgent(struct symbols *s)
{
	int tid = atomic_load(&s->tid);

	/*
	 * Under a flood of packets, a thread at a lower priority took seconds
	 * while the first event with a caller waited for it. Raising it back needs
	 * CAP_SYS_NICE: without it, it stays where it is.
	 */
	if (s->started && tid)
		setpriority(PRIO_PROCESS, (id_t)tid, 0);
}

int symbols_error(const struct symbols *s)
{
	return s->err;
}

void symbols_free(struct symbols *s)
{
	/* Still loading at the end of a short run: not waited for, the exit ends it. */
	if (s->started)
		return;
	kallsyms_free(&s->ks);
	memset(s, 0, sizeof(*s));
}
