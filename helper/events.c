// SPDX-License-Identifier: Apache-2.0
#include "events.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "../bpf/event.h"
#include "output.h"
#include "pwru.skel.h"

#define STACK_DEPTH 50
#define MAX_STACK_IDS 16384
#define SEEN_ADDRS_CAP (1 << 16)

/* Function address to probe id, for the kprobe backends. */
struct addr_entry {
	uint64_t addr;
	uint32_t id;
};

static struct {
	const struct loop_config *cfg;
	struct addr_entry *addrs;
	size_t naddrs;
	uint64_t *seen_callers; /* open addressing set of symbolised caller addresses */
	size_t nseen;
	uint8_t *stacks_sent;	/* bitmap of stack ids already written */
	uint64_t events;
	bool max_reached;
	struct ring_buffer *rb;
} L;

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct addr_entry *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int build_addr_map(const struct probe_set *probes)
{
	L.addrs = calloc(probes->cnt ? probes->cnt : 1, sizeof(*L.addrs));
	if (!L.addrs)
		return -ENOMEM;
	for (size_t id = 0; id < probes->cnt; id++) {
		const struct probe *p = &probes->v[id];

		if (p->kind == PROBE_FUNC && p->attached && p->addr)
			L.addrs[L.naddrs++] = (struct addr_entry){ p->addr, (uint32_t)id };
	}
	qsort(L.addrs, L.naddrs, sizeof(*L.addrs), cmp_entry);
	return 0;
}

/* The probe whose function starts at or just below addr (kprobes report a few bytes in). */
static uint32_t probe_id_of(uint64_t addr)
{
	size_t lo = 0, hi = L.naddrs;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (L.addrs[mid].addr <= addr)
			lo = mid;
		else
			hi = mid;
	}
	if (L.naddrs && L.addrs[lo].addr <= addr && addr - L.addrs[lo].addr < 64)
		return L.addrs[lo].id;
	return UINT32_MAX;
}

/*
 * Symbols name callers and stacks. Reading /proc/kallsyms takes a few hundred
 * milliseconds, too long to stall the event loop (the ring buffer would
 * overflow at high rates): when the backend did not load them already, a
 * thread loads them while events flow, and until it is done callers stay
 * addresses (they are named the next time they are seen).
 */
static pthread_t ksyms_thread;
static bool ksyms_thread_started;
static _Atomic bool ksyms_ready;

static void *load_ksyms(void *arg)
{
	struct kallsyms *ks = arg;

	if (kallsyms_load(ks) == 0)
		atomic_store_explicit(&ksyms_ready, true, memory_order_release);
	return NULL;
}

static void ksyms_start(void)
{
	if (L.cfg->ksyms->cnt) {
		atomic_store_explicit(&ksyms_ready, true, memory_order_release);
		return;
	}
	ksyms_thread_started = pthread_create(&ksyms_thread, NULL, load_ksyms, L.cfg->ksyms) == 0;
}

static void ksyms_stop(void)
{
	if (ksyms_thread_started)
		pthread_join(ksyms_thread, NULL);
	ksyms_thread_started = false;
	atomic_store_explicit(&ksyms_ready, false, memory_order_relaxed);
}

static struct kallsyms *ksyms(void)
{
	return atomic_load_explicit(&ksyms_ready, memory_order_acquire) ? L.cfg->ksyms : NULL;
}

static void write_symbol(uint64_t addr)
{
	struct kallsyms *ks;
	char name[300], hex[24];
	struct json j;

	if (!addr)
		return;
	ks = ksyms();
	if (!ks)
		return; /* not loaded yet: name it next time */
	size_t slot = (addr * 0x9E3779B97F4A7C15ULL >> 48) & (SEEN_ADDRS_CAP - 1);
	while (L.seen_callers[slot]) {
		if (L.seen_callers[slot] == addr)
			return;
		slot = (slot + 1) & (SEEN_ADDRS_CAP - 1);
	}
	if (L.nseen >= SEEN_ADDRS_CAP / 2)
		return; /* full: later callers stay addresses */
	L.seen_callers[slot] = addr;
	L.nseen++;
	kallsyms_describe(ks, addr, name, sizeof(name));
	snprintf(hex, sizeof(hex), "0x%llx", (unsigned long long)addr);
	json_init(&j);
	json_begin_object(&j);
	json_kv_string(&j, "addr", hex);
	json_kv_string(&j, "name", name);
	json_end_object(&j);
	out_json(PWRU_FRAME_SYMBOL, &j);
	json_free(&j);
}

/* The tracing machinery's own frames at the top of a stack: not what the user asked about. */
static bool is_tracer_frame(const char *name)
{
	static const char *prefixes[] = { "bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_", "kprobe_",
					  "fprobe_", "__kprobe", "bpf_get_stack", "ftrace_" };

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

static void write_stack(int32_t id)
{
	__u64 ips[STACK_DEPTH] = { 0 };
	struct kallsyms *ks;
	struct json j;
	char name[300];

	if (id < 0 || id >= MAX_STACK_IDS || (L.stacks_sent[id / 8] & (1 << (id % 8))))
		return;
	if (bpf_map_lookup_elem(bpf_map__fd(L.cfg->skel->maps.stacks), &id, ips) != 0)
		return;
	ks = ksyms();
	/* Without symbols yet, send addresses now and names when the stack comes again. */
	if (ks)
		L.stacks_sent[id / 8] |= 1 << (id % 8);
	json_init(&j);
	json_begin_object(&j);
	json_kv_int(&j, "id", id);
	json_key(&j, "frames");
	json_begin_array(&j);
	bool top = true;
	for (int i = 0; i < STACK_DEPTH && ips[i]; i++) {
		if (ks)
			kallsyms_describe(ks, ips[i], name, sizeof(name));
		else
			snprintf(name, sizeof(name), "0x%llx", (unsigned long long)ips[i]);
		if (top && is_tracer_frame(name))
			continue;
		top = false;
		json_string(&j, name);
	}
	json_end_array(&j);
	json_end_object(&j);
	out_json(PWRU_FRAME_STACK, &j);
	json_free(&j);
}

static int on_event(void *ctx, void *data, size_t len)
{
	const struct pwru_event *in = data;
	struct pwru_event *ev;

	(void)ctx;
	if (len < sizeof(*ev) || L.max_reached)
		return 0;
	write_symbol(in->caller);
	if (in->stack_id >= 0)
		write_stack(in->stack_id);
	ev = out_reserve(PWRU_FRAME_EVENT, sizeof(*ev));
	memcpy(ev, in, sizeof(*ev));
	if (L.cfg->kprobe_backend && ev->addr)
		ev->probe_id = probe_id_of(ev->addr);
	L.events++;
	if (L.cfg->max_events && L.events >= L.cfg->max_events)
		L.max_reached = true;
	return 0;
}

void events_write_stats(struct pwru_bpf *skel, bool final, uint64_t *lost_out)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t sum[PWRU_CNT_MAX] = { 0 };
	struct json j;

	if (ncpu > 0) {
		__u64 *vals = calloc(ncpu, sizeof(*vals));

		for (__u32 k = 0; vals && k < PWRU_CNT_MAX; k++) {
			if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.counters), &k, vals) == 0)
				for (int c = 0; c < ncpu; c++)
					sum[k] += vals[c];
		}
		free(vals);
	}
	json_init(&j);
	json_begin_object(&j);
	json_kv_uint(&j, "seen", sum[PWRU_CNT_SEEN]);
	json_kv_uint(&j, "emitted", sum[PWRU_CNT_EMITTED]);
	json_kv_uint(&j, "lost", sum[PWRU_CNT_LOST]);
	json_kv_bool(&j, "final", final);
	json_end_object(&j);
	out_json(PWRU_FRAME_STATS, &j);
	json_free(&j);
	if (lost_out)
		*lost_out = sum[PWRU_CNT_LOST];
}

/* True when the client went away: stdin hit EOF or broke. */
static bool stdin_closed(void)
{
	char buf[256];
	ssize_t n = read(0, buf, sizeof(buf));

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

int events_open(const struct loop_config *cfg)
{
	memset(&L, 0, sizeof(L));
	L.cfg = cfg;
	L.seen_callers = calloc(SEEN_ADDRS_CAP, sizeof(*L.seen_callers));
	L.stacks_sent = calloc(MAX_STACK_IDS / 8, 1);
	if (!L.seen_callers || !L.stacks_sent || (cfg->kprobe_backend && build_addr_map(cfg->probes)))
		return -ENOMEM;
	L.rb = ring_buffer__new(bpf_map__fd(cfg->skel->maps.events), on_event, NULL, NULL);
	if (!L.rb)
		return -errno;
	ksyms_start();
	return 0;
}

int events_loop(struct loop_result *res)
{
	const struct loop_config *cfg = L.cfg;
	double start = mono_s(), next_stats = start + 1;
	int ret = 0;

	memset(res, 0, sizeof(*res));
	struct pollfd fds[3] = {
		{ .fd = ring_buffer__epoll_fd(L.rb), .events = POLLIN },
		{ .fd = cfg->signal_fd, .events = POLLIN },
		{ .fd = cfg->watch_stdin ? 0 : -1, .events = POLLIN },
	};
	while (!res->reason) {
		double now = mono_s();
		double wake = next_stats;

		if (cfg->duration_sec > 0 && start + cfg->duration_sec < wake)
			wake = start + cfg->duration_sec;
		int timeout = wake > now ? (int)((wake - now) * 1000) + 1 : 0;
		if (poll(fds, 3, timeout) < 0 && errno != EINTR) {
			ret = -errno;
			res->reason = "error";
			break;
		}
		/* Drain what the kernel has written so far, then hand it on. */
		ring_buffer__consume(L.rb);
		out_flush();

		now = mono_s();
		if (L.max_reached)
			res->reason = "max-events";
		else if (out_broken())
			res->reason = "output-closed";
		else if (fds[1].revents & POLLIN)
			res->reason = "signal";
		else if ((fds[2].revents & (POLLIN | POLLHUP | POLLERR)) && stdin_closed())
			res->reason = "stdin";
		else if (cfg->duration_sec > 0 && now >= start + cfg->duration_sec)
			res->reason = "duration";
		if (now >= next_stats && !res->reason) {
			events_write_stats(cfg->skel, false, NULL);
			out_flush();
			next_stats = now + 1;
		}
	}
	res->events = L.events;
	return ret;
}

void events_drain(void)
{
	if (!L.rb)
		return;
	ring_buffer__consume(L.rb);
	out_flush();
}

uint64_t events_delivered(void)
{
	return L.events;
}

void events_close(void)
{
	ksyms_stop();
	ring_buffer__free(L.rb);
	free(L.addrs);
	free(L.seen_callers);
	free(L.stacks_sent);
	memset(&L, 0, sizeof(L));
}
