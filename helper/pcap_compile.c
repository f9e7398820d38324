// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE /* pipe2 */
#include "pcap_compile.h"

#include <errno.h>
#include <fcntl.h>
#include <pcap.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "stop.h"

/* What a compiling child sends back: this, then cnt instructions (ok) or cnt bytes of libpcap's message. */
struct reply {
	int32_t ok;
	uint32_t cnt;
};

/* One compile in a child process. */
struct compile {
	int link; /* DLT_RAW or DLT_EN10MB */
	pid_t pid;
	int fd;		 /* the reply, -1 once read to its end */
	struct buf reply;
	bool running, done;
	double deadline; /* CLOCK_MONOTONIC ms; 0 = none yet */
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool write_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return true;
}

/* The child: compiles, replies, exits. */
static void compile_child(const char *expr, int link, int fd)
{
	pcap_t *pcap = pcap_open_dead(link, 262144);
	struct bpf_program prog;
	struct reply r = { 0 };

	if (!pcap) {
		const char *msg = "libpcap: cannot open a dead capture handle";
		r.cnt = (uint32_t)strlen(msg);
		write_all(fd, &r, sizeof(r));
		write_all(fd, msg, r.cnt);
		return;
	}
	if (pcap_compile(pcap, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		const char *msg = pcap_geterr(pcap);
		r.cnt = (uint32_t)strlen(msg);
		write_all(fd, &r, sizeof(r));
		write_all(fd, msg, r.cnt);
		return;
	}
	_Static_assert(sizeof(struct cbpf_insn) == sizeof(struct bpf_insn), "classic BPF instructions");
	r.ok = 1;
	r.cnt = prog.bf_len;
	write_all(fd, &r, sizeof(r));
	write_all(fd, prog.bf_insns, prog.bf_len * sizeof(struct bpf_insn));
}

static int start(struct compile *c, const char *expr, bool optional)
{
	pid_t parent = getpid();
	int p[2];

	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	c->pid = fork();
	if (c->pid < 0) {
		int err = -errno;
		close(p[0]);
		close(p[1]);
		return err;
	}
	if (c->pid == 0) {
		/* Dies with the helper, even a helper killed with SIGKILL; the helper decides when to stop it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		/* A form the run can do without must not slow the one it needs (2 CPUs, both busy). */
		if (optional)
			setpriority(PRIO_PROCESS, 0, 10);
		close(p[0]);
		compile_child(expr, c->link, p[1]);
		_exit(0);
	}
	close(p[1]);
	c->fd = p[0];
	c->running = true;
	return 0;
}

static void finish(struct compile *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->pid > 0)
		waitpid(c->pid, NULL, 0);
	c->pid = 0;
	c->running = false;
}

static void kill_compile(struct compile *c)
{
	if (c->running && c->pid > 0)
		kill(c->pid, SIGKILL);
	finish(c);
}

/* Reads what the child sent; at its end, the result goes to out. */
static void read_reply(struct compile *c, struct cbpf_prog *out)
{
	char chunk[65536];
	ssize_t n = read(c->fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		buf_put(&c->reply, chunk, (size_t)n);
		return;
	}
	finish(c);
	c->done = true;
	struct reply r;
	memset(out, 0, sizeof(*out));
	if (c->reply.len < sizeof(r)) {
		snprintf(out->err, sizeof(out->err), "libpcap's compiler ended without an answer");
		return;
	}
	memcpy(&r, c->reply.p, sizeof(r));
	size_t body = c->reply.len - sizeof(r);
	if (!r.ok) {
		snprintf(out->err, sizeof(out->err), "%.*s", (int)(body < r.cnt ? body : r.cnt), c->reply.p + sizeof(r));
		return;
	}
	if (body == r.cnt * sizeof(struct cbpf_insn) && !(out->insns = malloc(body ? body : 1)))
		set_out_of_memory();
	if (!out->insns) {
		snprintf(out->err, sizeof(out->err), "%s", body == r.cnt * sizeof(struct cbpf_insn) ? "out of memory"
													: "libpcap's compiler answered short");
		return;
	}
	memcpy(out->insns, c->reply.p + sizeof(r), body);
	out->cnt = r.cnt;
	out->ok = true;
}

enum compile_outcome cbpf_compile(const struct compile_request *req, struct cbpf_prog *raw, struct cbpf_prog *eth,
				  bool *eth_skipped, char *err, size_t errlen)
{
	struct compile rc = { .link = DLT_RAW, .fd = -1 }, ec = { .link = DLT_EN10MB, .fd = -1 };
	double t0 = now_ms();
	enum compile_outcome outcome = COMPILE_OK;
	int ret;

	memset(raw, 0, sizeof(*raw));
	memset(eth, 0, sizeof(*eth));
	*eth_skipped = false;
	err[0] = 0;
	rc.deadline = t0 + req->required_ms;
	if ((ret = start(&rc, req->expr, false)) ||
	    (!req->ethernet_when_needed && (ret = start(&ec, req->expr, true)))) {
		snprintf(err, errlen, "cannot run libpcap's compiler: %s", strerror(-ret));
		outcome = COMPILE_FAILED;
		goto out;
	}
	while (rc.running || ec.running) {
		struct pollfd fds[2 + STOP_NFDS] = { { .fd = rc.fd, .events = POLLIN }, { .fd = ec.fd, .events = POLLIN } };
		double now = now_ms(), wake = 0;

		/* The Ethernet form is needed when the raw form was refused; else it has until optional_ms. */
		if (rc.done && ec.running && !ec.deadline)
			ec.deadline = raw->ok ? (t0 + req->optional_ms > now ? t0 + req->optional_ms : now)
					      : t0 + req->required_ms;
		if (rc.running && (!wake || rc.deadline < wake))
			wake = rc.deadline;
		if (ec.running && ec.deadline && (!wake || ec.deadline < wake))
			wake = ec.deadline;
		if (rc.running && now >= rc.deadline) {
			outcome = COMPILE_TOO_SLOW;
			break;
		}
		if (ec.running && ec.deadline && now >= ec.deadline) {
			kill_compile(&ec);
			if (!raw->ok) {
				outcome = COMPILE_TOO_SLOW;
				break;
			}
			*eth_skipped = true;
			continue;
		}
		stop_pollfds(fds + 2);
		if (poll(fds, 2 + STOP_NFDS, (int)(wake - now) + 1) < 0 && errno != EINTR) {
			snprintf(err, errlen, "waiting for libpcap's compiler: %s", strerror(errno));
			outcome = COMPILE_FAILED;
			break;
		}
		if (stop_after_poll(fds + 2)) {
			outcome = COMPILE_STOPPED;
			break;
		}
		if (rc.running && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
			read_reply(&rc, raw);
		if (ec.running && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
			read_reply(&ec, eth);
		/* --check: the Ethernet form only to learn whether an expression the raw form refused is valid. */
		if (rc.done && !raw->ok && req->ethernet_when_needed && !ec.running && !ec.done) {
			ec.deadline = now_ms() + req->required_ms;
			if ((ret = start(&ec, req->expr, false))) {
				snprintf(err, errlen, "cannot run libpcap's compiler: %s", strerror(-ret));
				outcome = COMPILE_FAILED;
				break;
			}
		}
	}
	if (outcome == COMPILE_TOO_SLOW)
		snprintf(err, errlen, "libpcap did not compile the filter within %d s", req->required_ms / 1000);
	if (outcome == COMPILE_OK && out_of_memory()) {
		snprintf(err, errlen, "out of memory");
		outcome = COMPILE_FAILED;
	}
	if (outcome == COMPILE_OK && !raw->ok && !eth->ok) {
		/* Both say the same of a syntax error; the Ethernet form's words are what tcpdump users know. */
		snprintf(err, errlen, "%s", eth->err[0] ? eth->err : raw->err);
		outcome = COMPILE_REFUSED;
	}
out:
	kill_compile(&rc);
	kill_compile(&ec);
	buf_free(&rc.reply);
	buf_free(&ec.reply);
	if (outcome != COMPILE_OK) {
		cbpf_prog_free(raw);
		cbpf_prog_free(eth);
	}
	return outcome;
}

void cbpf_prog_free(struct cbpf_prog *p)
{
	free(p->insns);
	p->insns = NULL;
	p->cnt = 0;
	p->ok = false;
}
