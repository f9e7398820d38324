// SPDX-License-Identifier: Apache-2.0
#include "packet_book.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* src/reading/copies.ts MAX_WAITING: originals waiting for a copy to appear. */
#define MAX_WAITING 4096
/* src/reading/packet-tracker.ts REPLACEMENT_WINDOW_NS. */
#define REPLACEMENT_WINDOW_NS 1000000
/* Shapes kept; a packet of a shape past these goes whole. */
#define MAX_SHAPES 4096

struct book_packet {
	uint32_t id, copy_of, replaced_by;
	bool freed, released;
	bool copied;			/* Packet.copied: linked by a COPY record, not by a shared buffer */
	uint64_t head;			/* CopyLinker.headOf */
	struct book_packet *original;	/* CopyLinker.originals: linked, and this copy not done yet */
	uint32_t live_links;		/* copies linked to this one and not done yet */
	bool in_pending;		/* CopyLinker.pending: held back until its copies finish */
	uint32_t pending;
	struct book_packet *next_held;	/* the pending list, and the retired list */
	uint32_t *copies, ncopies;	/* the ids of the copies linked, in order */
	struct pwru_event *steps;
	uint32_t nsteps, cap;
};

struct book_orphan {
	uint64_t head;
	struct book_packet *p;
	struct book_orphan *prev, *next;
};

struct book_shape {
	uint32_t id; /* the lowest packet number of the shape */
	uint64_t count;
	struct book_packet *rep;
};

/* ---- a map of nonzero 64-bit keys (open addressing, linear probing) ---- */

static size_t slot_of(const struct book_map *m, uint64_t k)
{
	return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 17) & (m->cap - 1);
}

static void *map_get(const struct book_map *m, uint64_t k)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(m, k); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == k)
			return m->vals[i];
	return NULL;
}

static void map_put(struct book_map *m, uint64_t k, void *v);

static void map_grow(struct book_map *m)
{
	struct book_map old = *m;
	size_t cap = old.cap ? old.cap * 2 : 1024;

	m->keys = calloc(cap, sizeof(*m->keys));
	m->vals = calloc(cap, sizeof(*m->vals));
	if (!m->keys || !m->vals) {
		free(m->keys);
		free(m->vals);
		*m = old;
		set_out_of_memory();
		return;
	}
	m->cap = cap;
	m->used = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.keys[i])
			map_put(m, old.keys[i], old.vals[i]);
	free(old.keys);
	free(old.vals);
}

static void map_put(struct book_map *m, uint64_t k, void *v)
{
	if ((m->used + 1) * 2 > m->cap)
		map_grow(m);
	if ((m->used + 1) * 2 > m->cap)
		return;
	size_t i = slot_of(m, k);
	while (m->keys[i] && m->keys[i] != k)
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i])
		m->used++;
	m->keys[i] = k;
	m->vals[i] = v;
}

static void map_del(struct book_map *m, uint64_t k)
{
	size_t i, j;

	if (!m->cap)
		return;
	for (i = slot_of(m, k); m->keys[i] && m->keys[i] != k; i = (i + 1) & (m->cap - 1))
		;
	if (!m->keys[i])
		return;
	/* Backward shift: the keys after the hole that would not be found past it move into it. */
	for (j = (i + 1) & (m->cap - 1); m->keys[j]; j = (j + 1) & (m->cap - 1)) {
		size_t home = slot_of(m, m->keys[j]);
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->used--;
}

static void map_free(struct book_map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* ---- packets ---- */

static void packet_free(struct book_packet *p)
{
	free(p->steps);
	free(p->copies);
	free(p);
}

/* Two steps the same for the verdict: probe, drop and its reason, caller, device. */
static bool same_step(const struct pwru_event *a, const struct pwru_event *b)
{
	const uint8_t mask = PWRU_F_DROP | PWRU_F_FREED | PWRU_F_HAS_REASON;

	if (a->probe_id != b->probe_id || (a->flags & mask) != (b->flags & mask) || a->caller != b->caller ||
	    a->ifindex != b->ifindex || memcmp(a->ifname, b->ifname, sizeof(a->ifname)) != 0)
		return false;
	return !(a->flags & PWRU_F_DROP) || !(a->flags & PWRU_F_HAS_REASON) || a->drop_reason == b->drop_reason;
}

/* The packet's first tuple (Packet.tuple). */
static const struct pwru_event *first_tuple(const struct book_packet *p)
{
	for (uint32_t i = 0; i < p->nsteps; i++)
		if (p->steps[i].flags & PWRU_F_HAS_TUPLE)
			return &p->steps[i];
	return NULL;
}

static bool same_shape(const struct book_packet *a, const struct book_packet *b)
{
	if (a->nsteps != b->nsteps || a->freed != b->freed || !packet_same_flow(first_tuple(a), first_tuple(b)))
		return false;
	for (uint32_t i = 0; i < a->nsteps; i++)
		if (!same_step(&a->steps[i], &b->steps[i]))
			return false;
	return true;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

static uint64_t shape_hash(const struct book_packet *p)
{
	const struct pwru_event *t = first_tuple(p);
	uint64_t h = mix(p->nsteps, p->freed);

	if (t) {
		uint64_t a[4] = { 0 };
		memcpy(a, t->saddr, event_addr_len(t));
		memcpy(a + 2, t->daddr, event_addr_len(t));
		h = mix(h, (uint64_t)t->l4 << 40 | (uint64_t)(l4_has_ports(t->l4) ? t->sport : 0) << 16 |
				   (l4_has_ports(t->l4) ? t->dport : 0));
		for (int i = 0; i < 4; i++)
			h = mix(h, a[i]);
	}
	for (uint32_t i = 0; i < p->nsteps; i++) {
		const struct pwru_event *e = &p->steps[i];
		uint64_t name[2];

		memcpy(name, e->ifname, sizeof(name));
		h = mix(h, (uint64_t)e->probe_id << 32 | (e->flags & (PWRU_F_DROP | PWRU_F_FREED | PWRU_F_HAS_REASON)));
		h = mix(h, e->caller);
		h = mix(h, (uint64_t)e->ifindex << 32 | ((e->flags & PWRU_F_DROP) ? e->drop_reason : 0));
		h = mix(mix(h, name[0]), name[1]);
	}
	return h ? h : 1;
}

static void send_whole(struct packet_book *b, const struct book_packet *p, bool open)
{
	struct book_unit u = { .id = p->id,
			       .count = 1,
			       .copy_of = p->copy_of,
			       .copied = p->copied,
			       .replaced_by = p->replaced_by,
			       .copies = p->copies,
			       .ncopies = p->ncopies,
			       .open = open };

	b->send(&u, p->steps, p->nsteps);
}

enum shaped { WHOLE, COUNTED, KEPT };

/* Counted under its shape (or kept as a new shape's representative); WHOLE when its verdict reads more than its steps, or no room. */
static enum shaped shape_add(struct packet_book *b, struct book_packet *p)
{
	if (p->id <= b->whole_first || p->copy_of || p->ncopies || p->replaced_by)
		return WHOLE;
	uint64_t h = shape_hash(p);
	struct book_shape *s = map_get(&b->shape_index, h);

	if (s) {
		if (!same_shape(s->rep, p))
			return WHOLE; /* another shape with the same hash: rare, and whole is exact */
		s->count++;
		if (p->id < s->id)
			s->id = p->id;
		return COUNTED;
	}
	if (b->nshapes >= MAX_SHAPES)
		return WHOLE;
	if (b->nshapes == b->cap_shapes) {
		size_t cap = b->cap_shapes ? b->cap_shapes * 2 : 64;
		struct book_shape **v = realloc(b->shapes, cap * sizeof(*v));
		if (!v) {
			set_out_of_memory();
			return WHOLE;
		}
		b->shapes = v;
		b->cap_shapes = cap;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		set_out_of_memory();
		return WHOLE;
	}
	*s = (struct book_shape){ .id = p->id, .count = 1, .rep = p };
	b->shapes[b->nshapes++] = s;
	map_put(&b->shape_index, h, s);
	return KEPT;
}

/* CopyLinker's release: the packet's verdict waits on nothing more. */
static void release(struct packet_book *b, struct book_packet *p)
{
	enum shaped shaped = shape_add(b, p);

	p->released = true;
	if (shaped == KEPT)
		return;
	if (shaped == COUNTED) {
		packet_free(p);
		return;
	}
	send_whole(b, p, false);
	if (p->live_links) {
		/* Released at the end while a copy still points at it. */
		p->next_held = b->retired;
		b->retired = p;
		return;
	}
	packet_free(p);
}

static void pending_remove(struct packet_book *b, struct book_packet *p)
{
	for (struct book_packet **q = &b->pending; *q; q = &(*q)->next_held) {
		if (*q == p) {
			*q = p->next_held;
			break;
		}
	}
	p->in_pending = false;
	p->pending = 0;
	p->next_held = NULL;
}

static void pending_set(struct packet_book *b, struct book_packet *p, uint32_t n)
{
	if (!p->in_pending) {
		p->in_pending = true;
		p->next_held = b->pending;
		b->pending = p;
	}
	p->pending = n;
}

/* CopyLinker.done: released, and its original told one more copy is finished. */
static void done(struct packet_book *b, struct book_packet *p)
{
	struct book_packet *original = p->original;

	p->original = NULL;
	/* A shape's representative is kept by the shape: the copy's link is cut before. */
	release(b, p);
	if (!original)
		return;
	original->live_links--;
	if (!original->in_pending)
		return;
	if (original->pending > 1) {
		original->pending--;
		return;
	}
	pending_remove(b, original);
	done(b, original);
}

static void orphan_unlink(struct packet_book *b, struct book_orphan *o)
{
	if (o->prev)
		o->prev->next = o->next;
	else
		b->oldest = o->next;
	if (o->next)
		o->next->prev = o->prev;
	else
		b->newest = o->prev;
	map_del(&b->orphans, o->head);
	b->norphans--;
	free(o);
}

/* CopyLinker.orphan: dropped while its data was shared; a copy may yet start there. */
static void orphan(struct packet_book *b, uint64_t head, struct book_packet *p)
{
	struct book_orphan *o = map_get(&b->orphans, head);

	if (o) {
		struct book_packet *before = o->p;
		o->p = p; /* in its place: a Map keeps a key's position */
		done(b, before);
		return;
	}
	if (b->norphans >= MAX_WAITING) {
		struct book_packet *oldest = b->oldest->p;
		orphan_unlink(b, b->oldest);
		done(b, oldest);
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		set_out_of_memory();
		done(b, p);
		return;
	}
	*o = (struct book_orphan){ .head = head, .p = p, .prev = b->newest };
	if (b->newest)
		b->newest->next = o;
	else
		b->oldest = o;
	b->newest = o;
	b->norphans++;
	map_put(&b->orphans, head, o);
}

static bool shared_when_dropped(const struct book_packet *p)
{
	for (uint32_t i = 0; i < p->nsteps; i++)
		if ((p->steps[i].flags & PWRU_F_DROP) && p->steps[i].head && p->steps[i].dataref > 1)
			return true;
	return false;
}

/* CopyLinker.finished. */
static void finished(struct packet_book *b, struct book_packet *p)
{
	uint64_t head = p->head;

	p->head = 0;
	if (head && map_get(&b->heads, head) == p)
		map_del(&b->heads, head);
	if (p->live_links > 0)
		pending_set(b, p, p->live_links);
	else if (head && shared_when_dropped(p))
		orphan(b, head, p);
	else
		done(b, p);
}

static void flush_lone(struct packet_book *b)
{
	struct book_packet *p = b->lone;

	if (!p)
		return;
	b->lone = NULL;
	finished(b, p);
}

/* PacketTracker.done: a lone free is held back, the next packet may be its copy. */
static void tracker_done(struct packet_book *b, struct book_packet *p)
{
	if (p->nsteps == 1 && p->freed && !(p->steps[0].flags & PWRU_F_DROP)) {
		flush_lone(b);
		b->lone = p;
		return;
	}
	finished(b, p);
}

/* PacketTracker.started: a lone free just before on the same CPU, of the same flow, was this packet's original. */
static void tracker_started(struct packet_book *b, struct book_packet *p, const struct pwru_event *ev)
{
	struct book_packet *lone = b->lone;

	if (!lone)
		return;
	const struct pwru_event *was = &lone->steps[0];
	int64_t gap = (int64_t)(ev->ts - was->ts);
	const struct pwru_event *a = (was->flags & PWRU_F_HAS_TUPLE) ? was : NULL;
	const struct pwru_event *t = (ev->flags & PWRU_F_HAS_TUPLE) ? ev : NULL;

	if (was->cpu == ev->cpu && gap >= 0 && gap <= REPLACEMENT_WINDOW_NS && a && t && packet_same_flow(a, t))
		lone->replaced_by = p->id;
	flush_lone(b);
}

static void link_copy(struct book_packet *p, struct book_packet *original);

static const struct pwru_event *last_of(const struct book_packet *p)
{
	return p->nsteps ? &p->steps[p->nsteps - 1] : NULL;
}

/* CopyLinker.started: link a packet to the one whose data it shares. */
static void copies_started(struct packet_book *b, struct book_packet *p, const struct pwru_event *ev)
{
	struct book_packet *original = NULL;
	struct book_orphan *o;

	if (!ev->head)
		return;
	o = map_get(&b->orphans, ev->head);
	original = o ? o->p : ev->dataref > 1 ? map_get(&b->heads, ev->head) : NULL;
	if (!original || original == p || !packet_same_bytes(last_of(original), ev))
		return;
	if (o) {
		orphan_unlink(b, o);
		pending_set(b, original, original->pending + 1);
	}
	link_copy(p, original);
}

/* CopyLinker.link: p is a copy of original. */
static void link_copy(struct book_packet *p, struct book_packet *original)
{
	if (!original || original == p)
		return;
	uint32_t *copies = realloc(original->copies, (original->ncopies + 1) * sizeof(*copies));
	if (!copies) {
		set_out_of_memory();
		return;
	}
	original->copies = copies;
	original->copies[original->ncopies++] = p->id;
	original->live_links++;
	p->copy_of = original->id;
	p->original = original;
}

/* CopyLinker.step: a copy linked to the packet it was copied from; where the packet's data is now. */
static void copies_step(struct packet_book *b, struct book_packet *p, const struct pwru_event *ev,
			const struct pwru_copy *cp)
{
	if (cp && !p->copy_of) {
		struct book_packet *original = map_get(&b->heads, cp->orig_head);

		if (original && original != p) {
			p->copied = true;
			link_copy(p, original);
		}
	}
	if (!ev->head || p->head == ev->head)
		return;
	if (p->head && map_get(&b->heads, p->head) == p)
		map_del(&b->heads, p->head);
	map_put(&b->heads, ev->head, p);
	p->head = ev->head;
}

static int by_id(const void *a, const void *b)
{
	const struct book_packet *x = *(struct book_packet *const *)a, *y = *(struct book_packet *const *)b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* The packets in flight, by number. */
static struct book_packet **live_packets(struct packet_book *b, size_t *n)
{
	struct book_packet **v = calloc(b->live.used ? b->live.used : 1, sizeof(*v));

	*n = 0;
	if (!v) {
		set_out_of_memory();
		return NULL;
	}
	for (size_t i = 0; i < b->live.cap; i++)
		if (b->live.keys[i])
			v[(*n)++] = b->live.vals[i];
	qsort(v, *n, sizeof(*v), by_id);
	return v;
}

int packet_book_init(struct packet_book *b, book_send_fn send, uint32_t whole_first)
{
	memset(b, 0, sizeof(*b));
	b->send = send;
	b->whole_first = whole_first;
	return 0;
}

void packet_book_step(struct packet_book *b, const struct pwru_event *ev, const struct pwru_copy *cp,
		      const struct step_info *step)
{
	struct book_packet *p;

	if (step->ended && (p = map_get(&b->live, step->ended))) {
		map_del(&b->live, step->ended);
		tracker_done(b, p);
	}
	if (step->forgot_all) {
		size_t n;
		struct book_packet **v = live_packets(b, &n);

		for (size_t i = 0; v && i < n; i++) {
			map_del(&b->live, v[i]->id);
			tracker_done(b, v[i]);
		}
		free(v);
	}
	p = map_get(&b->live, step->packet);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p) {
			set_out_of_memory();
			return;
		}
		p->id = step->packet;
		map_put(&b->live, p->id, p);
		copies_started(b, p, ev);
		tracker_started(b, p, ev);
	}
	if (p->nsteps == p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 16;
		struct pwru_event *steps = realloc(p->steps, cap * sizeof(*steps));
		if (!steps) {
			set_out_of_memory();
			return;
		}
		p->steps = steps;
		p->cap = cap;
	}
	p->steps[p->nsteps++] = *ev;
	copies_step(b, p, ev, cp);
	if (ev->flags & (PWRU_F_FREED | PWRU_F_DROP)) {
		p->freed = true;
		map_del(&b->live, p->id);
		tracker_done(b, p);
	}
}

void packet_book_finish(struct packet_book *b)
{
	struct book_packet **held = NULL;
	size_t nheld = 0, n;

	/* PacketTracker.open: the lone free, then CopyLinker.flush (by number), then what is in flight. */
	flush_lone(b);
	for (struct book_orphan *o = b->oldest; o; o = o->next)
		nheld++;
	for (struct book_packet *p = b->pending; p; p = p->next_held)
		nheld++;
	held = calloc(nheld ? nheld : 1, sizeof(*held));
	if (!held) {
		set_out_of_memory();
		return;
	}
	nheld = 0;
	while (b->oldest) {
		held[nheld++] = b->oldest->p;
		orphan_unlink(b, b->oldest);
	}
	while (b->pending) {
		struct book_packet *p = b->pending;
		held[nheld++] = p;
		pending_remove(b, p);
	}
	qsort(held, nheld, sizeof(*held), by_id);
	for (size_t i = 0; i < nheld; i++)
		release(b, held[i]);
	free(held);

	struct book_packet **live = live_packets(b, &n);
	for (size_t i = 0; live && i < n; i++) {
		map_del(&b->live, live[i]->id);
		send_whole(b, live[i], true);
		if (live[i]->live_links) {
			live[i]->next_held = b->retired;
			b->retired = live[i];
		} else {
			packet_free(live[i]);
		}
	}
	free(live);

	for (size_t i = 0; i < b->nshapes; i++) {
		struct book_shape *s = b->shapes[i];
		struct book_unit u = { .id = s->id, .count = s->count };

		b->send(&u, s->rep->steps, s->rep->nsteps);
	}
}

void packet_book_free(struct packet_book *b)
{
	for (size_t i = 0; i < b->live.cap; i++)
		if (b->live.keys[i])
			packet_free(b->live.vals[i]);
	while (b->oldest) {
		packet_free(b->oldest->p);
		orphan_unlink(b, b->oldest);
	}
	while (b->pending) {
		struct book_packet *p = b->pending;
		pending_remove(b, p);
		packet_free(p);
	}
	while (b->retired) {
		struct book_packet *p = b->retired;
		b->retired = p->next_held;
		packet_free(p);
	}
	if (b->lone)
		packet_free(b->lone);
	for (size_t i = 0; i < b->nshapes; i++) {
		packet_free(b->shapes[i]->rep);
		free(b->shapes[i]);
	}
	free(b->shapes);
	map_free(&b->live);
	map_free(&b->heads);
	map_free(&b->orphans);
	map_free(&b->shape_index);
	memset(b, 0, sizeof(*b));
}
