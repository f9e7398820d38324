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
#define OD_HELD 32		/* drops held back for their copies at once */
#define OD_COPIES 4		/* copies kept with a packet */
#define OD_COPY_START_NS 1000000000ULL /* a drop whose data lived on waits this long for a copy to start */
#define OD_HOLD_NS 3000000000ULL	/* and is reported this long after it at the latest, its copies ended or not */
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

/* A packet's copies that ended, for its report: their paths in order. */
struct copy_paths {
	struct path v[OD_COPIES];
	struct pwru_copy made[OD_COPIES]; /* made[i].skb: v[i] was made by a copy function (its COPY record) */
	uint32_t n;
};

struct live_packet {
	struct path path;
	int32_t flow; /* NIL until the packet has shown a tuple */
	bool used;
	uint32_t copy_of;	  /* the packet this one is a copy or clone of; 0: none */
	uint64_t head;		  /* its data buffer at its latest step; 0: not seen */
	struct pwru_copy made;	  /* made.skb: a copy function made it */
	struct copy_paths copies; /* its copies that ended while it lived */
};

/* A drop held back until its copies end, or the wait is over. */
struct held_drop {
	bool used;
	struct path bad;	/* in order */
	bool has_flow;
	struct flow_key key;
	struct path good;	/* the flow's last good packet when it dropped (steps NULL: none) */
	uint64_t orphan_head;	/* waiting for a copy to start at this data buffer (0: not) */
	uint64_t orphan_until;
	uint64_t until;
	uint32_t live_copies;	/* its copies in flight */
	struct copy_paths copies;
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
	on_drop_culprit_fn ask_culprit;
	struct packet_tracker tracker;
	bool *starts_tx;
	const char **names;
	struct flow *flows;
	int32_t buckets[OD_BUCKETS];
	int32_t free_flows; /* chain of unused flows, through hnext */
	int32_t lru_head, lru_tail;
	struct live_packet *live;
	struct held_drop held[OD_HELD];
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

/* A live packet's path, finished: in order, in memory of its own size (cap = nsteps). */
static bool path_finish(struct path *p)
{
	uint32_t cap = p->cap;

	if (!path_compact(p))
		return false;
	D.c.stored_steps -= cap;
	p->cap = p->nsteps;
	D.c.stored_steps += p->cap;
	return true;
}

/* A finished path's copy, steps and all. */
static bool path_dup(const struct path *from, struct path *to)
{
	*to = *from;
	to->steps = malloc((from->nsteps ? from->nsteps : 1) * sizeof(*to->steps));
	if (!to->steps) {
		set_out_of_memory();
		memset(to, 0, sizeof(*to));
		return false;
	}
	memcpy(to->steps, from->steps, from->nsteps * sizeof(*to->steps));
	to->cap = from->nsteps;
	D.c.stored_steps += to->cap;
	return true;
}

static void path_free(struct path *p)
{
	D.c.stored_steps -= p->cap;
	free(p->steps);
	memset(p, 0, sizeof(*p));
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
	path_free(&f->good);
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

static struct live_packet *live_of(uint32_t number)
{
	struct live_packet *lp = &D.live[number & (OD_LIVE - 1)];

	return lp->used && lp->path.number == number ? lp : NULL;
}

static void copy_paths_free(struct copy_paths *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		path_free(&c->v[i]);
	memset(c, 0, sizeof(*c));
}

/* Takes *p (it is left empty); one past OD_COPIES is let go. */
static void copy_paths_add(struct copy_paths *c, struct path *p, const struct pwru_copy *made)
{
	if (c->n == OD_COPIES) {
		path_free(p);
		return;
	}
	c->v[c->n] = *p;
	c->made[c->n] = *made;
	c->n++;
	memset(p, 0, sizeof(*p));
}

static void live_release(struct live_packet *lp)
{
	path_free(&lp->path);
	copy_paths_free(&lp->copies);
	memset(lp, 0, sizeof(*lp));
	lp->flow = NIL;
}

static void held_report(struct held_drop *h);

static struct held_drop *held_of(uint32_t number)
{
	for (uint32_t i = 0; i < OD_HELD; i++)
		if (D.held[i].used && D.held[i].bad.number == number)
			return &D.held[i];
	return NULL;
}

/*
 * A copy ended (or was dropped: then p is a copy of its path): p goes with its
 * original, to the report held for it (written once no copy is left in
 * flight) or to the original still in flight. Takes *p.
 */
static void give_to_original(uint32_t original, struct path *p, const struct pwru_copy *made)
{
	struct held_drop *h = held_of(original);
	struct live_packet *o = h ? NULL : live_of(original);

	if (h) {
		copy_paths_add(&h->copies, p, made);
		if (h->live_copies)
			h->live_copies--;
		if (!h->live_copies && !h->orphan_head)
			held_report(h);
	} else if (o) {
		copy_paths_add(&o->copies, p, made);
	} else {
		path_free(p); /* its original was reported or forgotten already */
	}
}

/*
 * A packet that ended without a drop (freed, or quiet for OD_QUIET_NS) is its
 * flow's last good one; a copy goes with its original instead. One without a
 * flow (it never showed a tuple) is only let go.
 */
static void live_finish_good(struct live_packet *lp)
{
	struct flow *f = lp->flow != NIL ? &D.flows[lp->flow] : NULL;

	if (!lp->path.ended)
		lp->path.ended = "quiet";
	if (lp->copy_of) {
		if (path_finish(&lp->path))
			give_to_original(lp->copy_of, &lp->path, &lp->made);
		live_release(lp);
		return;
	}
	/* A lone free (the end of a packet whose path came before the trace, or out of its sight) is no path. */
	if (!f || lp->path.nsteps < 2 || !path_finish(&lp->path)) {
		live_release(lp);
		return;
	}
	path_free(&f->good);
	f->good = lp->path;
	memset(&lp->path, 0, sizeof(lp->path));
	live_release(lp);
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

/* A path's latest step (recording or finished); NULL if it has none. */
static const struct pwru_event *last_step(const struct path *p)
{
	return p->nsteps ? kept_step(p, kept(p) - 1) : NULL;
}

/*
 * The latest packet in flight, other than lp, whose data buffer is head (0:
 * none), as copies.ts's liveHeads keeps it; with ev, only one whose bytes
 * are ev's (a clone's first step).
 */
static uint32_t live_at_head(const struct live_packet *lp, uint64_t head, const struct pwru_event *ev)
{
	const struct live_packet *best = NULL;

	for (uint32_t s = 0; s < OD_LIVE; s++) {
		const struct live_packet *x = &D.live[s];

		if (x->used && x != lp && x->head == head && (!best || x->path.number > best->path.number))
			best = x;
	}
	return best && (!ev || packet_same_bytes(last_step(&best->path), ev)) ? best->path.number : 0;
}

/*
 * A packet's first step: the packet it is a clone of, as src/reading/copies.ts
 * links it: one dropped while its data was shared and waiting for a copy at
 * that buffer, else one in flight at that buffer when this one says the data
 * is shared.
 */
static void link_at_start(struct live_packet *lp, const struct pwru_event *ev)
{
	if (!ev->head)
		return;
	for (uint32_t i = 0; D.c.held && i < OD_HELD; i++) {
		struct held_drop *h = &D.held[i];

		if (h->used && h->orphan_head == ev->head) {
			if (!packet_same_bytes(last_step(&h->bad), ev))
				return;
			lp->copy_of = h->bad.number;
			h->orphan_head = 0;
			h->live_copies++;
			return;
		}
	}
	if (ev->dataref > 1)
		lp->copy_of = live_at_head(lp, ev->head, ev);
}

/* A copy function made this packet (its COPY record): its original is the packet in flight at that buffer. */
static void link_made(struct live_packet *lp, const struct pwru_copy *made)
{
	if ((lp->copy_of = live_at_head(lp, made->orig_head, NULL)))
		lp->made = *made;
}

/* ---- reports ---- */

static void put_addr(struct json *j, const char *key, uint8_t family, const uint8_t *a)
{
	char text[INET6_ADDRSTRLEN];

	inet_ntop(family == 6 ? AF_INET6 : AF_INET, a, text, sizeof(text));
	json_kv_string(j, key, text);
}

static void put_path_fields(struct json *j, const struct path *p, const char *ended)
{
	uint32_t forgotten = p->forgotten + (p->nsteps - kept(p));

	json_kv_uint(j, "packet", p->number);
	json_kv_uint(j, "steps", kept(p));
	json_kv_uint(j, "forgotten_steps", forgotten);
	if (forgotten)
		json_kv_uint(j, "gap_after", OD_HEAD);
	if (ended)
		json_kv_string(j, "ended", ended);
}

static void put_path(struct json *j, const char *key, const struct path *p, const char *ended)
{
	json_key(j, key);
	json_begin_object(j);
	put_path_fields(j, p, ended);
	json_end_object(j);
}

/*
 * DROP_REPORT, then the dropped packet's steps, the good one's, and its
 * copies' (each copy made by a copy function with its COPY record before the
 * step it belongs to).
 */
static void report(const struct path *bad, const struct flow_key *key, const struct path *good,
		   const struct copy_paths *copies, bool ask_culprit)
{
	struct json j = { 0 };

	if (!out_frame_room(ON_DROP_REPORT_ROOM)) {
		D.c.unreported++;
		return;
	}
	D.c.drops++;
	json_begin_object(&j);
	json_kv_uint(&j, "n", D.c.drops);
	if (key) {
		json_key(&j, "flow");
		json_begin_object(&j);
		json_kv_uint(&j, "family", key->family);
		json_kv_uint(&j, "l4", key->l4);
		put_addr(&j, "src", key->family, key->saddr);
		put_addr(&j, "dst", key->family, key->daddr);
		if (key->l4 == 6 || key->l4 == 17 || key->l4 == 132)
			json_kv_uint(&j, "dport", key->dport);
		json_end_object(&j);
	}
	put_path(&j, "bad", bad, NULL);
	if (good)
		put_path(&j, "good", good, good->ended);
	if (copies && copies->n) {
		json_key(&j, "copies");
		json_begin_array(&j);
		for (uint32_t c = 0; c < copies->n; c++) {
			json_begin_object(&j);
			put_path_fields(&j, &copies->v[c], copies->v[c].ended);
			json_end_object(&j);
		}
		json_end_array(&j);
	}
	json_kv_uint(&j, "forgotten_flows", D.c.forgot_flows);
	json_kv_uint(&j, "forgotten_packets", D.c.forgot_packets);
	json_kv_uint(&j, "forgotten_steps", D.c.forgot_steps + (bad->nsteps - kept(bad)));
	json_end_object(&j);
	void *p = out_reserve(PWRU_FRAME_DROP_REPORT, (uint32_t)j.b.len);
	if (p)
		memcpy(p, j.b.p, j.b.len);
	json_free(&j);
	for (uint32_t i = 0; i < kept(bad); i++) {
		const struct pwru_event *ev = kept_step(bad, i);

		D.emit(ev, NULL, ask_culprit && (ev->flags & PWRU_F_DROP));
	}
	for (uint32_t i = 0; good && i < good->nsteps; i++)
		D.emit(&good->steps[i], NULL, false);
	for (uint32_t c = 0; copies && c < copies->n; c++) {
		const struct pwru_copy *made = &copies->made[c];

		for (uint32_t i = 0; i < copies->v[c].nsteps; i++) {
			const struct pwru_event *ev = &copies->v[c].steps[i];
			bool at = made->skb && made->skb == ev->skb && made->ts == ev->ts;

			D.emit(ev, at ? made : NULL, false);
		}
	}
}

/*
 * The flow's last packet that got through before the dropped one: finished,
 * or still in flight and not dropped so far (its end may be untraced). A scan
 * of the packets in flight, once per drop. Returns a path of its own (the
 * caller frees it with path_free), or NULL.
 */
static bool last_good(int32_t flow, uint32_t before, struct path *out)
{
	const struct flow *f = &D.flows[flow];
	const struct live_packet *lp = NULL;

	memset(out, 0, sizeof(*out));
	for (uint32_t s = 0; s < OD_LIVE; s++) {
		const struct live_packet *x = &D.live[s];

		if (x->used && x->flow == flow && !x->copy_of && x->path.nsteps >= 2 && x->path.number < before &&
		    (!lp || x->path.number > lp->path.number))
			lp = x;
	}
	if (lp && (!f->good.steps || lp->path.number > f->good.number)) {
		/* In flight, not dropped (so far): its steps in order, without taking them from it. */
		uint32_t n = kept(&lp->path);

		out->steps = malloc((n ? n : 1) * sizeof(*out->steps));
		if (!out->steps) {
			set_out_of_memory();
			return false;
		}
		for (uint32_t i = 0; i < n; i++)
			out->steps[i] = *kept_step(&lp->path, i);
		out->nsteps = out->cap = n;
		out->forgotten = lp->path.nsteps - n;
		out->number = lp->path.number;
		out->ended = "in-flight";
		D.c.stored_steps += n;
		return true;
	}
	return f->good.steps && path_dup(&f->good, out);
}

/* A held drop's report, and its slot let go. */
static void held_report(struct held_drop *h)
{
	/* Its culprit was asked for at the drop: the rules' counters are read close to it. */
	report(&h->bad, h->has_flow ? &h->key : NULL, h->good.steps ? &h->good : NULL, &h->copies, false);
	path_free(&h->bad);
	path_free(&h->good);
	copy_paths_free(&h->copies);
	memset(h, 0, sizeof(*h));
	D.c.held--;
}

/*
 * lp was dropped (its path finished). With copies in flight, or its data still
 * shared (a clone may yet show up: a raw socket's, read later), its report
 * waits for them (at most OD_HOLD_NS); else it goes out now.
 */
static void dropped(struct live_packet *lp, const struct pwru_event *ev)
{
	const struct flow *f = lp->flow != NIL ? &D.flows[lp->flow] : NULL;
	struct held_drop *h = NULL;
	uint32_t live_copies = 0;
	struct path good;

	for (uint32_t s = 0; s < OD_LIVE; s++)
		if (D.live[s].used && D.live[s].copy_of == lp->path.number)
			live_copies++;
	bool orphan = !live_copies && ev->head && ev->dataref > 1;

	for (uint32_t i = 0; (live_copies || orphan) && !h && i < OD_HELD; i++)
		if (!D.held[i].used)
			h = &D.held[i];
	if (f)
		last_good(lp->flow, lp->path.number, &good);
	else
		memset(&good, 0, sizeof(good));
	if (!h) {
		report(&lp->path, f ? &f->key : NULL, good.steps ? &good : NULL, &lp->copies, true);
		path_free(&good);
		live_release(lp);
		return;
	}
	*h = (struct held_drop){
		.used = true,
		.bad = lp->path,
		.has_flow = f != NULL,
		.good = good,
		.orphan_head = orphan ? ev->head : 0,
		.orphan_until = ev->ts + OD_COPY_START_NS,
		.until = ev->ts + OD_HOLD_NS,
		.live_copies = live_copies,
		.copies = lp->copies,
	};
	if (f)
		h->key = f->key;
	D.c.held++;
	D.ask_culprit(ev);
	memset(&lp->path, 0, sizeof(lp->path));
	memset(&lp->copies, 0, sizeof(lp->copies));
	live_release(lp);
}

/* ---- the interface ---- */

int on_drop_open(const struct probe_set *probes, const char *packet_starts, on_drop_emit_fn emit,
		 on_drop_culprit_fn ask_culprit)
{
	size_t n = probes->cnt;

	memset(&D, 0, sizeof(D));
	D.emit = emit;
	D.ask_culprit = ask_culprit;
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

void on_drop_event(const struct pwru_event *ev, const struct pwru_copy *made)
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
		link_at_start(lp, ev);
	}
	if (made && !lp->copy_of)
		link_made(lp, made);
	if (ev->head)
		lp->head = ev->head;
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
		if (!path_finish(&lp->path)) {
			live_release(lp);
			return;
		}
		if (lp->copy_of) {
			/* A copy dropped: its original's report shows it too. */
			struct path p;

			lp->path.ended = "dropped";
			if (path_dup(&lp->path, &p))
				give_to_original(lp->copy_of, &p, &lp->made);
		}
		dropped(lp, ev);
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
	for (uint32_t i = 0; i < OD_HELD; i++) {
		struct held_drop *h = &D.held[i];

		if (h->used && h->orphan_head && h->orphan_until < now_ns)
			h->orphan_head = 0; /* no copy started: it waits no more for one */
		if (h->used && ((!h->orphan_head && !h->live_copies) || h->until < now_ns))
			held_report(h);
	}
	while (D.lru_tail != NIL && D.flows[D.lru_tail].last_ts + OD_FLOW_IDLE_NS < now_ns)
		flow_forget(D.lru_tail);
}

void on_drop_flush(void)
{
	if (!D.open)
		return;
	/* Copies still in flight go with their originals as they are. */
	for (uint32_t s = 0; s < OD_LIVE; s++) {
		struct live_packet *lp = &D.live[s];

		if (lp->used && lp->copy_of && held_of(lp->copy_of)) {
			lp->path.ended = "in-flight";
			if (path_finish(&lp->path))
				give_to_original(lp->copy_of, &lp->path, &lp->made);
			live_release(lp);
		}
	}
	for (uint32_t i = 0; i < OD_HELD; i++)
		if (D.held[i].used)
			held_report(&D.held[i]);
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
			live_release(&D.live[s]);
	if (D.flows)
		for (int32_t i = 0; i < OD_FLOWS; i++)
			free(D.flows[i].good.steps);
	for (uint32_t i = 0; i < OD_HELD; i++) {
		path_free(&D.held[i].bad);
		path_free(&D.held[i].good);
		copy_paths_free(&D.held[i].copies);
	}
	free(D.live);
	free(D.flows);
	free(D.names);
	free(D.starts_tx);
	if (D.open)
		packet_track_free(&D.tracker);
	memset(&D, 0, sizeof(D));
}
