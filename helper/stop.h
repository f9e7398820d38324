/* SPDX-License-Identifier: Apache-2.0 */
/*
 * When to stop: SIGINT/SIGTERM/SIGHUP, and the client going away (stdin at
 * EOF). Every step that waits (compiling the filter, waiting for the client's
 * go, the tracing loop, flushing output) polls these two descriptors too, so
 * that a stop is noticed within one poll, whatever the step.
 */
#ifndef PWRU_STOP_H
#define PWRU_STOP_H

#include <poll.h>
#include <stdbool.h>

/* Installs the handlers; watches stdin when it is a pipe, socket or terminal (a client that can go away). */
int stop_init(void);

/* Why the run must stop ("signal", "stdin"), or NULL. */
const char *stop_reason(void);

/* Async-safe: a stop signal arrived (for loops that do not poll, such as attaching). */
bool stop_requested(void);

/* The run is stopping from now on, for this reason (the probes are about to be detached). */
void stop_begin(const char *reason);
/* A signal came after the stop began (or one came at all, before it): stop waiting for anything. */
bool stop_hurry(void);

#define STOP_NFDS 2
/* Fills fds[0..STOP_NFDS) with what to poll for a stop (unused slots get fd -1). */
void stop_pollfds(struct pollfd *fds);
/* After poll(): reads what woke it; returns the stop reason, or NULL. */
const char *stop_after_poll(const struct pollfd *fds);

/*
 * --lines-fd: waits for the client's 'g' on stdin (it has written the trace's
 * header line to the same outputs). Returns NULL then, else the stop reason.
 */
const char *stop_wait_for_go(void);

#endif
