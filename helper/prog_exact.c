// SPDX-License-Identifier: Apache-2.0
#include "prog_exact.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "../bpf/event.h"
#include "../bpf/prog_verdict.h"
#include "culprit_words.h"
#include "event_json.h"
#include "link_handoff.h"
#include "loader.h"
#include "output.h"
#include "prog_verdict.skel.h"

/* Enough for a node's CNI (Cilium loads a few per interface); more are left untraced. */
#define MAX_TRACED 256
/* Programs that could not be traced, each with why (the culprit of their drops says it). */
#define MAX_UNTRACED 64
/* Room a PROG frame or line may need. */
#define PROG_ROOM 1024
/* How often the scanner looks for programs loaded since (one syscall when there is none). */
#define SCAN_EVERY_MS 200

struct traced {
	uint32_t id;
	bool xdp;
	char name[16];
	char tag[17];
	uint64_t since; /* CLOCK_MONOTONIC ns (the programs' clock) when its copy was attached */
	struct prog_verdict_bpf *skel;
};

struct untraced {
	uint32_t id;
	char why[96];
};

/*
 * The copies are loaded at the start (prog_exact_start, before the probes
 * attach) and then by a scanner thread, for the programs loaded since: a CNI
 * agent that restarts loads new ones mid-trace. What the scanner adds is
 * read by the event loop (runs, drops, culprits), under mu.
 */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake;
	struct traced t[MAX_TRACED];
	size_t n;
	struct untraced u[MAX_UNTRACED];
	size_t nu;
	uint32_t scanned; /* the highest program id looked at: ids only grow */
	uint32_t loading; /* the program being set up now, if any */
	char refused[300]; /* why the kernel refused the copies (none traced), when it did */
	char late[160];	   /* why programs loaded later are not traced, when they cannot be */
	bool stop;
	/* Only the loader (start, then the scanner) touches these: the probes' maps (their skeleton owns them). */
	int last_fd, drops_fd, noted_fd, pending_fd, built_fd;
	/*
	 * fentry on skb_copy_header (prog_built_note), once, with the first XDP
	 * program traced: which skb an XDP run's buffer was copied from.
	 */
	struct prog_verdict_bpf *builds;
	bool builds_tried;
	int runs_fd; /* the runs of all copies and of the probes' ties, read by the event loop */
	volatile bool *traced_flag;
	int first_err;
	/* Only the event loop. */
	struct ring_buffer *rb;
	bool write_runs, emit_json, emit_text, started, said, scanning;
	const char *node; /* --line-node: named in the JSON lines */
	pthread_t scanner;
} P = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .runs_fd = -1,
	.drops_fd = -1, .noted_fd = -1, .last_fd = -1, .pending_fd = -1,
	.built_fd = -1 };

/* The programs' clock (bpf_ktime_get_ns), which the drops' times are on. */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* A load the kernel may refuse (fexit on programs on a sandboxed kernel): its log is noise. */
static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	(void)fmt;
	(void)ap;
	return 0;
}

const char *prog_verdict_name(bool xdp, int32_t ret, char *buf, size_t len)
{
	static const char *const tc[] = { "TC_ACT_OK",	   "TC_ACT_RECLASSIFY", "TC_ACT_SHOT",
					  "TC_ACT_PIPE",   "TC_ACT_STOLEN",	"TC_ACT_QUEUED",
					  "TC_ACT_REPEAT", "TC_ACT_REDIRECT",	"TC_ACT_TRAP" };
	static const char *const x[] = { "XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT" };

	if (xdp && ret >= 0 && ret < 5)
		return x[ret];
	if (!xdp && ret == -1)
		return "TC_ACT_UNSPEC";
	if (!xdp && ret >= 0 && ret < 9)
		return tc[ret];
	snprintf(buf, len, "%d", ret);
	return buf;
}

/*
 * The program's function name, from its BTF: fexit attaches by it, and the
 * kernel's own name for the program is cut at 15 characters.
 */
static bool func_name(int fd, const struct bpf_prog_info *info, char *out, size_t len)
{
	struct bpf_func_info fi = { 0 };
	struct bpf_prog_info q = { .nr_func_info = 1, .func_info_rec_size = sizeof(fi),
				   .func_info = (__u64)(unsigned long)&fi };
	__u32 qlen = sizeof(q);
	struct btf *btf;
	const struct btf_type *t;
	bool ok = false;

	if (bpf_obj_get_info_by_fd(fd, &q, &qlen) != 0 || !q.nr_func_info)
		return false;
	if (!(btf = btf__load_from_kernel_by_id(info->btf_id)))
		return false;
	if ((t = btf__type_by_id(btf, fi.type_id)) && btf_is_func(t)) {
		snprintf(out, len, "%s", btf__name_by_offset(btf, t->name_off));
		ok = true;
	}
	btf__free(btf);
	return ok;
}

/* One copy of the fexit program, on program fd (an XDP or a tc one); all copies share the maps. */
static int trace_one(struct traced *t, int fd, const struct bpf_prog_info *info)
{
	struct prog_verdict_bpf *s;
	struct bpf_program *p, *other;
	char fname[128];
	int ret;

	if (!func_name(fd, info, fname, sizeof(fname)))
		return -ENOENT;
	if (!(s = prog_verdict_bpf__open()))
		return -errno;
	p = t->xdp ? s->progs.prog_xdp : s->progs.prog_tc;
	other = t->xdp ? s->progs.prog_tc : s->progs.prog_xdp;
	s->rodata->cfg_prog_id = t->id;
	bpf_program__set_autoload(other, false);
	bpf_program__set_autoload(s->progs.prog_built_note, false);
	if ((ret = bpf_program__set_attach_target(p, fd, fname)) ||
	    (ret = bpf_map__reuse_fd(s->maps.prog_built, P.built_fd)) ||
	    (ret = bpf_map__reuse_fd(s->maps.prog_last, P.last_fd)) ||
	    (ret = bpf_map__reuse_fd(s->maps.prog_drops, P.drops_fd)) ||
	    (ret = bpf_map__reuse_fd(s->maps.prog_runs, P.runs_fd)) ||
	    (ret = bpf_map__reuse_fd(s->maps.prog_pending, P.pending_fd)) || (ret = prog_verdict_bpf__load(s)) ||
	    (ret = prog_verdict_bpf__attach(s))) {
		prog_verdict_bpf__destroy(s);
		return ret;
	}
	t->skel = s;
	return 0;
}

/*
 * fentry on skb_copy_header, once, sharing the copies' maps: an XDP run on a
 * buffer veth copied a sent skb into then says which skb that was
 * (bpf/prog_verdict.h, prog_built). Loaded with the first XDP program's copy
 * (a trace beside tc programs alone pays nothing for it). Refused (or no such
 * function): the runs are still shown, only not linked to the skb sent.
 */
static void trace_builds(void)
{
	struct prog_verdict_bpf *s;

	if (!(s = prog_verdict_bpf__open()))
		return;
	bpf_program__set_autoload(s->progs.prog_tc, false);
	bpf_program__set_autoload(s->progs.prog_xdp, false);
	if (bpf_map__reuse_fd(s->maps.prog_built, P.built_fd) || bpf_map__reuse_fd(s->maps.prog_last, P.last_fd) ||
	    bpf_map__reuse_fd(s->maps.prog_drops, P.drops_fd) || bpf_map__reuse_fd(s->maps.prog_runs, P.runs_fd) ||
	    bpf_map__reuse_fd(s->maps.prog_pending, P.pending_fd) || prog_verdict_bpf__load(s) ||
	    prog_verdict_bpf__attach(s)) {
		prog_verdict_bpf__destroy(s);
		return;
	}
	P.builds = s;
}

static int on_run(void *ctx, void *data, size_t len);

enum kind_of { NOT_OURS, NO_BTF, TRACEABLE };

/* A tc or XDP program, and whether it has BTF (fexit needs the target's): with its info and an fd. */
static enum kind_of kind_of(uint32_t id, int *fd, struct bpf_prog_info *info)
{
	__u32 ilen = sizeof(*info);

	memset(info, 0, sizeof(*info));
	if ((*fd = bpf_prog_get_fd_by_id(id)) < 0)
		return NOT_OURS;
	if (bpf_obj_get_info_by_fd(*fd, info, &ilen) == 0 &&
	    (info->type == BPF_PROG_TYPE_SCHED_CLS || info->type == BPF_PROG_TYPE_SCHED_ACT ||
	     info->type == BPF_PROG_TYPE_XDP))
		return info->btf_id ? TRACEABLE : NO_BTF;
	close(*fd);
	*fd = -1;
	return NOT_OURS;
}

static void untraced(uint32_t id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void untraced(uint32_t id, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&P.mu);
	if (P.nu < MAX_UNTRACED) {
		P.u[P.nu].id = id;
		va_start(ap, fmt);
		vsnprintf(P.u[P.nu].why, sizeof(P.u[P.nu].why), fmt, ap);
		va_end(ap);
		P.nu++;
	}
	pthread_mutex_unlock(&P.mu);
}

/* Errors that say the kernel lets no program be traced here, rather than this one. */
static bool refused_everywhere(int err)
{
	return err == -EPERM || err == -EACCES || err == -EOPNOTSUPP || err == -524 /* ENOTSUPP */ ||
	       err == -ENOSYS;
}

/* Program id: a copy on it when it is a tc or XDP program with BTF, else why not (when it is one). */
static void consider(uint32_t id)
{
	struct bpf_prog_info info;
	struct traced t = { .id = id };
	enum kind_of k;
	int fd, ret;

	if ((k = kind_of(id, &fd, &info)) == NOT_OURS)
		return;
	if (k == NO_BTF) {
		untraced(id, "it has no BTF, which fexit needs");
		close(fd);
		return;
	}
	if (P.refused[0]) {
		close(fd); /* said once, for all */
		return;
	}
	if (P.n >= MAX_TRACED) {
		untraced(id, "%d tc and XDP programs were traced already, the most there is room for", MAX_TRACED);
		close(fd);
		return;
	}
	t.xdp = info.type == BPF_PROG_TYPE_XDP;
	snprintf(t.name, sizeof(t.name), "%s", info.name);
	for (int b = 0; b < 8; b++)
		snprintf(t.tag + 2 * b, 3, "%02x", info.tag[b]);
	ret = trace_one(&t, fd, &info);
	close(fd);
	if (ret) {
		if (!P.first_err)
			P.first_err = ret;
		/* The first copies all refused for a reason no program could change: none will load. */
		if (!P.n && refused_everywhere(ret)) {
			pthread_mutex_lock(&P.mu);
			snprintf(P.refused, sizeof(P.refused), "fexit on the tc and XDP programs loaded: %s",
				 strerror(-ret));
			pthread_mutex_unlock(&P.mu);
		} else {
			untraced(id, "fexit on it failed: %s", strerror(ret < 0 ? -ret : ret));
		}
		return;
	}
	t.since = mono_ns();
	if (t.xdp && !P.builds_tried) {
		P.builds_tried = true;
		trace_builds();
	}
	pthread_mutex_lock(&P.mu);
	P.t[P.n++] = t;
	pthread_mutex_unlock(&P.mu);
	/* The probes note their packets from now on (bpf/pwru.bpf.c). */
	*P.traced_flag = true;
}

/* The programs loaded since the last look (ids only grow), each considered; false once told to stop. */
static bool scan(void)
{
	uint32_t id = P.scanned;

	while (bpf_prog_get_next_id(id, &id) == 0) {
		pthread_mutex_lock(&P.mu);
		bool stop = P.stop;
		P.loading = stop ? 0 : id;
		pthread_mutex_unlock(&P.mu);
		if (stop)
			return false;
		consider(id);
		pthread_mutex_lock(&P.mu);
		P.scanned = id;
		P.loading = 0;
		pthread_mutex_unlock(&P.mu);
	}
	return true;
}

static void *scanner(void *arg)
{
	(void)arg;
	loader_quiet_thread(); /* refused loads are said once, in our words */
	for (;;) {
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += SCAN_EVERY_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&P.mu);
		while (!P.stop && pthread_cond_timedwait(&P.wake, &P.mu, &until) == 0)
			;
		bool stop = P.stop;
		pthread_mutex_unlock(&P.mu);
		/* Refused everywhere: no copy will load, and that is said already. */
		if (stop || P.refused[0] || !scan())
			return NULL;
	}
}

int prog_exact_start(const struct prog_map_fds *maps, volatile bool *traced_flag, bool write_runs, bool emit_json,
		     bool emit_text, const char *node)
{
	libbpf_print_fn_t old = libbpf_set_print(quiet_print);
	pthread_condattr_t ca;
	sigset_t all, was;
	int ret;

	P.write_runs = write_runs;
	P.emit_json = emit_json;
	P.emit_text = emit_text;
	P.node = node;
	P.last_fd = maps->last;
	P.drops_fd = maps->drops;
	P.noted_fd = maps->noted;
	P.pending_fd = maps->pending;
	P.built_fd = maps->built;
	P.runs_fd = maps->runs;
	P.traced_flag = traced_flag;
	P.started = true;
	/* The programs loaded now, before the probes attach. */
	scan();
	libbpf_set_print(old);
	/* Those loaded later, by a thread of its own: loading a copy takes the kernel's verifier a while. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&P.wake);
	pthread_cond_init(&P.wake, &ca);
	pthread_condattr_destroy(&ca);
	/* Signals stay with the main thread, which watches for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &was);
	ret = pthread_create(&P.scanner, NULL, scanner, NULL);
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	if (ret == 0)
		P.scanning = true;
	else
		snprintf(P.late, sizeof(P.late), "the thread that traces them could not start: %s", strerror(ret));
	if (P.refused[0])
		return P.first_err < 0 ? P.first_err : -EPERM;
	return (int)P.n;
}

void prog_exact_say_refused(void)
{
	char why[sizeof(P.refused)];

	pthread_mutex_lock(&P.mu);
	snprintf(why, sizeof(why), "%s", P.refused);
	pthread_mutex_unlock(&P.mu);
	if (P.said || !why[0])
		return;
	P.said = true;
	out_message(PWRU_FRAME_WARNING, "programs_not_exact",
		    "tc and XDP drops name the programs attached there, not the one that returned the drop: %s", why);
}

/* Under mu. */
static const struct traced *traced_of(uint32_t id)
{
	for (size_t i = 0; i < P.n; i++)
		if (P.t[i].id == id)
			return &P.t[i];
	return NULL;
}

bool prog_exact_why_not(uint32_t id, uint64_t drop_ts, char *out, size_t len)
{
	const struct traced *t;

	if (!P.started)
		return false;
	pthread_mutex_lock(&P.mu);
	/* Refused everywhere: the WARNING programs_not_exact says it once, not at every drop. */
	if (P.refused[0]) {
		pthread_mutex_unlock(&P.mu);
		return false;
	}
	if ((t = traced_of(id)) && t->since < drop_ts)
		snprintf(out, len, "traced, but not seen returning this drop");
	else if (t)
		snprintf(out, len, "loaded after the trace began, and traced only from %.3f s after this drop",
			 (double)(t->since - drop_ts) / 1e9);
	else if ((id > P.scanned || id == P.loading) && P.late[0])
		snprintf(out, len, "loaded after the trace began, not traced: %s", P.late);
	else if (id > P.scanned || id == P.loading)
		snprintf(out, len, "loaded after the trace began and not traced yet (looked for every %d ms)",
			 SCAN_EVERY_MS);
	else {
		snprintf(out, len, "not traced");
		for (size_t i = 0; i < P.nu; i++)
			if (P.u[i].id == id)
				snprintf(out, len, "not traced: %s", P.u[i].why);
	}
	pthread_mutex_unlock(&P.mu);
	return true;
}

/* A run as a PROG frame's JSON (docs/record-stream.md), or a "prog" line with --emit json. */
static void write_run(const struct prog_run *r)
{
	bool xdp = r->kind == PWRU_PROG_XDP;
	char num[32], vbuf[16], ifname[sizeof(r->ifname) + 1], name[16] = "", tag[17] = "";
	struct json j = { 0 };
	const struct traced *t;

	pthread_mutex_lock(&P.mu);
	if ((t = traced_of(r->prog_id))) {
		memcpy(name, t->name, sizeof(name));
		memcpy(tag, t->tag, sizeof(tag));
	}
	pthread_mutex_unlock(&P.mu);

	memcpy(ifname, r->ifname, sizeof(r->ifname));
	ifname[sizeof(r->ifname)] = 0;
	json_begin_object(&j);
	if (P.emit_json) {
		json_kv_string(&j, "type", "prog");
		json_kv_int(&j, "v", PWRU_JSON_SCHEMA_VERSION);
		if (P.node)
			json_kv_string(&j, "node", P.node);
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long)r->ts);
	json_kv_string(&j, "ts", num);
	snprintf(num, sizeof(num), "0x%llx", (unsigned long long)r->skb);
	json_kv_string(&j, "skb", num);
	json_kv_uint(&j, "netns", r->netns);
	json_kv_string(&j, "kind", xdp ? "xdp" : "tc");
	json_kv_string(&j, "iface", ifname);
	json_kv_uint(&j, "ifindex", r->ifindex);
	if (!xdp)
		json_kv_string(&j, "direction", r->ingress ? "ingress" : "egress");
	json_key(&j, "program");
	json_begin_object(&j);
	json_kv_uint(&j, "id", r->prog_id);
	json_kv_string(&j, "name", name);
	json_kv_string(&j, "tag", tag);
	json_end_object(&j);
	const char *verdict = prog_verdict_name(xdp, r->ret, vbuf, sizeof(vbuf));
	json_kv_int(&j, "ret", r->ret);
	json_kv_string(&j, "verdict", verdict);
	if (r->from_skb) {
		json_key(&j, "from");
		json_begin_object(&j);
		snprintf(num, sizeof(num), "0x%llx", (unsigned long long)r->from_skb);
		json_kv_string(&j, "skb", num);
		snprintf(num, sizeof(num), "0x%llx", (unsigned long long)r->from_head);
		json_kv_string(&j, "head", num);
		json_end_object(&j);
	}
	json_end_object(&j);
	if (P.emit_json) {
		BUF_PUT_LIT(&j.b, "\n");
		out_line(j.b.p, j.b.len);
	} else {
		out_json_frame(PWRU_FRAME_PROG, &j);
	}
	json_free(&j);
	if (P.emit_text) {
		struct hook_words hook = { .xdp = xdp,
					   .iface = ifname,
					   .ifindex = r->ifindex,
					   .direction = xdp ? NULL : r->ingress ? "ingress" : "egress" };
		struct buf line = { 0 };

		words_prog_run(&line, r->skb, &hook, r->prog_id, name, tag, verdict, r->from_skb);
		out_line(line.p, line.len);
		buf_free(&line);
	}
}

/* Room for one more run in what it goes to. */
static bool run_room(void)
{
	if (P.emit_json)
		return out_lines_room(PROG_ROOM);
	return out_frame_room(PROG_ROOM) && (!P.emit_text || out_lines_room(PROG_ROOM));
}

static int on_run(void *ctx, void *data, size_t len)
{
	(void)ctx;
	if (len < sizeof(struct prog_run) || !P.write_runs)
		return 0;
	write_run(data);
	/* Paused while the outputs are full: the rest waits in the ring. */
	return run_room() ? 0 : -1;
}

void prog_exact_pump(void)
{
	if (!P.rb && (!P.started || P.runs_fd < 0 || !(P.rb = ring_buffer__new(P.runs_fd, on_run, NULL, NULL))))
		return;
	if (run_room())
		ring_buffer__consume(P.rb);
}

bool prog_exact_drop_of(bool xdp, uint64_t skb, uint64_t ts, struct prog_exact *out)
{
	struct prog_noted_key key = { .skb = skb, .ts = ts };
	struct prog_run r;
	const struct traced *t;
	static char vbuf[16];

	memset(out, 0, sizeof(*out));
	if (!P.started || bpf_map_lookup_elem(P.noted_fd, &key, &r))
		return false;
	bpf_map_delete_elem(P.noted_fd, &key); /* read once: room for the next */
	if (r.kind != (xdp ? PWRU_PROG_XDP : PWRU_PROG_TC))
		return false;
	out->id = r.prog_id;
	out->ret = r.ret;
	out->verdict = prog_verdict_name(xdp, r.ret, vbuf, sizeof(vbuf));
	pthread_mutex_lock(&P.mu);
	if ((t = traced_of(r.prog_id))) {
		memcpy(out->name, t->name, sizeof(out->name));
		memcpy(out->tag, t->tag, sizeof(out->tag));
	}
	pthread_mutex_unlock(&P.mu);
	return true;
}

void prog_exact_stop(void)
{
	pthread_mutex_lock(&P.mu);
	P.stop = true;
	pthread_cond_signal(&P.wake);
	pthread_mutex_unlock(&P.mu);
}

void prog_exact_hand_off(void)
{
	/* The scanner adds no copy after this. */
	prog_exact_stop();
	if (P.scanning)
		pthread_join(P.scanner, NULL);
	P.scanning = false;
	for (size_t i = 0; i < P.n; i++)
		if (P.t[i].skel)
			handoff_add_skeleton(P.t[i].skel->skeleton);
	if (P.builds)
		handoff_add_skeleton(P.builds->skeleton);
}

void prog_exact_end(void)
{
	prog_exact_stop();
	if (P.scanning)
		pthread_join(P.scanner, NULL);
	ring_buffer__free(P.rb);
	for (size_t i = 0; i < P.n; i++)
		prog_verdict_bpf__destroy(P.t[i].skel);
	prog_verdict_bpf__destroy(P.builds);
	P.builds = NULL;
	P.builds_tried = false;
	P.rb = NULL;
	P.n = P.nu = 0;
	P.runs_fd = P.drops_fd = P.noted_fd = P.last_fd = P.pending_fd = P.built_fd = -1;
	P.started = P.scanning = false;
}
