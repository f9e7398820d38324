// SPDX-License-Identifier: Apache-2.0
#include "event_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void reserve(struct line_buf *lb, size_t extra)
{
	if (lb->len + extra <= lb->cap)
		return;
	size_t cap = lb->cap ? lb->cap : 4096;
	while (cap < lb->len + extra)
		cap *= 2;
	char *p = realloc(lb->p, cap);
	if (!p) {
		fprintf(stderr, "pwru-helper: out of memory\n");
		exit(1);
	}
	lb->p = p;
	lb->cap = cap;
}

/* The hot path of every line: a few dozen small appends. */
static inline void put(struct line_buf *lb, const char *s, size_t n)
{
	if (__builtin_expect(lb->len + n > lb->cap, 0))
		reserve(lb, n);
	memcpy(lb->p + lb->len, s, n);
	lb->len += n;
}

void line_buf_put(struct line_buf *lb, const char *s, size_t n)
{
	put(lb, s, n);
}

void line_buf_free(struct line_buf *lb)
{
	free(lb->p);
	memset(lb, 0, sizeof(*lb));
}

#define PUT(lb, lit) put(lb, lit, sizeof(lit) - 1)

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
				  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
				  "8081828384858687888990919293949596979899";

/* Decimal, written in place two digits a step: a line has a dozen numbers, timestamps of 14 digits among them. */
static void put_u64(struct line_buf *lb, uint64_t v)
{
	int digits = 1;

	/* Four digits a step: the timestamps' 14 digits are most of the counting. */
	for (uint64_t t = v; t >= 10; t /= 10) {
		if (t >= 10000) {
			t /= 1000;
			digits += 3;
		}
		digits++;
	}
	if (lb->len + 20 > lb->cap)
		reserve(lb, 20);
	char *end = lb->p + lb->len + digits, *o = end;
	while (v >= 100) {
		uint64_t q = v / 100;
		unsigned r = (unsigned)(v - q * 100);

		o -= 2;
		o[0] = digit_pairs[2 * r];
		o[1] = digit_pairs[2 * r + 1];
		v = q;
	}
	if (v >= 10) {
		o -= 2;
		o[0] = digit_pairs[2 * v];
		o[1] = digit_pairs[2 * v + 1];
	} else {
		*--o = (char)('0' + v);
	}
	lb->len += digits;
}

#define TEXT_OF(x) #x
#define TEXT_OF_VALUE(x) TEXT_OF(x)
#define JSON_SCHEMA_TEXT TEXT_OF_VALUE(PWRU_JSON_SCHEMA_VERSION)

static void put_hex(struct line_buf *lb, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[20];
	int i = sizeof(tmp);

	do {
		tmp[--i] = digits[v & 0xf];
		v >>= 4;
	} while (v);
	tmp[--i] = 'x';
	tmp[--i] = '0';
	put(lb, tmp + i, sizeof(tmp) - i);
}

/* As JSON.stringify writes a string the client decoded as latin1 (names are raw kernel bytes). */
void line_buf_str(struct line_buf *lb, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;

	if (lb->len + 2 + 6 * max > lb->cap)
		reserve(lb, 2 + 6 * max);
	char *o = lb->p + lb->len;
	*o++ = '"';
	for (size_t i = 0; i < max && p[i]; i++) {
		unsigned char c = p[i];

		if (__builtin_expect(c >= 0x20 && c < 0x80 && c != '"' && c != '\\', 1)) {
			*o++ = (char)c; /* names are plain ASCII nearly always */
		} else if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c >= 0x80) {
			*o++ = (char)(0xc0 | (c >> 6));
			*o++ = (char)(0x80 | (c & 0x3f));
		} else {
			const char *short_esc = c == '\b' ? "b" : c == '\f' ? "f" : c == '\n' ? "n" : c == '\r' ? "r"
						: c == '\t' ? "t" : NULL;
			*o++ = '\\';
			if (short_esc) {
				*o++ = *short_esc;
			} else {
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[c >> 4];
				*o++ = hex[c & 0xf];
			}
		}
	}
	*o++ = '"';
	lb->len = (size_t)(o - lb->p);
}

/*
 * The text of a group of fields, kept with the event bytes it was made from:
 * a packet's steps through one device, and the packets of one flow, repeat
 * them event after event, and copying text is cheaper than making it again.
 */
struct group_memo {
	uint8_t key[64];
	bool set;
	struct line_buf text;
};

/* Appends m's text when it was made from key. */
static bool memo_put(struct group_memo *m, const void *key, size_t len, struct line_buf *lb)
{
	if (!m->set || memcmp(m->key, key, len) != 0)
		return false;
	put(lb, m->text.p, m->text.len);
	return true;
}

/* Remembers lb's text from start on, made from key. */
static void memo_keep(struct group_memo *m, const void *key, size_t len, const struct line_buf *lb, size_t start)
{
	memcpy(m->key, key, len);
	m->text.len = 0;
	put(&m->text, lb->p + start, lb->len - start);
	m->set = true;
}

/* A timestamp: a run of events shares all but the last six digits, whose text is kept. */
static void put_ts(struct line_buf *lb, uint64_t ts)
{
	static struct group_memo high_memo;
	uint64_t high = ts / 1000000;
	unsigned low = (unsigned)(ts % 1000000);
	size_t start = lb->len;

	if (!high) {
		put_u64(lb, ts);
		return;
	}
	if (!memo_put(&high_memo, &high, sizeof(high), lb)) {
		put_u64(lb, high);
		memo_keep(&high_memo, &high, sizeof(high), lb, start);
	}
	if (lb->len + 6 > lb->cap)
		reserve(lb, 6);
	char *o = lb->p + lb->len;
	memcpy(o, &digit_pairs[2 * (low / 10000)], 2);
	memcpy(o + 2, &digit_pairs[2 * (low / 100 % 100)], 2);
	memcpy(o + 4, &digit_pairs[2 * (low % 100)], 2);
	lb->len += 6;
}

/* A 16-byte name (process, device) as JSON text: a trace names a few, over and over. */
static void put_name16(struct line_buf *lb, struct group_memo *memos, size_t nmemos, const char name[16])
{
	uint64_t key[2];
	size_t start = lb->len;

	memcpy(key, name, 16);
	struct group_memo *m = &memos[((key[0] ^ (key[1] * 31)) * 0x9E3779B97F4A7C15ULL >> 40) % nmemos];
	if (memo_put(m, key, sizeof(key), lb))
		return;
	line_buf_str(lb, name, 16);
	memo_keep(m, key, sizeof(key), lb, start);
}

static void put_cstr(struct line_buf *lb, const char *s)
{
	line_buf_str(lb, s, strlen(s));
}

/* A string known to need no escaping (kernel identifiers, our own names): quoted and copied. */
static void put_plain(struct line_buf *lb, const char *s)
{
	size_t n = strlen(s);

	if (lb->len + n + 2 > lb->cap)
		reserve(lb, n + 2);
	lb->p[lb->len] = '"';
	memcpy(lb->p + lb->len + 1, s, n);
	lb->p[lb->len + 1 + n] = '"';
	lb->len += n + 2;
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

/* src/record/address.ts: dotted quad, or RFC 5952 (longest run of two or more zero groups as "::"). */
static void format_addr(uint8_t family, const uint8_t *b, char *out, size_t len)
{
	uint16_t g[8];
	int best = -1, best_len = 1, n = 0;

	if (family == 4) {
		snprintf(out, len, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		return;
	}
	for (int i = 0; i < 8; i++)
		g[i] = (uint16_t)(b[2 * i] << 8 | b[2 * i + 1]);
	if (!g[0] && !g[1] && !g[2] && !g[3] && !g[4] && g[5] == 0xffff) {
		snprintf(out, len, "::ffff:%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
		return;
	}
	for (int i = 0; i < 8;) {
		if (g[i]) {
			i++;
			continue;
		}
		int j = i;
		while (j < 8 && !g[j])
			j++;
		if (j - i > best_len) {
			best = i;
			best_len = j - i;
		}
		i = j;
	}
	out[0] = 0;
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			n += snprintf(out + n, len - n, "::");
			i += best_len - 1;
			continue;
		}
		bool sep = i > 0 && i != best + best_len;
		n += snprintf(out + n, len - n, "%s%x", sep ? ":" : "", g[i]);
	}
}

/* IPv4 addresses repeat: remember the JSON text of the last few. */
static void put_addr(struct line_buf *lb, uint8_t family, const uint8_t *b)
{
	static struct {
		uint32_t v4;
		bool set;
		uint8_t len;
		char text[20];
	} cache[256];
	char text[48];

	if (family == 4) {
		uint32_t v;
		memcpy(&v, b, 4);
		unsigned slot = (v * 0x9E3779B1u) >> 24;
		if (!cache[slot].set || cache[slot].v4 != v) {
			format_addr(4, b, text, sizeof(text));
			cache[slot].len = (uint8_t)snprintf(cache[slot].text, sizeof(cache[slot].text), "\"%s\"", text);
			cache[slot].v4 = v;
			cache[slot].set = true;
		}
		put(lb, cache[slot].text, cache[slot].len);
		return;
	}
	format_addr(6, b, text, sizeof(text));
	put_plain(lb, text);
}

static const char *l4_name(uint8_t l4)
{
	switch (l4) {
	case 1:
		return "ICMP";
	case 6:
		return "TCP";
	case 17:
		return "UDP";
	case 58:
		return "ICMPv6";
	case 132:
		return "SCTP";
	}
	return NULL;
}

static void put_l4(struct line_buf *lb, uint8_t l4)
{
	const char *name = l4_name(l4);

	if (name) {
		put_plain(lb, name);
		return;
	}
	PUT(lb, "\"");
	put_u64(lb, l4);
	PUT(lb, "\"");
}

static void put_l3(struct line_buf *lb, uint16_t protocol)
{
	char hex[8];

	switch (protocol) {
	case 0x0800:
		PUT(lb, "\"IPv4\"");
		return;
	case 0x86dd:
		PUT(lb, "\"IPv6\"");
		return;
	case 0x0806:
		PUT(lb, "\"ARP\"");
		return;
	case 0x8100:
		PUT(lb, "\"802.1Q\"");
		return;
	}
	snprintf(hex, sizeof(hex), "0x%04x", protocol);
	put_cstr(lb, hex);
}

static void put_tcp_flags(struct line_buf *lb, uint8_t f)
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
	put_cstr(lb, n ? s : "none");
}

/* new Date(ms).toISOString(): events come in bursts within one millisecond. */
static void put_time(struct line_buf *lb, int64_t real_ns)
{
	static int64_t last_ms = -1, last_sec = -1;
	static char text[32], day[24];
	static size_t text_len;
	int64_t ms = real_ns >= 0 ? real_ns / 1000000 : -((-real_ns + 999999) / 1000000);

	if (ms != last_ms) {
		int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
		if (sec != last_sec) {
			time_t t = (time_t)sec;
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
			last_sec = sec;
		}
		text_len = (size_t)snprintf(text, sizeof(text), "\"%s.%03dZ\"", day, (int)(ms - sec * 1000));
		last_ms = ms;
	}
	put(lb, text, text_len);
}

static void put_pkt_type(struct line_buf *lb, uint8_t t)
{
	static const char *const names[] = { "host",	 "broadcast", "multicast", "otherhost",
					     "outgoing", "loopback",  "user",	   "kernel" };

	if (t < sizeof(names) / sizeof(names[0])) {
		put_plain(lb, names[t]);
		return;
	}
	PUT(lb, "\"");
	put_u64(lb, t);
	PUT(lb, "\"");
}

/* A change's value on one side, as the reader writes it (src/reading/packets.ts detectChanges). */
static void put_change_value(struct line_buf *lb, enum change_field f, const struct step_state *s)
{
	char hex[16];

	switch (f) {
	case CH_PROTO:
		put_l4(lb, s->l4);
		return;
	case CH_SRC:
		put_addr(lb, s->family, s->saddr);
		return;
	case CH_DST:
		put_addr(lb, s->family, s->daddr);
		return;
	case CH_SPORT:
	case CH_DPORT:
		PUT(lb, "\"");
		put_u64(lb, f == CH_SPORT ? s->sport : s->dport);
		PUT(lb, "\"");
		return;
	case CH_IFACE:
		line_buf_str(lb, s->iface, sizeof(s->iface));
		return;
	case CH_NETNS:
		PUT(lb, "\"");
		put_u64(lb, s->netns);
		PUT(lb, "\"");
		return;
	case CH_MARK:
		snprintf(hex, sizeof(hex), "0x%x", s->mark);
		put_cstr(lb, hex);
		return;
	case CH_L3PROTO:
		put_l3(lb, s->l3proto);
		return;
	}
}

static void put_changes(struct line_buf *lb, const struct step_info *step, const struct pwru_event *ev)
{
	static const char *const fields[] = { "proto", "src", "sport", "dst", "dport", "iface", "netns", "mark", "l3proto" };
	struct step_state now;
	bool first = true;

	step_state_of(ev, &now);
	PUT(lb, ",\"changes\":[");
	for (int f = CH_PROTO; f <= CH_L3PROTO; f++) {
		if (!(step->changes & (1u << f)))
			continue;
		if (!first)
			PUT(lb, ",");
		first = false;
		PUT(lb, "{\"field\":");
		put_cstr(lb, fields[f]);
		PUT(lb, ",\"from\":");
		put_change_value(lb, (enum change_field)f, &step->before);
		PUT(lb, ",\"to\":");
		put_change_value(lb, (enum change_field)f, &now);
		PUT(lb, "}");
	}
	PUT(lb, "]");
}

static struct group_memo comms[8], ifnames[16];

/* `","func":NAME,"probe":KIND` of each probe, made once. */
static void put_probe(struct line_buf *lb, const struct event_names *n, uint32_t id, const char *name)
{
	static struct line_buf *texts;
	static uint32_t ntexts;

	if (!texts && n->nprobes) {
		texts = calloc(n->nprobes, sizeof(*texts));
		ntexts = texts ? n->nprobes : 0;
	}
	struct line_buf one = { 0 }, *t = id < ntexts ? &texts[id] : &one;
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
	put(lb, t->p, t->len);
	line_buf_free(&one);
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

#define GROUP_MEMOS 8 /* by CPU: each CPU's events are a run of one packet's steps */
static struct group_memo where_memos[GROUP_MEMOS], tuple_memos[GROUP_MEMOS];

/* The skb's address: consecutive events are mostly the same packet's steps. */
static void put_skb(struct line_buf *lb, uint64_t skb)
{
	static struct group_memo memo;
	size_t start = lb->len;

	if (memo_put(&memo, &skb, sizeof(skb), lb))
		return;
	put_hex(lb, skb);
	memo_keep(&memo, &skb, sizeof(skb), lb, start);
}

/* ,"cpu":…,"pktType":… */
static void put_where(struct line_buf *lb, const struct pwru_event *ev)
{
	struct where_key k = { ev->cpu, ev->pid, ev->netns, ev->mark, ev->ifindex, ev->mtu, ev->len,
			       ev->protocol, ev->pkt_type, 0, { 0 }, { 0 } };
	struct group_memo *m = &where_memos[ev->cpu % GROUP_MEMOS];
	size_t start = lb->len;

	_Static_assert(sizeof(k) <= sizeof(m->key), "where_key fits the memo");
	memcpy(k.comm, ev->comm, 16);
	memcpy(k.ifname, ev->ifname, 16);
	if (memo_put(m, &k, sizeof(k), lb))
		return;
	PUT(lb, ",\"cpu\":");
	put_u64(lb, ev->cpu);
	PUT(lb, ",\"pid\":");
	put_u64(lb, ev->pid);
	PUT(lb, ",\"process\":");
	put_name16(lb, comms, sizeof(comms) / sizeof(comms[0]), ev->comm);
	PUT(lb, ",\"netns\":");
	put_u64(lb, ev->netns);
	PUT(lb, ",\"mark\":");
	put_u64(lb, ev->mark);
	PUT(lb, ",\"ifindex\":");
	put_u64(lb, ev->ifindex);
	PUT(lb, ",\"iface\":");
	put_name16(lb, ifnames, sizeof(ifnames) / sizeof(ifnames[0]), ev->ifname);
	PUT(lb, ",\"l3proto\":");
	put_l3(lb, ev->protocol);
	PUT(lb, ",\"mtu\":");
	put_u64(lb, ev->mtu);
	PUT(lb, ",\"len\":");
	put_u64(lb, ev->len);
	PUT(lb, ",\"pktType\":");
	put_pkt_type(lb, ev->pkt_type);
	memo_keep(m, &k, sizeof(k), lb, start);
}

/* ,"caller":"name+0xoff": a trace sees a few callers (who frees, who drops) over and over. */
static void put_caller(struct line_buf *lb, const struct event_names *n, uint64_t caller)
{
	static struct group_memo memos[16];
	struct group_memo *m = &memos[(caller * 0x9E3779B97F4A7C15ULL) >> 60];
	size_t start = lb->len;
	char sym[320];

	if (memo_put(m, &caller, sizeof(caller), lb))
		return;
	PUT(lb, ",\"caller\":");
	n->describe(caller, sym, sizeof(sym));
	put_cstr(lb, sym);
	/* An address without its name (symbols still loading) is not kept: it is named when seen again. */
	if (strncmp(sym, "0x", 2) != 0)
		memo_keep(m, &caller, sizeof(caller), lb, start);
}

/* ,"tuple":{…} when the packet's addresses were read */
static void put_tuple(struct line_buf *lb, const struct pwru_event *ev)
{
	if (!(ev->flags & PWRU_F_HAS_TUPLE))
		return;

	struct tuple_key k = { 1, ev->l3, ev->l4, ev->tcp_flags, ev->icmp_type, ev->icmp_code, ev->sport, ev->dport,
			       { 0 }, { 0 } };
	struct group_memo *m = &tuple_memos[ev->cpu % GROUP_MEMOS];
	uint8_t family = ev->l3 == 6 ? 6 : 4;
	size_t start = lb->len;

	_Static_assert(sizeof(k) <= sizeof(m->key), "tuple_key fits the memo");
	memcpy(k.saddr, ev->saddr, 16);
	memcpy(k.daddr, ev->daddr, 16);
	if (memo_put(m, &k, sizeof(k), lb))
		return;
	PUT(lb, ",\"tuple\":{\"family\":");
	put_u64(lb, family);
	PUT(lb, ",\"proto\":");
	put_l4(lb, ev->l4);
	PUT(lb, ",\"src\":");
	put_addr(lb, family, ev->saddr);
	PUT(lb, ",\"dst\":");
	put_addr(lb, family, ev->daddr);
	if (ev->l4 == 6 || ev->l4 == 17 || ev->l4 == 132) {
		PUT(lb, ",\"sport\":");
		put_u64(lb, ev->sport);
		PUT(lb, ",\"dport\":");
		put_u64(lb, ev->dport);
		if (ev->l4 == 6) {
			PUT(lb, ",\"tcpFlags\":");
			put_tcp_flags(lb, ev->tcp_flags);
		}
	} else if (ev->l4 == 1 || ev->l4 == 58) {
		PUT(lb, ",\"icmpType\":");
		put_u64(lb, ev->icmp_type);
		PUT(lb, ",\"icmpCode\":");
		put_u64(lb, ev->icmp_code);
	}
	PUT(lb, "}");
	memo_keep(m, &k, sizeof(k), lb, start);
}

void event_json(const struct event_names *n, const struct pwru_event *ev, const struct step_info *step,
		struct line_buf *lb)
{
	const char *name = ev->probe_id < n->nprobes ? n->probe_name[ev->probe_id] : NULL;

	PUT(lb, "{\"type\":\"event\",\"v\":" JSON_SCHEMA_TEXT ",\"ts\":\"");
	put_ts(lb, ev->ts);
	PUT(lb, "\",\"time\":");
	put_time(lb, (int64_t)ev->ts + n->real_minus_mono_ns);
	PUT(lb, ",\"skb\":\"");
	put_skb(lb, ev->skb);
	put_probe(lb, n, ev->probe_id, name);
	put_where(lb, ev);
	if (ev->caller)
		put_caller(lb, n, ev->caller);
	put_tuple(lb, ev);
	if (ev->flags & PWRU_F_DROP) {
		if (ev->flags & PWRU_F_HAS_REASON) {
			const char *reason =
				ev->drop_reason < n->ndrop_reasons ? n->drop_reason[ev->drop_reason] : NULL;

			PUT(lb, ",\"drop\":{\"reason\":");
			if (reason) {
				put_cstr(lb, reason);
			} else {
				PUT(lb, "\"REASON_");
				put_u64(lb, ev->drop_reason);
				PUT(lb, "\"");
			}
			PUT(lb, ",\"code\":");
			put_u64(lb, ev->drop_reason);
			PUT(lb, "}");
		} else {
			PUT(lb, ",\"drop\":{\"reason\":\"UNKNOWN\"}");
		}
	}
	if (ev->flags & PWRU_F_FREED)
		PUT(lb, ",\"freed\":true");
	if (ev->flags & PWRU_F_TRACKED)
		PUT(lb, ",\"tracked\":true");
	if (ev->stack_id >= 0) {
		PUT(lb, ",\"stack\":");
		if (!n->stack_json(ev->stack_id, lb))
			PUT(lb, "[]");
	}
	PUT(lb, ",\"packet\":");
	put_u64(lb, step->packet);
	if (step->changes)
		put_changes(lb, step, ev);
	PUT(lb, "}\n");
}
