// SPDX-License-Identifier: Apache-2.0
#include "event_json.h"
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PUT(b, lit) BUF_PUT_LIT(b, lit)

#define TEXT_OF(x) #x
#define TEXT_OF_VALUE(x) TEXT_OF(x)
#define JSON_SCHEMA_TEXT TEXT_OF_VALUE(PWRU_JSON_SCHEMA_VERSION)

/* Appends m's text when it was made from key. */
static bool memo_put(struct group_memo *m, const void *key, size_t len, struct buf *b)
{
	if (!m->set || memcmp(m->key, key, len) != 0)
		return false;
	buf_put(b, m->text.p, m->text.len);
	return true;
}

/* Remembers b's text from start on, made from key. */
static void memo_keep(struct group_memo *m, const void *key, size_t len, const struct buf *b, size_t start)
{
	memcpy(m->key, key, len);
	m->text.len = 0;
	buf_put(&m->text, b->p + start, b->len - start);
	m->set = !out_of_memory();
}

static void memo_free(struct group_memo *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf_free(&m[i].text);
}

#define MEMOS(a) (sizeof(a) / sizeof((a)[0]))

/* A timestamp: a run of events shares all but the last six digits, whose text is kept. */
static void put_ts(struct json_writer *w, struct buf *b, uint64_t ts)
{
	uint64_t high = ts / 1000000;
	unsigned low = (unsigned)(ts % 1000000);
	size_t start = b->len;

	if (!high) {
		put_u64(b, ts);
		return;
	}
	if (!memo_put(&w->ts_high, &high, sizeof(high), b)) {
		put_u64(b, high);
		memo_keep(&w->ts_high, &high, sizeof(high), b, start);
	}
	if (!buf_reserve(b, 6))
		return;
	char *o = b->p + b->len;
	memcpy(o, &fmt_digit_pairs[2 * (low / 10000)], 2);
	memcpy(o + 2, &fmt_digit_pairs[2 * (low / 100 % 100)], 2);
	memcpy(o + 4, &fmt_digit_pairs[2 * (low % 100)], 2);
	b->len += 6;
}

/* A string of raw kernel bytes, as JSON.stringify writes what the client decoded as latin1. */
static void put_cstr(struct buf *b, const char *s)
{
	buf_json_string(b, s, strlen(s), TEXT_LATIN1);
}

/* Our own text (a node's name, an address's owner) as JSON.stringify writes it. */
static void put_utf8(struct buf *b, const char *s)
{
	buf_json_string(b, s, strlen(s), TEXT_UTF8);
}

/* A 16-byte name (process, device) as JSON text: a trace names a few, over and over. */
static void put_name16(struct buf *b, struct group_memo *memos, size_t nmemos, const char name[16])
{
	uint64_t key[2];
	size_t start = b->len;

	memcpy(key, name, 16);
	struct group_memo *m = &memos[((key[0] ^ (key[1] * 31)) * 0x9E3779B97F4A7C15ULL >> 40) % nmemos];
	if (memo_put(m, key, sizeof(key), b))
		return;
	buf_json_string(b, name, 16, TEXT_LATIN1);
	memo_keep(m, key, sizeof(key), b, start);
}

/* A string known to need no escaping (kernel identifiers, our own names): quoted and copied. */
static void put_plain(struct buf *b, const char *s)
{
	size_t n = strlen(s);

	if (!buf_reserve(b, n + 2))
		return;
	b->p[b->len] = '"';
	memcpy(b->p + b->len + 1, s, n);
	b->p[b->len + 1 + n] = '"';
	b->len += n + 2;
}

/* Identifier characters only: what BTF names of functions and tracepoints are made of. */
static bool plain(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '.' || *s == ':' || *s == '+' || *s == '-'))
			return false;
	return true;
}

/* IPv4 addresses repeat: their JSON text is kept by address. */
static void put_addr(struct json_writer *w, struct buf *b, uint8_t family, const uint8_t *a)
{
	char text[48];

	if (family == 4) {
		uint32_t v;
		memcpy(&v, a, 4);
		unsigned slot = (v * 0x9E3779B1u) >> 24;
		if (!w->v4_text[slot].set || w->v4_text[slot].v4 != v) {
			format_addr(4, a, text, sizeof(text));
			w->v4_text[slot].len = (uint8_t)snprintf(w->v4_text[slot].text, sizeof(w->v4_text[slot].text),
								 "\"%s\"", text);
			w->v4_text[slot].v4 = v;
			w->v4_text[slot].set = true;
		}
		buf_put(b, w->v4_text[slot].text, w->v4_text[slot].len);
		return;
	}
	format_addr(6, a, text, sizeof(text));
	put_plain(b, text);
}

static void put_l4(struct buf *b, uint8_t l4)
{
	const char *name = l4_name(l4);

	if (name) {
		put_plain(b, name);
		return;
	}
	PUT(b, "\"");
	put_u64(b, l4);
	PUT(b, "\"");
}

static void put_l3(struct buf *b, uint16_t protocol)
{
	char hex[8];

	switch (protocol) {
	case 0x0800:
		PUT(b, "\"IPv4\"");
		return;
	case 0x86dd:
		PUT(b, "\"IPv6\"");
		return;
	case 0x0806:
		PUT(b, "\"ARP\"");
		return;
	case 0x8100:
		PUT(b, "\"802.1Q\"");
		return;
	}
	snprintf(hex, sizeof(hex), "0x%04x", protocol);
	put_cstr(b, hex);
}

static void put_tcp_flags(struct buf *b, uint8_t f)
{
	char s[10];
	int n = 0;

	if (f & 0x01)
		s[n++] = 'F';
	if (f & 0x02)
		s[n++] = 'S';
	if (f & 0x04)
		s[n++] = 'R';
	if (f & 0x08)
		s[n++] = 'P';
	if (f & 0x20)
		s[n++] = 'U';
	if (f & 0x40)
		s[n++] = 'E';
	if (f & 0x80)
		s[n++] = 'W';
	if (f & 0x10)
		s[n++] = '.';
	s[n] = 0;
	put_cstr(b, n ? s : "none");
}


/*
 * new Date(ms).toISOString() of the event's wall-clock millisecond, computed
 * as src/record/decode.ts computes it (the same doubles, the same rounding),
 * so that both writers name the same millisecond.
 */
static void put_time(struct json_writer *w, struct buf *b, uint64_t ts)
{
	int64_t ms = wall_ms(w->real_ms, w->mono_base_ms, ts);

	if (ms != w->time.ms || !w->time.len) {
		int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
		if (sec != w->time.sec || !w->time.len) {
			time_t t = (time_t)sec;
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(w->time.day, sizeof(w->time.day), "%Y-%m-%dT%H:%M:%S", &tm);
			w->time.sec = sec;
		}
		w->time.len = (size_t)snprintf(w->time.text, sizeof(w->time.text), "\"%s.%03dZ\"", w->time.day,
					       (int)(ms - sec * 1000));
		w->time.ms = ms;
	}
	buf_put(b, w->time.text, w->time.len);
}

static void put_pkt_type(struct buf *b, uint8_t t)
{
	static const char *const names[] = { "host",	 "broadcast", "multicast", "otherhost",
					     "outgoing", "loopback",  "user",	   "kernel" };

	if (t < sizeof(names) / sizeof(names[0])) {
		put_plain(b, names[t]);
		return;
	}
	PUT(b, "\"");
	put_u64(b, t);
	PUT(b, "\"");
}

/* A change's value on one side, as the reader writes it (src/reading/changes.ts detectChanges). */
static void put_change_value(struct json_writer *w, struct buf *b, enum change_field f, const struct step_state *s)
{
	char hex[16];

	switch (f) {
	case CH_PROTO:
		put_l4(b, s->l4);
		return;
	case CH_SRC:
		put_addr(w, b, s->family, s->saddr);
		return;
	case CH_DST:
		put_addr(w, b, s->family, s->daddr);
		return;
	case CH_SPORT:
	case CH_DPORT:
		PUT(b, "\"");
		put_u64(b, f == CH_SPORT ? s->sport : s->dport);
		PUT(b, "\"");
		return;
	case CH_IFACE:
		buf_json_string(b, s->iface, sizeof(s->iface), TEXT_LATIN1);
		return;
	case CH_NETNS:
		PUT(b, "\"");
		put_u64(b, s->netns);
		PUT(b, "\"");
		return;
	case CH_MARK:
		snprintf(hex, sizeof(hex), "0x%x", s->mark);
		put_cstr(b, hex);
		return;
	case CH_L3PROTO:
		put_l3(b, s->l3proto);
		return;
	}
}

static void put_changes(struct json_writer *w, struct buf *b, const struct step_info *step, const struct pwru_event *ev)
{
	static const char *const fields[] = { "proto", "src", "sport", "dst", "dport", "iface", "netns", "mark", "l3proto" };
	struct step_state now;
	bool first = true;

	step_state_of(ev, &now);
	PUT(b, ",\"changes\":[");
	for (int f = CH_PROTO; f <= CH_L3PROTO; f++) {
		if (!(step->changes & (1u << f)))
			continue;
		if (!first)
			PUT(b, ",");
		first = false;
		PUT(b, "{\"field\":");
		put_plain(b, fields[f]);
		PUT(b, ",\"from\":");
		put_change_value(w, b, (enum change_field)f, &step->before);
		PUT(b, ",\"to\":");
		put_change_value(w, b, (enum change_field)f, &now);
		PUT(b, "}");
	}
	PUT(b, "]");
}

/* `","func":NAME,"probe":KIND` of a probe: made once per probe id. */
static void put_probe(struct json_writer *w, struct buf *b, uint32_t id)
{
	const struct event_names *n = w->names;
	const char *name = id < n->nprobes ? n->probe_name[id] : NULL;
	struct buf one = { 0 }, *t = id < n->nprobes ? &w->probe_texts[id] : &one;

	if (!t->len) {
		PUT(t, "\",\"func\":");
		if (name) {
			if (plain(name))
				put_plain(t, name);
			else
				put_cstr(t, name);
		} else {
			PUT(t, "\"probe#");
			put_u64(t, id);
			PUT(t, "\"");
		}
		PUT(t, ",\"probe\":");
		put_plain(t, name ? n->probe_kind[id] : "tracepoint");
	}
	buf_put(b, t->p, t->len);
	buf_free(&one);
}

/* What "cpu" to "pktType" are made of (no padding: every byte is a field). */
struct where_key {
	uint32_t cpu, pid, netns, mark, ifindex, mtu, len;
	uint16_t protocol;
	uint8_t pkt_type, zero;
	char comm[16], ifname[16];
};

/* What "tuple" is made of. */
struct tuple_key {
	uint8_t has_tuple, l3, l4, tcp_flags, icmp_type, icmp_code;
	uint16_t sport, dport;
	uint8_t saddr[16], daddr[16];
};

_Static_assert(sizeof(struct where_key) <= sizeof(((struct group_memo *)0)->key), "where_key fits the memo");
_Static_assert(sizeof(struct tuple_key) <= sizeof(((struct group_memo *)0)->key), "tuple_key fits the memo");

/* The skb's address: consecutive events are mostly the same packet's steps. */
static void put_skb(struct json_writer *w, struct buf *b, uint64_t skb)
{
	size_t start = b->len;

	if (memo_put(&w->skb, &skb, sizeof(skb), b))
		return;
	put_hex(b, skb);
	memo_keep(&w->skb, &skb, sizeof(skb), b, start);
}

/* ,"cpu":…,"pktType":… */
static void put_where(struct json_writer *w, struct buf *b, const struct pwru_event *ev)
{
	struct where_key k = { ev->cpu, ev->pid, ev->netns, ev->mark, ev->ifindex, ev->mtu, ev->len,
			       ev->protocol, ev->pkt_type, 0, { 0 }, { 0 } };
	struct group_memo *m = &w->where[ev->cpu % WHERE_MEMOS];
	size_t start = b->len;

	memcpy(k.comm, ev->comm, 16);
	memcpy(k.ifname, ev->ifname, 16);
	if (memo_put(m, &k, sizeof(k), b))
		return;
	PUT(b, ",\"cpu\":");
	put_u64(b, ev->cpu);
	PUT(b, ",\"pid\":");
	put_u64(b, ev->pid);
	PUT(b, ",\"process\":");
	put_name16(b, w->comms, MEMOS(w->comms), ev->comm);
	PUT(b, ",\"netns\":");
	put_u64(b, ev->netns);
	PUT(b, ",\"mark\":");
	put_u64(b, ev->mark);
	PUT(b, ",\"ifindex\":");
	put_u64(b, ev->ifindex);
	PUT(b, ",\"iface\":");
	put_name16(b, w->ifnames, MEMOS(w->ifnames), ev->ifname);
	PUT(b, ",\"l3proto\":");
	put_l3(b, ev->protocol);
	PUT(b, ",\"mtu\":");
	put_u64(b, ev->mtu);
	PUT(b, ",\"len\":");
	put_u64(b, ev->len);
	PUT(b, ",\"pktType\":");
	put_pkt_type(b, ev->pkt_type);
	memo_keep(m, &k, sizeof(k), b, start);
}

/* ,"caller":"name+0xoff": a trace sees a few callers (who frees, who drops) over and over. */
static void put_caller(struct json_writer *w, struct buf *b, uint64_t caller)
{
	struct group_memo *m = &w->callers[(caller * 0x9E3779B97F4A7C15ULL) >> 60];
	size_t start = b->len;
	char sym[320];

	if (memo_put(m, &caller, sizeof(caller), b))
		return;
	PUT(b, ",\"caller\":");
	w->names->describe(w->names->ctx, caller, sym, sizeof(sym));
	put_cstr(b, sym);
	memo_keep(m, &caller, sizeof(caller), b, start);
}

/* ,"srcName":…,"dstName":… of the addresses whose owners --addr-names gave */
static void put_owners(struct json_writer *w, struct buf *b, uint8_t family, const struct pwru_event *ev)
{
	const char *src, *dst;

	if (!w->names->owners)
		return;
	addr_names_of_pair(w->names->owners, family, ev->saddr, ev->daddr, &src, &dst);
	if (src) {
		PUT(b, ",\"srcName\":");
		put_utf8(b, src);
	}
	if (dst) {
		PUT(b, ",\"dstName\":");
		put_utf8(b, dst);
	}
}

/* ,"tuple":{…} when the packet's addresses were read */
static void put_tuple(struct json_writer *w, struct buf *b, const struct pwru_event *ev)
{
	if (!(ev->flags & PWRU_F_HAS_TUPLE))
		return;

	struct tuple_key k = { 1, ev->l3, ev->l4, ev->tcp_flags, ev->icmp_type, ev->icmp_code, ev->sport, ev->dport,
			       { 0 }, { 0 } };
	struct group_memo *m = &w->tuple[ev->cpu % WHERE_MEMOS];
	uint8_t family = ev->l3 == 6 ? 6 : 4;
	size_t start = b->len;

	memcpy(k.saddr, ev->saddr, 16);
	memcpy(k.daddr, ev->daddr, 16);
	if (memo_put(m, &k, sizeof(k), b))
		return;
	PUT(b, ",\"tuple\":{\"family\":");
	put_u64(b, family);
	PUT(b, ",\"proto\":");
	put_l4(b, ev->l4);
	PUT(b, ",\"src\":");
	put_addr(w, b, family, ev->saddr);
	PUT(b, ",\"dst\":");
	put_addr(w, b, family, ev->daddr);
	if (ev->l4 == 6 || ev->l4 == 17 || ev->l4 == 132) {
		PUT(b, ",\"sport\":");
		put_u64(b, ev->sport);
		PUT(b, ",\"dport\":");
		put_u64(b, ev->dport);
		if (ev->l4 == 6) {
			PUT(b, ",\"tcpFlags\":");
			put_tcp_flags(b, ev->tcp_flags);
		}
	} else if (ev->l4 == 1 || ev->l4 == 58) {
		PUT(b, ",\"icmpType\":");
		put_u64(b, ev->icmp_type);
		PUT(b, ",\"icmpCode\":");
		put_u64(b, ev->icmp_code);
	}
	put_owners(w, b, family, ev);
	PUT(b, "}");
	memo_keep(m, &k, sizeof(k), b, start);
}

/* ,"tunnel":{kind, vni?, inner?} when the packet is a tunnel (bpf/event.h, struct pwru_tunnel) */
static void put_tunnel(struct json_writer *w, struct buf *b, const struct pwru_tunnel *t)
{
	static const char *const kinds[] = { "unknown", "vxlan", "geneve", "ipip", "gre" };
	const char *kind = t->kind < sizeof(kinds) / sizeof(kinds[0]) ? kinds[t->kind] : kinds[0];

	PUT(b, ",\"tunnel\":{\"kind\":\"");
	buf_put(b, kind, strlen(kind));
	PUT(b, "\"");
	if (t->vni) {
		PUT(b, ",\"vni\":");
		put_u64(b, t->vni);
	}
	if (t->l3 == 4 || t->l3 == 6) {
		PUT(b, ",\"inner\":{\"family\":");
		put_u64(b, t->l3);
		PUT(b, ",\"proto\":");
		put_l4(b, t->l4);
		PUT(b, ",\"src\":");
		put_addr(w, b, t->l3, t->saddr);
		PUT(b, ",\"dst\":");
		put_addr(w, b, t->l3, t->daddr);
		if (t->l4 == 6 || t->l4 == 17) {
			PUT(b, ",\"sport\":");
			put_u64(b, t->sport);
			PUT(b, ",\"dport\":");
			put_u64(b, t->dport);
		}
		PUT(b, "}");
	}
	PUT(b, "}");
}

static void put_drop(const struct event_names *n, struct buf *b, const struct pwru_event *ev)
{
	if (!(ev->flags & PWRU_F_HAS_REASON)) {
		PUT(b, ",\"drop\":{\"reason\":\"UNKNOWN\"}");
		return;
	}
	const char *reason = ev->drop_reason < n->ndrop_reasons ? n->drop_reason[ev->drop_reason] : NULL;

	PUT(b, ",\"drop\":{\"reason\":");
	if (reason) {
		put_cstr(b, reason);
	} else {
		PUT(b, "\"REASON_");
		put_u64(b, ev->drop_reason);
		PUT(b, "\"");
	}
	PUT(b, ",\"code\":");
	put_u64(b, ev->drop_reason);
	PUT(b, "}");
}

/* ,"head":…,"shared":…,"copiedFrom":…,"ipId":…,"seq":…: what tells packets apart and links copies (src/record/decode.ts). */
static void put_data(struct buf *b, const struct pwru_event *ev, const struct pwru_copy *cp)
{
	if (ev->head) {
		PUT(b, ",\"head\":\"");
		put_hex(b, ev->head);
		PUT(b, "\"");
		if (ev->dataref > 1) {
			PUT(b, ",\"shared\":");
			put_u64(b, ev->dataref);
		}
	}
	if (cp) {
		PUT(b, ",\"copiedFrom\":{\"skb\":\"");
		put_hex(b, cp->orig_skb);
		PUT(b, "\",\"head\":\"");
		put_hex(b, cp->orig_head);
		PUT(b, "\"}");
	}
	if (!(ev->flags & PWRU_F_HAS_TUPLE))
		return;
	if (ev->l3 != 6) {
		PUT(b, ",\"ipId\":");
		put_u64(b, ev->ip_id);
	}
	if (ev->l4 == 6) {
		PUT(b, ",\"seq\":");
		put_u64(b, ev->tcp_seq);
	}
}

int json_writer_init(struct json_writer *w, const struct event_names *names)
{
	memset(w, 0, sizeof(*w));
	w->names = names;
	/* src/record/decode.ts: whole milliseconds of CLOCK_REALTIME, microseconds of CLOCK_MONOTONIC. */
	w->real_ms = (double)(names->real_ns / 1000000);
	w->mono_base_ms = (double)(names->mono_ns / 1000) / 1000;
	w->probe_texts = calloc(names->nprobes ? names->nprobes : 1, sizeof(*w->probe_texts));
	return w->probe_texts ? 0 : -1;
}

void json_writer_free(struct json_writer *w)
{
	for (uint32_t i = 0; w->probe_texts && i < w->names->nprobes; i++)
		buf_free(&w->probe_texts[i]);
	free(w->probe_texts);
	memo_free(&w->ts_high, 1);
	memo_free(&w->skb, 1);
	memo_free(w->comms, MEMOS(w->comms));
	memo_free(w->ifnames, MEMOS(w->ifnames));
	memo_free(w->callers, MEMOS(w->callers));
	memo_free(w->where, MEMOS(w->where));
	memo_free(w->tuple, MEMOS(w->tuple));
	memset(w, 0, sizeof(*w));
}

void event_json(struct json_writer *w, const struct pwru_event *ev, const struct pwru_tunnel *tun,
		const struct pwru_copy *cp, const struct step_info *step, struct buf *b)
{
	PUT(b, "{\"type\":\"event\",\"v\":" JSON_SCHEMA_TEXT ",\"ts\":\"");
	put_ts(w, b, ev->ts);
	PUT(b, "\",\"time\":");
	put_time(w, b, ev->ts);
	PUT(b, ",\"skb\":\"");
	put_skb(w, b, ev->skb);
	put_probe(w, b, ev->probe_id);
	put_where(w, b, ev);
	if (ev->caller)
		put_caller(w, b, ev->caller);
	put_tuple(w, b, ev);
	if (tun)
		put_tunnel(w, b, tun);
	if (ev->flags & PWRU_F_DROP)
		put_drop(w->names, b, ev);
	if (ev->flags & PWRU_F_FREED)
		PUT(b, ",\"freed\":true");
	if (ev->flags & PWRU_F_TRACKED)
		PUT(b, ",\"tracked\":true");
	put_data(b, ev, cp);
	if (ev->stack_id >= 0) {
		PUT(b, ",\"stack\":");
		if (!w->names->stack_json(w->names->ctx, ev->stack_id, b))
			PUT(b, "[]");
	}
	if (w->names->node) {
		PUT(b, ",\"node\":");
		put_utf8(b, w->names->node);
	}
	PUT(b, ",\"packet\":");
	put_u64(b, step->packet);
	if (step->changes)
		put_changes(w, b, step, ev);
	PUT(b, "}\n");
}
