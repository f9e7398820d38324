// SPDX-License-Identifier: Apache-2.0
/*
 * pwru-replay: a test build, not shipped. Reads a record stream the helper
 * wrote (binary events, as in test/fixtures/streams/) and writes the JSON
 * lines the helper writes with --emit json for the same events, with the same
 * code (event_json.c, packet_track.c, digest.c), then the digest as one last
 * line. test/unit/record/twins.test.ts requires the client's lines for the
 * same stream, byte for byte: the twins are held together without root or BPF.
 * With --emit text or wide, the text views' lines instead (event_text.c,
 * test/unit/record/text-twins.test.ts), with the client's --text-notes.
 *
 * With --units OUT (text and wide), the finished packets the helper would send
 * the client for its closing table (packet_book.c) go to OUT as a record
 * stream: the input's frames other than events, then PACKET_DONE frames
 * with their EVENT frames; --whole-first N as the helper's BOOK_WHOLE_FIRST.
 *
 *   pwru-replay [--packet-starts LIST] [--emit json|text|wide] [--text-notes NOTES]
 *               [--units OUT [--whole-first N]] FILE
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "buf.h"
#include "digest.h"
#include "event_json.h"
#include "event_text.h"
#include "packet_book.h"
#include "packet_track.h"

/* ---- just enough JSON to read the stream's frames ---- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype t;
	double num;
	char *str;	    /* J_STR: UTF-8, NUL-terminated */
	struct jval *items; /* J_ARR, J_OBJ: n values */
	char **keys;	    /* J_OBJ: n keys */
	size_t n;
};

struct jparser {
	const char *p, *end;
	bool bad;
};

static void skip_ws(struct jparser *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
		j->p++;
}

static void put_utf8(struct buf *b, unsigned cp)
{
	char u[4];

	if (cp < 0x80) {
		u[0] = (char)cp;
		buf_put(b, u, 1);
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		buf_put(b, u, 2);
	} else {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		buf_put(b, u, 3);
	}
}

static char *parse_string(struct jparser *j)
{
	struct buf b = { 0 };

	j->p++; /* the opening quote */
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;

		if (c != '\\') {
			buf_put(&b, &c, 1);
			continue;
		}
		if (j->p >= j->end)
			break;
		c = *j->p++;
		switch (c) {
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u': {
			unsigned cp = 0;
			for (int i = 0; i < 4 && j->p < j->end; i++, j->p++)
				cp = cp * 16 + (unsigned)(*j->p <= '9' ? *j->p - '0' : (*j->p | 0x20) - 'a' + 10);
			put_utf8(&b, cp);
			continue;
		}
		default:
			break; /* \" \\ \/ */
		}
		buf_put(&b, &c, 1);
	}
	if (j->p >= j->end)
		j->bad = true;
	j->p++;
	buf_put(&b, "", 1);
	return b.p;
}

static void parse_value(struct jparser *j, struct jval *v);

static void parse_container(struct jparser *j, struct jval *v, bool object)
{
	size_t cap = 0;

	v->t = object ? J_OBJ : J_ARR;
	j->p++;
	skip_ws(j);
	if (j->p < j->end && *j->p == (object ? '}' : ']')) {
		j->p++;
		return;
	}
	while (!j->bad && j->p < j->end) {
		if (v->n == cap) {
			cap = cap ? cap * 2 : 8;
			v->items = realloc(v->items, cap * sizeof(*v->items));
			v->keys = object ? realloc(v->keys, cap * sizeof(*v->keys)) : NULL;
			if (!v->items || (object && !v->keys)) {
				j->bad = true;
				return;
			}
		}
		skip_ws(j);
		if (object) {
			if (*j->p != '"') {
				j->bad = true;
				return;
			}
			v->keys[v->n] = parse_string(j);
			skip_ws(j);
			if (*j->p++ != ':') {
				j->bad = true;
				return;
			}
		}
		parse_value(j, &v->items[v->n++]);
		skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == (object ? '}' : ']')) {
			j->p++;
			return;
		}
		j->bad = true;
	}
}

static void parse_value(struct jparser *j, struct jval *v)
{
	memset(v, 0, sizeof(*v));
	skip_ws(j);
	if (j->p >= j->end) {
		j->bad = true;
	} else if (*j->p == '{' || *j->p == '[') {
		parse_container(j, v, *j->p == '{');
	} else if (*j->p == '"') {
		v->t = J_STR;
		v->str = parse_string(j);
	} else if (*j->p == 't' || *j->p == 'f' || *j->p == 'n') {
		v->t = *j->p == 'n' ? J_NULL : J_BOOL;
		v->num = *j->p == 't';
		while (j->p < j->end && *j->p >= 'a' && *j->p <= 'z')
			j->p++;
	} else {
		char *after;
		v->t = J_NUM;
		v->num = strtod(j->p, &after);
		if (after == j->p)
			j->bad = true;
		j->p = after;
	}
}

static void jfree(struct jval *v)
{
	for (size_t i = 0; i < v->n; i++) {
		jfree(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->str);
}

static const struct jval *jget(const struct jval *o, const char *key)
{
	for (size_t i = 0; o->t == J_OBJ && i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return &o->items[i];
	return NULL;
}

static const char *jstr(const struct jval *o, const char *key)
{
	const struct jval *v = jget(o, key);
	return v && v->t == J_STR ? v->str : NULL;
}

/* ---- what the frames tell ---- */

struct symbol {
	uint64_t addr;
	char *name;
};

static struct {
	struct symbol *symbols;
	size_t nsymbols;
	struct buf *stacks; /* JSON array text by stack id; len 0 = unknown */
	struct buf *stack_lines; /* the same frames as the text views' lines */
	size_t nstacks;
	char **probe_names, **probe_kinds, **reasons;
	uint32_t nprobes, nreasons;
} R;

static void describe(void *ctx, uint64_t addr, char *out, size_t len)
{
	(void)ctx;
	for (size_t i = 0; i < R.nsymbols; i++) {
		if (R.symbols[i].addr == addr) {
			snprintf(out, len, "%s", R.symbols[i].name);
			return;
		}
	}
	snprintf(out, len, "0x%llx", (unsigned long long)addr);
}

static bool stack_json(void *ctx, int32_t id, struct buf *b)
{
	(void)ctx;
	if (id < 0 || (size_t)id >= R.nstacks || !R.stacks[id].len)
		return false;
	buf_put(b, R.stacks[id].p, R.stacks[id].len);
	return true;
}

static void on_ready(const struct jval *ready)
{
	const struct jval *probes = jget(ready, "probes"), *reasons = jget(ready, "drop_reasons");

	for (size_t i = 0; probes && i < probes->n; i++) {
		const struct jval *id = jget(&probes->items[i], "id");
		if (id && id->num + 1 > R.nprobes)
			R.nprobes = (uint32_t)id->num + 1;
	}
	R.probe_names = calloc(R.nprobes + 1, sizeof(char *));
	R.probe_kinds = calloc(R.nprobes + 1, sizeof(char *));
	for (size_t i = 0; probes && i < probes->n; i++) {
		uint32_t id = (uint32_t)jget(&probes->items[i], "id")->num;
		R.probe_names[id] = strdup(jstr(&probes->items[i], "name"));
		R.probe_kinds[id] = strdup(jstr(&probes->items[i], "kind"));
	}
	for (size_t i = 0; reasons && i < reasons->n; i++) {
		unsigned long v = strtoul(reasons->keys[i], NULL, 10);
		if (v < MAX_DROP_REASON && v + 1 > R.nreasons)
			R.nreasons = (uint32_t)v + 1;
	}
	R.reasons = calloc(R.nreasons + 1, sizeof(char *));
	for (size_t i = 0; reasons && i < reasons->n; i++) {
		unsigned long v = strtoul(reasons->keys[i], NULL, 10);
		if (v < R.nreasons)
			R.reasons[v] = strdup(reasons->items[i].str);
	}
}

static void on_stack(const struct jval *stack)
{
	const struct jval *frames = jget(stack, "frames");
	size_t id = (size_t)jget(stack, "id")->num;

	if (id >= R.nstacks) {
		R.stacks = realloc(R.stacks, (id + 1) * sizeof(*R.stacks));
		memset(R.stacks + R.nstacks, 0, (id + 1 - R.nstacks) * sizeof(*R.stacks));
		R.stack_lines = realloc(R.stack_lines, (id + 1) * sizeof(*R.stack_lines));
		memset(R.stack_lines + R.nstacks, 0, (id + 1 - R.nstacks) * sizeof(*R.stack_lines));
		R.nstacks = id + 1;
	}
	R.stacks[id].len = 0;
	R.stack_lines[id].len = 0;
	BUF_PUT_LIT(&R.stacks[id], "[");
	for (size_t i = 0; frames && i < frames->n; i++) {
		BUF_PUT_LIT(&R.stack_lines[id], "\n    ");
		buf_put(&R.stack_lines[id], frames->items[i].str, strlen(frames->items[i].str));
		if (i)
			BUF_PUT_LIT(&R.stacks[id], ",");
		buf_json_string(&R.stacks[id], frames->items[i].str, strlen(frames->items[i].str), TEXT_LATIN1);
	}
	BUF_PUT_LIT(&R.stacks[id], "]");
}

static FILE *units_out;

static void put_frame(uint16_t type, const void *payload, uint32_t len)
{
	struct pwru_frame_header h = { .len = len, .type = type };

	fwrite(&h, sizeof(h), 1, units_out);
	fwrite(payload, 1, len, units_out);
}

static void send_unit(const struct book_unit *u, const struct pwru_event *steps, uint32_t nsteps)
{
	char json[4096];
	int n = snprintf(json, sizeof(json), "{\"id\":%u,\"count\":%llu,\"steps\":%u", u->id,
			 (unsigned long long)u->count, nsteps);

	if (u->copy_of)
		n += snprintf(json + n, sizeof(json) - n, ",\"copy_of\":%u", u->copy_of);
	if (u->copied)
		n += snprintf(json + n, sizeof(json) - n, ",\"copied\":true");
	if (u->replaced_by)
		n += snprintf(json + n, sizeof(json) - n, ",\"replaced_by\":%u", u->replaced_by);
	if (u->ncopies) {
		n += snprintf(json + n, sizeof(json) - n, ",\"copies\":[");
		for (uint32_t i = 0; i < u->ncopies && n < (int)sizeof(json) - 16; i++)
			n += snprintf(json + n, sizeof(json) - n, "%s%u", i ? "," : "", u->copies[i]);
		n += snprintf(json + n, sizeof(json) - n, "]");
	}
	if (u->open)
		n += snprintf(json + n, sizeof(json) - n, ",\"open\":true");
	n += snprintf(json + n, sizeof(json) - n, "}");
	put_frame(PWRU_FRAME_PACKET_DONE, json, (uint32_t)n);
	for (uint32_t i = 0; i < nsteps; i++)
		put_frame(PWRU_FRAME_EVENT, &steps[i], sizeof(steps[i]));
}

static bool stack_text(void *ctx, int32_t id, struct buf *b)
{
	(void)ctx;
	if (id < 0 || (size_t)id >= R.nstacks || !R.stacks[id].len)
		return false;
	buf_put(b, R.stack_lines[id].p, R.stack_lines[id].len);
	return true;
}

int main(int argc, char **argv)
{
	const char *packet_starts = "", *path = NULL, *emit = "json", *notes_text = "", *units = NULL;
	uint32_t whole_first = BOOK_WHOLE_FIRST;
	struct packet_book book = { 0 };
	struct event_names names = { .describe = describe, .stack_json = stack_json, .stack_text = stack_text };
	struct addr_names owners = { 0 };
	struct json_writer writer;
	struct text_writer text;
	struct text_notes notes;
	struct packet_tracker tracker = { 0 };
	struct digest digest = { 0 };
	struct buf all = { 0 }, line = { 0 };
	bool *starts = NULL, ready = false;
	char chunk[65536];
	uint64_t events = 0;
	size_t n, pos = 0;
	struct pwru_tunnel tunnel;
	bool has_tunnel = false;
	struct pwru_copy copy;
	bool has_copy = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--packet-starts") == 0 && i + 1 < argc)
			packet_starts = argv[++i];
		else if (strcmp(argv[i], "--emit") == 0 && i + 1 < argc)
			emit = argv[++i];
		else if (strcmp(argv[i], "--text-notes") == 0 && i + 1 < argc)
			notes_text = argv[++i];
		else if (strcmp(argv[i], "--units") == 0 && i + 1 < argc)
			units = argv[++i];
		else if (strcmp(argv[i], "--whole-first") == 0 && i + 1 < argc)
			whole_first = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--line-node") == 0 && i + 1 < argc)
			names.node = argv[++i];
		else if (strcmp(argv[i], "--addr-names") == 0 && i + 1 < argc) {
			if (addr_names_load(&owners, argv[++i])) {
				fprintf(stderr, "pwru-replay: --addr-names %s: cannot read it\n", argv[i]);
				return 2;
			}
			names.owners = &owners;
		} else
			path = argv[i];
	}
	bool as_text = strcmp(emit, "text") == 0 || strcmp(emit, "wide") == 0;
	if ((!as_text && strcmp(emit, "json") != 0) || text_notes_parse(&notes, notes_text)) {
		fprintf(stderr, "pwru-replay: --emit json|text|wide, and --text-notes as src/output/text-notes.ts writes them\n");
		return 2;
	}
	if (units && !(units_out = fopen(units, "wb"))) {
		fprintf(stderr, "pwru-replay: %s: %s\n", units, strerror(errno));
		return 2;
	}
	packet_book_init(&book, send_unit, whole_first);
	FILE *f = path ? fopen(path, "rb") : NULL;
	if (!f) {
		fprintf(stderr, "usage: pwru-replay [--packet-starts LIST] FILE (%s)\n", path ? strerror(errno) : "no FILE");
		return 2;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_put(&all, chunk, n);
	fclose(f);
	digest_init(&digest);

	while (pos + sizeof(struct pwru_frame_header) <= all.len) {
		struct pwru_frame_header h;

		memcpy(&h, all.p + pos, sizeof(h));
		const char *payload = all.p + pos + sizeof(h);
		if (pos + sizeof(h) + h.len > all.len) {
			fprintf(stderr, "pwru-replay: %s ends inside a frame\n", path);
			return 1;
		}
		pos += sizeof(h) + h.len;
		/* TUNNEL: the inner packet of the next event's tunnel. */
		if (h.type == PWRU_FRAME_TUNNEL && h.len >= sizeof(tunnel)) {
			memcpy(&tunnel, payload, sizeof(tunnel));
			has_tunnel = true;
			continue;
		}
		/* COPY: what the next event's skb was copied from. */
		if (h.type == PWRU_FRAME_COPY && h.len >= sizeof(copy)) {
			memcpy(&copy, payload, sizeof(copy));
			has_copy = true;
			continue;
		}
		if (h.type == PWRU_FRAME_EVENT) {
			struct pwru_event ev;
			struct step_info step;

			if (!ready || h.len < sizeof(ev)) {
				fprintf(stderr, "pwru-replay: an event before READY, or a short one\n");
				return 1;
			}
			memcpy(&ev, payload, sizeof(ev));
			const struct pwru_copy *cp = has_copy && copy.ts == ev.ts && copy.skb == ev.skb ? &copy : NULL;
			has_copy = false;
			packet_track_step(&tracker, &ev, &step);
			if (units_out)
				packet_book_step(&book, &ev, cp, &step);
			if (ev.flags & PWRU_F_DROP)
				digest_drop(&digest, &names, &ev, &step);
			line.len = 0;
			bool ours = has_tunnel && tunnel.ts == ev.ts && tunnel.skb == ev.skb;
			has_tunnel = false;
			if (as_text)
				event_text(&text, &ev, ours ? &tunnel : NULL, &step, &line);
			else
				event_json(&writer, &ev, ours ? &tunnel : NULL, cp, &step, &line);
			fwrite(line.p, 1, line.len, stdout);
			events++;
			continue;
		}
		if (units_out && h.type != PWRU_FRAME_PACKET && h.type != PWRU_FRAME_STATS && h.type != PWRU_FRAME_END)
			put_frame(h.type, payload, h.len);
		if (h.type != PWRU_FRAME_HELLO && h.type != PWRU_FRAME_READY && h.type != PWRU_FRAME_SYMBOL &&
		    h.type != PWRU_FRAME_STACK)
			continue;
		struct jparser j = { .p = payload, .end = payload + h.len };
		struct jval v;
		parse_value(&j, &v);
		if (j.bad || v.t != J_OBJ) {
			fprintf(stderr, "pwru-replay: a frame of type %u is not a JSON object\n", h.type);
			return 1;
		}
		if (h.type == PWRU_FRAME_HELLO) {
			names.mono_ns = strtoll(jstr(&v, "mono_ns"), NULL, 10);
			names.real_ns = strtoll(jstr(&v, "real_ns"), NULL, 10);
		} else if (h.type == PWRU_FRAME_READY) {
			on_ready(&v);
			names.probe_name = (const char *const *)R.probe_names;
			names.probe_kind = (const char *const *)R.probe_kinds;
			names.nprobes = R.nprobes;
			names.drop_reason = (const char *const *)R.reasons;
			names.ndrop_reasons = R.nreasons;
			starts = packet_starts_of(names.probe_name, R.nprobes, packet_starts);
			if (!starts || json_writer_init(&writer, &names) || packet_track_init(&tracker, starts, R.nprobes) ||
			    text_writer_init(&text, &names, &notes, strcmp(emit, "wide") == 0))
				return 1;
			ready = true;
		} else if (h.type == PWRU_FRAME_SYMBOL) {
			R.symbols = realloc(R.symbols, (R.nsymbols + 1) * sizeof(*R.symbols));
			R.symbols[R.nsymbols].addr = strtoull(jstr(&v, "addr"), NULL, 16);
			R.symbols[R.nsymbols++].name = strdup(jstr(&v, "name"));
		} else {
			on_stack(&v);
		}
		jfree(&v);
	}
	if (units_out) {
		packet_book_finish(&book);
		packet_book_free(&book);
		fclose(units_out);
	}
	/* The digest the helper would send (DIGEST), as one more line. */
	printf("{\"type\":\"digest\",\"packets\":%u,\"events\":%llu,\"drops\":[", packet_track_count(&tracker),
	       (unsigned long long)events);
	for (size_t i = 0; i < digest.ndrops; i++)
		printf("%s{\"reason\":\"%s\",\"at\":\"%s\",\"count\":%llu}", i ? "," : "", digest.drops[i].reason,
		       digest.drops[i].at, (unsigned long long)digest.drops[i].count);
	printf("]}\n");
	return out_of_memory() ? 1 : 0;
}
