// SPDX-License-Identifier: Apache-2.0
#include "events.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "../bpf/event.h"
#include "copy_link.h"
#include "culprit.h"
#include "digest.h"
#include "event_json.h"
#include "event_text.h"
#include "on_drop.h"
#include "own_programs.h"
#include "packet_book.h"
#include "packet_track.h"
#include "prog_exact.h"
#include "pwru.skel.h"
#include "stop.h"

#define STACK_DEPTH 50
#define MAX_STACK_IDS 16384
#define SEEN_ADDRS_CAP (1 << 16)
/* The longest an event waits in the ring buffer when the programs do not wake us. */
#define READ_EVERY_MS 20
/* After a stop, how long the events that fired before it are still delivered while the outputs keep up. */
#define FINISH_MS 500
/* Output room one more event may need: its record with a symbol and a stack, or its line. */
#define EVENT_ROOM (16 << 10)
/* How long the end of a trace waits for the rules read after its last drops. */
#define CULPRIT_FINISH_MS 3000
/* --emit text|wide: frame room a finished packet's PACKET_DONE and steps may need (more waits for the reader). */
#define UNIT_ROOM (64 << 10)

/* Function address to probe id, for the kprobe backends. */
struct addr_entry {
	uint64_t addr;
	uint32_t id;
};

static struct {
	const struct loop_config *cfg;
	struct ring_buffer *rb;
	struct addr_entry *addrs;
	size_t naddrs;
	uint64_t *seen_callers; /* open addressing set of caller addresses already named (SYMBOL) */
	size_t nseen;
	uint8_t *stacks_sent; /* bitmap of stack ids already written (STACK) */
	struct own_programs own; /* our programs' code, read at the first stack */
	uint64_t events;      /* delivered */
	/* The stop: events that fired after it are discarded, those before it that cannot be written are lost. */
	bool stopped;
	uint64_t stop_ts;      /* CLOCK_MONOTONIC, as the programs' bpf_ktime_get_ns() */
	uint64_t lost_at_stop; /* the kernel's count then: what it drops later is not the run's loss */
	bool give_up;	       /* past FINISH_MS: what is left is counted, not written */
	uint64_t unsent, discarded;
	/* --emit json */
	const char **probe_names, **probe_kinds;
	bool *starts_tx;
	struct event_names names;
	struct json_writer writer;
	struct packet_tracker tracker;
	struct digest digest;
	struct buf line;
	/* --emit text|wide */
	struct text_notes notes;
	struct text_writer text;
	struct packet_book book;
	uint64_t units_unsent; /* finished packets the client's table misses: no room even after waiting */
	/* COPY records (bpf/event.h) waiting for their event: another CPU's record may come between. */
	struct pwru_copy copies[16];
	unsigned ncopies;
} L;

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- probe ids of the kprobe backends ---- */

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

/* ---- names of kernel addresses ---- */

/* The kernel's symbols, once read; NULL when they could not be, or hide their addresses (kptr_restrict=2). */
static const struct kallsyms *kernel_names(void)
{
	const struct kallsyms *ks = symbols_get(L.cfg->symbols);

	return ks && !ks->addrs_hidden ? ks : NULL;
}

static void describe_addr(void *ctx, uint64_t addr, char *buf, size_t len)
{
	const struct kallsyms *ks = kernel_names();

	(void)ctx;
	if (ks)
		kallsyms_describe(ks, addr, buf, len);
	else
		snprintf(buf, len, "0x%llx", (unsigned long long)addr);
}

/* SYMBOL, before the first event whose caller is addr. */
static void write_symbol(uint64_t addr)
{
	char name[300];

	if (!addr)
		return;
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
	describe_addr(NULL, addr, name, sizeof(name));
	out_symbol(addr, name);
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

/*
 * Whether a frame at the top of a stack is the tracing machinery's: named so,
 * inside one of our own programs, in any BPF code (a trampoline, a dispatcher),
 * or outside every kernel function (BPF code whose symbol appeared after the
 * names were read: it would be named after the last symbol below it, at an
 * offset no function has).
 */
static bool tracer_frame(const struct kallsyms *ks, uint64_t addr, const char *name)
{
	const struct ksym *s = ks ? kallsyms_by_addr(ks, addr) : NULL;

	if (!L.own.read)
		own_programs_read(&L.own);
	return is_tracer_frame(name) || own_programs_contain(&L.own, addr) || (s && s->bpf) ||
	       (ks && (!s || addr - s->addr >= (1 << 20)));
}

/* The frames of a stack into b, as a JSON array or as the text views' lines; false when the kernel has no such stack. */
static bool stack_frames(int32_t id, struct buf *b, bool json)
{
	const struct kallsyms *ks = kernel_names();
	__u64 ips[STACK_DEPTH] = { 0 };
	char name[300];
	bool top = true, first = true;

	if (id < 0 || id >= MAX_STACK_IDS)
		return false;
	if (bpf_map_lookup_elem(bpf_map__fd(L.cfg->skel->maps.stacks), &id, ips) != 0)
		return false;
	if (json)
		BUF_PUT_LIT(b, "[");
	for (int i = 0; i < STACK_DEPTH && ips[i]; i++) {
		describe_addr(NULL, ips[i], name, sizeof(name));
		if (top && tracer_frame(ks, ips[i], name))
			continue;
		top = false;
		if (!json) {
			BUF_PUT_LIT(b, "\n    ");
			/* The names' bytes as the client decodes them (latin1), in UTF-8. */
			for (const char *c = name; *c; c++) {
				unsigned char u = (unsigned char)*c;
				char two[2] = { (char)(0xc0 | u >> 6), (char)(0x80 | (u & 0x3f)) };
				if (u < 0x80)
					buf_put(b, c, 1);
				else
					buf_put(b, two, 2);
			}
			continue;
		}
		if (!first)
			BUF_PUT_LIT(b, ",");
		first = false;
		buf_json_string(b, name, strlen(name), TEXT_LATIN1);
	}
	if (json)
		BUF_PUT_LIT(b, "]");
	return true;
}

static bool stack_json(void *ctx, int32_t id, struct buf *b)
{
	(void)ctx;
	return stack_frames(id, b, true);
}

static bool stack_text(void *ctx, int32_t id, struct buf *b)
{
	(void)ctx;
	return stack_frames(id, b, false);
}

/* STACK, before the first event with that id. */
static void write_stack(int32_t id)
{
	if (id < 0 || id >= MAX_STACK_IDS || (L.stacks_sent[id / 8] & (1 << (id % 8))))
		return;
	L.line.len = 0;
	if (!stack_json(NULL, id, &L.line))
		return;
	L.stacks_sent[id / 8] |= 1 << (id % 8);
	out_stack(id, L.line.p, L.line.len);
}

/* ---- the events ---- */

static void send_unit(const struct book_unit *u, const struct pwru_event *steps, uint32_t nsteps);

static int json_mode_open(const struct loop_config *cfg)
{
	size_t n = cfg->probes->cnt;

	L.probe_names = calloc(n ? n : 1, sizeof(*L.probe_names));
	L.probe_kinds = calloc(n ? n : 1, sizeof(*L.probe_kinds));
	if (!L.probe_names || !L.probe_kinds)
		return -ENOMEM;
	for (size_t id = 0; id < n; id++) {
		const struct probe *p = &cfg->probes->v[id];

		if (!p->attached)
			continue; /* the client knows only attached probes (READY) */
		L.probe_names[id] = p->name;
		L.probe_kinds[id] = p->kind == PROBE_TRACEPOINT ? "tracepoint" : cfg->func_kind;
	}
	L.starts_tx = packet_starts_of(L.probe_names, (uint32_t)n, cfg->packet_starts);
	L.names = (struct event_names){
		.probe_name = L.probe_names,
		.probe_kind = L.probe_kinds,
		.nprobes = (uint32_t)n,
		.drop_reason = cfg->drop_reasons->by_value,
		.ndrop_reasons = cfg->drop_reasons->nvalues,
		.mono_ns = cfg->clocks.mono_ns,
		.real_ns = cfg->clocks.real_ns,
		.describe = describe_addr,
		.stack_json = stack_json,
		.stack_text = stack_text,
		.owners = cfg->owners,
		.node = cfg->line_node,
	};
	/* The book: the finished packets, for the client's closing verdicts (a copy delivered makes a drop no loss). */
	if (!L.starts_tx || json_writer_init(&L.writer, &L.names) || digest_init(&L.digest) ||
	    packet_track_init(&L.tracker, L.starts_tx, (uint32_t)n) ||
	    packet_book_init(&L.book, send_unit, BOOK_WHOLE_FIRST))
		return -ENOMEM;
	return 0;
}

/* PACKET: the bytes of the event written next. */
static void deliver_bytes(const struct pwru_packet *pkt, size_t len)
{
	size_t size = sizeof(*pkt) + pkt->cap_len;
	void *frame;

	if (size > len || !pkt->cap_len)
		return; /* the bytes could not be read; size > len is not reached */
	frame = out_reserve(PWRU_FRAME_PACKET, (uint32_t)size);
	if (frame)
		memcpy(frame, pkt, size);
}

/* TUNNEL: the inner packet of the event written next. */
static void deliver_tunnel(const struct pwru_tunnel *tun)
{
	void *frame = out_reserve(PWRU_FRAME_TUNNEL, sizeof(*tun));

	if (frame)
		memcpy(frame, tun, sizeof(*tun));
}

/* COPY: what the event written next was copied from. */
static void deliver_copy(const struct pwru_copy *cp)
{
	void *frame = out_reserve(PWRU_FRAME_COPY, sizeof(*cp));

	if (frame)
		memcpy(frame, cp, sizeof(*cp));
}

/* The COPY record of ev, taken out of those waiting; NULL when it has none. */
static const struct pwru_copy *copy_of(const struct pwru_event *ev, struct pwru_copy *out)
{
	for (unsigned i = 0; i < L.ncopies; i++) {
		if (L.copies[i].ts != ev->ts || L.copies[i].skb != ev->skb)
			continue;
		*out = L.copies[i];
		L.copies[i] = L.copies[--L.ncopies];
		return out;
	}
	return NULL;
}

/* A COPY record: kept for its event, which follows (the oldest gives way when too many wait). */
static void copy_noted(const struct pwru_copy *cp)
{
	if (L.ncopies == sizeof(L.copies) / sizeof(L.copies[0])) {
		memmove(&L.copies[0], &L.copies[1], (L.ncopies - 1) * sizeof(L.copies[0]));
		L.ncopies--;
	}
	L.copies[L.ncopies++] = *cp;
}

/* A drop, with its location's name: culprit.c tells XDP's drops by the function that freed the packet. */
static void culprit_drop_named(const struct pwru_event *ev)
{
	char caller[300];

	if (ev->caller)
		describe_addr(NULL, ev->caller, caller, sizeof(caller));
	culprit_drop(ev, ev->caller ? caller : NULL);
}

/* An EVENT frame, after the SYMBOL and STACK frames it needs: the event as written (its probe id resolved). */
static const struct pwru_event *write_event(const struct pwru_event *in)
{
	struct pwru_event *ev;

	write_symbol(in->caller);
	if (in->stack_id >= 0)
		write_stack(in->stack_id);
	ev = out_reserve(PWRU_FRAME_EVENT, sizeof(*ev));
	if (!ev)
		return NULL; /* not reached: room was checked before */
	memcpy(ev, in, sizeof(*ev));
	if (L.cfg->kprobe_backend && ev->addr)
		ev->probe_id = probe_id_of(ev->addr);
	return ev;
}

/* An EVENT frame; a drop's culprit is asked for. */
static void emit_event(const struct pwru_event *in)
{
	const struct pwru_event *ev = write_event(in);

	if (ev && (ev->flags & PWRU_F_DROP))
		culprit_drop_named(ev);
}

/* --on-drop: an event of a report, after its COPY record when it has one. */
static void emit_report_event(const struct pwru_event *ev, const struct pwru_copy *made, bool ask_culprit)
{
	const struct pwru_event *written;

	if (made)
		deliver_copy(made);
	written = write_event(ev);
	if (written && ask_culprit)
		culprit_drop_named(written);
}

/*
 * A finished packet for the client's closing table: PACKET_DONE, then its
 * steps as EVENT frames (with the SYMBOL frames that name their callers).
 * It waits for the reader when it must: the table would miss the packet.
 */
static void send_unit(const struct book_unit *u, const struct pwru_event *steps, uint32_t nsteps)
{
	struct json j = { 0 };
	size_t need;

	json_begin_object(&j);
	json_kv_uint(&j, "id", u->id);
	json_kv_uint(&j, "count", u->count);
	json_kv_uint(&j, "steps", nsteps);
	if (u->copy_of)
		json_kv_uint(&j, "copy_of", u->copy_of);
	if (u->copied)
		json_kv_bool(&j, "copied", true);
	if (u->replaced_by)
		json_kv_uint(&j, "replaced_by", u->replaced_by);
	if (u->ncopies) {
		json_key(&j, "copies");
		json_begin_array(&j);
		for (uint32_t i = 0; i < u->ncopies; i++)
			json_uint(&j, u->copies[i]);
		json_end_array(&j);
	}
	if (u->open)
		json_kv_bool(&j, "open", true);
	json_end_object(&j);
	need = j.b.len + 64 + (size_t)nsteps * (sizeof(struct pwru_frame_header) + sizeof(*steps) + 400);
	if (!out_frame_room(need) && !(out_drain(2000) && out_frame_room(need))) {
		L.units_unsent++;
		json_free(&j);
		return;
	}
	out_json_frame(PWRU_FRAME_PACKET_DONE, &j);
	json_free(&j);
	for (uint32_t i = 0; i < nsteps; i++) {
		struct pwru_event *ev;

		write_symbol(steps[i].caller);
		ev = out_reserve(PWRU_FRAME_EVENT, sizeof(*ev));
		if (ev)
			memcpy(ev, &steps[i], sizeof(*ev));
	}
}

static void deliver(const struct pwru_event *in, const struct pwru_tunnel *tun, const struct pwru_copy *cp)
{
	if (in->flags & PWRU_F_DROP)
		copy_link_dropped();
	if (L.cfg->on_drop) {
		struct pwru_event copy = *in;

		if (L.cfg->kprobe_backend && copy.addr)
			copy.probe_id = probe_id_of(copy.addr);
		on_drop_event(&copy, cp);
		return;
	}
	if (L.cfg->emit_text) {
		struct pwru_event copy = *in;
		struct step_info step;

		if (L.cfg->kprobe_backend && copy.addr)
			copy.probe_id = probe_id_of(copy.addr);
		packet_track_step(&L.tracker, &copy, &step);
		L.line.len = 0;
		event_text(&L.text, &copy, tun, &step, &L.line);
		out_line(L.line.p, L.line.len);
		/* Its culprit's line, when known at once (tc, XDP), right under it. */
		if (copy.flags & PWRU_F_DROP)
			culprit_drop_named(&copy);
		packet_book_step(&L.book, &copy, cp, &step);
		return;
	}
	if (L.cfg->emit_json) {
		struct pwru_event copy = *in;
		struct step_info step;

		if (L.cfg->kprobe_backend && copy.addr)
			copy.probe_id = probe_id_of(copy.addr);
		packet_track_step(&L.tracker, &copy, &step);
		if (copy.flags & PWRU_F_DROP) {
			digest_drop(&L.digest, &L.names, &copy, &step);
			culprit_drop_named(&copy);
		}
		L.line.len = 0;
		event_json(&L.writer, &copy, tun, cp, &step, &L.line);
		out_line(L.line.p, L.line.len);
		packet_book_step(&L.book, &copy, cp, &step);
		return;
	}
	emit_event(in);
}

/* Whether the outputs can take one more event now, with its bytes (with --on-drop: the report it may complete). */
static bool room(void)
{
	if (L.cfg->on_drop)
		return out_frame_room(ON_DROP_REPORT_ROOM);
	if (L.cfg->emit_text || L.cfg->emit_json)
		return out_lines_room(EVENT_ROOM) && out_frame_room(UNIT_ROOM);
	return out_frame_room(EVENT_ROOM + sizeof(struct pwru_packet) + L.cfg->snaplen);
}

/* The kernel's counters, summed over CPUs; *first_loss: the earliest drop (0: none). */
static void read_counters(struct counts *c, uint64_t *first_loss)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t sum[PWRU_CNT_MAX] = { 0 }, first = 0;
	__u64 *vals = ncpu > 0 ? calloc(ncpu, sizeof(*vals)) : NULL;

	for (__u32 k = 0; vals && k < PWRU_CNT_MAX; k++) {
		if (bpf_map_lookup_elem(bpf_map__fd(L.cfg->skel->maps.counters), &k, vals) != 0)
			continue;
		for (int cpu = 0; cpu < ncpu; cpu++) {
			if (k != PWRU_CNT_FIRST_LOST_TS)
				sum[k] += vals[cpu];
			else if (vals[cpu] && (!first || vals[cpu] < first))
				first = vals[cpu];
		}
	}
	free(vals);
	*c = (struct counts){ .seen = sum[PWRU_CNT_SEEN], .emitted = sum[PWRU_CNT_EMITTED], .lost = sum[PWRU_CNT_LOST],
			      .bytes_lost = sum[PWRU_CNT_BYTES_LOST], .skipped = sum[PWRU_CNT_RATE_SKIPPED],
			      .rate_capped = L.cfg->max_rate != 0 };
	if (first_loss)
		*first_loss = first;
}

/*
 * The stop, at ts. What the kernel drops from now on is not the run's loss.
 * A --max-events stop is an event that may have waited in a full ring while
 * the kernel dropped newer ones: when the first drop came after it, none of
 * the drops belongs to the run (the common case of a flood that filled the
 * ring before the first read).
 */
static void stop_at(uint64_t ts)
{
	struct counts c;
	uint64_t first_loss;

	if (L.stopped)
		return;
	read_counters(&c, &first_loss);
	L.stopped = true;
	L.stop_ts = ts;
	L.lost_at_stop = first_loss && first_loss < ts ? c.lost : 0;
}

/*
 * libbpf consumes an event before it calls this: a negative return only stops
 * the reading after it. So the event is always handled, and the return says
 * whether there is room for the next one (or whether the run just stopped).
 */
static int on_event(void *ctx, void *data, size_t len)
{
	const struct pwru_event *ev = data;

	(void)ctx;
	if (len == sizeof(struct pwru_copy)) {
		copy_noted(data);
		return 0;
	}
	if (len < sizeof(*ev))
		return 0;
	/* Ring order is commit order across CPUs, not time: the limit is counted, not the stop time. */
	if ((L.stopped && ev->ts > L.stop_ts) || (L.cfg->max_events && L.events >= L.cfg->max_events)) {
		L.discarded++;
		return 0;
	}
	if (L.give_up) {
		L.unsent++;
		return 0;
	}
	/*
	 * What follows the event in its record (bpf/event.h) goes out before it:
	 * its tunnel, its bytes; as frames only when the event goes out now as
	 * one (--on-drop holds events back and sends neither).
	 */
	bool frames_now = !L.cfg->emit_json && !L.cfg->emit_text && !L.cfg->on_drop;
	const struct pwru_tunnel *tun = NULL;
	struct pwru_copy copy_buf;
	const struct pwru_copy *cp = L.ncopies ? copy_of(ev, &copy_buf) : NULL;
	size_t rest = len - sizeof(*ev);
	const char *ext = (const char *)(ev + 1);

	if ((ev->flags & PWRU_F_TUNNEL) && rest >= sizeof(*tun)) {
		tun = (const struct pwru_tunnel *)ext;
		ext += sizeof(*tun);
		rest -= sizeof(*tun);
		if (frames_now)
			deliver_tunnel(tun);
	}
	if (cp && frames_now)
		deliver_copy(cp);
	if (rest >= sizeof(struct pwru_packet) && frames_now)
		deliver_bytes((const struct pwru_packet *)ext, rest);
	deliver(ev, tun, cp);
	L.events++;
	if (L.cfg->max_events && L.events >= L.cfg->max_events) {
		stop_at(ev->ts);
		return -1;
	}
	return room() ? 0 : -1;
}

int events_open(const struct loop_config *cfg)
{
	memset(&L, 0, sizeof(L));
	L.cfg = cfg;
	L.seen_callers = calloc(SEEN_ADDRS_CAP, sizeof(*L.seen_callers));
	L.stacks_sent = calloc(MAX_STACK_IDS / 8, 1);
	if (!L.seen_callers || !L.stacks_sent || (cfg->kprobe_backend && build_addr_map(cfg->probes)))
		return -ENOMEM;
	if ((cfg->emit_json || cfg->emit_text) && json_mode_open(cfg))
		return -ENOMEM;
	if (cfg->emit_text && (text_notes_parse(&L.notes, cfg->text_notes) ||
			       text_writer_init(&L.text, &L.names, &L.notes, cfg->emit_text == EMIT_WIDE)))
		return -ENOMEM;
	if (cfg->on_drop && on_drop_open(cfg->probes, cfg->packet_starts, emit_report_event, culprit_drop_named))
		return -ENOMEM;
	L.rb = ring_buffer__new(bpf_map__fd(cfg->skel->maps.events), on_event, NULL, NULL);
	if (!L.rb)
		return -errno;
	return 0;
}

/*
 * Reads the ring buffer while there is room. ring_buffer__consume() fails
 * only when on_event() asks it to pause: nothing to report.
 */
static void consume(void)
{
	if (room())
		ring_buffer__consume(L.rb);
}

static void current_counts(struct counts *c)
{
	read_counters(c, NULL);
	if (L.stopped)
		c->lost = L.lost_at_stop;
	c->lost += L.unsent;
	c->discarded = L.discarded;
}

void events_loop(struct loop_result *res)
{
	const struct loop_config *cfg = L.cfg;
	struct pollfd fds[1 + 1 + MAX_LINE_FDS + STOP_NFDS];
	double start = mono_s(), next_stats = start + 1;
	struct counts c;

	memset(res, 0, sizeof(*res));
	while (!res->reason) {
		double now = mono_s(), wake = next_stats;

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
		int flush_in = out_flush_wait_ms();
		if (flush_in >= 0 && flush_in < timeout)
			timeout = flush_in;
		/* The ring only while there is room for what it holds: it stays readable. */
		fds[0] = (struct pollfd){ .fd = room() ? ring_buffer__epoll_fd(L.rb) : -1, .events = POLLIN };
		int n = 1 + out_pollfds(fds + 1);
		stop_pollfds(fds + n);
		if (poll(fds, n + STOP_NFDS, timeout) < 0 && errno != EINTR) {
			res->reason = "error";
			res->err = -errno;
			break;
		}
		stop_after_poll(fds + n);
		out_pump();
		prog_exact_pump(); /* a program's run comes before the events after it */
		consume();
		if (cfg->on_drop)
			on_drop_tick(mono_ns());
		culprit_pump();
		out_pump();

		now = mono_s();
		const struct out_fault *fault = out_fault();
		if (out_of_memory())
			res->reason = "out-of-memory";
		else if (fault) {
			res->fault = fault;
			res->reason = fault->stream || out_fault_is_close(fault) ? "output-closed" : "output-failed";
		} else if (L.stopped)
			res->reason = "max-events";
		else if (stop_reason())
			res->reason = stop_reason();
		else if (cfg->duration_sec > 0 && now >= start + cfg->duration_sec)
			res->reason = "duration";
		if (!res->reason && now >= next_stats) {
			current_counts(&c);
			if (cfg->on_drop)
				on_drop_write_watch(false);
			out_stats(&c, false);
			next_stats = now + 1;
		}
	}
	stop_at(mono_ns());
	res->events = L.events;
}

void events_finish(struct loop_result *res)
{
	struct pollfd fds[1 + MAX_LINE_FDS + STOP_NFDS];
	double until = mono_s() + FINISH_MS / 1e3;
	bool write = !out_fault() && !out_of_memory();

	stop_at(mono_ns()); /* already done, unless the run stopped before the loop (waiting for the client) */
	/* Deliver what fired before the stop, while the outputs keep up. */
	while (write) {
		out_pump();
		if (mono_s() >= until || stop_hurry() || out_fault() || out_of_memory())
			break;
		if (room()) {
			prog_exact_pump();
			if (ring_buffer__consume(L.rb) == 0)
				break; /* all read; -1: paused for room */
			continue;
		}
		int n = out_pollfds(fds);
		stop_pollfds(fds + n);
		double left = until - mono_s();
		if (poll(fds, n + STOP_NFDS, left > 0 ? (int)(left * 1e3) + 1 : 0) < 0 && errno != EINTR)
			break;
		stop_after_poll(fds + n);
	}
	/* What is left is counted: lost when it fired before the stop, discarded after it. */
	L.give_up = true;
	ring_buffer__consume(L.rb);
	/* The drops held back for their copies, with what was seen of those (their culprits were asked for). */
	if (L.cfg->on_drop && write)
		on_drop_flush();
	/* The culprits of the last drops, before the final STATS (the client ends the lines after it). */
	if (write)
		culprit_finish(CULPRIT_FINISH_MS);
	/* The finished packets held back, those in flight, and every shape, for the client's closing table. */
	if ((L.cfg->emit_text || L.cfg->emit_json) && write) {
		packet_book_finish(&L.book);
		if (L.units_unsent)
			out_message(PWRU_FRAME_WARNING, "packets_unsent",
				    "%llu finished packets could not be sent for the closing table: the reader did not keep up",
				    (unsigned long long)L.units_unsent);
	}
	/* The summary when the finished packets did not all reach the client: drops counted by reason and place. */
	if (L.cfg->emit_json && L.units_unsent)
		out_digest(packet_track_count(&L.tracker), L.events, L.digest.drops, L.digest.ndrops);
	if (L.cfg->on_drop)
		on_drop_write_watch(true);
	current_counts(&res->counts);
	out_stats(&res->counts, true);
	res->events = L.events;
}

void events_close(void)
{
	ring_buffer__free(L.rb);
	free(L.addrs);
	free(L.seen_callers);
	free(L.stacks_sent);
	own_programs_free(&L.own);
	if (L.cfg && L.cfg->on_drop)
		on_drop_close();
	if (L.cfg && L.cfg->emit_text) {
		text_writer_free(&L.text);
		text_notes_free(&L.notes);
	}
	if (L.cfg && (L.cfg->emit_json || L.cfg->emit_text)) {
		packet_book_free(&L.book);
		json_writer_free(&L.writer);
		packet_track_free(&L.tracker);
		digest_free(&L.digest);
	}
	free(L.probe_names);
	free(L.probe_kinds);
	free(L.starts_tx);
	buf_free(&L.line);
	memset(&L, 0, sizeof(L));
}
