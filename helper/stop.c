// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE /* pipe2 */
#include "stop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The handler only counts the signal and wakes the pollers through a pipe.
 * It is installed without SA_RESTART, so that a blocking call (a write to a
 * terminal, a program load) returns early instead of delaying the stop.
 */
static int signal_pipe[2] = { -1, -1 };
static volatile sig_atomic_t signals_seen;
static int signals_at_stop; /* how many signals the stop itself was: 1 for a signal's, else 0 */
static bool watch_stdin;
static const char *reason;
static bool go;

static void on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;

	signals_seen++;
	if (write(signal_pipe[1], &c, 1) < 0) {
		/* the pipe is full: the pollers are already being woken */
	}
	errno = saved;
}

/* Only a pipe, socket or terminal on stdin is a client that can go away; /dev/null is not. */
static bool stdin_is_client(void)
{
	struct stat sb;

	if (fstat(0, &sb) != 0)
		return false;
	return S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode) || isatty(0);
}

int stop_init(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	signal(SIGPIPE, SIG_IGN); /* a reader that went away is an EPIPE to handle, not death */
	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -errno;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	watch_stdin = stdin_is_client();
	return 0;
}

const char *stop_reason(void)
{
	if (!reason && signals_seen)
		reason = "signal";
	return reason;
}

bool stop_requested(void)
{
	return signals_seen != 0 || reason != NULL;
}

void stop_begin(const char *why)
{
	signals_at_stop = why && strcmp(why, "signal") == 0;
}

bool stop_hurry(void)
{
	return signals_seen > signals_at_stop;
}

void stop_pollfds(struct pollfd *fds)
{
	fds[0] = (struct pollfd){ .fd = signal_pipe[0], .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = watch_stdin && reason == NULL ? 0 : -1, .events = POLLIN };
}

/* Reads what the client sent: its 'g', or EOF when it went away. Only called when poll said readable. */
static void read_stdin(void)
{
	char buf[256];
	ssize_t n = read(0, buf, sizeof(buf));

	if (n > 0) {
		if (memchr(buf, 'g', (size_t)n))
			go = true;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		if (!reason)
			reason = "stdin";
	}
}

const char *stop_after_poll(const struct pollfd *fds)
{
	if (fds[0].revents & POLLIN) {
		char drain[64];

		while (read(signal_pipe[0], drain, sizeof(drain)) > 0)
			;
	}
	if (fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
		read_stdin();
	return stop_reason();
}

const char *stop_wait_for_go(void)
{
	struct pollfd fds[STOP_NFDS];

	while (!go && !stop_reason()) {
		stop_pollfds(fds);
		if (fds[1].fd < 0)
			return NULL; /* nobody to wait for */
		if (poll(fds, STOP_NFDS, -1) < 0 && errno != EINTR)
			return "error";
		stop_after_poll(fds);
	}
	return go ? NULL : stop_reason();
}
