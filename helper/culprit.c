// SPDX-License-Identifier: Apache-2.0
#include "culprit.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "culprit_bpf.h"
#include "culprit_netfilter.h"
#include "culprit_tools.h"
#include "culprit_words.h"
#include "event_json.h"
#include "nf_exact.h"
#include "output.h"
#include "prog_exact.h"
#include "stop.h"

#define MAX_NAMESPACES 2048
#define MAX_JOBS 4
#define FIRST_JOBS 4
#define MAX_PENDING 4096
#define MAX_MOVED 16
/* The first readings may cover many namespaces; one more namespace's reading is quick (~30 ms here). */
#define FIRST_TIMEOUT_S 20
#define READ_TIMEOUT_S 5
/* Room a CULPRIT frame or line may need. */
#define CULPRIT_ROOM (64 << 10)

/* A namespace's last reading of its rules. */
struct ns_state {
	unsigned int inode;
	struct nf_ruleset last;
	bool have_last;	   /* read at least once */
	uint64_t read_at;  /* when the last reading was done: a drop before that may be counted in it */
	/* The reading before the last: a drop that came while the last was read lies between it and the next. */
	struct nf_ruleset prev;
	bool have_prev;
	uint64_t prev_read_at;
	char why_not[200]; /* why its rules could not be read */
	bool busy;	   /* a reading is under way */
	char path[300];	   /* where it was last found: tried before scanning /proc again */
};

/* A NETFILTER_DROP waiting for the reading of its namespace that follows it. */
struct pending {
	uint64_t ts, skb;
	unsigned int netns;
	uint8_t l3;
	bool asked_kernel; /* the table walkers are probed (nf_exact.c) */
	bool told;	   /* and their verdict for this drop was read */
	struct nf_exact exact;
	size_t covered;	   /* the drops its rule's counter must have counted (answer_drops) */
};

struct job {
	struct tool_job t;
	bool used, first;
	unsigned int netns; /* 0 for the first readings, which cover many */
};

/*
 * What the kernel said was attached at a point, and when it was asked: a
 * drop that came before that asking gets the same answer (a flood of drops
 * read in one batch asks once); a later drop asks again, since the programs
 * may have changed.
 */
#define PROGS_MAX 16
#define PROGS_CACHE 16
struct progs_seen {
	unsigned int netns, ifindex;
	enum bpf_point point;
	uint64_t at;
	struct attached_prog v[PROGS_MAX];
	int n; /* or -errno */
	char err[200];
};

static struct {
	bool begun, configured, emit_json, emit_text;
	const char *node; /* --line-node: named in the JSON lines */
	bool has_nf_reason;
	uint32_t nf_reason;
	/* The kernel's drop reasons that say a tc or XDP program dropped it (absent on older kernels). */
	int64_t tc_ingress_reason, tc_egress_reason, xdp_reason;
	struct progs_seen progs[PROGS_CACHE];
	size_t progs_next;
	struct ns_state *ns;
	size_t nns;
	struct pending pend[MAX_PENDING];
	size_t npend;
	uint64_t unanswered; /* drops past MAX_PENDING: said to be untold in culprit_finish */
	struct job jobs[MAX_JOBS];
	struct job first[FIRST_JOBS]; /* the namespaces shared out among a few children */
	bool first_done;
	char note[200]; /* the tools are the helper's own, not the node's: why */
} C;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static struct ns_state *ns_get(unsigned int inode, bool add)
{
	if (!C.ns)
		return NULL;
	for (size_t i = 0; i < C.nns; i++)
		if (C.ns[i].inode == inode)
			return &C.ns[i];
	if (!add || C.nns >= MAX_NAMESPACES)
		return NULL;
	memset(&C.ns[C.nns], 0, sizeof(C.ns[C.nns]));
	C.ns[C.nns].inode = inode;
	return &C.ns[C.nns++];
}

/* ---- starting ---- */

static bool first_busy(void)
{
	for (size_t k = 0; k < FIRST_JOBS; k++)
		if (C.first[k].used)
			return true;
	return false;
}

void culprit_begin(unsigned int only_netns)
{
	struct ns_ref *refs = calloc(MAX_NAMESPACES, sizeof(*refs));
	size_t n = 0;

	C.ns = calloc(MAX_NAMESPACES, sizeof(*C.ns));
	if (!refs || !C.ns) {
		free(refs);
		return; /* the trace goes on; drops then say why they could not be told */
	}
	C.begun = true;
	if (only_netns)
		n = tools_find_namespace(only_netns, &refs[0]) ? 1 : 0;
	else
		n = tools_find_namespaces(refs, MAX_NAMESPACES);
	for (size_t i = 0; i < n; i++) {
		struct ns_state *st = ns_get(refs[i].inode, true);

		if (st)
			snprintf(st->path, sizeof(st->path), "%s", refs[i].path);
	}
	/* ~30 ms a namespace: a node with many pods shares them out, so that the trace begins sooner. */
	size_t per = (n + FIRST_JOBS - 1) / FIRST_JOBS;
	for (size_t k = 0, at = 0; k < FIRST_JOBS && at < n; k++, at += per) {
		size_t cnt = n - at < per ? n - at : per;

		if (tools_start(&C.first[k].t, refs + at, cnt, FIRST_TIMEOUT_S) == 0) {
			C.first[k].used = true;
			C.first[k].first = true;
		}
	}
	C.first_done = !first_busy();
	free(refs);
}

void culprit_configure(const struct drop_reasons *reasons, bool emit_json, bool emit_text, const char *node)
{
	C.node = node;
	C.configured = true;
	C.emit_json = emit_json;
	C.emit_text = emit_text;
	C.tc_ingress_reason = C.tc_egress_reason = C.xdp_reason = -1;
	for (size_t i = 0; reasons && i < reasons->cnt; i++) {
		const char *name = reasons->v[i].name;

		if (strcmp(name, "NETFILTER_DROP") == 0) {
			C.has_nf_reason = true;
			C.nf_reason = reasons->v[i].value;
		}
		if (strcmp(name, "TC_INGRESS") == 0)
			C.tc_ingress_reason = reasons->v[i].value;
		if (strcmp(name, "TC_EGRESS") == 0)
			C.tc_egress_reason = reasons->v[i].value;
		if (strcmp(name, "XDP") == 0)
			C.xdp_reason = reasons->v[i].value;
	}
}

/*
 * A file of the namespace: where it was found last, when that still names
 * it, else a new scan (of every process: not for each drop of a flood).
 */
static bool find_namespace(unsigned int netns, struct ns_ref *ref)
{
	struct ns_state *st = ns_get(netns, true);
	struct stat sb;

	if (st && st->path[0] && stat(st->path, &sb) == 0 && sb.st_ino == netns) {
		ref->inode = netns;
		snprintf(ref->path, sizeof(ref->path), "%s", st->path);
		return true;
	}
	if (!tools_find_namespace(netns, ref))
		return false;
	if (st)
		snprintf(st->path, sizeof(st->path), "%s", ref->path);
	return true;
}

/* ---- the answers ---- */

static void rule_json(struct json *j, const struct nf_rule *r, const char *hook, uint64_t counted)
{
	json_begin_object(j);
	json_kv_string(j, "tool", tool_names[r->tool]);
	json_kv_string(j, "family", r->family);
	json_kv_string(j, "table", r->table ? r->table : "");
	json_kv_string(j, "chain", r->chain ? r->chain : "");
	if (*hook)
		json_kv_string(j, "hook", hook);
	if (r->policy)
		json_kv_bool(j, "policy", true);
	else
		json_kv_uint(j, "position", r->position);
	if (r->handle)
		json_kv_uint(j, "handle", r->handle);
	json_kv_string(j, "text", r->text ? r->text : "");
	if (counted)
		json_kv_uint(j, "counted", counted);
	json_end_object(j);
}

/* The fields every CULPRIT begins with: which drop (time, skb, namespace), what kind of culprit, how it was known. */
static void frame_begin(struct json *j, uint64_t ts, uint64_t skb, uint32_t netns, const char *kind,
			const char *method)
{
	char num[32];

	json_begin_object(j);
	if (C.emit_json) {
		json_kv_string(j, "type", "culprit");
		json_kv_int(j, "v", PWRU_JSON_SCHEMA_VERSION);
		if (C.node)
			json_kv_string(j, "node", C.node);
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long)ts);
	json_kv_string(j, "ts", num);
	snprintf(num, sizeof(num), "0x%llx", (unsigned long long)skb);
	json_kv_string(j, "skb", num);
	json_kv_uint(j, "netns", netns);
	json_kv_string(j, "kind", kind);
	json_kv_string(j, "method", method);
}

/* What the kernel's table walkers said of the drop: the table and chain, exactly, or why not. */
static struct chain_words chain_of(const struct pending *p)
{
	if (p->told && p->exact.known)
		return (struct chain_words){ .exact = true,
					     .by = p->exact.by,
					     .family = p->exact.family,
					     .table = p->exact.table,
					     .chain = p->exact.chain,
					     .hook = p->exact.hook };
	return (struct chain_words){
		.why = p->told ? "no iptables or nftables table returned NF_DROP for this packet just before it was "
				 "freed: another netfilter hook dropped it (conntrack, NAT, a BPF netfilter program, ...)"
			       : "the kernel's verdict for this drop was no longer kept (a flood of drops overwrote it)"
	};
}

static void chain_json(struct json *j, const struct chain_words *c)
{
	json_key(j, "chain");
	json_begin_object(j);
	if (c->exact) {
		json_kv_string(j, "method", "exact");
		json_kv_string(j, "by", c->by);
		json_kv_string(j, "family", c->family);
		json_kv_string(j, "table", c->table);
		json_kv_string(j, "chain", c->chain);
		json_kv_string(j, "hook", c->hook);
	} else {
		json_kv_string(j, "method", "none");
		json_kv_string(j, "why", c->why);
	}
	json_end_object(j);
}

/* A culprit's JSON: a line of the trace with --emit json, else a CULPRIT frame. */
static void culprit_out(struct json *j)
{
	if (C.emit_json) {
		BUF_PUT_LIT(&j->b, "\n");
		if (out_lines_room(j->b.len))
			out_line(j->b.p, j->b.len);
	} else {
		out_json_frame(PWRU_FRAME_CULPRIT, j);
	}
}

/* With --emit text|wide, the culprit's line too (culprit_words.h): the helper is the lines' one writer. */
static void culprit_line(const struct buf *line)
{
	if (out_lines_room(line->len))
		out_line(line->p, line->len);
}

/*
 * The rules that moved which can be the one in the table and chain the
 * kernel named: of a tool that shows that table (nft and iptables-nft for
 * nf_tables, the legacy tools for x_tables), reached from that hook. Returns
 * how many are left at the front of moved.
 */
static size_t narrow(const struct nf_exact *x, struct nf_moved *moved, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		const struct nf_rule *r = moved[i].rule;
		bool tool;

		if (x->nft)
			tool = (r->tool == TOOL_NFT && strcmp(r->family, x->family) == 0) ||
			       (r->tool == TOOL_IPT_NFT && strcmp(x->family, "ip") == 0) ||
			       (r->tool == TOOL_IP6T_NFT && strcmp(x->family, "ip6") == 0);
		else
			tool = (r->tool == TOOL_IPT_LEGACY && strcmp(x->family, "ip") == 0) ||
			       (r->tool == TOOL_IP6T_LEGACY && strcmp(x->family, "ip6") == 0);
		if (!tool || !r->table || strcmp(r->table, x->table) != 0)
			continue;
		/* iptables says INPUT where nft says input; a rule reached by no counted jump has no hook to compare. */
		if (moved[i].hook[0] && strcasecmp(moved[i].hook, x->hook) != 0)
			continue;
		moved[k++] = moved[i];
	}
	return k;
}

/* The moved rules, narrowed to the kernel's table and chain when it named them (not for arptables: no tool reads them). */
static size_t moved_for(const struct pending *p, const struct nf_ruleset *before, const struct nf_ruleset *after,
			struct nf_moved *moved, size_t *uncounted, size_t *all)
{
	size_t n = nf_moved_drops(before, after, p->l3, moved, MAX_MOVED, uncounted);

	*all = n;
	if (p->told && p->exact.known && strcmp(p->exact.family, "arp") != 0 && strcmp(p->exact.by, "arpt_do_table") != 0)
		n = narrow(&p->exact, moved, n);
	return n;
}

/* One CULPRIT: a frame, or with --emit json a line of the trace (docs/json-schema.md, "culprit"). */
static void emit(const struct pending *p, const char *method, const struct nf_moved *rule, const char *why,
		 const struct nf_moved *cands, size_t ncands)
{
	struct json j = { 0 };
	struct chain_words chain = chain_of(p);

	frame_begin(&j, p->ts, p->skb, p->netns, "netfilter", method);
	if (p->asked_kernel)
		chain_json(&j, &chain);
	if (rule) {
		json_key(&j, "rule");
		rule_json(&j, rule->rule, rule->hook, rule->delta);
	}
	if (why)
		json_kv_string(&j, "why", why);
	if (ncands) {
		json_key(&j, "candidates");
		json_begin_array(&j);
		for (size_t i = 0; i < ncands; i++)
			rule_json(&j, cands[i].rule, cands[i].hook, cands[i].delta);
		json_end_array(&j);
	}
	json_end_object(&j);
	culprit_out(&j);
	json_free(&j);
	if (C.emit_text) {
		struct buf line = { 0 };

		words_netfilter_culprit(&line, p->skb, method, p->asked_kernel ? &chain : NULL, rule, why, cands, ncands);
		culprit_line(&line);
		buf_free(&line);
	}
}

static void tools_absent(const struct nf_ruleset *rs, unsigned int netns, char *why, size_t len)
{
	snprintf(why, len,
		 "none of the node's netfilter tools (iptables-legacy-save, iptables-nft-save, nft) could be run in "
		 "network namespace %u: %s%s%s",
		 netns, rs->missing[TOOL_NFT] && rs->missing[TOOL_IPT_NFT] ? "not installed" : "they failed",
		 C.note[0] ? "; " : "", C.note);
}

/* Same table and chain, as the kernel named them. */
static bool same_chain(const struct pending *a, const struct pending *b)
{
	return a->exact.by == b->exact.by && strcmp(a->exact.table, b->exact.table) == 0 &&
	       strcmp(a->exact.chain, b->exact.chain) == 0 && strcmp(a->exact.family, b->exact.family) == 0;
}

/*
 * The drops a rule's counter must have counted for p's rule to be the one:
 * those of p's namespace in the span (p among them); only those of p's
 * table and chain when the kernel named them (the rules were narrowed so).
 */
static size_t covered_by(const struct pending *p, uint64_t started)
{
	bool exact = p->told && p->exact.known;
	size_t n = 0;

	for (size_t i = 0; i < C.npend; i++) {
		const struct pending *q = &C.pend[i];

		if (q->netns != p->netns || q->ts >= started)
			continue;
		if (!exact || (q->told && q->exact.known && same_chain(p, q)))
			n++;
	}
	return n;
}

/*
 * The rule the kernel named by its handle (an immediate drop verdict,
 * nf_exact.c), as the reading after the drop prints it: false when the
 * kernel did not name one, or the reading has no such rule (it was deleted
 * meanwhile), and the counters are to say.
 */
static bool emit_exact(const struct pending *p, const struct nf_ruleset *now)
{
	const struct nf_rule *found;
	struct nf_rule r;
	struct nf_moved m = { .rule = &r };

	if (!p->told || !p->exact.known || !p->exact.nft || p->exact.rule != NF_RULE_EXACT)
		return false;
	found = nf_rule_by_handle(now, p->exact.family, p->exact.table, p->exact.rule_chain, p->exact.handle);
	if (!found)
		return false;
	r = *found;
	r.handle = p->exact.handle; /* iptables-nft's rule too: nft's handle of it */
	/* The hook in its tool's words: nft's (input), or iptables-nft's base chain (INPUT). */
	snprintf(m.hook, sizeof(m.hook), "%.15s", r.tool == TOOL_NFT ? p->exact.hook : p->exact.chain);
	emit(p, "exact", &m, NULL, NULL, 0);
	return true;
}

/* The drops a reading of their namespace, started after them, can tell about. */
static void answer_drops(struct ns_state *st, const struct nf_ruleset *now, uint64_t started, const char *why_not)
{
	struct nf_moved moved[MAX_MOVED];
	char why[400];
	size_t covered = 0, nmoved, uncounted, all;
	bool any_tool = false;

	for (int t = 0; t < TOOL_COUNT; t++)
		any_tool |= now->ran[t];
	/* Before any is answered (and taken out of the list): what each one's rule must have counted. */
	for (size_t i = 0; i < C.npend; i++)
		if (C.pend[i].netns == st->inode && C.pend[i].ts < started)
			C.pend[i].covered = covered_by(&C.pend[i], started);
	for (size_t i = 0; i < C.npend;) {
		struct pending p = C.pend[i];

		if (p.netns != st->inode || p.ts >= started) {
			i++;
			continue;
		}
		C.pend[i] = C.pend[--C.npend];
		if (why_not) {
			emit(&p, "none", NULL, why_not, NULL, 0);
			continue;
		}
		if (!any_tool) {
			tools_absent(now, p.netns, why, sizeof(why));
			emit(&p, "none", NULL, why, NULL, 0);
			continue;
		}
		if (emit_exact(&p, now))
			continue;
		if (!st->have_last) {
			snprintf(why, sizeof(why),
				 "the rules of network namespace %u were first read after this drop (the namespace was "
				 "not there when the trace began): their counters cannot say which one counted it",
				 p.netns);
			emit(&p, "none", NULL, why, NULL, 0);
			continue;
		}
		if (p.ts <= st->read_at) {
			/*
			 * It came while the last reading was under way (for an
			 * earlier drop): it may be counted in it or not, so the
			 * span from the reading before is what surely holds it.
			 * One rule that moved over it names both drops.
			 */
			if (st->have_prev && p.ts > st->prev_read_at &&
			    (nmoved = moved_for(&p, &st->prev, now, moved, &uncounted, &all)) == 1) {
				emit(&p, "counters", &moved[0], NULL, NULL, 0);
				continue;
			}
			snprintf(why, sizeof(why),
				 "the drop came while the rules of network namespace %u were being read (for an earlier "
				 "drop, or as the trace began), and the readings around it do not single out one rule "
				 "that drops",
				 p.netns);
			emit(&p, "none", NULL, why, NULL, 0);
			continue;
		}
		nmoved = moved_for(&p, &st->last, now, moved, &uncounted, &all);
		covered = p.covered;
		if (nmoved == 1 && moved[0].delta >= covered) {
			emit(&p, "counters", &moved[0], NULL, NULL, 0);
			continue;
		}
		if (nmoved == 0 && all > 0) {
			snprintf(why, sizeof(why),
				 "no rule that drops in %s %s/%s counted a packet meanwhile (%zu elsewhere did)",
				 p.exact.family, p.exact.table, p.exact.chain, all);
		} else if (nmoved == 0) {
			int n = snprintf(why, sizeof(why),
					 "no netfilter rule that drops counted a packet in network namespace %u meanwhile",
					 p.netns);
			if (uncounted)
				snprintf(why + n, sizeof(why) - (size_t)n,
					 " (%zu rule%s that drop%s no counter: add a counter statement to see %s)",
					 uncounted, uncounted == 1 ? "" : "s", uncounted == 1 ? "s has" : " have",
					 uncounted == 1 ? "it" : "them");
		} else if (nmoved == 1) {
			snprintf(why, sizeof(why), "the only rule that drops and counted packets meanwhile counted %llu, "
						   "but %zu packets were dropped",
				 (unsigned long long)moved[0].delta, covered);
		} else {
			snprintf(why, sizeof(why), "%zu%s rules that drop counted packets meanwhile", nmoved,
				 nmoved == MAX_MOVED ? " or more" : "");
		}
		emit(&p, "none", NULL, why, moved, nmoved);
	}
}

/* A finished reading: each namespace's rules, and the drops it answers. */
static void job_done(struct job *jb)
{
	struct nf_ruleset sets[1] = { { 0 } };
	struct tool_output o;
	size_t off = 0;

	if (jb->first) {
		/* Many namespaces, one after the other: parsed one at a time into their states. */
		struct ns_state *st = NULL;
		struct nf_ruleset cur = { 0 };

		while (tools_next(&jb->t, &off, &o)) {
			struct ns_state *s = ns_get(o.netns, false);

			if (o.tool == TOOL_NOTE)
				snprintf(C.note, sizeof(C.note), "%.*s", (int)o.len, o.text);

			if (!s)
				continue;
			if (s != st) {
				if (st) {
					st->last = cur;
					st->have_last = true;
					memset(&cur, 0, sizeof(cur));
				}
				st = s;
			}
			if (o.tool < 0) {
				snprintf(s->why_not, sizeof(s->why_not), "the rules of network namespace %u could not be "
									  "read: %.*s",
					 o.netns, (int)o.len, o.text);
				continue;
			}
			cur.ran[o.tool] = o.status == 0;
			cur.missing[o.tool] = o.status == 127;
			if (o.at > s->read_at)
				s->read_at = o.at;
			if (o.status == 0)
				nf_parse(&cur, o.tool, o.text, o.len);
		}
		if (st) {
			st->last = cur;
			st->have_last = !st->why_not[0];
		} else {
			nf_ruleset_free(&cur);
		}
		return;
	}

	struct ns_state *st = ns_get(jb->netns, false);
	char why_not[300] = "";
	uint64_t read_at = 0;

	if (!st)
		return;
	st->busy = false;
	while (tools_next(&jb->t, &off, &o)) {
		if (o.tool == TOOL_NOTE)
			snprintf(C.note, sizeof(C.note), "%.*s", (int)o.len, o.text);
		if (o.netns != jb->netns)
			continue;
		if (o.tool < 0) {
			snprintf(why_not, sizeof(why_not), "the rules of network namespace %u could not be read: %.*s",
				 o.netns, (int)o.len, o.text);
			continue;
		}
		sets[0].ran[o.tool] = o.status == 0;
		sets[0].missing[o.tool] = o.status == 127;
		if (o.at > read_at)
			read_at = o.at;
		if (o.status == 0)
			nf_parse(&sets[0], o.tool, o.text, o.len);
	}
	if (jb->t.timed_out && !why_not[0])
		snprintf(why_not, sizeof(why_not),
			 "the node's netfilter tools did not answer within %d s in network namespace %u", READ_TIMEOUT_S,
			 jb->netns);
	answer_drops(st, &sets[0], jb->t.started, why_not[0] ? why_not : NULL);
	if (why_not[0]) {
		nf_ruleset_free(&sets[0]);
		return;
	}
	/* This reading is the one the next drop's counters are compared with. */
	if (st->have_prev)
		nf_ruleset_free(&st->prev);
	st->prev = st->last;
	st->have_prev = st->have_last;
	st->prev_read_at = st->read_at;
	st->last = sets[0];
	st->have_last = true;
	st->read_at = read_at;
}

/* Drops in namespaces nothing names any more cannot be read: say so now. */
static void answer_unreadable(unsigned int netns, const char *why)
{
	struct ns_state *st = ns_get(netns, true);

	if (st)
		answer_drops(st, &(struct nf_ruleset){ 0 }, UINT64_MAX, why);
}

/* Starts a reading for each namespace with drops waiting and none under way. */
static void start_reads(void)
{
	if (!C.first_done)
		return; /* the first readings first: the drops are compared with them */
	for (size_t i = 0; i < C.npend; i++) {
		unsigned int netns = C.pend[i].netns;
		struct ns_state *st = ns_get(netns, true);
		struct job *free_job = NULL;
		struct ns_ref ref;
		char why[200];

		if (!st || st->busy)
			continue;
		for (size_t k = 0; k < MAX_JOBS && !free_job; k++)
			if (!C.jobs[k].used)
				free_job = &C.jobs[k];
		if (!free_job)
			return;
		if (!find_namespace(netns, &ref)) {
			snprintf(why, sizeof(why),
				 "network namespace %u is gone (no process or /run/netns name holds it any more): its "
				 "rules could not be read",
				 netns);
			answer_unreadable(netns, why);
			i = (size_t)-1; /* the list changed: from the start */
			continue;
		}
		if (tools_start(&free_job->t, &ref, 1, READ_TIMEOUT_S) != 0) {
			snprintf(why, sizeof(why), "could not start reading the rules of network namespace %u: %s",
				 netns, strerror(errno));
			answer_unreadable(netns, why);
			i = (size_t)-1;
			continue;
		}
		free_job->used = true;
		free_job->first = false;
		free_job->netns = netns;
		st->busy = true;
	}
}

static void pump_job(struct job *jb)
{
	if (!jb->used || !tools_pump(&jb->t))
		return;
	job_done(jb);
	tools_free(&jb->t);
	jb->used = false;
}

void culprit_pump(void)
{
	if (!C.begun)
		return;
	for (size_t k = 0; k < FIRST_JOBS; k++)
		pump_job(&C.first[k]);
	C.first_done = !first_busy();
	for (size_t k = 0; k < MAX_JOBS; k++)
		pump_job(&C.jobs[k]);
	start_reads();
}

static bool busy(void)
{
	if (first_busy())
		return true;
	for (size_t k = 0; k < MAX_JOBS; k++)
		if (C.jobs[k].used)
			return true;
	return C.npend > 0;
}

/* Waits for the readings under way (bounded, and a stop ends it); false when they are not all done. */
static bool wait_jobs(int max_ms, bool first_only)
{
	uint64_t until = mono_ns() + (uint64_t)max_ms * 1000000ULL;
	struct pollfd fds[FIRST_JOBS + MAX_JOBS + STOP_NFDS];

	for (;;) {
		culprit_pump();
		if (first_only ? C.first_done : !busy())
			return true;
		uint64_t now = mono_ns();
		if (now >= until || stop_hurry() || (first_only && stop_reason()))
			return false;
		int n = 0;
		for (size_t k = 0; k < FIRST_JOBS; k++)
			if (C.first[k].used)
				fds[n++] = (struct pollfd){ .fd = C.first[k].t.fd, .events = POLLIN };
		for (size_t k = 0; k < MAX_JOBS; k++)
			if (C.jobs[k].used)
				fds[n++] = (struct pollfd){ .fd = C.jobs[k].t.fd, .events = POLLIN };
		stop_pollfds(fds + n);
		int left = (int)((until - now) / 1000000ULL) + 1;
		if (poll(fds, n + STOP_NFDS, left > 50 ? 50 : left) < 0 && errno != EINTR)
			return false;
		stop_after_poll(fds + n);
	}
}

void culprit_wait_first(int max_ms)
{
	if (C.begun)
		wait_jobs(max_ms, true);
}

/* ---- tc and XDP programs ---- */

/* Where a tc or XDP program dropped it: the kernel's reason, or the function that freed it. */
static int bpf_point_of(const struct pwru_event *ev, const char *caller)
{
	static const char *const xdp_callers[] = { "do_xdp_generic+", "netif_receive_generic_xdp+",
						   "bpf_prog_run_generic_xdp+", "veth_xdp_rcv" };
	int64_t reason = ev->flags & PWRU_F_HAS_REASON ? (int64_t)ev->drop_reason : -2;

	if (reason == C.tc_ingress_reason)
		return POINT_TC_INGRESS;
	if (reason == C.tc_egress_reason)
		return POINT_TC_EGRESS;
	if (reason == C.xdp_reason)
		return POINT_XDP;
	for (size_t i = 0; caller && i < sizeof(xdp_callers) / sizeof(xdp_callers[0]); i++)
		if (strncmp(caller, xdp_callers[i], strlen(xdp_callers[i])) == 0)
			return POINT_XDP;
	return -1;
}

static const struct progs_seen *programs_at(unsigned int netns, unsigned int ifindex, enum bpf_point point,
					    uint64_t drop_ts)
{
	uint64_t now = mono_ns();
	struct progs_seen *ps;
	struct ns_ref ref;
	unsigned int own = 0;

	for (size_t i = 0; i < PROGS_CACHE; i++) {
		ps = &C.progs[i];
		if (ps->at && ps->netns == netns && ps->ifindex == ifindex && ps->point == point && drop_ts <= ps->at)
			return ps;
	}
	ps = &C.progs[C.progs_next++ % PROGS_CACHE];
	memset(ps, 0, sizeof(*ps));
	*ps = (struct progs_seen){ .netns = netns, .ifindex = ifindex, .point = point, .at = now };
	if (tools_own_netns(&own) == 0 && own == netns)
		ps->n = attached_programs(NULL, ifindex, point, ps->v, PROGS_MAX, ps->err, sizeof(ps->err));
	else if (find_namespace(netns, &ref))
		ps->n = attached_programs(ref.path, ifindex, point, ps->v, PROGS_MAX, ps->err, sizeof(ps->err));
	else {
		ps->n = -ENOENT;
		snprintf(ps->err, sizeof(ps->err), "network namespace %u is gone", netns);
	}
	return ps;
}

/* A program the culprit names: as the kernel listed it at that point, else (detached since) what its run said. */
static struct prog_words prog_of(const struct progs_seen *ps, uint32_t id, const char *name, const char *tag,
				 enum bpf_point point)
{
	for (int i = 0; i < ps->n; i++)
		if (ps->v[i].id == id)
			return (struct prog_words){ .id = id,
						    .name = ps->v[i].name,
						    .tag = ps->v[i].tag,
						    .attach = ps->v[i].attach,
						    .detail = ps->v[i].detail };
	/* Not in the list any more: the hook it ran at is what is known. */
	return (struct prog_words){ .id = id, .name = name, .tag = tag, .attach = point == POINT_XDP ? "xdp" : "tc",
				    .detail = "" };
}

static void program_json(struct json *j, const struct prog_words *p)
{
	json_begin_object(j);
	json_kv_uint(j, "id", p->id);
	json_kv_string(j, "name", p->name);
	json_kv_string(j, "tag", p->tag);
	json_kv_string(j, "attach", p->attach);
	if (p->detail[0])
		json_kv_string(j, "detail", p->detail);
	json_end_object(j);
}

/*
 * Where programs are traced in this run, why the drop was not named exactly:
 * each program attached there, and why it was not the one seen returning the
 * drop ("pwru_tc (id 12): loaded after the trace began and not traced yet").
 * Left empty where programs are not traced, or the kernel refused them all.
 */
static void not_exact_why(const struct progs_seen *ps, uint64_t drop_ts, char *why, size_t len)
{
	char one[400];
	size_t at = 0;

	why[0] = 0;
	for (int i = 0; i < ps->n && at < len; i++) {
		const struct attached_prog *a = &ps->v[i];

		if (!prog_exact_why_not(a->id, drop_ts, one, sizeof(one))) {
			why[0] = 0;
			return;
		}
		at += (size_t)snprintf(why + at, len - at, "%s%s (id %u): %s", i ? "; " : "",
				       a->name[0] ? a->name : "(no name)", a->id, one);
	}
}

/*
 * The programs there. Exact when the program that returned the drop was
 * traced (prog_exact.c); else those attached where it was dropped.
 */
static void bpf_culprit(const struct pwru_event *ev, enum bpf_point point)
{
	static const char *const dirs[] = { [POINT_TC_INGRESS] = "ingress", [POINT_TC_EGRESS] = "egress" };
	const struct progs_seen *ps = programs_at(ev->netns, ev->ifindex, point, ev->ts);
	struct prog_exact x;
	bool exact = prog_exact_drop_of(point == POINT_XDP, ev->skb, ev->ts, &x);
	struct json j = { 0 };
	char ifname[sizeof(ev->ifname) + 1], why[600] = "";
	struct prog_words progs[PROGS_MAX];
	size_t nprogs = 0;

	memcpy(ifname, ev->ifname, sizeof(ev->ifname));
	ifname[sizeof(ev->ifname)] = 0;
	if (!exact)
		prog_exact_say_refused();
	if (exact)
		progs[nprogs++] = prog_of(ps, x.id, x.name, x.tag, point);
	else
		for (int i = 0; i < ps->n; i++)
			progs[nprogs++] = prog_of(ps, ps->v[i].id, ps->v[i].name, ps->v[i].tag, point);
	if (!nprogs && ps->n < 0)
		snprintf(why, sizeof(why), "the programs attached there could not be asked for: %s", ps->err);
	else if (!nprogs)
		snprintf(why, sizeof(why), "no %s program is attached to %s (%u) in network namespace %u any more",
			 point == POINT_XDP ? "XDP" : "tc", ifname, ev->ifindex, ev->netns);
	else if (!exact)
		not_exact_why(ps, ev->ts, why, sizeof(why));
	const char *method = exact ? "exact" : nprogs ? "attached" : "none";
	struct hook_words hook = { .xdp = point == POINT_XDP,
				   .iface = ifname,
				   .ifindex = ev->ifindex,
				   .direction = point == POINT_XDP ? NULL : dirs[point] };
	/* Exact: what it returned. Else, on the kernel's drop paths these are the verdicts that free the packet. */
	const char *verdict = exact ? x.verdict : point == POINT_XDP ? "XDP_DROP or XDP_ABORTED" : "TC_ACT_SHOT";

	frame_begin(&j, ev->ts, ev->skb, ev->netns, point == POINT_XDP ? "xdp" : "tc", method);
	json_kv_string(&j, "iface", ifname);
	json_kv_uint(&j, "ifindex", ev->ifindex);
	if (hook.direction)
		json_kv_string(&j, "direction", hook.direction);
	json_kv_string(&j, "verdict", verdict);
	if (nprogs) {
		json_key(&j, "programs");
		json_begin_array(&j);
		for (size_t i = 0; i < nprogs; i++)
			program_json(&j, &progs[i]);
		json_end_array(&j);
	}
	/* none: why not; attached, where programs are traced: why not exactly. */
	if (why[0])
		json_kv_string(&j, "why", why);
	json_end_object(&j);
	culprit_out(&j);
	json_free(&j);
	if (C.emit_text) {
		struct buf line = { 0 };

		words_program_culprit(&line, ev->skb, method, &hook, verdict, progs, nprogs, why);
		culprit_line(&line);
		buf_free(&line);
	}
}

void culprit_drop(const struct pwru_event *ev, const char *caller)
{
	int point;

	if (!C.configured || !(ev->flags & PWRU_F_DROP))
		return;
	if ((point = bpf_point_of(ev, caller)) >= 0 && ev->ifindex) {
		bpf_culprit(ev, (enum bpf_point)point);
		return;
	}
	if (!C.begun || !(ev->flags & PWRU_F_HAS_REASON) || !C.has_nf_reason || ev->drop_reason != C.nf_reason)
		return;
	if (C.npend >= MAX_PENDING) {
		C.unanswered++;
		return;
	}
	struct pending *p = &C.pend[C.npend++];
	*p = (struct pending){ .ts = ev->ts, .skb = ev->skb, .netns = ev->netns, .l3 = ev->l3 };
	/* The kernel's verdict is read now, while its map still holds it. */
	if ((p->asked_kernel = nf_exact_active()))
		p->told = nf_exact_of(ev->skb, ev->ts, &p->exact);
	start_reads();
}

void culprit_finish(int max_ms)
{
	if (!C.begun)
		return;
	if (!wait_jobs(max_ms, false)) {
		/* What is still waiting is said to be untold, rather than left out. */
		while (C.npend) {
			struct ns_state *st = ns_get(C.pend[0].netns, true);
			char why[200];

			snprintf(why, sizeof(why),
				 "the trace ended before the rules of network namespace %u could be read again",
				 C.pend[0].netns);
			if (!st) {
				C.npend--;
				continue;
			}
			answer_drops(st, &(struct nf_ruleset){ 0 }, UINT64_MAX, why);
		}
	}
	if (C.unanswered)
		out_message(PWRU_FRAME_WARNING, "culprits_skipped",
			    "%llu netfilter drops came faster than their rules could be read: their rules are not named",
			    (unsigned long long)C.unanswered);
}

void culprit_end(void)
{
	for (size_t k = 0; k < FIRST_JOBS; k++)
		tools_free(&C.first[k].t);
	for (size_t k = 0; k < MAX_JOBS; k++)
		tools_free(&C.jobs[k].t);
	for (size_t i = 0; i < C.nns; i++) {
		if (C.ns[i].have_last)
			nf_ruleset_free(&C.ns[i].last);
		if (C.ns[i].have_prev)
			nf_ruleset_free(&C.ns[i].prev);
	}
	free(C.ns);
	memset(&C, 0, sizeof(C));
}
