// SPDX-License-Identifier: Apache-2.0
#include "loader.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "pwru.skel.h"

/* Must match PROBE_ID_MARKER in bpf/pwru.bpf.c. */
#define PROBE_ID_MARKER 0x7e57ab1e
#define MAX_PROGS 32

/* What the load callback needs; libbpf's callback has no user pointer. */
struct prog_state {
	const struct bpf_program *prog;
	int probe_id;		   /* probe id patched into the marker, -1 if none */
	size_t marker;		   /* index of the marker instruction */
	bool has_marker;
	struct bpf_prog_load_opts opts; /* what libbpf loaded it with, for copies */
	bool loaded;
};

static struct {
	const struct pcap_filter *filter;
	bool direct_packet; /* tp_btf programs get the filter's direct form (see pcap_filter) */
	bool quiet;	    /* a load that may fail, with another way to go: its log is noise */
	struct prog_state progs[MAX_PROGS];
	size_t nprogs;
	int *clone_fds;
	size_t nclones;
	char err[512];
} st;

static struct prog_state *state_of(const struct bpf_program *prog)
{
	for (size_t i = 0; i < st.nprogs; i++)
		if (st.progs[i].prog == prog)
			return &st.progs[i];
	return NULL;
}

static bool is_pseudo_call(const struct bpf_insn *in)
{
	return in->code == (BPF_JMP | BPF_CALL) && in->src_reg == BPF_PSEUDO_CALL;
}

static bool is_marker(const struct bpf_insn *in)
{
	return in->code == (BPF_ALU64 | BPF_MOV | BPF_K) && in->imm == PROBE_ID_MARKER;
}

/*
 * Called by libbpf after relocation, before the kernel sees the program. The
 * filter stub is the program's only subprogram, so libbpf appended it last:
 * everything from its first instruction on is replaced by the filter.
 */
static int prepare_load(struct bpf_program *prog, struct bpf_prog_load_opts *opts, long cookie)
{
	const struct bpf_insn *insns = bpf_program__insns(prog);
	size_t cnt = bpf_program__insn_cnt(prog);
	struct prog_state *ps = state_of(prog);
	size_t stub = SIZE_MAX;
	struct bpf_insn *out;
	size_t out_cnt;

	(void)cookie;
	if (!ps) {
		snprintf(st.err, sizeof(st.err), "program %s was not configured", bpf_program__name(prog));
		return -EINVAL;
	}
	for (size_t i = 0; i < cnt; i++) {
		if (!is_pseudo_call(&insns[i]))
			continue;
		size_t target = i + 1 + insns[i].imm;
		if (stub != SIZE_MAX && stub != target) {
			snprintf(st.err, sizeof(st.err), "program %s calls more than the filter stub",
				 bpf_program__name(prog));
			return -EINVAL;
		}
		stub = target;
	}
	if (stub == SIZE_MAX)
		stub = cnt; /* filtering compiled out: nothing to replace */
	for (size_t i = stub; i < cnt; i++) {
		if (is_pseudo_call(&insns[i])) {
			snprintf(st.err, sizeof(st.err), "filter stub of %s is not the last function",
				 bpf_program__name(prog));
			return -EINVAL;
		}
	}

	bool direct = st.direct_packet && bpf_program__type(prog) == BPF_PROG_TYPE_TRACING;
	const struct bpf_insn *filter = direct ? st.filter->direct_insns : st.filter->insns;
	size_t filter_cnt = direct ? st.filter->direct_cnt : st.filter->cnt;

	out_cnt = stub + (stub < cnt ? filter_cnt : 0);
	out = malloc(out_cnt * sizeof(*out));
	if (!out)
		return -ENOMEM;
	memcpy(out, insns, stub * sizeof(*out));
	if (stub < cnt)
		memcpy(out + stub, filter, filter_cnt * sizeof(*out));

	ps->has_marker = false;
	for (size_t i = 0; i < stub; i++) {
		if (is_marker(&out[i])) {
			out[i].imm = ps->probe_id;
			ps->marker = i;
			ps->has_marker = true;
		}
	}

	/* Line info inside the stub describes its old code: keep only its first line (the kernel wants one per function). */
	if (opts->line_info && opts->line_info_rec_size) {
		const struct bpf_line_info *li = opts->line_info;
		__u32 keep = 0;

		while (keep < opts->line_info_cnt &&
		       ((const struct bpf_line_info *)((const char *)li + keep * opts->line_info_rec_size))
				       ->insn_off <= stub)
			keep++;
		opts->line_info_cnt = keep;
	}

	int ret = bpf_program__set_insns(prog, out, out_cnt);
	free(out);
	if (ret)
		return ret;
	ps->opts = *opts;
	ps->loaded = true;
	return 0;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap);

int loader_init(void)
{
	LIBBPF_OPTS(libbpf_prog_handler_opts, opts, .prog_prepare_load_fn = prepare_load);
	int ret;

	libbpf_set_print(libbpf_print);
	ret = libbpf_register_prog_handler("kprobe", BPF_PROG_TYPE_KPROBE, 0, &opts);
	if (ret < 0)
		return ret;
	ret = libbpf_register_prog_handler("kprobe.multi", BPF_PROG_TYPE_KPROBE, BPF_TRACE_KPROBE_MULTI, &opts);
	if (ret < 0)
		return ret;
	ret = libbpf_register_prog_handler("tp_btf", BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, &opts);
	return ret < 0 ? ret : 0;
}

struct bpf_program *loader_program_for(struct pwru_bpf *skel, enum backend backend, const struct probe *p)
{
	struct bpf_program *kprobe[] = { skel->progs.kprobe_skb_1, skel->progs.kprobe_skb_2, skel->progs.kprobe_skb_3,
					 skel->progs.kprobe_skb_4, skel->progs.kprobe_skb_5 };
	struct bpf_program *tp[] = { skel->progs.tp_skb_1, skel->progs.tp_skb_2, skel->progs.tp_skb_3,
				     skel->progs.tp_skb_4, skel->progs.tp_skb_5 };
	int i = p->skb_pos - 1;

	if (i < 0 || i >= MAX_SKB_POS)
		return NULL;
	if (p->kind == PROBE_FUNC)
		return backend == BACKEND_KPROBE_MULTI ? skel->progs.kmulti_skb_pos : kprobe[i];
	switch (p->role) {
	case TP_KFREE_SKB:
		return skel->progs.tp_kfree_skb;
	case TP_KFREE_SKB_REASON:
		return skel->progs.tp_kfree_skb_reason;
	case TP_CONSUME_SKB:
		return skel->progs.tp_consume_skb;
	case TP_CONSUME_SKB_LOCATION:
		return skel->progs.tp_consume_skb_location;
	default:
		return tp[i];
	}
}

static __thread bool quiet_thread;

void loader_quiet_thread(void)
{
	quiet_thread = true;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* Warnings carry the verifier's log when a load fails: worth showing. */
	if (level == LIBBPF_DEBUG || st.quiet || quiet_thread || getenv("PWRU_QUIET_LIBBPF"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* Whether the running kernel is major.minor or later. */
static bool kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

/*
 * When the programs wake the reader (ARCHITECTURE.md, "Waking the reader"):
 * once 1/16 of the ring is pending, looked at on every Nth event of a CPU,
 * N a power of two up to 32 and small enough that N events stay well under
 * that threshold on small rings. Events are 168 bytes + an 8-byte header.
 */
static void set_wakeup_policy(struct pwru_bpf *skel, unsigned int ringbuf_bytes)
{
	unsigned int wake = ringbuf_bytes / 16, every = 1;

	while (every < 32 && (every * 2) * 176 * 4 <= wake)
		every *= 2;
	skel->rodata->cfg_wakeup_bytes = wake;
	skel->rodata->cfg_wakeup_mask = every - 1;
}

/* --max-rate: one window a second for small rates, sixteenths of one above 16 events/s (bpf/pwru.bpf.c). */
static void set_rate_cap(struct pwru_bpf *skel, uint64_t per_second)
{
	if (!per_second)
		return;
	skel->rodata->cfg_rate_window_ns = per_second >= 16 ? 1000000000ULL / 16 : 1000000000ULL;
	skel->rodata->cfg_rate_budget = per_second >= 16 ? per_second / 16 : per_second;
}

static struct pwru_bpf *open_and_load(const struct load_config *cfg, const struct probe_set *probes, char *err,
				      size_t errlen)
{
	struct pwru_bpf *skel;
	struct bpf_program *prog;
	int ret;

	libbpf_set_print(libbpf_print);
	st.filter = cfg->filter;
	st.nprogs = 0;
	skel = pwru_bpf__open();
	if (!skel) {
		snprintf(err, errlen, "cannot open the BPF object: %s", strerror(errno));
		return NULL;
	}

	skel->rodata->cfg_netns = cfg->netns;
	skel->rodata->cfg_mark = cfg->mark;
	skel->rodata->cfg_mark_mask = cfg->mark_mask;
	skel->rodata->cfg_ifindex = cfg->ifindex;
	skel->rodata->cfg_ifindex_netns = cfg->ifindex_netns;
	skel->rodata->cfg_track_skb = cfg->track_skb;
	skel->rodata->cfg_output_stack = cfg->output_stack;
	skel->rodata->cfg_snaplen = cfg->snaplen;
	skel->rodata->cfg_tunnel_l3 = cfg->has_filter && cfg->filter->tunnel_l3;
	skel->rodata->cfg_tunnel_l2 = cfg->has_filter && cfg->filter->tunnel_l2;
	if (cfg->vxlan_port)
		skel->rodata->cfg_vxlan_ports[0] = skel->rodata->cfg_vxlan_ports[1] = (__u16)cfg->vxlan_port;
	if (cfg->geneve_port)
		skel->rodata->cfg_geneve_port = (__u16)cfg->geneve_port;
	skel->rodata->cfg_pcap_l3 = cfg->has_filter && cfg->filter->l3;
	skel->rodata->cfg_pcap_l2 = cfg->has_filter && cfg->filter->l2;
	skel->rodata->cfg_has_func_ip = cfg->has_func_ip;
	skel->rodata->cfg_direct_dev = kernel_at_least(6, 1);
	skel->rodata->cfg_direct_pkt = st.direct_packet;
	skel->rodata->cfg_bench_floor = cfg->bench_floor;
	skel->rodata->cfg_nf_exact = cfg->nf_exact;
	skel->rodata->cfg_nf_drop_reason = cfg->nf_drop_reason;
	skel->rodata->cfg_prog_exact = cfg->prog_exact;
	skel->rodata->cfg_copy_link = cfg->copy_link && cfg->copy_origins_fd > 0;
	if (cfg->copy_link && cfg->copy_origins_fd > 0 &&
	    (ret = bpf_map__reuse_fd(skel->maps.copy_origins, cfg->copy_origins_fd))) {
		snprintf(err, errlen, "sharing the copy functions' map: %s", strerror(-ret));
		goto fail;
	}
	if (cfg->nf_last_fd > 0 && ((ret = bpf_map__reuse_fd(skel->maps.nf_last, cfg->nf_last_fd)) ||
				    (ret = bpf_map__reuse_fd(skel->maps.nf_inside, cfg->nf_inside_fd)))) {
		snprintf(err, errlen, "sharing the netfilter walkers' maps: %s", strerror(-ret));
		goto fail;
	}
	/* NETFILTER_DROPs whose verdict waits to be read: the helper reads each as its event arrives. */
	if (cfg->nf_exact)
		bpf_map__set_max_entries(skel->maps.nf_drops, 4096);
	/* The drops tc and XDP programs returned, and those noted under their drop events (helper/prog_exact.c). */
	if (cfg->prog_exact) {
		bpf_map__set_max_entries(skel->maps.prog_drops, 4096);
		bpf_map__set_max_entries(skel->maps.prog_noted, 4096);
		/* The runs on traced packets, and the XDP runs waiting for their skb. */
		bpf_map__set_max_entries(skel->maps.prog_runs, 256 << 10);
		bpf_map__set_max_entries(skel->maps.prog_pending, 4096);
		bpf_map__set_max_entries(skel->maps.prog_built, 4096);
	}
	set_wakeup_policy(skel, cfg->ringbuf_bytes);
	set_rate_cap(skel, cfg->max_rate);
	bpf_map__set_max_entries(skel->maps.events, cfg->ringbuf_bytes);
	if (cfg->output_stack)
		bpf_map__set_max_entries(skel->maps.stacks, 16384);
	if (cfg->track_skb)
		bpf_map__set_max_entries(skel->maps.tracked_skbs, 65536);
	/*
	 * kprobe-multi: each function under one address, or two from ftrace's
	 * (helper/attach.c); the functions are those chosen, of which the
	 * untraceable are left out once their list is read.
	 */
	if (cfg->backend == BACKEND_KPROBE_MULTI) {
		__u32 funcs = 0;

		for (size_t id = 0; id < probes->cnt; id++)
			funcs += probes->v[id].kind == PROBE_FUNC;
		bpf_map__set_max_entries(skel->maps.kmulti_funcs, funcs ? funcs * 2 : 1);
	}
	/* Packets in flight at once whose last capture is remembered; an evicted one is captured again. */
	if (cfg->snaplen)
		bpf_map__set_max_entries(skel->maps.captured_skbs, 16384);

	/* Load only the programs some probe needs; the first probe of each names a tp_btf target. */
	bpf_object__for_each_program(prog, skel->obj) bpf_program__set_autoload(prog, false);
	for (size_t id = 0; id < probes->cnt; id++) {
		const struct probe *p = &probes->v[id];

		prog = loader_program_for(skel, cfg->backend, p);
		if (!prog || state_of(prog))
			continue;
		if (st.nprogs == MAX_PROGS) {
			snprintf(err, errlen, "too many programs");
			goto fail;
		}
		st.progs[st.nprogs++] = (struct prog_state){ .prog = prog, .probe_id = (int)id };
		bpf_program__set_autoload(prog, true);
		if (p->kind == PROBE_TRACEPOINT) {
			ret = bpf_program__set_attach_target(prog, 0, p->name);
			if (ret) {
				snprintf(err, errlen, "tracepoint %s: %s", p->name, strerror(-ret));
				goto fail;
			}
		}
	}

	st.err[0] = 0;
	ret = pwru_bpf__load(skel);
	if (ret) {
		snprintf(err, errlen, "loading the BPF programs failed: %s%s%s", strerror(-ret), st.err[0] ? ": " : "",
			 st.err);
		goto fail;
	}
	return skel;
fail:
	pwru_bpf__destroy(skel);
	return NULL;
}

struct pwru_bpf *loader_load(const struct load_config *cfg, const struct probe_set *probes, char *err,
			     size_t errlen)
{
	struct pwru_bpf *skel;

	/* 6.17 types skb->head as read-only untrusted memory, which tp_btf programs may load from. */
	st.direct_packet = kernel_at_least(6, 17);
	st.quiet = st.direct_packet;
	skel = open_and_load(cfg, probes, err, errlen);
	st.quiet = false;
	if (!skel && st.direct_packet) {
		/* A kernel that says 6.17 and types it otherwise (a vendor's): probe reads, as before 6.17. */
		st.direct_packet = false;
		skel = open_and_load(cfg, probes, err, errlen);
	}
	return skel;
}

int loader_tracepoint_fd(struct pwru_bpf *skel, const struct probe_set *probes, size_t id, char *err,
			 size_t errlen)
{
	const struct probe *p = &probes->v[id];
	struct bpf_program *prog = loader_program_for(skel, BACKEND_TRACEPOINT, p);
	struct prog_state *ps = prog ? state_of(prog) : NULL;
	struct bpf_insn *insns;
	size_t cnt;
	int fd;

	if (!ps || !ps->loaded) {
		snprintf(err, errlen, "no program loaded for tracepoint %s", p->name);
		return -ENOENT;
	}
	if (ps->probe_id == (int)id)
		return bpf_program__fd(prog);

	cnt = bpf_program__insn_cnt(prog);
	insns = malloc(cnt * sizeof(*insns));
	if (!insns)
		return -ENOMEM;
	memcpy(insns, bpf_program__insns(prog), cnt * sizeof(*insns));
	if (ps->has_marker)
		insns[ps->marker].imm = (int)id;

	LIBBPF_OPTS(bpf_prog_load_opts, opts);
	opts = ps->opts;
	opts.attach_btf_id = p->btf_id;
	opts.attach_btf_obj_fd = 0;
	opts.log_buf = NULL;
	opts.log_size = 0;
	opts.log_level = 0;
	fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, bpf_program__name(prog), "Dual BSD/GPL", insns, cnt, &opts);
	if (fd < 0) {
		int saved = errno;
		char *log = malloc(1 << 16);

		/* Load again with the verifier's log to say why. */
		if (log) {
			log[0] = 0;
			opts.log_buf = log;
			opts.log_size = 1 << 16;
			opts.log_level = 1;
			int again = bpf_prog_load(BPF_PROG_TYPE_TRACING, bpf_program__name(prog), "Dual BSD/GPL", insns,
						  cnt, &opts);
			if (again >= 0)
				close(again);
			size_t len = strlen(log);
			snprintf(err, errlen, "tracepoint %s: %s%s%s", p->name, strerror(saved), len ? ": " : "",
				 len > 300 ? log + len - 300 : log);
			free(log);
		}
		free(insns);
		return -saved;
	}
	free(insns);
	/* Copies may be loaded from several threads (attach.c): their list is the only state they share. */
	static pthread_mutex_t clones_lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&clones_lock);
	int *fds = realloc(st.clone_fds, (st.nclones + 1) * sizeof(*fds));
	if (fds) {
		st.clone_fds = fds;
		st.clone_fds[st.nclones++] = fd;
	}
	pthread_mutex_unlock(&clones_lock);
	if (!fds) {
		close(fd);
		return -ENOMEM;
	}
	return fd;
}

void loader_nf_map_fds(struct pwru_bpf *skel, int *nf_last, int *nf_inside, int *nf_drops)
{
	*nf_last = bpf_map__fd(skel->maps.nf_last);
	*nf_inside = bpf_map__fd(skel->maps.nf_inside);
	*nf_drops = bpf_map__fd(skel->maps.nf_drops);
}

void loader_prog_map_fds(struct pwru_bpf *skel, struct prog_map_fds *out)
{
	out->last = bpf_map__fd(skel->maps.prog_last);
	out->drops = bpf_map__fd(skel->maps.prog_drops);
	out->noted = bpf_map__fd(skel->maps.prog_noted);
	out->runs = bpf_map__fd(skel->maps.prog_runs);
	out->pending = bpf_map__fd(skel->maps.prog_pending);
	out->built = bpf_map__fd(skel->maps.prog_built);
}

volatile bool *loader_prog_traced(struct pwru_bpf *skel)
{
	return &skel->bss->prog_traced;
}

void loader_destroy(struct pwru_bpf *skel)
{
	for (size_t i = 0; i < st.nclones; i++)
		close(st.clone_fds[i]);
	free(st.clone_fds);
	st.clone_fds = NULL;
	st.nclones = 0;
	pwru_bpf__destroy(skel);
}
