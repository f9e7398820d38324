// SPDX-License-Identifier: Apache-2.0
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "pwru.skel.h"

const char *backend_name(enum backend b)
{
	switch (b) {
	case BACKEND_KPROBE_MULTI:
		return "kprobe-multi";
	case BACKEND_KPROBE:
		return "kprobe";
	case BACKEND_TRACEPOINT:
		return "tracepoint";
	default:
		return "auto";
	}
}

int backend_parse(const char *s, enum backend *out)
{
	static const enum backend all[] = { BACKEND_AUTO, BACKEND_KPROBE_MULTI, BACKEND_KPROBE, BACKEND_TRACEPOINT };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, backend_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

/* r0 = 0; exit */
static const struct bpf_insn trivial_prog[] = {
	{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
	{ .code = BPF_JMP | BPF_EXIT },
};

static void detect_kprobe_multi(struct backend_support *s, const char *func)
{
	LIBBPF_OPTS(bpf_prog_load_opts, popts, .expected_attach_type = BPF_TRACE_KPROBE_MULTI);
	LIBBPF_OPTS(bpf_link_create_opts, lopts);
	const char *syms[1] = { func };
	int prog, link;

	prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "pwru_probe", "GPL", trivial_prog, 2, &popts);
	if (prog < 0) {
		snprintf(s->kprobe_multi_why, sizeof(s->kprobe_multi_why), "loading a kprobe-multi program: %s",
			 strerror(errno));
		return;
	}
	lopts.kprobe_multi.syms = syms;
	lopts.kprobe_multi.cnt = 1;
	link = bpf_link_create(prog, 0, BPF_TRACE_KPROBE_MULTI, &lopts);
	if (link < 0) {
		snprintf(s->kprobe_multi_why, sizeof(s->kprobe_multi_why), "attaching kprobe-multi to %s: %s%s", func,
			 strerror(errno), errno == EOPNOTSUPP ? " (kernel without CONFIG_FPROBE)" : "");
	} else {
		s->kprobe_multi = true;
		close(link);
	}
	close(prog);
}

static void detect_kprobe(struct backend_support *s, const char *func)
{
	struct perf_event_attr attr = { .size = sizeof(attr) };
	char buf[32] = { 0 };
	int fd, type;

	fd = open("/sys/bus/event_source/devices/kprobe/type", O_RDONLY);
	if (fd < 0) {
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "no kprobe PMU (kernel without CONFIG_KPROBES?)");
		return;
	}
	if (read(fd, buf, sizeof(buf) - 1) <= 0) {
		close(fd);
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "cannot read the kprobe PMU type");
		return;
	}
	close(fd);
	type = atoi(buf);
	attr.type = type;
	attr.config1 = (__u64)(unsigned long)func;
	attr.config2 = 0;
	fd = syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "creating a kprobe on %s: %s", func, strerror(errno));
		return;
	}
	close(fd);
	s->kprobe = true;
}

static void detect_tracepoint(struct backend_support *s)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		snprintf(s->tracepoint_why, sizeof(s->tracepoint_why), "no kernel BTF (/sys/kernel/btf/vmlinux)");
		return;
	}
	s->tracepoint = true;
}

/* Functions every kernel with networking has, to try a test attach on. */
static const char *const known_funcs[] = { "kfree_skbmem", "__kfree_skb", "ip_rcv", "netif_receive_skb" };
#define N_KNOWN (sizeof(known_funcs) / sizeof(known_funcs[0]))

void backends_detect(struct backend_support *s, bool try_kprobes)
{
	memset(s, 0, sizeof(*s));
	detect_tracepoint(s);
	if (!try_kprobes) {
		snprintf(s->kprobe_multi_why, sizeof(s->kprobe_multi_why), "not tried");
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "not tried");
		return;
	}
	/* A function may be missing or untraceable on some kernel: one success is enough. */
	for (size_t i = 0; i < N_KNOWN && !s->kprobe_multi; i++)
		detect_kprobe_multi(s, known_funcs[i]);
	for (size_t i = 0; i < N_KNOWN && !s->kprobe; i++)
		detect_kprobe(s, known_funcs[i]);
	s->func_ip = libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, BPF_FUNC_get_func_ip, NULL) > 0;
}

/* Makes room for one more element in a growing array. */
static int reserve_one(void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t grown = *cap ? *cap * 2 : 64;
	void *p = realloc(*v, grown * elem);

	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = grown;
	return 0;
}

static int add_link(struct attachment *att, struct bpf_link *link)
{
	if (reserve_one((void **)&att->links, &att->cap, att->nlinks, sizeof(*att->links)))
		return -ENOMEM;
	att->links[att->nlinks++] = link;
	return 0;
}

static int add_raw(struct attachment *att, int fd)
{
	if (reserve_one((void **)&att->raw_fds, &att->raw_cap, att->nraw, sizeof(*att->raw_fds)))
		return -ENOMEM;
	att->raw_fds[att->nraw++] = fd;
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool (*should_stop)(void);

static bool stopping(void)
{
	return should_stop && should_stop();
}

/* Reports progress at most every 100 ms, and at the end. */
static void report(attach_progress_fn progress, const char *phase, size_t done, size_t total)
{
	static double last;
	double t = now_ms();

	if (!progress || (done != total && t - last < 100))
		return;
	last = t;
	progress(phase, done, total);
}

static int attach_tracepoints(struct pwru_bpf *skel, struct probe_set *probes, struct attachment *att,
			      attach_progress_fn progress, size_t total, size_t *done, char *err, size_t errlen)
{
	for (size_t id = 0; id < probes->cnt; id++) {
		struct probe *p = &probes->v[id];

		if (p->kind != PROBE_TRACEPOINT)
			continue;
		if (stopping())
			return -EINTR;
		int fd = loader_tracepoint_fd(skel, probes, id, err, errlen);
		if (fd < 0)
			return fd;
		int link = bpf_raw_tracepoint_open(NULL, fd);
		if (link < 0) {
			/* Some tracepoints exist in BTF but are compiled out: skip those. */
			att->skipped++;
		} else {
			if (add_raw(att, link) < 0) {
				close(link);
				return -ENOMEM;
			}
			p->attached = true;
			att->attached++;
		}
		report(progress, "attach", ++*done, total);
	}
	return 0;
}

/* Attaches one kprobe-multi link over syms; on refusal halves the set to skip what cannot be traced. */
static int attach_multi_range(struct bpf_program *prog, struct probe **ps, const char **syms, size_t n,
			      struct attachment *att, attach_progress_fn progress, size_t total, size_t *done)
{
	LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .syms = syms, .cnt = n);
	struct bpf_link *link;

	if (n == 0)
		return 0;
	if (stopping())
		return -EINTR;
	link = bpf_program__attach_kprobe_multi_opts(prog, NULL, &opts);
	if (link) {
		if (add_link(att, link) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			ps[i]->attached = true;
		att->attached += n;
		*done += n;
		report(progress, "attach", *done, total);
		return 0;
	}
	if (n == 1) {
		att->skipped++;
		++*done;
		return 0;
	}
	int ret = attach_multi_range(prog, ps, syms, n / 2, att, progress, total, done);
	if (ret)
		return ret;
	return attach_multi_range(prog, ps + n / 2, syms + n / 2, n - n / 2, att, progress, total, done);
}

static int attach_functions_multi(struct pwru_bpf *skel, struct probe_set *probes, struct attachment *att,
				  attach_progress_fn progress, size_t total, size_t *done)
{
	const char **syms = calloc(probes->cnt, sizeof(*syms));
	struct probe **ps = calloc(probes->cnt, sizeof(*ps));
	int ret = 0;

	if (!syms || !ps) {
		ret = -ENOMEM;
		goto out;
	}
	for (int pos = 1; pos <= MAX_SKB_POS && !ret; pos++) {
		struct bpf_program *prog = NULL;
		size_t n = 0;

		for (size_t id = 0; id < probes->cnt; id++) {
			struct probe *p = &probes->v[id];

			if (p->kind != PROBE_FUNC || p->skb_pos != pos)
				continue;
			prog = loader_program_for(skel, BACKEND_KPROBE_MULTI, p);
			syms[n] = p->name;
			ps[n++] = p;
		}
		if (prog)
			ret = attach_multi_range(prog, ps, syms, n, att, progress, total, done);
	}
out:
	free(syms);
	free(ps);
	return ret;
}

static int attach_functions_kprobe(struct pwru_bpf *skel, struct probe_set *probes, struct attachment *att,
				   attach_progress_fn progress, size_t total, size_t *done)
{
	for (size_t id = 0; id < probes->cnt; id++) {
		struct probe *p = &probes->v[id];

		if (p->kind != PROBE_FUNC)
			continue;
		if (stopping())
			return -EINTR;
		struct bpf_link *link =
			bpf_program__attach_kprobe(loader_program_for(skel, BACKEND_KPROBE, p), false, p->name);
		if (!link) {
			att->skipped++; /* blacklisted or notrace */
		} else {
			if (add_link(att, link) < 0)
				return -ENOMEM;
			p->attached = true;
			att->attached++;
		}
		report(progress, "attach", ++*done, total);
	}
	return 0;
}

int attach_all(struct pwru_bpf *skel, enum backend backend, struct probe_set *probes, struct attachment *att,
	       attach_progress_fn progress, bool (*stop)(void), char *err, size_t errlen)
{
	size_t done = 0;
	int ret;

	should_stop = stop;
	memset(att, 0, sizeof(*att));
	err[0] = 0;
	ret = attach_tracepoints(skel, probes, att, progress, probes->cnt, &done, err, errlen);
	if (!ret && backend == BACKEND_KPROBE_MULTI)
		ret = attach_functions_multi(skel, probes, att, progress, probes->cnt, &done);
	else if (!ret && backend == BACKEND_KPROBE)
		ret = attach_functions_kprobe(skel, probes, att, progress, probes->cnt, &done);
	if (ret) {
		if (ret == -EINTR)
			snprintf(err, errlen, "stopped while attaching probes");
		else if (!err[0])
			snprintf(err, errlen, "attaching probes: %s", strerror(-ret));
		return ret;
	}
	if (att->attached == 0) {
		snprintf(err, errlen, "the kernel refused all %zu probes", probes->cnt);
		return -ENOENT;
	}
	return 0;
}

void attach_detach(struct attachment *att, attach_progress_fn progress)
{
	size_t total = att->nlinks + att->nraw, done = 0;

	for (size_t i = 0; i < att->nraw; i++) {
		close(att->raw_fds[i]);
		report(progress, "detach", ++done, total);
	}
	for (size_t i = 0; i < att->nlinks; i++) {
		bpf_link__destroy(att->links[i]);
		report(progress, "detach", ++done, total);
	}
	free(att->links);
	free(att->raw_fds);
	memset(att, 0, sizeof(*att));
}

/* The backend to trace with: the one asked for if the kernel offers it, else (auto) the best it offers. */
int backend_choose(enum backend asked, const struct backend_support *bs, enum backend *chosen, char *note,
		   size_t notelen, char *err, size_t errlen)
{
	const struct {
		enum backend b;
		bool offered;
		const char *why;
	} all[] = {
		{ BACKEND_KPROBE_MULTI, bs->kprobe_multi, bs->kprobe_multi_why },
		{ BACKEND_KPROBE, bs->kprobe, bs->kprobe_why },
		{ BACKEND_TRACEPOINT, bs->tracepoint, bs->tracepoint_why },
	};
	char have[64] = "";

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i].offered)
			snprintf(have + strlen(have), sizeof(have) - strlen(have), "%s%s", *have ? ", " : "",
				 backend_name(all[i].b));
	if (!*have)
		snprintf(have, sizeof(have), "none");
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		/* Best first: auto takes the first offered. */
		if (asked == BACKEND_AUTO && all[i].offered) {
			*chosen = all[i].b;
			snprintf(note, notelen, "auto chose %s (available: %s)", backend_name(*chosen), have);
			return 0;
		}
		if (asked == all[i].b && all[i].offered) {
			*chosen = asked;
			snprintf(note, notelen, "as asked (available: %s)", have);
			return 0;
		}
		if (asked == all[i].b) {
			snprintf(err, errlen, "backend %s is not available on this kernel (%s); available: %s",
				 backend_name(asked), all[i].why, have);
			return -1;
		}
	}
	snprintf(err, errlen, "this kernel offers no backend: %s; %s; %s", bs->kprobe_multi_why, bs->kprobe_why,
		 bs->tracepoint_why);
	return -1;
}
