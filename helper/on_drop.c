// SPDX-License-Identifier: Apache-2.0
#include "on_drop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "output.h"
#include "packet_track.h"

/*
 * The bounds. A packet's path keeps its first OD_HEAD steps and its last
 * OD_TAIL (a ring): the drop is always among them. Steps held in all are
 * capped by evicting the least recently used flows; packets in flight are
 * slots indexed by their number, so one still in flight OD_LIVE packets later
 * is pushed out.
 */
#define OD_FLOWS 4096
#define OD_BUCKETS 8192		/* flow hash chains, a power of two */
#define OD_LIVE 512		/* packets in flight, a power of two */
#define OD_HEAD 48
#define OD_TAIL 16
#define OD_STEPS (OD_HEAD + OD_TAIL)
#define OD_FIRST_SLOTS 16	/* a packet's slots to start with, doubled up to OD_STEPS */
#define OD_STORED_STEPS 12000	/* ~2 MiB of steps (168 bytes each), in flight and kept */
#define OD_QUIET_NS 1000000000ULL	/* not seen for 1 s and not dropped: it got through, its end untraced */
#define OD_FLOW_IDLE_NS 600000000000ULL /* a flow without a packet for 10 minutes is forgotten */
#define OD_TICK_NS 250000000ULL
#define NIL (-1)

struct flow_key {
	uint8_t family, l4;
	uint16_t dport;
	uint8_t saddr[16], daddr[16];
};

/* A packet's kept steps, in order: the first OD_HEAD, then up to OD_TAIL of the latest. */
struct path {
	struct pwru_event *steps; /* cap slots while in flight (up to OD_STEPS); trimmed to kept when finished */
	uint32_t cap;
	uint32_t nsteps;	  /* steps seen (once finished: kept) */
	uint32_t forgotten;	  /* once finished: steps forgotten in the middle */
	uint32_t number;	  /* packet_track's number */
	uint64_t last_ts;
	const char *ended;	  /* how a good one ended: "freed", "quiet" (its end untraced), "in-flight" */
};

struct live_packet {
	struct path path;
	int32_t flow; /* NIL until the packet has shown a tuple */
	bool used;
};

struct flow {
	struct flow_key key;
	uint64_t last_ts;
	struct path good;	/* the last packet that got through (steps NULL: none yet) */
	int32_t hnext;		/* hash chain */
	int32_t prev, next;	/* LRU list: head most recent */
	bool used;
};

static struct {
	bool open;
	on_drop_emit_fn emit;
	struct packet_tracker tracker;
	bool *starts_tx;
	const char **names;
	struct flow *flows;
	int32_t buckets[OD_BUCKETS];
	int32_t free_flows; /* chain of unused flows, through hnext */
	int32_t lru_head, lru_tail;
	struct live_packet *live;
	uint64_t next_tick;
	struct on_drop_counts c;
} D;

/* ---- paths ---- */

static uint32_t kept(const struct path *p)
{
	return p->nsteps < OD_STEPS ? p->nsteps : OD_STEPS;
}

/* The slot of step k of a path being recorded. */
static uint32_t slot_of(uint32_t k)
{
	return k < OD_HEAD ? k : OD_HEAD + (k - OD_HEAD) % OD_TAIL;
}

/* The i-th kept step in order (i < kept). */
static const struct pwru_event *kept_step(const struct path *p, uint32_t i)
{
	if (p->nsteps <= OD_STEPS || i < OD_HEAD)
		return &p->steps[i];
	/* Past the head: the ring, oldest first. */
	return &p->steps[slot_of(p->nsteps - OD_TAIL + (i - OD_HEAD))];
}

/* The finished path in order, in memory of its own size. */
static bool path_compact(struct path *p)
{
	uint32_t n = kept(p);
	struct pwru_event *v = malloc((n ? n : 1) * sizeof(*v));

	if (!v) {
		set_out_of_memory();
		return false;
	}
	for (uint32_t i = 0; i < n; i++)
		v[i] = *kept_step(p, i);
	free(p->steps);
	p->steps = v;
	/* From now on steps are in order: kept_step() must not ring them. */
	p->forgotten = p->nsteps - n;
	D.c.forgot_steps += p->forgotten;
	p->nsteps = n;
	return true;
}

/* ---- flows ---- */

static uint32_t key_hash(const struct flow_key *k)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const uint8_t *b = (const uint8_t *)k;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return (uint32_t)(h ^ (h >> 32)) & (OD_BUCKETS - 1);
}

static void key_of(const struct pwru_event *ev, struct flow_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = ev->l3 == 6 ? 6 : 4;
	k->l4 = ev->l4;
	if (ev->l4 == 6 || ev->l4 == 17 || ev->l4 == 132)
		k->dport = ev->dport;
	memcpy(k->saddr, ev->saddr, k->family == 6 ? 16 : 4);
	memcpy(k->daddr, ev->daddr, k->family == 6 ? 16 : 4);
}

static void lru_unlink(int32_t i)
{
	struct flow *f = &D.flows[i];

	if (f->prev != NIL)
		D.flows[f->prev].next = f->next;
	else
		D.lru_head = f->next;
	if (f->next != NIL)
		D.flows[f->next].prev = f->prev;
	else
		D.lru_tail = f->prev;
	f->prev = f->next = NIL;
}

static void lru_push_front(int32_t i)
{
	struct flow *f = &D.flows[i];

	f->prev = NIL;
	f->next = D.lru_head;
	if (D.lru_head != NIL)
		D.flows[D.lru_head].prev = i;
	D.lru_head = i;
	if (D.lru_tail == NIL)
		D.lru_tail = i;
}

static void flow_forget(int32_t i)
{
	struct flow *f = &D.flows[i];
	int32_t *pp = &D.buckets[key_hash(&f->key)];

	while (*pp != i)
		pp = &D.flows[*pp].hnext;
	*pp = f->hnext;
	lru_unlink(i);
	if (f->good.steps)
		D.c.stored_steps -= f->good.nsteps;
	free(f->good.steps);
	memset(f, 0, sizeof(*f));
	f->hnext = D.free_flows;
	D.free_flows = i;
	D.c.flows--;
	D.c.forgot_flows++;
	/* Packets in flight keep their index: a later drop sees a flow that is not theirs and reports alone. */
	for (uint32_t s = 0; s < OD_LIVE; s++)
		if (D.live[s].used && D.live[s].flow == i)
			D.live[s].flow = NIL;
}

/* Steps held in all stay under the bound: the least recently used flows go first. */
static void make_room(uint32_t steps)
{
	while (D.c.stored_steps + steps > OD_STORED_STEPS && D.lru_tail != NIL)
		flow_forget(D.lru_tail);
}

static int32_t flow_find_or_add(const struct flow_key *k, uint64_t ts)
{
	uint32_t h = key_hash(k);
	int32_t i;

	for (i = D.buckets[h]; i != NIL; i = D.flows[i].hnext)
		if (memcmp(&D.flows[i].key, k, sizeof(*k)) == 0)
			break;
	if (i == NIL) {
		if (D.free_flows == NIL)
			flow_forget(D.lru_tail);
		i = D.free_flows;
		D.free_flows = D.flows[i].hnext;
		memset(&D.flows[i], 0, sizeof(D.flows[i]));
		D.flows[i].key = *k;
		D.flows[i].used = true;
		D.flows[i].hnext = D.buckets[h];
		D.buckets[h] = i;
		D.c.flows++;
	} else {
		lru_unlink(i);
	}
	D.flows[i].last_ts = ts;
	lru_push_front(i);
	return i;
}

/* ---- packets in flight ---- */

static void live_release(struct live_packet *lp)
{
	D.c.stored_steps -= lp->path.cap;
	free(lp->path.steps);
	memset(lp, 0, sizeof(*lp));
	lp->flow = NIL;
}

/*
 * A packet that ended without a drop (freed, or quiet for OD_QUIET_NS) is its
 * flow's last good one. One without a flow (it never showed a tuple) is only
 * let go.
 */
static void live_finish_good(struct live_packet *lp)
{
	struct flow *f = lp->flow != NIL ? &D.flows[lp->flow] : NULL;

	if (!lp->path.ended)
		lp->path.ended = "quiet";
	/* A lone free (the end of a packet whose path came before the trace, or out of its sight) is no path. */
	if (!f || lp->path.nsteps < 2 || !path_compact(&lp->path)) {
		live_release(lp);
		return;
	}
	D.c.stored_steps -= lp->path.cap;
	if (f->good.steps)
		D.c.stored_steps -= f->good.nsteps;
	free(f->good.steps);
	f->good = lp->path;
	f->good.cap = f->good.nsteps;
	D.c.stored_steps += f->good.nsteps;
	memset(lp, 0, sizeof(*lp));
	lp->flow = NIL;
	make_room(0);
}

static struct live_packet *live_start(uint32_t number)
{
	struct live_packet *lp = &D.live[number & (OD_LIVE - 1)];

	if (lp->used) {
		/* Still in flight OD_LIVE packets later: not dropped so far, so it counts as through. */
		D.c.forgot_packets++;
		live_finish_good(lp);
	}
	make_room(OD_FIRST_SLOTS);
	lp->path.steps = malloc(OD_FIRST_SLOTS * sizeof(*lp->path.steps));
	if (!lp->path.steps) {
		set_out_of_memory();
		return NULL;
	}
	lp->path.cap = OD_FIRST_SLOTS;
	D.c.stored_steps += OD_FIRST_SLOTS;
	lp->used = true;
	lp->flow = NIL;
	lp->path.number = number;
	D.c.packets++;
	return lp;
}

/* ---- reports ---- */

static void put_addr(struct json *j, const char *key, uint8_t family, const uint8_t *a)
{
	char text[INET6_ADDRSTRLEN];

	inet_ntop(family == 6 ? AF_INET6 : AF_INET, a, text, sizeof(text));
	json_kv_string(j, key, text);
}

static void put_path(struct json *j, const char *key, const struct path *p, const char *ended)
{
	uint32_t forgotten = p->forgotten + (p->nsteps - kept(p));

	json_key(j, key);
	json_begin_object(j);
	json_kv_uint(j, "packet", p->number);
	json_kv_uint(j, "steps", kept(p));
	json_kv_uint(j, "forgotten_steps", forgotten);
	if (forgotten)
		json_kv_uint(j, "gap_after", OD_HEAD);
	if (ended)
		json_kv_string(j, "ended", ended);
	json_end_object(j);
}

/* DROP_REPORT, then the dropped packet's steps, then the good one's. */
static void report(const struct live_packet *bad, const struct path *good)
{
	const struct flow *f = bad->flow != NIL ? &D.flows[bad->flow] : NULL;
	struct json j = { 0 };
	uint32_t bad_forgotten = bad->path.nsteps - kept(&bad->path);

	if (!out_frame_room(ON_DROP_REPORT_ROOM)) {
		D.c.unreported++;
		return;
	}
	D.c.drops++;
	json_begin_object(&j);
	json_kv_uint(&j, "n", D.c.drops);
	if (f) {
		json_key(&j, "flow");
		json_begin_object(&j);
		json_kv_uint(&j, "family", f->key.family);
		json_kv_uint(&j, "l4", f->key.l4);
		put_addr(&j, "src", f->key.family, f->key.saddr);
		put_addr(&j, "dst", f->key.family, f->key.daddr);
		if (f->key.l4 == 6 || f->key.l4 == 17 || f->key.l4 == 132)
			json_kv_uint(&j, "dport", f->key.dport);
		json_end_object(&j);
	}
	put_path(&j, "bad", &bad->path, NULL);
	if (good)
		put_path(&j, "good", good, good->ended);
	json_kv_uint(&j, "forgotten_flows", D.c.forgot_flows);
	json_kv_uint(&j, "forgotten_packets", D.c.forgot_packets);
	json_kv_uint(&j, "forgotten_steps", D.c.forgot_steps + bad_forgotten);
	json_end_object(&j);
	void *p = out_reserve(PWRU_FRAME_DROP_REPORT, (uint32_t)j.b.len);
	if (p)
		memcpy(p, j.b.p, j.b.len);
	json_free(&j);
	for (uint32_t i = 0; i < kept(&bad->path); i++)
		D.emit(kept_step(&bad->path, i));
	for (uint32_t i = 0; good && i < good->nsteps; i++)
		D.emit(&good->steps[i]);
}

/*
 * The flow's last packet that got through before the dropped one: finished,
 * or still in flight and not dropped so far (its end may be untraced). A scan
 * of the packets in flight, once per drop.
 */
static const struct path *last_good(const struct live_packet *bad, struct path *scratch)
{
	const struct flow *f = &D.flows[bad->flow];
	const struct live_packet *lp = NULL;

	for (uint32_t s = 0; s < OD_LIVE; s++) {
		const struct live_packet *x = &D.live[s];

		if (x->used && x != bad && x->flow == bad->flow && x->path.nsteps >= 2 &&
		    x->path.number < bad->path.number && (!lp || x->path.number > lp->path.number))
			lp = x;
	}
	if (lp && (!f->good.steps || lp->path.number > f->good.number)) {
		/* In flight, not dropped (so far): its steps in order, without taking them from it. */
		scratch->nsteps = kept(&lp->path);
		scratch->forgotten = lp->path.nsteps - scratch->nsteps;
		scratch->number = lp->path.number;
		scratch->ended = "in-flight";
		scratch->steps = malloc((scratch->nsteps ? scratch->nsteps : 1) * sizeof(*scratch->steps));
		if (!scratch->steps) {
			set_out_of_memory();
			return NULL;
		}
		for (uint32_t i = 0; i < scratch->nsteps; i++)
			scratch->steps[i] = *kept_step(&lp->path, i);
		return scratch;
	}
	return f->good.steps ? &f->good : NULL;
}

/* ---- the interface ---- */

int on_drop_open(const struct probe_set *probes, const char *packet_starts, on_drop_emit_fn emit)
{
	size_t n = probes->cnt;

	memset(&D, 0, sizeof(D));
	D.emit = emit;
	D.names = calloc(n ? n : 1, sizeof(*D.names));
	D.flows = calloc(OD_FLOWS, sizeof(*D.flows));
	D.live = calloc(OD_LIVE, sizeof(*D.live));
	if (!D.names || !D.flows || !D.live)
		return -ENOMEM;
	for (size_t id = 0; id < n; id++)
		if (probes->v[id].attached)
			D.names[id] = probes->v[id].name;
	D.starts_tx = packet_starts_of(D.names, (uint32_t)n, packet_starts ? packet_starts : "");
	if (!D.starts_tx || packet_track_init(&D.tracker, D.starts_tx, (uint32_t)n))
		return -ENOMEM;
	for (int i = 0; i < OD_BUCKETS; i++)
		D.buckets[i] = NIL;
	for (int32_t i = 0; i < OD_FLOWS; i++)
		D.flows[i].hnext = i + 1 < OD_FLOWS ? i + 1 : NIL;
	D.free_flows = 0;
	D.lru_head = D.lru_tail = NIL;
	for (int i = 0; i < OD_LIVE; i++)
		D.live[i].flow = NIL;
	D.open = true;
	return 0;
}

void on_drop_event(const struct pwru_event *ev)
{
	struct step_info step;
	struct live_packet *lp;

	packet_track_step(&D.tracker, ev, &step);
	lp = &D.live[step.packet & (OD_LIVE - 1)];
	if (step.first || !lp->used || lp->path.number != step.packet) {
		if (!step.first) {
			/* Its beginning was let go: what is left of it starts here. */
			D.c.forgot_packets++;
		}
		if (!(lp = live_start(step.packet)))
			return;
	}
	if (slot_of(lp->path.nsteps) >= lp->path.cap) {
		/* Slots double until OD_STEPS; from then on the tail is a ring and needs no more. */
		uint32_t cap = lp->path.cap * 2 < OD_STEPS ? lp->path.cap * 2 : OD_STEPS;
		struct pwru_event *v;

		make_room(cap - lp->path.cap);
		if (!(v = realloc(lp->path.steps, cap * sizeof(*v)))) {
			set_out_of_memory();
			return;
		}
		D.c.stored_steps += cap - lp->path.cap;
		lp->path.steps = v;
		lp->path.cap = cap;
	}
	lp->path.steps[slot_of(lp->path.nsteps)] = *ev;
	lp->path.nsteps++;
	lp->path.last_ts = ev->ts;
	if (lp->flow == NIL && (ev->flags & PWRU_F_HAS_TUPLE)) {
		struct flow_key k;

		key_of(ev, &k);
		lp->flow = flow_find_or_add(&k, ev->ts);
	}
	if (lp->flow != NIL)
		D.flows[lp->flow].last_ts = ev->ts;
	if (ev->flags & PWRU_F_DROP) {
		struct path scratch = { 0 };
		const struct path *good = lp->flow != NIL ? last_good(lp, &scratch) : NULL;

		report(lp, good);
		free(scratch.steps);
		live_release(lp);
	} else if (ev->flags & PWRU_F_FREED) {
		lp->path.ended = "freed";
		live_finish_good(lp);
	}
}

void on_drop_tick(uint64_t now_ns)
{
	if (!D.open || now_ns < D.next_tick)
		return;
	D.next_tick = now_ns + OD_TICK_NS;
	for (uint32_t s = 0; s < OD_LIVE; s++)
		if (D.live[s].used && D.live[s].path.last_ts + OD_QUIET_NS < now_ns)
			live_finish_good(&D.live[s]);
	while (D.lru_tail != NIL && D.flows[D.lru_tail].last_ts + OD_FLOW_IDLE_NS < now_ns)
		flow_forget(D.lru_tail);
}

void on_drop_counts(struct on_drop_counts *c)
{
	*c = D.c;
}

void on_drop_write_watch(bool final)
{
	struct json j = { 0 };

	if (!D.open)
		return;
	json_begin_object(&j);
	json_kv_uint(&j, "packets", D.c.packets);
	json_kv_uint(&j, "flows", D.c.flows);
	json_kv_uint(&j, "drops", D.c.drops);
	json_kv_uint(&j, "unreported", D.c.unreported);
	json_kv_uint(&j, "forgotten_flows", D.c.forgot_flows);
	json_kv_uint(&j, "forgotten_packets", D.c.forgot_packets);
	json_kv_uint(&j, "forgotten_steps", D.c.forgot_steps);
	json_kv_uint(&j, "stored_steps", D.c.stored_steps);
	json_kv_bool(&j, "final", final);
	json_end_object(&j);
	/* Periodic ones are only news; the final one waits for the reader like the final STATS. */
	if (out_frame_room(j.b.len) || (final && out_drain(2000))) {
		void *p = out_reserve(PWRU_FRAME_WATCH, (uint32_t)j.b.len);
		if (p)
			memcpy(p, j.b.p, j.b.len);
	}
	json_free(&j);
}

void on_drop_close(void)
{
	if (D.live)
		for (uint32_t s = 0; s < OD_LIVE; s++)
			free(D.live[s].path.steps);
	if (D.flows)
		for (int32_t i = 0; i < OD_FLOWS; i++)
			free(D.flows[i].good.steps);
	free(D.live);
	free(D.flows);
	free(D.names);
	free(D.starts_tx);
	if (D.open)
		packet_track_free(&D.tracker);
	memset(&D, 0, sizeof(D));
}
