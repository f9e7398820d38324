// SPDX-License-Identifier: Apache-2.0
#include "packet_track.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/*
 * Packets followed at once. Frees without a tracepoint (__kfree_skb, the
 * per-CPU caches) leave addresses behind; past this many the tracker forgets
 * them all, which bounds the helper's memory (~1.5 MiB). src/reading/packet-tracker.ts
 * applies the same rule (MAX_LIVE_PACKETS), so both number packets alike.
 */
#define MAX_LIVE_PACKETS 8192

#define NONE SIZE_MAX

static size_t slot_of(const struct packet_tracker *t, uint64_t skb)
{
	return (size_t)((skb * 0x9E3779B97F4A7C15ULL) >> 40) & (t->cap - 1);
}

static size_t find(const struct packet_tracker *t, uint64_t skb)
{
	for (size_t i = slot_of(t, skb);; i = (i + 1) & (t->cap - 1)) {
		if (t->keys[i] == skb)
			return i;
		if (!t->keys[i])
			return NONE;
	}
}

/* A new, zeroed entry for skb (not in the table; there is room). */
static size_t insert(struct packet_tracker *t, uint64_t skb)
{
	size_t i = slot_of(t, skb);

	while (t->keys[i])
		i = (i + 1) & (t->cap - 1);
	t->used++;
	t->keys[i] = skb;
	memset(&t->states[i], 0, sizeof(t->states[i]));
	return i;
}

static int grow(struct packet_tracker *t)
{
	uint64_t *old_keys = t->keys;
	struct live *old_states = t->states;
	size_t old_cap = t->cap;
	size_t cap = old_cap ? old_cap * 2 : 4096;
	uint64_t *keys = calloc(cap, sizeof(*keys));
	struct live *states = malloc(cap * sizeof(*states));

	if (!keys || !states) {
		free(keys);
		free(states);
		return -ENOMEM;
	}
	t->keys = keys;
	t->states = states;
	t->cap = cap;
	t->used = 0;
	for (size_t i = 0; i < old_cap; i++)
		if (old_keys[i])
			t->states[insert(t, old_keys[i])] = old_states[i];
	free(old_keys);
	free(old_states);
	return 0;
}

/* Linear probing without tombstones: pull later entries of the run back into the hole. */
static void erase(struct packet_tracker *t, size_t hole)
{
	t->keys[hole] = 0;
	t->used--;
	for (size_t i = (hole + 1) & (t->cap - 1); t->keys[i]; i = (i + 1) & (t->cap - 1)) {
		size_t home = slot_of(t, t->keys[i]);

		/* Movable when its home is not in (hole, i], cyclically. */
		if ((i > hole && (home <= hole || home > i)) || (i < hole && home <= hole && home > i)) {
			t->keys[hole] = t->keys[i];
			t->states[hole] = t->states[i];
			t->keys[i] = 0;
			hole = i;
		}
	}
}

int packet_track_init(struct packet_tracker *t, const bool *starts_tx, uint32_t nprobes)
{
	memset(t, 0, sizeof(*t));
	t->starts_tx = starts_tx;
	t->nprobes = nprobes;
	return grow(t);
}

void packet_track_free(struct packet_tracker *t)
{
	free(t->keys);
	free(t->states);
	memset(t, 0, sizeof(*t));
}

uint32_t packet_track_count(const struct packet_tracker *t)
{
	return t->count;
}

bool packet_same_flow(const struct pwru_event *a, const struct pwru_event *b)
{
	if (!a || !b)
		return a == b;
	if ((a->l3 == 6) != (b->l3 == 6) || a->l4 != b->l4 || memcmp(a->saddr, b->saddr, event_addr_len(a)) != 0 ||
	    memcmp(a->daddr, b->daddr, event_addr_len(a)) != 0)
		return false;
	return !l4_has_ports(a->l4) || (a->sport == b->sport && a->dport == b->dport);
}

bool packet_same_bytes(const struct pwru_event *last, const struct pwru_event *ev)
{
	if (!last)
		return false;
	if (last->l3 == 4 && ev->l3 == 4 && last->ip_id != ev->ip_id)
		return false;
	if (last->l4 == IPPROTO_TCP && ev->l4 == IPPROTO_TCP && last->tcp_seq != ev->tcp_seq)
		return false;
	if (!(last->flags & PWRU_F_HAS_TUPLE) || !(ev->flags & PWRU_F_HAS_TUPLE))
		return true;
	return packet_same_flow(last, ev) && last->tcp_flags == ev->tcp_flags && last->icmp_type == ev->icmp_type;
}

void step_state_of(const struct pwru_event *ev, struct step_state *st)
{
	memset(st, 0, sizeof(*st));
	st->has_tuple = ev->flags & PWRU_F_HAS_TUPLE;
	st->family = ev->l3 == 6 ? 6 : 4;
	st->l4 = ev->l4;
	st->has_ports = ev->l4 == 6 || ev->l4 == 17 || ev->l4 == 132;
	st->sport = ev->sport;
	st->dport = ev->dport;
	memcpy(st->saddr, ev->saddr, 16);
	memcpy(st->daddr, ev->daddr, 16);
	st->has_ip_id = st->has_tuple && ev->l3 != 6;
	st->ip_id = ev->ip_id;
	st->has_seq = st->has_tuple && ev->l4 == 6;
	st->seq = ev->tcp_seq;
	st->head = ev->head;
	memcpy(st->iface, ev->ifname, sizeof(st->iface));
	st->iface[sizeof(st->iface) - 1] = 0;
	st->netns = ev->netns;
	st->has_mark = true;
	st->mark = ev->mark;
	st->has_l3 = true;
	st->l3proto = ev->protocol;
}

/* Two addresses print the same: same family, same bytes (IPv4: the first four). */
static bool same_addr(uint8_t fa, const uint8_t *a, uint8_t fb, const uint8_t *b)
{
	uint64_t x[2], y[2];

	if (fa != fb)
		return false;
	memcpy(x, a, 16); /* fixed sizes: loads, not a call */
	memcpy(y, b, 16);
	if (fa == 4)
		return (uint32_t)x[0] == (uint32_t)y[0];
	return x[0] == y[0] && x[1] == y[1];
}

/* Ports compare like the reader's optional numbers: both absent is equal. */
static bool same_port(bool ha, uint16_t a, bool hb, uint16_t b)
{
	return ha == hb && (!ha || a == b);
}

/* A tunnel's outer header (src/reading/changes.ts isEncapTuple): GRE, IPIP, IPv6-in-IPv4, ESP, VXLAN, Geneve, WireGuard. */
static bool is_encap(const struct step_state *s)
{
	if (s->l4 == 47 || s->l4 == 4 || s->l4 == 41 || s->l4 == 50)
		return true;
	if (s->l4 != 17)
		return false;
	for (int i = 0; i < 2; i++) {
		uint16_t port = i ? s->sport : s->dport;

		if (port == 4789 || port == 8472 || port == 6081 || port == 51820)
			return true;
	}
	return false;
}

/* Addresses, ports or protocol differ: what a change set would call NAT. */
static bool rewritten(const struct step_state *a, const struct step_state *b)
{
	if (!same_addr(a->family, a->saddr, b->family, b->saddr) || !same_addr(a->family, a->daddr, b->family, b->daddr) ||
	    a->l4 != b->l4)
		return true;
	return a->has_ports && b->has_ports && (a->sport != b->sport || a->dport != b->dport);
}

/* Same packet by its header: no ID or sequence that differs, and evidence for any rewrite (sameHeader). */
static bool same_header(const struct step_state *last, const struct step_state *e)
{
	bool ids = last->has_ip_id && e->has_ip_id, seqs = last->has_seq && e->has_seq;

	if ((ids && last->ip_id != e->ip_id) || (seqs && last->seq != e->seq))
		return false;
	if (!rewritten(last, e) || (!last->head && !e->head)) /* no data buffer: recorded before event version 2 */
		return true;
	return seqs || (ids && e->ip_id);
}

/*
 * A reused address (src/reading/packet-tracker.ts startsNewPacket): a reply
 * (tuple turned around), another packet's header, or a new start down the
 * transmit path in another netns.
 */
static bool starts_new_packet(const struct packet_tracker *t, const struct step_state *last, const struct step_state *e, uint32_t probe)
{
	if (last->has_tuple && e->has_tuple) {
		if (same_addr(last->family, last->saddr, e->family, e->daddr) &&
		    same_addr(last->family, last->daddr, e->family, e->saddr) &&
		    same_port(last->has_ports, last->sport, e->has_ports, e->dport) &&
		    same_port(last->has_ports, last->dport, e->has_ports, e->sport) &&
		    !same_addr(last->family, last->saddr, last->family, last->daddr))
			return true;
		if (is_encap(last) == is_encap(e) && !same_header(last, e))
			return true;
	}
	if (!last->netns || !e->netns || e->netns == last->netns)
		return false;
	return probe < t->nprobes && t->starts_tx[probe];
}

/* Equal names: the same 16 bytes nearly always (the kernel pads them with zeros), else equal up to the NUL. */
static bool same_name(const char a[16], const char b[16])
{
	uint64_t x[2], y[2];

	memcpy(x, a, 16);
	memcpy(y, b, 16);
	return (x[0] == y[0] && x[1] == y[1]) || strcmp(a, b) == 0;
}

static uint32_t changes_of(const struct step_state *last, const struct step_state *e)
{
	uint32_t c = 0;

	if (e->has_tuple && last->has_tuple) {
		if (last->l4 != e->l4)
			c |= 1u << CH_PROTO;
		if (!same_addr(last->family, last->saddr, e->family, e->saddr))
			c |= 1u << CH_SRC;
		if (last->has_ports && e->has_ports && last->sport != e->sport)
			c |= 1u << CH_SPORT;
		if (!same_addr(last->family, last->daddr, e->family, e->daddr))
			c |= 1u << CH_DST;
		if (last->has_ports && e->has_ports && last->dport != e->dport)
			c |= 1u << CH_DPORT;
	}
	if (e->iface[0] && last->iface[0] && !same_name(e->iface, last->iface))
		c |= 1u << CH_IFACE;
	if (last->netns && e->netns && e->netns != last->netns)
		c |= 1u << CH_NETNS;
	if (last->has_mark && e->mark != last->mark)
		c |= 1u << CH_MARK;
	if (last->has_l3 && e->l3proto != last->l3proto)
		c |= 1u << CH_L3PROTO;
	return c;
}

/* What the packet remembers of a step: fields a step leaves unset keep their earlier value. */
static void remember(struct step_state *last, const struct step_state *e)
{
	if (e->has_tuple) {
		last->has_tuple = true;
		last->family = e->family;
		last->l4 = e->l4;
		last->has_ports = e->has_ports;
		last->sport = e->sport;
		last->dport = e->dport;
		memcpy(last->saddr, e->saddr, 16);
		memcpy(last->daddr, e->daddr, 16);
		last->has_ip_id = e->has_ip_id;
		last->ip_id = e->ip_id;
		last->has_seq = e->has_seq;
		last->seq = e->seq;
	}
	if (e->head)
		last->head = e->head;
	if (e->iface[0])
		memcpy(last->iface, e->iface, sizeof(last->iface));
	if (e->netns)
		last->netns = e->netns;
	last->has_mark = true;
	last->mark = e->mark;
	last->has_l3 = true;
	last->l3proto = e->l3proto;
}

void packet_track_step(struct packet_tracker *t, const struct pwru_event *ev, struct step_info *out)
{
	struct step_state now;
	size_t i;

	step_state_of(ev, &now);
	memset(out, 0, sizeof(*out));
	i = find(t, ev->skb);
	if (i != NONE && starts_new_packet(t, &t->states[i].last, &now, ev->probe_id)) {
		out->ended = t->states[i].packet;
		erase(t, i);
		i = NONE;
	}
	if (i == NONE) {
		if (t->used >= MAX_LIVE_PACKETS) {
			out->forgot_all = true;
			memset(t->keys, 0, t->cap * sizeof(*t->keys));
			t->used = 0;
		}
		/* Out of memory: the packet still gets its number, and the run ends after this line. */
		if (t->used + 1 > t->cap / 2 && grow(t))
			set_out_of_memory();
		i = t->used + 1 < t->cap ? insert(t, ev->skb) : NONE;
		out->packet = ++t->count;
		out->first = true;
		out->first_ts = ev->ts;
		if (i != NONE) {
			t->states[i].packet = out->packet;
			t->states[i].first_ts = ev->ts;
		}
	} else {
		struct live *e = &t->states[i];

		out->packet = e->packet;
		out->prev_probe = e->last_probe;
		out->first_ts = e->first_ts;
		out->before = e->last;
		out->changes = changes_of(&e->last, &now);
	}
	if (i == NONE)
		return;
	remember(&t->states[i].last, &now);
	t->states[i].last_probe = ev->probe_id;
	if (ev->flags & (PWRU_F_FREED | PWRU_F_DROP))
		erase(t, i);
}

void base_func(const char *name, char *out, size_t len)
{
	const char *colon = strrchr(name, ':');

	snprintf(out, len, "%s", colon ? colon + 1 : name);
	char *plus = strstr(out, "+0x");
	if (plus)
		*plus = 0;
	/* A compiler's copy of a function is that function: "ip_rcv.isra.0". */
	static const char *const copies[] = { ".isra.", ".constprop.", ".part.", ".cold." };
	for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
		char *dot = strstr(out, copies[i]);
		const char *d = dot ? dot + strlen(copies[i]) : NULL;

		if (!d || !*d)
			continue;
		while (*d >= '0' && *d <= '9')
			d++;
		if (!*d) {
			*dot = 0;
			return;
		}
	}
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

bool *packet_starts_of(const char *const *probe_names, uint32_t nprobes, const char *list)
{
	bool *starts = calloc(nprobes ? nprobes : 1, sizeof(*starts));
	char base[256];

	for (uint32_t id = 0; starts && id < nprobes; id++) {
		if (!probe_names[id])
			continue;
		base_func(probe_names[id], base, sizeof(base));
		starts[id] = in_list(list, base);
	}
	return starts;
}
