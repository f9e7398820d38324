// SPDX-License-Identifier: Apache-2.0
/*
 * pwru-helper: traces where packets go in the kernel. The story, top to
 * bottom: parse options -> check privileges and BTF -> say hello -> compile
 * the packet filter -> find what to probe -> pick a backend -> load -> attach
 * -> stream events until told to stop -> detach -> say goodbye.
 * Everything it reports goes to stdout as the record stream (bpf/event.h).
 */
#define _GNU_SOURCE /* pipe2 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "../bpf/event.h"
#include "attach.h"
#include "event_json.h"
#include "events.h"
#include "filter_translate.h"
#include "kallsyms.h"
#include "kernel_btf.h"
#include "loader.h"
#include "options.h"
#include "output.h"
#include "probes.h"
#include "pwru.skel.h"
#include "version.h"

#define EXIT_FAILED 1
#define EXIT_BAD_INPUT 2

#define CAP_BIT(c) (1ULL << (c))
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(int code, const char *what, const char *fmt, const char *detail)
{
	out_message(PWRU_FRAME_ERROR, what, fmt, detail);
	return code;
}

/* CAP_BPF with CAP_PERFMON (5.8+), or CAP_SYS_ADMIN. */
static bool privileged(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };
	unsigned long long eff;

	if (syscall(SYS_capget, &hdr, data) != 0)
		return geteuid() == 0;
	eff = data[0].effective | ((unsigned long long)data[1].effective << 32);
	return (eff & CAP_BIT(CAP_SYS_ADMIN)) || ((eff & CAP_BIT(CAP_BPF)) && (eff & CAP_BIT(CAP_PERFMON)));
}

/* Returns CLOCK_REALTIME - CLOCK_MONOTONIC as told to the client, ns. */
static int64_t write_hello(void)
{
	struct utsname u;
	struct timespec mono, real;
	char num[32];
	struct json j;

	uname(&u);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	json_init(&j);
	json_begin_object(&j);
	json_kv_int(&j, "stream", PWRU_STREAM_VERSION);
	json_kv_int(&j, "event_version", PWRU_EVENT_VERSION);
	json_kv_int(&j, "event_size", sizeof(struct pwru_event));
	json_kv_string(&j, "helper", PWRU_HELPER_VERSION);
	json_kv_string(&j, "kernel", u.release);
	json_kv_string(&j, "arch", u.machine);
	json_kv_string(&j, "hostname", u.nodename);
	snprintf(num, sizeof(num), "%lld", (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec);
	json_kv_string(&j, "mono_ns", num);
	snprintf(num, sizeof(num), "%lld", (long long)real.tv_sec * 1000000000LL + real.tv_nsec);
	json_kv_string(&j, "real_ns", num);
	json_kv_int(&j, "json_schema", PWRU_JSON_SCHEMA_VERSION);
	json_end_object(&j);
	out_json(PWRU_FRAME_HELLO, &j);
	json_free(&j);
	out_flush();
	return ((int64_t)real.tv_sec - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
}

static void progress(const char *phase, size_t done, size_t total)
{
	char msg[64];
	struct json j;

	snprintf(msg, sizeof(msg), "%s probes", strcmp(phase, "attach") == 0 ? "attaching" : "detaching");
	json_init(&j);
	json_begin_object(&j);
	json_kv_string(&j, "phase", phase);
	json_kv_uint(&j, "done", done);
	json_kv_uint(&j, "total", total);
	json_kv_string(&j, "message", msg);
	json_end_object(&j);
	out_json(PWRU_FRAME_PROGRESS, &j);
	json_free(&j);
	/* A slow detach (plain kprobes) must not let the ring buffer overflow meanwhile. */
	events_drain();
	out_flush();
}

/* Names of enum skb_drop_reason by value (NULL where unnamed), copied out of the BTF for --emit json. */
static char **drop_reason_names(const struct btf *btf, uint32_t *count)
{
	struct drop_reason *reasons;
	size_t nreasons;
	char **names = NULL;

	*count = 0;
	if (drop_reasons_read(btf, &reasons, &nreasons) != 0)
		return NULL;
	for (size_t i = 0; i < nreasons; i++)
		if (reasons[i].value < 4096 && reasons[i].value >= *count)
			*count = reasons[i].value + 1;
	names = *count ? calloc(*count, sizeof(*names)) : NULL;
	for (size_t i = 0; names && i < nreasons; i++)
		if (reasons[i].value < *count)
			names[reasons[i].value] = strdup(reasons[i].name);
	if (!names)
		*count = 0;
	free(reasons);
	return names;
}

static void free_names(char **names, uint32_t count)
{
	for (uint32_t i = 0; names && i < count; i++)
		free(names[i]);
	free(names);
}

/* {"code": "NAME", ...} of enum skb_drop_reason, read before the BTF is let go. */
static char *drop_reasons_json(const struct btf *btf)
{
	struct drop_reason *reasons;
	size_t nreasons;
	char key[16];
	struct json j;

	json_init(&j);
	json_begin_object(&j);
	if (drop_reasons_read(btf, &reasons, &nreasons) == 0) {
		for (size_t i = 0; i < nreasons; i++) {
			snprintf(key, sizeof(key), "%u", reasons[i].value);
			json_kv_string(&j, key, reasons[i].name);
		}
		free(reasons);
	}
	json_end_object(&j);
	return j.buf;
}

static void write_ready(enum backend backend, const char *note, const struct probe_set *probes,
			const struct attachment *att, double attach_ms, const char *filter, const char *drop_reasons,
			unsigned int ringbuf)
{
	struct json j;

	json_init(&j);
	json_begin_object(&j);
	json_kv_string(&j, "backend", backend_name(backend));
	json_kv_string(&j, "backend_note", note);
	json_key(&j, "probes");
	json_begin_array(&j);
	for (size_t id = 0; id < probes->cnt; id++) {
		const struct probe *p = &probes->v[id];

		if (!p->attached)
			continue;
		json_begin_object(&j);
		json_kv_uint(&j, "id", id);
		json_kv_string(&j, "name", p->name);
		json_kv_string(&j, "kind", p->kind == PROBE_TRACEPOINT ? "tracepoint" : backend_name(backend));
		json_end_object(&j);
	}
	json_end_array(&j);
	json_kv_uint(&j, "attached", att->attached);
	json_kv_uint(&j, "skipped", att->skipped);
	json_kv_int(&j, "attach_ms", (long long)(attach_ms + 0.5));
	json_kv_string(&j, "filter", filter);
	json_kv_uint(&j, "ringbuf_bytes", ringbuf);
	json_key(&j, "drop_reasons");
	json_raw_value(&j, drop_reasons);
	json_end_object(&j);
	out_json(PWRU_FRAME_READY, &j);
	json_free(&j);
	out_flush();
}

static void write_end(const struct loop_result *res)
{
	struct json j;

	json_init(&j);
	json_begin_object(&j);
	json_kv_string(&j, "reason", res->reason);
	json_kv_uint(&j, "events", res->events);
	json_kv_uint(&j, "lost", res->lost);
	json_end_object(&j);
	out_json(PWRU_FRAME_END, &j);
	json_free(&j);
	out_flush();
}

/* Adds the functions of every module with BTF (--all-kmods). */
static int add_module_functions(struct btf *vmlinux, const struct kallsyms *ks, const regex_t *re,
				struct probe_set *probes)
{
	DIR *dir = opendir("/sys/kernel/btf");
	struct dirent *de;
	char path[300];
	int modules = 0;

	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.' || strcmp(de->d_name, "vmlinux") == 0)
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/btf/%s", de->d_name);
		struct btf *mod = btf__parse_split(path, vmlinux);
		if (!mod)
			continue;
		probes_find_functions(mod, ks, re, probes);
		btf__free(mod);
		modules++;
	}
	closedir(dir);
	if (modules == 0)
		out_message(PWRU_FRAME_WARNING, "no_module_btf", "%s",
			    "--all-kmods: this kernel has no module BTF (needs 5.11+ with "
			    "CONFIG_DEBUG_INFO_BTF_MODULES=y): only built-in functions are probed");
	return 0;
}

/* Whether the kernel offers a backend, and if not, why. */
static bool backend_offered(const struct backend_support *bs, enum backend b, const char **why)
{
	switch (b) {
	case BACKEND_KPROBE_MULTI:
		*why = bs->kprobe_multi_why;
		return bs->kprobe_multi;
	case BACKEND_KPROBE:
		*why = bs->kprobe_why;
		return bs->kprobe;
	case BACKEND_TRACEPOINT:
		*why = bs->tracepoint_why;
		return bs->tracepoint;
	default:
		*why = "";
		return false;
	}
}

static int choose_backend(enum backend asked, const struct backend_support *bs, enum backend *chosen, char *note,
			  size_t notelen, char *err, size_t errlen)
{
	const char *why;
	char have[64] = "";

	if (bs->kprobe_multi)
		strcat(have, "kprobe-multi, ");
	if (bs->kprobe)
		strcat(have, "kprobe, ");
	if (bs->tracepoint)
		strcat(have, "tracepoint, ");
	if (*have)
		have[strlen(have) - 2] = 0;
	else
		strcpy(have, "none");

	switch (asked) {
	case BACKEND_AUTO:
		if (bs->kprobe_multi)
			*chosen = BACKEND_KPROBE_MULTI;
		else if (bs->kprobe)
			*chosen = BACKEND_KPROBE;
		else if (bs->tracepoint)
			*chosen = BACKEND_TRACEPOINT;
		else {
			snprintf(err, errlen, "this kernel offers no backend: %s; %s; %s", bs->kprobe_multi_why,
				 bs->kprobe_why, bs->tracepoint_why);
			return -1;
		}
		snprintf(note, notelen, "auto chose %s (available: %s)", backend_name(*chosen), have);
		return 0;
	default:
		if (!backend_offered(bs, asked, &why)) {
			snprintf(err, errlen, "backend %s is not available on this kernel (%s); available: %s",
				 backend_name(asked), why, have);
			return -1;
		}
		break;
	}
	*chosen = asked;
	snprintf(note, notelen, "as asked (available: %s)", have);
	return 0;
}

/*
 * Stop on signals. The handler only notes the signal and wakes the loop
 * through a pipe; it is installed without SA_RESTART so that a write to a
 * reader that stopped reading is interrupted instead of blocking forever.
 */
static int signal_pipe[2] = { -1, -1 };
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;

	stop_signal = sig;
	if (write(signal_pipe[1], &c, 1) < 0) {
		/* the pipe is full: the loop is already being woken */
	}
	errno = saved;
}

static bool stop_requested(void)
{
	return stop_signal != 0;
}

static int setup_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	signal(SIGPIPE, SIG_IGN);
	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return -1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	out_set_abort_check(stop_requested);
	return signal_pipe[0];
}

/* Only a pipe, socket or terminal on stdin means "a client that can go away". */
static bool stdin_is_client(void)
{
	struct stat sb;

	if (fstat(0, &sb) != 0)
		return false;
	if (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode) || isatty(0)) {
		fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
		return true;
	}
	return false;
}

/*
 * --lines-fd: the client writes the trace's header line to the same output
 * first, then sends 'g' on stdin. Until then events wait in the ring buffer.
 * Returns the reason to stop instead ("signal", "stdin"), or NULL to go on.
 */
static const char *wait_for_go(int signal_fd)
{
	struct pollfd fds[2] = { { .fd = 0, .events = POLLIN }, { .fd = signal_fd, .events = POLLIN } };

	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return "error";
		}
		if (fds[1].revents & POLLIN)
			return "signal";
		if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			char c;
			ssize_t n = read(0, &c, 1);

			if (n == 1 && c == 'g')
				return NULL;
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				return "stdin";
		}
	}
}

int main(int argc, char **argv)
{
	struct options opts;
	struct pcap_filter filter = { 0 };
	struct probe_set probes = { 0 };
	struct kallsyms ks = { 0 };
	struct backend_support support;
	struct attachment att;
	struct loop_result res;
	struct pwru_bpf *skel;
	struct btf *btf;
	regex_t re, *rep = NULL;
	enum backend backend;
	char err[1024], note[256];
	int signal_fd, ret;

	out_init(1);
	signal_fd = setup_signals();
	if (options_parse(argc, argv, &opts, err, sizeof(err)))
		return fail(EXIT_BAD_INPUT, "usage", "%s", err);
	for (int i = 0; i < opts.nline_fds; i++)
		if (out_add_line_fd(opts.line_fds[i]))
			return fail(EXIT_FAILED, "oom", "%s", "out of memory");
	int64_t real_minus_mono_ns = write_hello();

	if (!privileged())
		return fail(EXIT_FAILED, "not_permitted", "%s",
			    "not permitted: tracing needs root, or CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN before 5.8)");
	btf = kernel_btf_load();
	if (!btf)
		return fail(EXIT_FAILED, "no_btf", "%s",
			    "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): kubectl-pwru needs a kernel "
			    "built with CONFIG_DEBUG_INFO_BTF=y (5.5 or later; the default on current Debian, Ubuntu, "
			    "Fedora, RHEL 8.2+, COS, Bottlerocket and Amazon Linux 2023)");

	/* The filter first: a bad expression must fail before anything is loaded. */
	if (*opts.pcap_filter) {
		if (pcap_filter_build(opts.pcap_filter, &filter, err, sizeof(err)))
			return fail(EXIT_BAD_INPUT, "bad_filter", "invalid pcap filter: %s", err);
	} else {
		pcap_filter_match_all(&filter);
	}
	if (opts.filter_func) {
		int rc = regcomp(&re, opts.filter_func, REG_EXTENDED | REG_NOSUB);
		if (rc) {
			regerror(rc, &re, err, sizeof(err));
			return fail(EXIT_BAD_INPUT, "bad_regex", "--filter-func: %s", err);
		}
		rep = &re;
	}

	/* What this kernel can probe with, then what there is to probe. */
	backends_detect(&support, opts.backend != BACKEND_TRACEPOINT);
	if (opts.verify_only) {
		/* The verifier accepts programs the kernel could never attach: check them anyway. */
		backend = opts.backend;
		snprintf(note, sizeof(note), "verify only");
	} else if (choose_backend(opts.backend, &support, &backend, note, sizeof(note), err, sizeof(err))) {
		return fail(EXIT_BAD_INPUT, "backend_unavailable", "%s", err);
	}
	struct probe_set functions = { 0 };
	if (backend != BACKEND_TRACEPOINT) {
		ret = kallsyms_load(&ks);
		if (ret)
			return fail(EXIT_FAILED, "no_kallsyms", "cannot read /proc/kallsyms: %s", strerror(-ret));
		if (ks.addrs_hidden)
			return fail(EXIT_FAILED, "kallsyms_hidden", "%s",
				    "kernel addresses are hidden in /proc/kallsyms (kernel.kptr_restrict=2): use "
				    "--backend tracepoint or set kernel.kptr_restrict=1");
		probes_find_functions(btf, &ks, rep, &functions);
		if (opts.all_kmods)
			add_module_functions(btf, &ks, rep, &functions);
	}

	/* Tracepoints first (ids are stable), then functions for the kprobe backends. */
	if (backend == BACKEND_TRACEPOINT) {
		probes_find_tracepoints(btf, rep, &probes);
	} else {
		/* Only the always-on drop and free tracepoints: functions cover the path. */
		regex_t none;
		regcomp(&none, "^$", REG_EXTENDED | REG_NOSUB);
		probes_find_tracepoints(btf, &none, &probes);
		regfree(&none);
		for (size_t i = 0; i < functions.cnt; i++) {
			struct probe *p = probes_add(&probes, functions.v[i].name);
			if (!p)
				return fail(EXIT_FAILED, "oom", "%s", "out of memory");
			char *name = p->name;
			*p = functions.v[i];
			p->name = name;
		}
	}
	probes_free(&functions);
	size_t chosen = 0;
	for (size_t i = 0; i < probes.cnt; i++)
		if (probes.v[i].kind == PROBE_FUNC || probes.v[i].role == TP_GENERIC)
			chosen++;
	if (chosen == 0) {
		if (opts.filter_func)
			snprintf(err, sizeof(err), "--filter-func '%s' matches no %s that takes a struct sk_buff *",
				 opts.filter_func, backend == BACKEND_TRACEPOINT ? "tracepoint" : "probeable function");
		else
			snprintf(err, sizeof(err), "found no %s that takes a struct sk_buff *",
				 backend == BACKEND_TRACEPOINT ? "tracepoint" : "probeable function");
		return fail(EXIT_BAD_INPUT, "no_match", "%s", err);
	}

	char *drop_reasons = drop_reasons_json(btf);
	uint32_t ndrop_names = 0;
	char **drop_names = opts.emit_json ? drop_reason_names(btf, &ndrop_names) : NULL;
	/* libbpf needs the kernel's BTF for CO-RE and the tracepoints: it takes this copy (and frees it after loading). */
	kernel_btf_give_to_libbpf(btf);
	btf = NULL;
	/* kallsyms is only needed again to name callers: it is reloaded lazily then. */
	if (backend == BACKEND_TRACEPOINT)
		kallsyms_free(&ks);

	/* Load and attach. */
	struct load_config lc = {
		.backend = backend,
		.filter = &filter,
		.has_filter = *opts.pcap_filter != 0,
		.netns = opts.netns_inode,
		.mark = opts.mark,
		.mark_mask = opts.mark_mask,
		.ifname = opts.filter_ifname,
		.track_skb = opts.track_skb,
		.output_stack = opts.output_stack,
		.has_func_ip = support.func_ip,
		.ringbuf_bytes = opts.ringbuf_bytes,
	};
	double t0 = mono_ms();
	if ((ret = loader_init()) < 0)
		return fail(EXIT_FAILED, "load_failed", "registering program handlers: %s", strerror(-ret));
	skel = loader_load(&lc, &probes, err, sizeof(err));
	if (!skel)
		return fail(EXIT_FAILED, "load_failed", "%s", err);
	if (opts.verify_only) {
		/* Tracepoint copies are loaded (verified) per tracepoint too. */
		for (size_t id = 0; id < probes.cnt; id++) {
			if (probes.v[id].kind == PROBE_TRACEPOINT && loader_tracepoint_fd(skel, &probes, id, err, sizeof(err)) < 0) {
				loader_destroy(skel);
				return fail(EXIT_FAILED, "load_failed", "%s", err);
			}
		}
		res = (struct loop_result){ .reason = "verified" };
		write_end(&res);
		loader_destroy(skel);
		return 0;
	}
	ret = attach_all(skel, backend, &probes, &att, progress, stop_requested, err, sizeof(err));
	if (ret) {
		attach_detach(&att, NULL);
		loader_destroy(skel);
		if (ret == -EINTR) {
			/* Asked to stop before tracing began: not a failure. */
			res = (struct loop_result){ .reason = "signal" };
			write_end(&res);
			return 0;
		}
		return fail(EXIT_FAILED, "attach_failed", "%s", err);
	}
	write_ready(backend, note, &probes, &att, mono_ms() - t0, opts.pcap_filter, drop_reasons, opts.ringbuf_bytes);
	free(drop_reasons);

	struct loop_config loop = {
		.skel = skel,
		.probes = &probes,
		.ksyms = &ks,
		.kprobe_backend = backend != BACKEND_TRACEPOINT,
		.duration_sec = opts.duration_sec,
		.max_events = opts.max_events,
		.signal_fd = signal_fd,
		.watch_stdin = stdin_is_client(),
		.emit_json = opts.emit_json,
		.func_kind = backend_name(backend),
		.drop_reason_names = (const char *const *)drop_names,
		.ndrop_reasons = ndrop_names,
		.real_minus_mono_ns = real_minus_mono_ns,
		.packet_starts = opts.packet_starts,
	};
	ret = events_open(&loop);
	if (ret) {
		attach_detach(&att, NULL);
		loader_destroy(skel);
		return fail(EXIT_FAILED, "ring_buffer", "cannot read the ring buffer: %s", strerror(-ret));
	}
	const char *stop_early = loop.watch_stdin && out_lines_direct() ? wait_for_go(signal_fd) : NULL;
	if (stop_early)
		res = (struct loop_result){ .reason = stop_early };
	else
		ret = events_loop(&res);

	/* Detach, then deliver what fired meanwhile, so the final numbers are final. */
	attach_detach(&att, out_broken() ? NULL : progress);
	events_drain();
	res.events = events_delivered();
	events_write_digest();
	events_close();
	free_names(drop_names, ndrop_names);
	events_write_stats(skel, true, &res.lost);
	write_end(&res);
	loader_destroy(skel);
	probes_free(&probes);
	pcap_filter_free(&filter);
	kallsyms_free(&ks);
	if (rep)
		regfree(rep);
	if (ret)
		fprintf(stderr, "pwru-helper: tracing loop failed: %s\n", strerror(-ret));
	return ret ? EXIT_FAILED : 0;
}
