// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE /* setns */
#include "culprit_tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const tool_names[TOOL_COUNT] = {
	[TOOL_IPT_LEGACY] = "iptables-legacy", [TOOL_IP6T_LEGACY] = "ip6tables-legacy",
	[TOOL_IPT_NFT] = "iptables-nft",       [TOOL_IP6T_NFT] = "ip6tables-nft",
	[TOOL_NFT] = "nft",
};

static const char *const tool_argv[TOOL_COUNT][5] = {
	[TOOL_IPT_LEGACY] = { "iptables-legacy-save", "-c", NULL },
	[TOOL_IP6T_LEGACY] = { "ip6tables-legacy-save", "-c", NULL },
	[TOOL_IPT_NFT] = { "iptables-nft-save", "-c", NULL },
	[TOOL_IP6T_NFT] = { "ip6tables-nft-save", "-c", NULL },
	[TOOL_NFT] = { "nft", "-a", "list", "ruleset" },
};

/* Where a node keeps them; the helper's own PATH is the debug pod's, not the node's. */
static const char *const tool_dirs[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin" };
/* No ruleset is near this; a tool that prints more is cut (and its rules past the cut are not seen). */
#define TOOL_OUTPUT_MAX (32 << 20)

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- finding namespaces ---- */

static bool seen(const struct ns_ref *v, size_t n, unsigned int inode)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].inode == inode)
			return true;
	return false;
}

/*
 * A process in the node's own mount namespace: pid 1 (the node's init, seen
 * from a hostPID pod and locally), or where that may not be entered (a
 * sandboxed node), the kubelet. 0 when neither may be.
 */
static int node_pid(void)
{
	static int pid = -1;
	char path[300], comm[32];
	struct dirent *de;
	DIR *dir;
	int fd;

	if (pid >= 0)
		return pid;
	pid = 0;
	if ((fd = open("/proc/1/ns/mnt", O_RDONLY | O_CLOEXEC)) >= 0) {
		close(fd);
		return pid = 1;
	}
	if (!(dir = opendir("/proc")))
		return pid;
	while ((de = readdir(dir)) && !pid) {
		ssize_t n;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		n = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		if (n != 8 || memcmp(comm, "kubelet\n", 8) != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/mnt", de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
			close(fd);
			pid = atoi(de->d_name);
		}
	}
	closedir(dir);
	return pid;
}

/* Scans the places that name namespaces; stops at the first match of want (0: collects all). */
static size_t scan_namespaces(struct ns_ref *out, size_t max, unsigned int want)
{
	/* A debug pod sees the node's processes (hostPID) but not its /run: the node's ip-netns names. */
	char node_netns[64];
	const char *dirs[] = { "/run/netns", "/var/run/netns", node_netns, "/proc" };
	struct stat self, sb;
	size_t n = 0;

	snprintf(node_netns, sizeof(node_netns), "/proc/%d/root/run/netns", node_pid());

	if (stat("/proc/self/ns/net", &self) != 0)
		return 0;
	for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]) && n < max; d++) {
		DIR *dir = opendir(dirs[d]);
		bool proc = strcmp(dirs[d], "/proc") == 0;
		struct dirent *de;
		char path[sizeof(out->path)];

		if (!dir)
			continue;
		while ((de = readdir(dir)) && n < max) {
			if (de->d_name[0] == '.' || (proc && (de->d_name[0] < '0' || de->d_name[0] > '9')))
				continue;
			if (snprintf(path, sizeof(path), proc ? "%s/%s/ns/net" : "%s/%s", dirs[d], de->d_name) >=
			    (int)sizeof(path))
				continue;
			if (stat(path, &sb) != 0 || sb.st_dev != self.st_dev || (want && sb.st_ino != want) ||
			    seen(out, n, (unsigned int)sb.st_ino))
				continue;
			out[n].inode = (unsigned int)sb.st_ino;
			memcpy(out[n].path, path, sizeof(path));
			n++;
			if (want)
				break;
		}
		closedir(dir);
	}
	return n;
}

size_t tools_find_namespaces(struct ns_ref *out, size_t max)
{
	return scan_namespaces(out, max, 0);
}

int tools_own_netns(unsigned int *inode)
{
	struct stat sb;

	if (stat("/proc/self/ns/net", &sb) != 0)
		return -errno;
	*inode = (unsigned int)sb.st_ino;
	return 0;
}

bool tools_find_namespace(unsigned int inode, struct ns_ref *out)
{
	return inode && scan_namespaces(out, 1, inode) == 1;
}

/* ---- the child ---- */

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(1);
		c += w;
		n -= (size_t)w;
	}
}

/* One answer: "@@ NETNS TOOL STATUS LEN AT\n" and LEN bytes. */
static void answer(int fd, unsigned int netns, int tool, int status, const char *text, size_t len)
{
	char head[128];
	int n = snprintf(head, sizeof(head), "@@ %u %d %d %zu %llu\n", netns, tool, status, len,
			 (unsigned long long)mono_ns());

	write_all(fd, head, (size_t)n);
	write_all(fd, text, len);
}

static void answer_errno(int fd, unsigned int netns, int kind, const char *what, int err)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));

	answer(fd, netns, kind, -1, msg, (size_t)n);
}

/* Whether the namespace has iptables-legacy tables of that family (the tool would print nothing otherwise). */
static bool has_legacy_tables(const char *names_file)
{
	char c;
	int fd = open(names_file, O_RDONLY | O_CLOEXEC);
	bool any;

	if (fd < 0)
		return false; /* x_tables not loaded: no legacy tables anywhere */
	any = read(fd, &c, 1) == 1;
	close(fd);
	return any;
}

/* Runs one tool, its stdout into *out; returns its exit status (127: not found). */
static int run_tool(int tool, struct buf *out)
{
	static char *const envp[] = { "PATH=/usr/sbin:/sbin:/usr/bin:/bin", "LC_ALL=C", NULL };
	int p[2], status;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return 126;
	pid = fork();
	if (pid < 0)
		return 126;
	if (pid == 0) {
		char path[128];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1); /* 0 and 2 are /dev/null already */
		for (size_t d = 0; d < sizeof(tool_dirs) / sizeof(tool_dirs[0]); d++) {
			snprintf(path, sizeof(path), "%s/%s", tool_dirs[d], tool_argv[tool][0]);
			execve(path, (char *const *)tool_argv[tool], envp);
		}
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		ssize_t r;

		if (!buf_reserve(out, 65536))
			break;
		r = read(p[0], out->p + out->len, 65536);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (out->len + (size_t)r <= TOOL_OUTPUT_MAX)
			out->len += (size_t)r;
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Same namespace as ours (setns would be pointless, and may be refused inside a container)? */
static bool same_ns(const char *a, const char *b)
{
	struct stat x, y;

	return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_ino == y.st_ino && x.st_dev == y.st_dev;
}

static void child(int fd_out, const struct ns_ref *ns, size_t n)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	setpgid(0, 0);
	/*
	 * Nothing of the helper's but the pipe: its BPF links would stay
	 * attached while we hold them, and its stdout open to the client.
	 */
	if (null < 0 || dup2(fd_out, 3) < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
		_exit(1);
	fd_out = 3;
	syscall(SYS_close_range, 4U, ~0U, 0U);
	/* The node's tools, not the debug pod's. */
	char mnt[64];
	int pid = node_pid();

	snprintf(mnt, sizeof(mnt), "/proc/%d/ns/mnt", pid);
	if (!pid) {
		answer_errno(fd_out, 0, TOOL_NOTE,
			     "the node's mount namespace (of pid 1, or of the kubelet) could not be entered", EPERM);
	} else if (!same_ns(mnt, "/proc/self/ns/mnt")) {
		int fd = open(mnt, O_RDONLY | O_CLOEXEC);

		/* Refused: the tools where the helper is, and a note saying so. */
		if (fd < 0 || setns(fd, CLONE_NEWNS) != 0 || chdir("/") != 0)
			answer_errno(fd_out, 0, TOOL_NOTE, "the node's mount namespace could not be entered", errno);
		if (fd >= 0)
			close(fd);
	}
	for (size_t i = 0; i < n; i++) {
		int fd = open(ns[i].path, O_RDONLY | O_CLOEXEC);
		struct stat sb;

		/* A name may have moved on to another namespace since it was found. */
		if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_ino != ns[i].inode || setns(fd, CLONE_NEWNET) != 0) {
			answer_errno(fd_out, ns[i].inode, TOOL_NO_NETNS, "entering it", fd < 0 ? errno : sb.st_ino != ns[i].inode ? ENOENT : errno);
			if (fd >= 0)
				close(fd);
			continue;
		}
		close(fd);
		for (int t = 0; t < TOOL_COUNT; t++) {
			struct buf out = { 0 };
			int status;

			/* /proc/net is the namespace's own once we are in it. */
			if ((t == TOOL_IPT_LEGACY && !has_legacy_tables("/proc/net/ip_tables_names")) ||
			    (t == TOOL_IP6T_LEGACY && !has_legacy_tables("/proc/net/ip6_tables_names"))) {
				answer(fd_out, ns[i].inode, t, -1, "", 0);
				continue;
			}
			status = run_tool(t, &out);
			answer(fd_out, ns[i].inode, t, status, out.p ? out.p : "", out.len);
			buf_free(&out);
		}
	}
	_exit(0);
}

/* ---- the parent ---- */

int tools_start(struct tool_job *j, const struct ns_ref *ns, size_t n, double timeout_s)
{
	int p[2];

	memset(j, 0, sizeof(*j));
	j->fd = -1;
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	j->started = mono_ns();
	j->deadline = j->started / 1e9 + timeout_s;
	j->pid = fork();
	if (j->pid < 0) {
		int e = errno;

		close(p[0]);
		close(p[1]);
		j->pid = 0;
		return -e;
	}
	if (j->pid == 0) {
		close(p[0]);
		child(p[1], ns, n);
	}
	close(p[1]);
	j->fd = p[0];
	fcntl(j->fd, F_SETFL, O_NONBLOCK);
	return 0;
}

static void reap(struct tool_job *j, bool kill_it)
{
	if (!j->pid)
		return;
	if (kill_it)
		kill(-j->pid, SIGKILL), kill(j->pid, SIGKILL);
	while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
		;
	j->pid = 0;
}

bool tools_pump(struct tool_job *j)
{
	if (j->done)
		return true;
	for (;;) {
		ssize_t r;

		if (!buf_reserve(&j->out, 65536))
			break;
		r = read(j->fd, j->out.p + j->out.len, 65536);
		if (r > 0) {
			j->out.len += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			if (mono_ns() / 1e9 < j->deadline)
				return false;
			j->timed_out = true;
		}
		break;
	}
	close(j->fd);
	j->fd = -1;
	reap(j, j->timed_out);
	j->done = true;
	return true;
}

bool tools_next(const struct tool_job *j, size_t *off, struct tool_output *o)
{
	const char *p = j->out.p + *off, *end = j->out.p + j->out.len, *nl;
	unsigned long long len, at;
	int used = 0;

	if (!j->out.p || p >= end || !(nl = memchr(p, '\n', (size_t)(end - p))))
		return false;
	if (sscanf(p, "@@ %u %d %d %llu %llu%n", &o->netns, &o->tool, &o->status, &len, &at, &used) != 5 ||
	    p + used != nl ||
	    len > (unsigned long long)(end - nl - 1))
		return false; /* cut short (the child was killed): what follows is not whole */
	o->text = nl + 1;
	o->len = (size_t)len;
	o->at = at;
	*off = (size_t)(nl + 1 + len - j->out.p);
	return true;
}

void tools_free(struct tool_job *j)
{
	if (!j->started)
		return; /* never started */
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	reap(j, true);
	buf_free(&j->out);
}
