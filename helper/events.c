// SPDX-License-Identifier: Apache-2.0
#include "events.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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
#include "event_json.h"
#include "output.h"
#include "packet_track.h"
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
	/* --emit json */
	struct event_names names;
	const char **probe_names, **probe_kinds;
	bool *starts_tx;
	struct drop_count *drops;
	size_t ndrops;
	struct line_buf line;
} L;

/* Drops by reason and place, for the digest. */
struct drop_count {
	char reason[64];
	char at[128];
	uint64_t count;
};
#define MAX_DROP_KINDS 256

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

	/* Reading the events comes first: symbols can wait a little on a busy machine. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);

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

/* The frames of a stack as a JSON array into j; false when the kernel has no such stack. */
static bool stack_frames(int32_t id, struct json *j, bool *named)
{
	__u64 ips[STACK_DEPTH] = { 0 };
	struct kallsyms *ks;
	char name[300];

	if (id < 0 || id >= MAX_STACK_IDS)
		return false;
	if (bpf_map_lookup_elem(bpf_map__fd(L.cfg->skel->maps.stacks), &id, ips) != 0)
		return false;
	ks = ksyms();
	*named = ks != NULL;
	json_begin_array(j);
	bool top = true;
	for (int i = 0; i < STACK_DEPTH && ips[i]; i++) {
		if (ks)
			kallsyms_describe(ks, ips[i], name, sizeof(name));
		else
			snprintf(name, sizeof(name), "0x%llx", (unsigned long long)ips[i]);
		if (top && is_tracer_frame(name))
			continue;
		top = false;
		json_string(j, name);
	}
	json_end_array(j);
	return true;
}

static void write_stack(int32_t id)
{
	struct json j;
	bool named;

	if (id < 0 || id >= MAX_STACK_IDS || (L.stacks_sent[id / 8] & (1 << (id % 8))))
		return;
	json_init(&j);
	json_begin_object(&j);
	json_kv_int(&j, "id", id);
	json_key(&j, "frames");
	/* Without symbols yet, send addresses now and names when the stack comes again. */
	if (stack_frames(id, &j, &named)) {
		if (named)
			L.stacks_sent[id / 8] |= 1 << (id % 8);
		json_end_object(&j);
		out_json(PWRU_FRAME_STACK, &j);
	}
	json_free(&j);
}

/* ---- --emit json ---- */

static void describe_addr(uint64_t addr, char *buf, size_t len)
{
	struct kallsyms *ks = ksyms();

	if (ks)
		kallsyms_describe(ks, addr, buf, len);
	else
		snprintf(buf, len, "0x%llx", (unsigned long long)addr);
}

static int stack_line_json(int32_t id, struct line_buf *lb)
{
	struct json j;
	bool named, ok;

	json_init(&j);
	ok = stack_frames(id, &j, &named);
	if (ok)
		line_buf_put(lb, j.buf, j.len);
	json_free(&j);
	return ok;
}

/* The name without a tracepoint's "category:" and a symbol's "+0xoff" (src/reading/packets.ts baseFunc). */
static void base_name(const char *name, char *out, size_t len)
{
	const char *colon = strrchr(name, ':');

	snprintf(out, len, "%s", colon ? colon + 1 : name);
	char *plus = strstr(out, "+0x");
	if (plus)
		*plus = 0;
}

static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static int json_mode_open(const struct loop_config *cfg)
{
	size_t n = cfg->probes->cnt;
	char base[256];

	L.probe_names = calloc(n ? n : 1, sizeof(*L.probe_names));
	L.probe_kinds = calloc(n ? n : 1, sizeof(*L.probe_kinds));
	L.starts_tx = calloc(n ? n : 1, sizeof(*L.starts_tx));
	L.drops = calloc(MAX_DROP_KINDS, sizeof(*L.drops));
	if (!L.probe_names || !L.probe_kinds || !L.starts_tx || !L.drops)
		return -ENOMEM;
	for (size_t id = 0; id < n; id++) {
		const struct probe *p = &cfg->probes->v[id];

		if (!p->attached)
			continue; /* the client knows only attached probes (READY) */
		L.probe_names[id] = p->name;
		L.probe_kinds[id] = p->kind == PROBE_TRACEPOINT ? "tracepoint" : cfg->func_kind;
		base_name(p->name, base, sizeof(base));
		L.starts_tx[id] = in_list(cfg->packet_starts, base);
	}
	L.names = (struct event_names){
		.probe_name = L.probe_names,
		.probe_kind = L.probe_kinds,
		.nprobes = (uint32_t)n,
		.drop_reason = cfg->drop_reason_names,
		.ndrop_reasons = cfg->ndrop_reasons,
		.real_minus_mono_ns = cfg->real_minus_mono_ns,
		.describe = describe_addr,
		.stack_json = stack_line_json,
	};
	return packet_track_init(L.starts_tx, (uint32_t)n);
}

static struct drop_count *find_drop(const char *reason, const char *at)
{
	for (size_t i = 0; i < L.ndrops; i++)
		if (strcmp(L.drops[i].reason, reason) == 0 && strcmp(L.drops[i].at, at) == 0)
			return &L.drops[i];
	return NULL;
}

/* Where the packet died: the drop's caller when known, else the step before (src/reading/packets.ts dropLocation). */
static void count_drop(const struct pwru_event *ev, const struct step_info *step)
{
	char reason[64], at[128];
	const char *name = NULL;

	if (!(ev->flags & PWRU_F_HAS_REASON))
		snprintf(reason, sizeof(reason), "UNKNOWN");
	else if (ev->drop_reason < L.cfg->ndrop_reasons && (name = L.cfg->drop_reason_names[ev->drop_reason]))
		snprintf(reason, sizeof(reason), "%s", name);
	else
		snprintf(reason, sizeof(reason), "REASON_%u", ev->drop_reason);
	if (ev->caller) {
		char sym[320];
		describe_addr(ev->caller, sym, sizeof(sym));
		base_name(sym, at, sizeof(at));
	} else {
		uint32_t probe = step->first ? ev->probe_id : step->prev_probe;
		const char *func = probe < L.names.nprobes ? L.probe_names[probe] : NULL;
		base_name(func ? func : "?", at, sizeof(at));
	}
	struct drop_count *d = find_drop(reason, at);

	if (!d && L.ndrops == MAX_DROP_KINDS) {
		/* More kinds than anyone reads: lump the rest together. */
		snprintf(at, sizeof(at), "(other places)");
		d = find_drop(reason, at);
	}
	if (!d && L.ndrops < MAX_DROP_KINDS) {
		d = &L.drops[L.ndrops++];
		snprintf(d->reason, sizeof(d->reason), "%s", reason);
		snprintf(d->at, sizeof(d->at), "%s", at);
	}
	if (d)
		d->count++;
}

static void write_line(const struct pwru_event *ev)
{
	struct step_info step;

	packet_track_step(ev, &step);
	if (ev->flags & PWRU_F_DROP)
		count_drop(ev, &step);
	L.line.len = 0;
	event_json(&L.names, ev, &step, &L.line);
	out_line(L.line.p, L.line.len);
}

void events_write_digest(void)
{
	struct json j;

	if (!L.cfg || !L.cfg->emit_json)
		return;
	json_init(&j);
	json_begin_object(&j);
	json_kv_uint(&j, "packets", packet_track_count());
	json_kv_uint(&j, "events", L.events);
	json_key(&j, "drops");
	json_begin_array(&j);
	for (size_t i = 0; i < L.ndrops; i++) {
		json_begin_object(&j);
		json_kv_string(&j, "reason", L.drops[i].reason);
		json_kv_string(&j, "at", L.drops[i].at);
		json_kv_uint(&j, "count", L.drops[i].count);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_end_object(&j);
	out_json(PWRU_FRAME_DIGEST, &j);
	json_free(&j);
}

static int on_event(void *ctx, void *data, size_t len)
{
	const struct pwru_event *in = data;
	struct pwru_event *ev;

	(void)ctx;
	if (len < sizeof(*ev) || L.max_reached)
		return 0;
	if (L.cfg->emit_json) {
		struct pwru_event copy = *in;

		if (L.cfg->kprobe_backend && copy.addr)
			copy.probe_id = probe_id_of(copy.addr);
		write_line(&copy);
	} else {
		write_symbol(in->caller);
		if (in->stack_id >= 0)
			write_stack(in->stack_id);
		ev = out_reserve(PWRU_FRAME_EVENT, sizeof(*ev));
		memcpy(ev, in, sizeof(*ev));
		if (L.cfg->kprobe_backend && ev->addr)
			ev->probe_id = probe_id_of(ev->addr);
	}
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
	if (cfg->emit_json && json_mode_open(cfg))
		return -ENOMEM;
	L.rb = ring_buffer__new(bpf_map__fd(cfg->skel->maps.events), on_event, NULL, NULL);
	if (!L.rb)
		return -errno;
	ksyms_start();
	return 0;
}

/* The longest an event waits in the ring buffer when the programs do not wake us. */
#define READ_EVERY_MS 20

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
		/*
		 * The programs wake us only once 1/16 of the ring is pending
		 * (ARCHITECTURE.md, "Waking the reader"): look every
		 * READ_EVERY_MS anyway, so that a few events wait no longer.
		 */
		if (timeout > READ_EVERY_MS)
			timeout = READ_EVERY_MS;
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
	free(L.probe_names);
	free(L.probe_kinds);
	free(L.starts_tx);
	free(L.drops);
	line_buf_free(&L.line);
	packet_track_free();
	memset(&L, 0, sizeof(L));
}
