// SPDX-License-Identifier: Apache-2.0
#include "prog_exact.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "../bpf/event.h"
#include "../bpf/prog_verdict.h"
#include "culprit_words.h"
#include "event_json.h"
#include "output.h"
#include "prog_verdict.skel.h"

/* Enough for a node's CNI (Cilium loads a few per interface); more are left untraced. */
#define MAX_TRACED 256
/* Room a PROG frame or line may need. */
#define PROG_ROOM 1024

struct traced {
	uint32_t id;
	bool xdp;
	char name[16];
	char tag[17];
	struct prog_verdict_bpf *skel;
};

static struct {
	struct traced t[MAX_TRACED];
	size_t n;
	int drops_fd, noted_fd;
	struct ring_buffer *rb;
	bool emit_json, emit_text, active, said;
	char refused[300]; /* why the kernel refused the copies, when it did */
} P = { .drops_fd = -1, .noted_fd = -1 };

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

/* One copy of the fexit program, on program fd (an XDP or a tc one); with the first copy's maps. */
static int trace_one(struct traced *t, int fd, const struct bpf_prog_info *info, int prog_last_fd)
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
	if ((ret = bpf_program__set_attach_target(p, fd, fname)) ||
	    (ret = bpf_map__reuse_fd(s->maps.prog_last, prog_last_fd)) ||
	    (ret = bpf_map__reuse_fd(s->maps.prog_drops, P.drops_fd)) ||
	    (P.n && (ret = bpf_map__reuse_fd(s->maps.prog_runs, bpf_map__fd(P.t[0].skel->maps.prog_runs)))) ||
	    (ret = prog_verdict_bpf__load(s)) || (ret = prog_verdict_bpf__attach(s))) {
		prog_verdict_bpf__destroy(s);
		return ret;
	}
	t->skel = s;
	return 0;
}

static int on_run(void *ctx, void *data, size_t len);

/* A tc or XDP program with BTF (fexit needs the target's): its info, or false. */
static bool traceable(uint32_t id, int *fd, struct bpf_prog_info *info)
{
	__u32 ilen = sizeof(*info);

	memset(info, 0, sizeof(*info));
	if ((*fd = bpf_prog_get_fd_by_id(id)) < 0)
		return false;
	if (bpf_obj_get_info_by_fd(*fd, info, &ilen) == 0 && info->btf_id &&
	    (info->type == BPF_PROG_TYPE_SCHED_CLS || info->type == BPF_PROG_TYPE_SCHED_ACT ||
	     info->type == BPF_PROG_TYPE_XDP))
		return true;
	close(*fd);
	return false;
}

bool prog_exact_wanted(void)
{
	struct bpf_prog_info info;
	uint32_t id = 0;
	int fd;

	while (bpf_prog_get_next_id(id, &id) == 0)
		if (traceable(id, &fd, &info)) {
			close(fd);
			return true;
		}
	return false;
}

int prog_exact_start(int prog_last_fd, int prog_drops_fd, int prog_noted_fd, bool emit_json, bool emit_text)
{
	char *why = P.refused;
	size_t len = sizeof(P.refused);
	libbpf_print_fn_t old = libbpf_set_print(quiet_print);
	uint32_t id = 0;
	int first_err = 0, candidates = 0;

	P.emit_json = emit_json;
	P.emit_text = emit_text;
	P.drops_fd = prog_drops_fd;
	P.noted_fd = prog_noted_fd;
	while (P.n < MAX_TRACED && bpf_prog_get_next_id(id, &id) == 0) {
		struct bpf_prog_info info;
		struct traced *t = &P.t[P.n];
		int fd, ret;

		if (!traceable(id, &fd, &info))
			continue;
		memset(t, 0, sizeof(*t));
		t->id = id;
		t->xdp = info.type == BPF_PROG_TYPE_XDP;
		snprintf(t->name, sizeof(t->name), "%s", info.name);
		for (int b = 0; b < 8; b++)
			snprintf(t->tag + 2 * b, 3, "%02x", info.tag[b]);
		candidates++;
		ret = trace_one(t, fd, &info, prog_last_fd);
		close(fd);
		if (ret) {
			if (!first_err)
				first_err = ret;
			continue;
		}
		P.n++;
	}
	libbpf_set_print(old);
	if (!P.n) {
		if (candidates)
			snprintf(why, len, "fexit on the %d tc and XDP programs loaded: %s", candidates,
				 strerror(first_err < 0 ? -first_err : first_err));
		return candidates ? (first_err < 0 ? first_err : -EPERM) : 0;
	}
	P.rb = ring_buffer__new(bpf_map__fd(P.t[0].skel->maps.prog_runs), on_run, NULL, NULL);
	if (!P.rb) {
		int err = -errno;

		prog_exact_end(); /* clears the state: the reason after it */
		snprintf(why, len, "reading the programs' runs: %s", strerror(-err));
		return err;
	}
	P.active = true;
	return (int)P.n;
}

bool prog_exact_active(void)
{
	return P.active;
}

void prog_exact_say_refused(void)
{
	if (P.active || P.said || !P.refused[0])
		return;
	P.said = true;
	out_message(PWRU_FRAME_WARNING, "programs_not_exact",
		    "tc and XDP drops name the programs attached there, not the one that returned the drop: %s",
		    P.refused);
}

static const struct traced *traced_of(uint32_t id)
{
	for (size_t i = 0; i < P.n; i++)
		if (P.t[i].id == id)
			return &P.t[i];
	return NULL;
}

/* A run as a PROG frame's JSON (docs/record-stream.md), or a "prog" line with --emit json. */
static void write_run(const struct prog_run *r)
{
	const struct traced *t = traced_of(r->prog_id);
	bool xdp = r->kind == PWRU_PROG_XDP;
	char num[32], vbuf[16], ifname[sizeof(r->ifname) + 1];
	struct json j = { 0 };

	memcpy(ifname, r->ifname, sizeof(r->ifname));
	ifname[sizeof(r->ifname)] = 0;
	json_begin_object(&j);
	if (P.emit_json) {
		json_kv_string(&j, "type", "prog");
		json_kv_int(&j, "v", PWRU_JSON_SCHEMA_VERSION);
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
	json_kv_string(&j, "name", t ? t->name : "");
	json_kv_string(&j, "tag", t ? t->tag : "");
	json_end_object(&j);
	const char *verdict = prog_verdict_name(xdp, r->ret, vbuf, sizeof(vbuf));
	json_kv_int(&j, "ret", r->ret);
	json_kv_string(&j, "verdict", verdict);
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

		words_prog_run(&line, r->skb, &hook, r->prog_id, t ? t->name : "", t ? t->tag : "", verdict);
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
	if (len < sizeof(struct prog_run))
		return 0;
	write_run(data);
	/* Paused while the outputs are full: the rest waits in the ring. */
	return run_room() ? 0 : -1;
}

void prog_exact_pump(void)
{
	if (P.active && run_room())
		ring_buffer__consume(P.rb);
}

bool prog_exact_drop_of(bool xdp, uint64_t skb, uint64_t ts, struct prog_exact *out)
{
	struct prog_noted_key key = { .skb = skb, .ts = ts };
	struct prog_run r;
	const struct traced *t;
	static char vbuf[16];

	memset(out, 0, sizeof(*out));
	if (!P.active || bpf_map_lookup_elem(P.noted_fd, &key, &r))
		return false;
	bpf_map_delete_elem(P.noted_fd, &key); /* read once: room for the next */
	if (r.kind != (xdp ? PWRU_PROG_XDP : PWRU_PROG_TC))
		return false;
	out->id = r.prog_id;
	out->ret = r.ret;
	out->verdict = prog_verdict_name(xdp, r.ret, vbuf, sizeof(vbuf));
	if ((t = traced_of(r.prog_id))) {
		memcpy(out->name, t->name, sizeof(out->name));
		memcpy(out->tag, t->tag, sizeof(out->tag));
	}
	return true;
}

void prog_exact_end(void)
{
	ring_buffer__free(P.rb);
	for (size_t i = 0; i < P.n; i++)
		prog_verdict_bpf__destroy(P.t[i].skel);
	memset(&P, 0, sizeof(P));
	P.drops_fd = P.noted_fd = -1;
}
