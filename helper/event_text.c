// SPDX-License-Identifier: Apache-2.0
#include "event_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

#define PUT(b, lit) BUF_PUT_LIT(b, lit)

static void put_str(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* Characters (not bytes) of the UTF-8 text from start on: what padEnd counts (all of ours are one unit). */
static size_t chars_from(const struct buf *b, size_t start)
{
	size_t n = 0;

	for (size_t i = start; i < b->len; i++)
		n += ((unsigned char)b->p[i] & 0xc0) != 0x80;
	return n;
}

static void spaces(struct buf *b, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memset(b->p + b->len, ' ', n);
	b->len += n;
}

/* padEnd(width) of what was written from start on. */
static void pad_from(struct buf *b, size_t start, size_t width)
{
	size_t n = chars_from(b, start);

	if (n < width)
		spaces(b, width - n);
}

/* A kernel name of at most max bytes up to a NUL, as the client decodes it (latin1), in UTF-8. */
static void put_latin1(struct buf *b, const char *s, size_t max)
{
	for (size_t i = 0; i < max && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x80) {
			buf_put(b, &s[i], 1);
		} else {
			char u[2] = { (char)(0xc0 | c >> 6), (char)(0x80 | (c & 0x3f)) };
			buf_put(b, u, 2);
		}
	}
}

static void put_u64_pad(struct buf *b, uint64_t v, size_t width)
{
	size_t start = b->len;

	put_u64(b, v);
	pad_from(b, start, width);
}

/* An IP protocol as the tuple's text writes it: its name in lowercase, or its number. */
static void put_proto_lower(struct buf *b, uint8_t l4)
{
	const char *name = l4_name(l4);

	if (!name) {
		put_u64(b, l4);
		return;
	}
	for (; *name; name++) {
		char c = *name >= 'A' && *name <= 'Z' ? (char)(*name + 32) : *name;
		buf_put(b, &c, 1);
	}
}

/* The value of a change's side as the client names it (src/reading/changes.ts detectChanges). */
static void put_change_value(struct buf *b, enum change_field f, const struct step_state *s)
{
	char text[48];

	switch (f) {
	case CH_PROTO:
		if (l4_name(s->l4))
			put_str(b, l4_name(s->l4));
		else
			put_u64(b, s->l4);
		return;
	case CH_SRC:
	case CH_DST:
		format_addr(s->family, f == CH_SRC ? s->saddr : s->daddr, text, sizeof(text));
		put_str(b, text);
		return;
	case CH_SPORT:
		put_u64(b, s->sport);
		return;
	case CH_DPORT:
		put_u64(b, s->dport);
		return;
	case CH_IFACE:
		put_latin1(b, s->iface, sizeof(s->iface));
		return;
	case CH_NETNS:
		put_u64(b, s->netns);
		return;
	case CH_MARK:
		put_hex(b, s->mark);
		return;
	case CH_L3PROTO:
		switch (s->l3proto) {
		case 0x0800:
			PUT(b, "IPv4");
			return;
		case 0x86dd:
			PUT(b, "IPv6");
			return;
		case 0x0806:
			PUT(b, "ARP");
			return;
		case 0x8100:
			PUT(b, "802.1Q");
			return;
		}
		snprintf(text, sizeof(text), "0x%04x", s->l3proto);
		put_str(b, text);
		return;
	}
}

/* src/reading/changes.ts tunnelOf: by IP protocol first, then by UDP port. */
static const char *tunnel_of(const struct text_notes *n, bool has_port, const struct step_state *port, bool has_proto,
			     const struct step_state *proto)
{
	char key[24];
	const char *t = NULL;

	if (has_proto) {
		struct buf k = { 0 };
		put_change_value(&k, CH_PROTO, proto);
		snprintf(key, sizeof(key), "%.*s", (int)k.len, k.p ? k.p : "");
		buf_free(&k);
		t = text_notes_tunnel(n, false, key);
	}
	if (!t && has_port) {
		snprintf(key, sizeof(key), "%u", port->dport);
		t = text_notes_tunnel(n, true, key);
	}
	return t;
}

/* "FIELD FROM → TO" */
static void put_change(struct buf *b, const char *label, enum change_field f, const struct step_state *from,
		       const struct step_state *to)
{
	put_str(b, label);
	PUT(b, " ");
	put_change_value(b, f, from);
	PUT(b, " \xe2\x86\x92 ");
	put_change_value(b, f, to);
}

/* src/reading/changes.ts describeChanges. */
static void put_changes(const struct text_notes *n, struct buf *b, const struct step_info *step,
			const struct step_state *now)
{
	const struct step_state *was = &step->before;
	uint32_t c = step->changes;
	bool src = c & (1u << CH_SRC), dst = c & (1u << CH_DST), sport = c & (1u << CH_SPORT),
	     dport = c & (1u << CH_DPORT), proto = c & (1u << CH_PROTO), first = true;
	bool moved = (src && dst) || proto;
	const char *encap = moved ? tunnel_of(n, dport, now, proto, now) : NULL;
	const char *decap = moved && !encap ? tunnel_of(n, dport, was, proto, was) : NULL;

#define SEP()                    \
	do {                     \
		if (!first)      \
			PUT(b, ", "); \
		first = false;   \
	} while (0)
	if (encap || decap) {
		/* Both ends as they are after this step: the outer packet's for an encap, the inner's for a decap. */
		SEP();
		put_str(b, encap ? encap : decap);
		put_str(b, encap ? " encap, outer " : " decap, inner ");
		if (src)
			put_change_value(b, CH_SRC, now);
		else
			PUT(b, "?");
		if (sport) {
			PUT(b, ":");
			put_change_value(b, CH_SPORT, now);
		}
		PUT(b, " \xe2\x86\x92 ");
		if (dst)
			put_change_value(b, CH_DST, now);
		else
			PUT(b, "?");
		if (dport) {
			PUT(b, ":");
			put_change_value(b, CH_DPORT, now);
		}
	} else {
		if (proto) {
			SEP();
			put_change(b, "proto", CH_PROTO, was, now);
		}
		if (src) {
			SEP();
			put_change(b, proto ? "src" : "SNAT src", CH_SRC, was, now);
		}
		if (sport) {
			SEP();
			put_change(b, "sport", CH_SPORT, was, now);
		}
		if (dst) {
			SEP();
			put_change(b, proto ? "dst" : "DNAT dst", CH_DST, was, now);
		}
		if (dport) {
			SEP();
			put_change(b, "dport", CH_DPORT, was, now);
		}
	}
	static const char *const rest[] = { "iface", "netns", "mark", "l3proto" };
	for (int f = CH_IFACE; f <= CH_L3PROTO; f++) {
		if (!(c & (1u << f)))
			continue;
		SEP();
		put_change(b, rest[f - CH_IFACE], (enum change_field)f, was, now);
	}
#undef SEP
}

/* src/reading/tuple-format.ts formatTuple, for an event's tuple or a tunnel's inner one. */
static void put_tuple(struct buf *b, uint8_t family, uint8_t l4, const uint8_t *saddr, const uint8_t *daddr,
		      bool ports, uint16_t sport, uint16_t dport, const char *flags)
{
	char src[48], dst[48];

	format_addr(family, saddr, src, sizeof(src));
	format_addr(family, daddr, dst, sizeof(dst));
	if (!ports) {
		put_str(b, src);
		PUT(b, "->");
		put_str(b, dst);
		PUT(b, "(");
		put_proto_lower(b, l4);
		PUT(b, ")");
		return;
	}
	if (family == 6)
		PUT(b, "[");
	put_str(b, src);
	if (family == 6)
		PUT(b, "]");
	PUT(b, ":");
	put_u64(b, sport);
	PUT(b, "->");
	if (family == 6)
		PUT(b, "[");
	put_str(b, dst);
	if (family == 6)
		PUT(b, "]");
	PUT(b, ":");
	put_u64(b, dport);
	PUT(b, "(");
	put_proto_lower(b, l4);
	if (flags) {
		PUT(b, ":");
		put_str(b, flags);
	}
	PUT(b, ")");
}

static void tcp_flag_letters(uint8_t f, char s[10])
{
	static const struct {
		uint8_t bit;
		char letter;
	} order[] = { { 0x01, 'F' }, { 0x02, 'S' }, { 0x04, 'R' }, { 0x08, 'P' },
		      { 0x20, 'U' }, { 0x40, 'E' }, { 0x80, 'W' }, { 0x10, '.' } };
	int n = 0;

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (f & order[i].bit)
			s[n++] = order[i].letter;
	s[n] = 0;
	if (!n)
		strcpy(s, "none");
}

/* Appends m's text when it was made from key. */
static bool memo_put(struct text_memo *m, const void *key, size_t len, struct buf *b)
{
	if (!m->set || memcmp(m->key, key, len) != 0)
		return false;
	buf_put(b, m->text.p, m->text.len);
	return true;
}

/* Remembers b's text from start on, made from key. */
static void memo_keep(struct text_memo *m, const void *key, size_t len, const struct buf *b, size_t start)
{
	memcpy(m->key, key, len);
	m->text.len = 0;
	buf_put(&m->text, b->p + start, b->len - start);
	m->set = !out_of_memory();
}

/* What a tuple's text is made of. */
struct tuple_key {
	uint8_t l3, l4, tcp_flags, zero;
	uint16_t sport, dport;
	uint8_t saddr[16], daddr[16];
};

_Static_assert(sizeof(struct tuple_key) <= sizeof(((struct text_memo *)0)->key), "tuple_key fits the memo");

/* " [SRC → DST]": the addresses' owners (--addr-names) when either has one, "?" for the other. */
static void put_owners(struct text_writer *w, struct buf *b, const struct pwru_event *ev)
{
	const char *src, *dst;

	if (!w->names->owners)
		return;
	addr_names_of_pair(w->names->owners, ev->l3 == 6 ? 6 : 4, ev->saddr, ev->daddr, &src, &dst);
	if (!src && !dst)
		return;
	PUT(b, " [");
	put_str(b, src ? src : "?");
	PUT(b, " \xe2\x86\x92 ");
	put_str(b, dst ? dst : "?");
	PUT(b, "]");
}

static void put_event_tuple(struct text_writer *w, struct buf *b, const struct pwru_event *ev)
{
	char flags[10];
	bool ports = ev->l4 == 6 || ev->l4 == 17 || ev->l4 == 132;

	if (!(ev->flags & PWRU_F_HAS_TUPLE))
		return;
	struct tuple_key k = { ev->l3, ev->l4, ev->tcp_flags, 0, ev->sport, ev->dport, { 0 }, { 0 } };
	struct text_memo *m = &w->tuple[ev->cpu % TEXT_MEMOS];
	size_t start = b->len;

	memcpy(k.saddr, ev->saddr, 16);
	memcpy(k.daddr, ev->daddr, 16);
	if (memo_put(m, &k, sizeof(k), b))
		return;
	if (ev->l4 == 6)
		tcp_flag_letters(ev->tcp_flags, flags);
	put_tuple(b, ev->l3 == 6 ? 6 : 4, ev->l4, ev->saddr, ev->daddr, ports, ev->sport, ev->dport,
		  ev->l4 == 6 ? flags : NULL);
	put_owners(w, b, ev);
	memo_keep(m, &k, sizeof(k), b, start);
}

/* "vxlan vni 42: inner tuple" (src/reading/tuple-format.ts formatTunnel). */
static void put_tunnel(struct buf *b, const struct pwru_tunnel *t)
{
	static const char *const kinds[] = { "unknown", "vxlan", "geneve", "ipip", "gre" };
	const char *kind = t->kind < sizeof(kinds) / sizeof(kinds[0]) ? kinds[t->kind] : kinds[0];

	put_str(b, kind);
	if (t->vni) {
		put_str(b, strcmp(kind, "gre") == 0 ? " key " : " vni ");
		put_u64(b, t->vni);
	}
	if (t->l3 == 4 || t->l3 == 6) {
		PUT(b, ": ");
		put_tuple(b, t->l3, t->l4, t->saddr, t->daddr, t->l4 == 6 || t->l4 == 17, t->sport, t->dport, NULL);
	}
}

static const char *probe_name(const struct event_names *n, uint32_t id, char *tmp, size_t len)
{
	const char *name = id < n->nprobes ? n->probe_name[id] : NULL;

	if (name)
		return name;
	snprintf(tmp, len, "probe#%u", id);
	return tmp;
}

/* The drop's reason as the client names it. */
static const char *reason_name(const struct event_names *n, const struct pwru_event *ev, char *tmp, size_t len)
{
	const char *name;

	if (!(ev->flags & PWRU_F_HAS_REASON))
		return "UNKNOWN";
	name = ev->drop_reason < n->ndrop_reasons ? n->drop_reason[ev->drop_reason] : NULL;
	if (name)
		return name;
	snprintf(tmp, len, "REASON_%u", ev->drop_reason);
	return tmp;
}

/* FUNC, or FUNC(REASON) on a drop (src/output/text.ts formatFunc). */
static void put_func(struct text_writer *w, struct buf *b, const struct pwru_event *ev)
{
	char tmp[32];

	put_str(b, probe_name(w->names, ev->probe_id, tmp, sizeof(tmp)));
	if (ev->flags & PWRU_F_DROP) {
		PUT(b, "(");
		put_str(b, reason_name(w->names, ev, tmp, sizeof(tmp)));
		PUT(b, ")");
	}
}

/* src/reading/verdicts.ts dropLocation: the caller, else the packet's step before, else this step. */
static void drop_place(struct text_writer *w, const struct pwru_event *ev, const struct step_info *step, char *out,
		       size_t len)
{
	char sym[320], tmp[32];

	if (ev->caller) {
		w->names->describe(w->names->ctx, ev->caller, sym, sizeof(sym));
		base_func(sym, out, len);
		return;
	}
	base_func(probe_name(w->names, step->first ? ev->probe_id : step->prev_probe, tmp, sizeof(tmp)), out, len);
}

/* The bracketed notes after FUNC: a tunnel's inner packet, what changed, what a drop means. */
static void put_annotations(struct text_writer *w, struct buf *b, const struct pwru_event *ev,
			    const struct pwru_tunnel *tun, const struct step_info *step)
{
	if (tun) {
		PUT(b, "  [");
		put_tunnel(b, tun);
		PUT(b, "]");
	}
	if (step->changes) {
		struct step_state now;

		step_state_of(ev, &now);
		PUT(b, "  [");
		put_changes(w->notes, b, step, &now);
		PUT(b, "]");
	}
	if (ev->flags & PWRU_F_DROP) {
		struct drop_note_memo *m = &w->drop_note;
		char tmp[32], at[128];
		const char *reason = reason_name(w->names, ev, tmp, sizeof(tmp));

		drop_place(w, ev, step, at, sizeof(at));
		if (!m->set || strcmp(m->reason, reason) != 0 || strcmp(m->at, at) != 0) {
			snprintf(m->reason, sizeof(m->reason), "%s", reason);
			snprintf(m->at, sizeof(m->at), "%s", at);
			m->text.len = 0;
			text_notes_drop(w->notes, reason, at, &m->text);
			m->set = !out_of_memory();
		}
		PUT(b, "  [");
		buf_put(b, m->text.p, m->text.len);
		PUT(b, "]");
	}
}

/* IFACE's label: "name:index", or the name alone without an index (src/output/text.ts ifaceLabel). */
static void put_iface(struct buf *b, const struct pwru_event *ev)
{
	put_latin1(b, ev->ifname, sizeof(ev->ifname));
	if (ev->ifindex) {
		PUT(b, ":");
		put_u64(b, ev->ifindex);
	}
}

/* The columns from CPU to LEN that both views share, each followed by a space; IFACE is view's own. */
static void put_mark(struct buf *b, uint32_t mark)
{
	size_t start = b->len;

	put_hex(b, mark);
	/* put_hex writes "0x": the column has the digits alone. */
	memmove(b->p + start, b->p + start + 2, b->len - start - 2);
	b->len -= 2;
	pad_from(b, start, 8);
}

static void put_l3_column(struct buf *b, uint16_t protocol)
{
	static const char hex[] = "0123456789abcdef";
	char t[7] = { '0', 'x', hex[protocol >> 12 & 0xf], hex[protocol >> 8 & 0xf], hex[protocol >> 4 & 0xf],
		      hex[protocol & 0xf], ' ' };

	buf_put(b, t, sizeof(t));
}

static void put_skb(struct buf *b, uint64_t skb)
{
	size_t start = b->len;

	put_hex(b, skb);
	pad_from(b, start, 18);
}

static void put_where(struct text_writer *w, struct buf *b, const struct pwru_event *ev);

/* What the text view's columns from CPU to LEN are made of (no padding: every byte is a field). */
struct where_key {
	uint32_t cpu, netns, mark, ifindex, mtu, len;
	uint16_t protocol, zero;
	char comm[16], ifname[16];
};

_Static_assert(sizeof(struct where_key) <= sizeof(((struct text_memo *)0)->key), "where_key fits the memo");

static void put_text_line(struct text_writer *w, struct buf *b, const struct pwru_event *ev,
			  const struct pwru_tunnel *tun, const struct step_info *step)
{
	size_t start;
	struct where_key k = { ev->cpu, ev->netns, ev->mark, ev->ifindex, ev->mtu, ev->len, ev->protocol, 0,
			       { 0 }, { 0 } };
	struct text_memo *m = &w->where[ev->cpu % TEXT_MEMOS];

	put_skb(b, ev->skb);
	PUT(b, " ");
	memcpy(k.comm, ev->comm, 16);
	memcpy(k.ifname, ev->ifname, 16);
	if (!memo_put(m, &k, sizeof(k), b)) {
		size_t where = b->len;

		put_where(w, b, ev);
		memo_keep(m, &k, sizeof(k), b, where);
	}
	start = b->len;
	put_event_tuple(w, b, ev);
	size_t tuple = chars_from(b, start);
	if (tuple > w->tuple_width)
		w->tuple_width = tuple;
	spaces(b, w->tuple_width - tuple);
	PUT(b, " ");
	put_func(w, b, ev);
	if (tun || step->changes || (ev->flags & PWRU_F_DROP))
		put_annotations(w, b, ev, tun, step);
}

/* CPU to LEN, each column followed by its space. */
static void put_where(struct text_writer *w, struct buf *b, const struct pwru_event *ev)
{
	size_t start;

	put_u64_pad(b, ev->cpu, 3);
	PUT(b, " ");
	start = b->len;
	PUT(b, "[");
	put_latin1(b, ev->comm, sizeof(ev->comm));
	PUT(b, "]");
	pad_from(b, start, 16);
	PUT(b, " ");
	put_u64_pad(b, ev->netns, 10);
	PUT(b, " ");
	put_mark(b, ev->mark);
	PUT(b, " ");
	/* IFACE centred in 16 */
	w->scratch.len = 0;
	put_iface(&w->scratch, ev);
	size_t label = chars_from(&w->scratch, 0), left = label < 16 ? (16 - label) / 2 : 0;
	spaces(b, left);
	buf_put(b, w->scratch.p, w->scratch.len);
	spaces(b, label < 16 ? 16 - label - left : 0);
	PUT(b, " ");
	put_l3_column(b, ev->protocol);
	put_u64_pad(b, ev->mtu, 5);
	PUT(b, " ");
	put_u64_pad(b, ev->len, 5);
	PUT(b, " ");
}

/* HH:MM:SS.mmm of the event's wall-clock millisecond (src/output/wide.ts clock). */
static void put_clock(struct text_writer *w, struct buf *b, uint64_t ts)
{
	int64_t ms = wall_ms(w->real_ms, w->mono_base_ms, ts);

	if (!w->clock.set || ms != w->clock.ms) {
		int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
		int64_t day = ((sec % 86400) + 86400) % 86400;

		snprintf(w->clock.text, sizeof(w->clock.text), "%02d:%02d:%02d.%03d", (int)(day / 3600),
			 (int)(day / 60 % 60), (int)(day % 60), (int)(ms - sec * 1000));
		w->clock.ms = ms;
		w->clock.set = true;
	}
	buf_put(b, w->clock.text, 12);
}

/* "+12.3µs" since the packet's first step, as Number.prototype.toFixed(1) rounds (src/output/wide.ts sinceFirst). */
static void put_since(struct buf *b, uint64_t first, uint64_t now)
{
	int64_t d = (int64_t)(now - first);
	double x = (double)d / 1000;
	char text[48];

	/* toFixed rounds an exact half away from zero; printf to even. x is an exact half when d is 250 × odd. */
	if (d % 250 == 0 && (d / 250) % 2 != 0)
		x += d > 0 ? 0.01 : -0.01;
	snprintf(text, sizeof(text), "+%.1f\xc2\xb5s", x);
	size_t start = b->len;
	put_str(b, text);
	pad_from(b, start, 10);
}

static void put_pkt_type(struct buf *b, uint8_t t)
{
	static const char *const names[] = { "host",	 "broadcast", "multicast", "otherhost",
					     "outgoing", "loopback",  "user",	   "kernel" };
	size_t start = b->len;

	if (t < sizeof(names) / sizeof(names[0]))
		put_str(b, names[t]);
	else
		put_u64(b, t);
	pad_from(b, start, 9);
}

/* What was written from start on, padded to a width that grows to fit it. */
static void pad_growing(struct buf *b, size_t start, size_t *width)
{
	size_t n = chars_from(b, start);

	if (n > *width)
		*width = n;
	spaces(b, *width - n);
}

static void put_wide_line(struct text_writer *w, struct buf *b, const struct pwru_event *ev,
			  const struct pwru_tunnel *tun, const struct step_info *step)
{
	size_t start;

	put_clock(w, b, ev->ts);
	PUT(b, " ");
	put_since(b, step->first_ts, ev->ts);
	PUT(b, " ");
	start = b->len;
	PUT(b, "#");
	put_u64(b, step->packet);
	pad_from(b, start, 5);
	PUT(b, " ");
	put_skb(b, ev->skb);
	PUT(b, " ");
	put_u64_pad(b, ev->cpu, 3);
	PUT(b, " ");
	start = b->len;
	put_latin1(b, ev->comm, sizeof(ev->comm));
	PUT(b, ":");
	put_u64(b, ev->pid);
	pad_growing(b, start, &w->process_width);
	PUT(b, " ");
	put_u64_pad(b, ev->netns, 10);
	PUT(b, " ");
	put_mark(b, ev->mark);
	PUT(b, " ");
	start = b->len;
	put_iface(b, ev);
	pad_growing(b, start, &w->iface_width);
	PUT(b, " ");
	put_l3_column(b, ev->protocol);
	put_u64_pad(b, ev->mtu, 5);
	PUT(b, " ");
	put_u64_pad(b, ev->len, 5);
	PUT(b, " ");
	put_pkt_type(b, ev->pkt_type);
	PUT(b, " ");
	start = b->len;
	put_event_tuple(w, b, ev);
	pad_growing(b, start, &w->tuple_width);
	PUT(b, " ");
	start = b->len;
	put_func(w, b, ev);
	if (ev->caller) {
		char sym[320];

		pad_growing(b, start, &w->func_width);
		PUT(b, " ");
		w->names->describe(w->names->ctx, ev->caller, sym, sizeof(sym));
		put_latin1(b, sym, sizeof(sym));
	} else {
		/* The line's end is trimmed: no padding after FUNC, but the column still grows. */
		size_t n = chars_from(b, start);
		if (n > w->func_width)
			w->func_width = n;
	}
	put_annotations(w, b, ev, tun, step);
}

int text_writer_init(struct text_writer *w, const struct event_names *names, const struct text_notes *notes,
		     bool wide)
{
	memset(w, 0, sizeof(*w));
	w->names = names;
	w->notes = notes;
	w->wide = wide;
	/* The client's layouts' starting widths (src/output/text.ts TextLayout, wide.ts WideLayout). */
	w->tuple_width = 40;
	w->func_width = 28;
	w->process_width = 20;
	w->iface_width = 14;
	w->real_ms = (double)(names->real_ns / 1000000);
	w->mono_base_ms = (double)(names->mono_ns / 1000) / 1000;
	return 0;
}

void text_writer_free(struct text_writer *w)
{
	buf_free(&w->scratch);
	for (int i = 0; i < TEXT_MEMOS; i++) {
		buf_free(&w->where[i].text);
		buf_free(&w->tuple[i].text);
	}
	buf_free(&w->drop_note.text);
	memset(w, 0, sizeof(*w));
}

void event_text(struct text_writer *w, const struct pwru_event *ev, const struct pwru_tunnel *tun,
		const struct step_info *step, struct buf *b)
{
	if (w->wide)
		put_wide_line(w, b, ev, tun, step);
	else
		put_text_line(w, b, ev, tun, step);
	if (ev->stack_id >= 0 && w->names->stack_text)
		w->names->stack_text(w->names->ctx, ev->stack_id, b);
	PUT(b, "\n");
}
