// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "link_handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* The links given, and the child that pins them (-1: none). */
static struct {
	int *fds;
	size_t n, cap;
	pid_t child;
	int to_child; /* closed by handoff_end(): the child's cue to exit */
} H = { .child = -1, .to_child = -1 };

void handoff_add(int link_fd)
{
	if (link_fd < 0)
		return;
	if (H.n == H.cap) {
		size_t cap = H.cap ? 2 * H.cap : 16;
		int *v = realloc(H.fds, cap * sizeof(*v));

		if (!v)
			return; /* that one is closed the slow way */
		H.fds = v;
		H.cap = cap;
	}
	H.fds[H.n++] = link_fd;
}

void handoff_add_skeleton(const struct bpf_object_skeleton *s)
{
	for (int i = 0; s && i < s->prog_cnt; i++)
		if (s->progs[i].link && *s->progs[i].link)
			handoff_add(bpf_link__fd(*s->progs[i].link));
}

/* Every descriptor but keep, closed: the child holds no copy of the links or of the helper's output. */
static void close_all_but(int keep_a, int keep_b)
{
	int lo = keep_a < keep_b ? keep_a : keep_b, hi = keep_a < keep_b ? keep_b : keep_a;
	struct rlimit rl;

	if (syscall(SYS_close_range, 0, lo - 1, 0) == 0 && (hi - lo < 2 || syscall(SYS_close_range, lo + 1, hi - 1, 0) == 0) &&
	    syscall(SYS_close_range, hi + 1, ~0U, 0) == 0)
		return;
	/* Before 5.9: one by one. */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		rl.rlim_cur = 65536;
	for (rlim_t fd = 0; fd < rl.rlim_cur; fd++)
		if ((int)fd != keep_a && (int)fd != keep_b)
			close(fd);
}

/* "DIR/" followed by i in decimal: no allocation, no locale (after fork). */
static void pin_path(char *buf, const char *dir, size_t i)
{
	char digits[24];
	int nd = 0;
	size_t len = strlen(dir);

	memcpy(buf, dir, len);
	buf[len++] = '/';
	do {
		digits[nd++] = '0' + i % 10;
		i /= 10;
	} while (i);
	while (nd)
		buf[len++] = digits[--nd];
	buf[len] = 0;
}

/* In the child: a bpffs of its own, each link pinned there; says 'p' (pinned) or 'f', then waits for the cue. */
static void __attribute__((noreturn)) child(int up, int down)
{
	static const char *const dirs[] = { "/tmp", "/mnt", "/run", "/dev", "/proc" };
	const char *dir = NULL;
	sigset_t all;
	char c = 'f', path[64];

	/* A Ctrl-C to the process group is the helper's to handle; only SIGKILL ends the child early. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0) {
		for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && !dir; i++)
			if (mount("bpf", dirs[i], "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") == 0)
				dir = dirs[i];
	}
	if (dir) {
		c = 'p';
		for (size_t i = 0; i < H.n; i++)
			if (bpf_obj_pin(H.fds[i], (pin_path(path, dir, i), path)) != 0)
				c = 'f';
	}
	/* The pins hold the links now: the child's own copies go (not the last references: no wait). */
	close_all_but(up, down);
	if (write(up, &c, 1) != 1 || c != 'p')
		_exit(1);
	/* Until the helper has closed its descriptors (or is gone): then the namespace, and the pins, go. */
	while (read(down, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

bool handoff_pin(void)
{
	int up[2], down[2];
	char c = 0;
	ssize_t got;

	if (!H.n || H.child >= 0)
		return false;
	if (pipe2(up, O_CLOEXEC))
		return false;
	if (pipe2(down, O_CLOEXEC)) {
		close(up[0]);
		close(up[1]);
		return false;
	}
	pid_t pid = fork();

	if (pid == 0)
		child(up[1], down[0]);
	close(up[1]);
	close(down[0]);
	if (pid < 0) {
		close(up[0]);
		close(down[1]);
		return false;
	}
	while ((got = read(up[0], &c, 1)) < 0 && errno == EINTR)
		;
	close(up[0]);
	H.child = pid;
	H.to_child = down[1];
	if (got == 1 && c == 'p')
		return true;
	/* Not all pinned: the child exits at once, and the links are closed the slow way. */
	handoff_end();
	return false;
}

void handoff_end(void)
{
	if (H.to_child >= 0)
		close(H.to_child);
	H.to_child = -1;
	if (H.child > 0)
		while (waitpid(H.child, NULL, 0) < 0 && errno == EINTR)
			;
	H.child = -1;
	free(H.fds);
	H.fds = NULL;
	H.n = H.cap = 0;
}
