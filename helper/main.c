// SPDX-License-Identifier: Apache-2.0
/*
 * pwru-helper: traces where packets go in the kernel. Everything it reports
 * goes to stdout as the record stream (bpf/event.h, docs/record-stream.md);
 * each step below is one call into the file that owns it.
 */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "../bpf/event.h"
#include "addr_names.h"
#include "attach.h"
#include "culprit.h"
#include "events.h"
#include "fentry_site.h"
#include "filter_translate.h"
#include "kernel_btf.h"
#include "link_handoff.h"
#include "loader.h"
#include "netns.h"
#include "nf_exact.h"
#include "copy_link.h"
#include "prog_exact.h"
#include "options.h"
#include "output.h"
#include "pcap_compile.h"
#include "privileges.h"
#include "probes.h"
#include "stop.h"
#include "symbols.h"
#include "traceable.h"
#include "version.h"

#define EXIT_FAILED 1
#define EXIT_BAD_INPUT 2

/* How long libpcap may take: the Ethernet form is dropped past the first bound, a needed form fails past the second. */
#define FILTER_OPTIONAL_MS 3000
#define FILTER_REQUIRED_MS 30000
/* How long the trace waits for the namespaces' rules to be read before it begins (culprit.c). */
#define CULPRIT_FIRST_MS 3000
/* How long the last frames wait for a reader that takes nothing (the probes are detached by then). */
#define LAST_WRITE_STALL_MS 2000

/* Everything a run holds, so that there is one way out. */
struct run {
	struct options opts;
	struct clocks clocks;
	struct pcap_filter filter;
	unsigned int netns, ifindex, ifindex_netns;
	regex_t re;
	bool has_re;
	struct symbols symbols;
	/* kprobe-multi: which functions ftrace can trace, judged from their first bytes instead of ftrace's list. */
	struct fentry_sites *sites;
	struct btf *btf;
	struct probe_set probes;
	struct drop_reasons drop_reasons;
	enum backend backend;
	char backend_note[256];
	struct pwru_bpf *skel;
	struct attachment att;
	struct addr_names owners; /* --addr-names */
	struct step_times steps;
	double start_ms; /* main() began */
	bool symbols_started;
	bool attached, events_open;
	char err[1024];
};

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int fail(int code, const char *what, const char *fmt, const char *detail)
{
	out_message(PWRU_FRAME_ERROR, what, fmt, detail);
	return code;
}

/* A stop before tracing began is not a failure: END says why, exit 0. */
static int stopped_early(const char *reason)
{
	stop_begin(reason);
	out_end(&(struct end_info){ .reason = reason });
	return 0;
}

/* An output that went away or failed, said as the client needs it (docs/record-stream.md). */
static int output_fault(const struct out_fault *f, const struct loop_result *res)
{
	if (f->stream) {
		/* Nothing can be said on the stream any more: a reader gone is no failure, a write error is. */
		if (out_fault_is_close(f))
			return 0;
		fprintf(stderr, "pwru-helper: cannot write the record stream to %s: %s\n", f->name, strerror(f->err));
		return EXIT_FAILED;
	}
	if (out_fault_is_close(f)) {
		struct end_info e = { .reason = "output-closed", .output = f->name };

		if (res)
			e = (struct end_info){ .reason = e.reason, .output = f->name, .events = res->events,
					       .lost = res->counts.lost, .discarded = res->counts.discarded };
		out_end(&e);
		return 0;
	}
	out_message(PWRU_FRAME_ERROR, "output_failed", "cannot write the trace to %s: %s", f->name, strerror(f->err));
	return EXIT_FAILED;
}

/*
 * One pcap expression compiled in its two forms (raw IP, Ethernet); what
 * names it in messages. Returns an exit code, or -1 to go on.
 */
static int compile_expr(struct run *r, const char *expr, const char *what, struct cbpf_prog *raw,
			struct cbpf_prog *eth)
{
	struct compile_request req = { .expr = expr, .ethernet_when_needed = r->opts.check,
				       .optional_ms = FILTER_OPTIONAL_MS, .required_ms = FILTER_REQUIRED_MS };
	bool eth_skipped;
	char msg[sizeof(r->err) + 64];

	switch (cbpf_compile(&req, raw, eth, &eth_skipped, r->err, sizeof(r->err))) {
	case COMPILE_OK:
		break;
	case COMPILE_REFUSED:
		snprintf(msg, sizeof(msg), "invalid %s: %s", what, r->err);
		return fail(EXIT_BAD_INPUT, "bad_filter", "%s", msg);
	case COMPILE_TOO_SLOW:
		return fail(EXIT_BAD_INPUT, "filter_too_slow", "%s: make the expression shorter", r->err);
	case COMPILE_STOPPED:
		return stopped_early(stop_reason());
	case COMPILE_FAILED:
		return fail(EXIT_FAILED, out_of_memory() ? "out_of_memory" : "compile_failed", "%s", r->err);
	}
	if (eth_skipped)
		out_message(PWRU_FRAME_WARNING, "filter_ip_only",
			    "libpcap did not compile the Ethernet form of the %s within %d s: packets are matched "
			    "on their IP header only, so steps before the kernel has set it (early receive), ARP "
			    "and packets inside VXLAN or Geneve are not matched by it",
			    what, FILTER_OPTIONAL_MS / 1000);
	return -1;
}

/*
 * The user's input, checked and resolved: the filter compiled, the regex,
 * the namespace and the interface in it. Needs no privileges: this is all of
 * --check. Returns an exit code, or -1 to go on.
 */
static int check_input(struct run *r)
{
	const struct options *o = &r->opts;
	int rc, ret;

	if (o->filter_netns && netns_inode(o->filter_netns, &r->netns, r->err, sizeof(r->err)))
		return fail(EXIT_BAD_INPUT, "usage", "%s", r->err);
	if (o->filter_ifname) {
		ret = netns_ifindex(r->netns, o->filter_ifname, &r->ifindex, r->err, sizeof(r->err));
		if (ret == -ENODEV || ret == -ENOENT)
			return fail(EXIT_BAD_INPUT, "no_interface", "%s", r->err);
		if ((ret == -EPERM || ret == -EACCES) && o->check)
			out_message(PWRU_FRAME_WARNING, "interface_unchecked", "%s (the trace checks it again)", r->err);
		else if (ret)
			return fail(EXIT_FAILED, "not_permitted", "%s", r->err);
		if (r->netns)
			r->ifindex_netns = r->netns;
		else if ((ret = netns_own(&r->ifindex_netns)))
			return fail(EXIT_FAILED, "no_netns", "cannot read the helper's network namespace: %s",
				    strerror(-ret));
	}
	if (o->filter_func) {
		rc = regcomp(&r->re, o->filter_func, REG_EXTENDED | REG_NOSUB);
		if (rc) {
			regerror(rc, &r->re, r->err, sizeof(r->err));
			return fail(EXIT_BAD_INPUT, "bad_regex", "--filter-func: %s", r->err);
		}
		r->has_re = true;
	}
	if (!*o->pcap_filter && !o->tunnel_filter) {
		pcap_filter_match_all(&r->filter);
		return -1;
	}
	struct cbpf_prog raw = { 0 }, eth = { 0 }, tunnel_raw = { 0 }, tunnel_eth = { 0 };
	/* An empty outer filter beside --tunnel-filter matches nothing by itself: only the inner packet counts. */
	if (*o->pcap_filter && (rc = compile_expr(r, o->pcap_filter, "pcap filter", &raw, &eth)) >= 0)
		return rc;
	if (o->tunnel_filter && (rc = compile_expr(r, o->tunnel_filter, "--tunnel-filter", &tunnel_raw, &tunnel_eth)) >= 0) {
		cbpf_prog_free(&raw);
		cbpf_prog_free(&eth);
		return rc;
	}
	ret = pcap_filter_build(&raw, &eth, o->tunnel_filter ? &tunnel_raw : NULL, o->tunnel_filter ? &tunnel_eth : NULL,
				&r->filter, r->err, sizeof(r->err));
	cbpf_prog_free(&raw);
	cbpf_prog_free(&eth);
	cbpf_prog_free(&tunnel_raw);
	cbpf_prog_free(&tunnel_eth);
	if (ret && out_of_memory())
		return fail(EXIT_FAILED, "out_of_memory", "translating the filter: %s", r->err);
	if (ret)
		return fail(EXIT_BAD_INPUT, "bad_filter", "invalid pcap filter: %s", r->err);
	return -1;
}

/* The probes, and the backend to attach them with. Returns an exit code, or -1 to go on. */
static int choose_probes(struct run *r, struct backend_support *support)
{
	const struct options *o = &r->opts;
	struct probe_request req = { .re = r->has_re ? &r->re : NULL, .filter_func = o->filter_func,
				     .all_kmods = o->all_kmods };
	int ret;

	backends_detect(support, o->backend != BACKEND_TRACEPOINT, o->backend == BACKEND_KPROBE);
	if (o->verify_only) {
		/* The verifier accepts programs the kernel could never attach: check them anyway. */
		r->backend = o->backend;
		snprintf(r->backend_note, sizeof(r->backend_note), "verify only");
	} else if (backend_choose(o->backend, support, &r->backend, r->backend_note, sizeof(r->backend_note), r->err,
				  sizeof(r->err))) {
		return fail(EXIT_BAD_INPUT, "backend_unavailable", "%s", r->err);
	}
	req.functions = r->backend != BACKEND_TRACEPOINT;
	/*
	 * Kernel symbols name callers and stack frames: with tracepoints they load
	 * in the background while the programs load and attach (not earlier:
	 * reading them slowed the BTF's parsing by half).
	 */
	if (!r->symbols_started && !req.functions) {
		symbols_start(&r->symbols, true);
		r->symbols_started = true;
	}
	ret = probes_choose(r->btf, &req, &r->probes, r->err, sizeof(r->err));
	if (ret == -ENOENT)
		return fail(EXIT_BAD_INPUT, "no_match", "%s", r->err);
	if (ret)
		return fail(EXIT_FAILED, "out_of_memory", "choosing probes: %s", strerror(-ret));
	if (r->err[0])
		out_message(PWRU_FRAME_WARNING, "no_module_btf", "%s", r->err);
	if (drop_reasons_load(r->btf, &r->drop_reasons))
		return fail(EXIT_FAILED, "out_of_memory", "%s", "out of memory reading drop reasons");
	return -1;
}

/*
 * The functions kept and where they are, once the kernel's lists are read
 * (they were read in threads while the BTF was parsed and the programs
 * loaded). Returns an exit code, or -1 to go on.
 */
static int place_probes(struct run *r)
{
	const struct kallsyms *ks = NULL;
	int ret;

	if (r->backend == BACKEND_TRACEPOINT)
		return -1;
	/*
	 * kprobe-multi: at the functions' symbols, each judged from its first
	 * bytes (fentry_site.h), or else at ftrace's addresses (traceable.h),
	 * which need no kernel symbols before tracing.
	 */
	bool by_code = r->sites && r->backend == BACKEND_KPROBE_MULTI;
	if (by_code) {
		symbols_urgent(&r->symbols);
		ks = symbols_get(&r->symbols);
		if (!ks || ks->addrs_hidden) {
			/* No symbols to read the functions' bytes at: ftrace's list and its addresses, as without kcore. */
			by_code = false;
			ks = NULL;
			traceable_prefetch(true);
		}
	}
	bool ftrace_addrs = !by_code && r->backend == BACKEND_KPROBE_MULTI && traceable_has_addrs(traceable_get());
	if (!ftrace_addrs && !by_code) {
		/* Which functions exist, and where: plain kprobes (or kprobe-multi elsewhere) need kernel symbols now. */
		if (!r->symbols_started)
			symbols_start(&r->symbols, false);
		r->symbols_started = true;
		symbols_urgent(&r->symbols); /* waited for now: no longer behind anything */
		ks = symbols_get(&r->symbols);
		if (!ks)
			return fail(EXIT_FAILED, "no_kallsyms", "cannot read /proc/kallsyms: %s",
				    strerror(-symbols_error(&r->symbols)));
		if (ks->addrs_hidden)
			return fail(EXIT_FAILED, "kallsyms_hidden", "%s",
				    "kernel addresses are hidden in /proc/kallsyms (kernel.kptr_restrict=2): use "
				    "--backend tracepoint or set kernel.kptr_restrict=1");
	}
	ret = probes_place(&r->probes, ks, ftrace_addrs, by_code ? r->sites : NULL, r->opts.filter_func, r->err,
			   sizeof(r->err));
	fentry_sites_close(r->sites);
	r->sites = NULL;
	if (ret == -ENOENT)
		return fail(EXIT_BAD_INPUT, "no_match", "%s", r->err);
	return -1;
}

/* Loads the programs with the filter and the configuration in them. Returns an exit code, or -1 to go on. */
static int load(struct run *r, const struct backend_support *support)
{
	const struct options *o = &r->opts;
	struct load_config lc = {
		.backend = r->backend,
		.filter = &r->filter,
		.has_filter = *o->pcap_filter != 0 || o->tunnel_filter,
		.vxlan_port = o->vxlan_port,
		.geneve_port = o->geneve_port,
		.netns = r->netns,
		.mark = o->mark,
		.mark_mask = o->mark_mask,
		.ifindex = r->ifindex,
		.ifindex_netns = r->ifindex_netns,
		.track_skb = o->track_skb,
		.output_stack = o->output_stack,
		.snaplen = o->snaplen,
		.has_func_ip = support->func_ip,
		.ringbuf_bytes = o->ringbuf_bytes,
		.max_rate = o->max_rate,
		.bench_floor = o->bench_floor,
	};
	int ret;

	/*
	 * With function probes, the netfilter table walkers too (fexit), if the
	 * kernel has them: a NETFILTER_DROP's table and chain then come from the
	 * kernel itself, not only from the rules' counters.
	 */
	const struct drop_reason *nf = drop_reason_named(&r->drop_reasons, "NETFILTER_DROP");
	bool nf_begun = false;

	if ((ret = loader_init()) < 0)
		return fail(EXIT_FAILED, "load_failed", "registering program handlers: %s", strerror(-ret));
	if (nf && r->backend != BACKEND_TRACEPOINT && !o->verify_only && nf_exact_possible(r->btf)) {
		lc.nf_exact = true;
		lc.nf_drop_reason = nf->value;
		/* Loaded beside the probes, in a thread, sharing two maps with them. */
		nf_begun = nf_exact_begin(&lc.nf_last_fd, &lc.nf_inside_fd, r->err, sizeof(r->err));
		if (!nf_begun)
			out_message(PWRU_FRAME_WARNING, "netfilter_not_exact",
				    "netfilter drops are named by the rules' counters only: %s", r->err);
	}
	/* With function probes, the copy functions too (fexit): a copy is linked to what it was copied from. */
	bool copy_begun = false;

	if (r->backend == BACKEND_TRACEPOINT)
		copy_link_not_seen("the tracepoint backend cannot see copies made (function probes can)");
	else if (!o->verify_only && !copy_link_possible(r->btf))
		copy_link_not_seen("this kernel has none of the copy functions in its BTF");
	else if (!o->verify_only && !(copy_begun = copy_link_begin(&lc.copy_origins_fd, r->err, sizeof(r->err))))
		copy_link_not_seen(r->err);
	lc.copy_link = copy_begun;
	/* tc and XDP programs, loaded now or later: their runs are traced too (fexit), where the kernel lets them. */
	lc.prog_exact = !o->verify_only;
	/* libbpf needs the kernel's BTF for CO-RE and the tracepoints: it takes this copy (and frees it after loading). */
	kernel_btf_give_to_libbpf(r->btf);
	r->btf = NULL;
	r->skel = loader_load(&lc, &r->probes, r->err, sizeof(r->err));
	if (!r->skel)
		return stop_reason() ? stopped_early(stop_reason()) : fail(EXIT_FAILED, "load_failed", "%s", r->err);
	/* Refused (no fentry here): the drops are named by counters alone, as with tracepoints. */
	if (nf_begun) {
		int nf_last, nf_inside, nf_drops;

		double t = mono_ms();
		loader_nf_map_fds(r->skel, &nf_last, &nf_inside, &nf_drops);
		if (!nf_exact_wait(nf_drops, r->err, sizeof(r->err)))
			out_message(PWRU_FRAME_WARNING, "netfilter_not_exact",
				    "netfilter drops are named by the rules' counters only: %s", r->err);
		r->steps.netfilter = mono_ms() - t;
	}
	/* Refused: copies start as packets of their own, and the first drop says so. */
	if (copy_begun && !copy_link_wait(r->err, sizeof(r->err)))
		copy_link_not_seen(r->err);
	/*
	 * The tc and XDP programs loaded now are traced before the probes attach,
	 * those loaded later by a thread (prog_exact.c). Refused (no fexit on
	 * programs here): a tc or XDP drop names the programs attached there, and
	 * the first such drop says why.
	 */
	struct prog_map_fds prog_maps;

	loader_prog_map_fds(r->skel, &prog_maps);
	if (lc.prog_exact)
		prog_exact_start(&prog_maps, loader_prog_traced(r->skel), !o->on_drop, o->emit_json,
				 o->emit_text != 0, o->line_node);
	r->err[0] = 0;
	return -1;
}

/* --verify-only: tracepoint programs are loaded (verified) per tracepoint too, then nothing is attached. */
static int verify_only(struct run *r)
{
	for (size_t id = 0; id < r->probes.cnt; id++)
		if (r->probes.v[id].kind == PROBE_TRACEPOINT &&
		    loader_tracepoint_fd(r->skel, &r->probes, id, r->err, sizeof(r->err)) < 0)
			return fail(EXIT_FAILED, "load_failed", "%s", r->err);
	out_end(&(struct end_info){ .reason = "verified" });
	return 0;
}

/* Tracing, from READY to the final STATS. Returns the exit code. */
static int trace(struct run *r, double attach_ms)
{
	const struct options *o = &r->opts;
	struct loop_config loop = {
		.skel = r->skel,
		.probes = &r->probes,
		.symbols = &r->symbols,
		.kprobe_backend = r->backend == BACKEND_KPROBE,
		.duration_sec = o->duration_sec,
		.max_events = o->max_events,
		.emit_json = o->emit_json,
		.emit_text = o->emit_text,
		.text_notes = o->text_notes,
		.func_kind = backend_name(r->backend),
		.drop_reasons = &r->drop_reasons,
		.clocks = r->clocks,
		.packet_starts = o->packet_starts,
		.snaplen = o->snaplen,
		.on_drop = o->on_drop,
		.max_rate = o->max_rate,
		.owners = o->addr_names ? &r->owners : NULL,
		.line_node = o->line_node,
	};
	struct loop_result res = { 0 };
	int ret;

	if (o->addr_names && (ret = addr_names_load(&r->owners, o->addr_names))) {
		snprintf(r->err, sizeof(r->err), "--addr-names %s: %s", o->addr_names, strerror(-ret));
		return fail(EXIT_BAD_INPUT, "usage", "%s", r->err);
	}

	/* Names for callers and stack frames: the first event that needs one waits for them. */
	if (!r->symbols_started)
		symbols_start(&r->symbols, false);
	r->symbols_started = true;
	symbols_urgent(&r->symbols);
	/* The rules' counters as the trace begins: a netfilter drop's rule is the one whose counter moves. */
	culprit_configure(&r->drop_reasons, o->emit_json, o->emit_text != 0, o->line_node);
	double t = mono_ms();
	culprit_wait_first(CULPRIT_FIRST_MS);
	r->steps.culprits = mono_ms() - t;
	r->steps.total = mono_ms() - r->start_ms;
	out_ready(&(struct ready_info){ .backend = backend_name(r->backend), .backend_note = r->backend_note,
				       .func_kind = backend_name(r->backend), .probes = &r->probes,
				       .attached = r->att.attached, .skipped = r->att.skipped, .attach_ms = attach_ms,
				       .steps = r->steps,
				       .filter = o->pcap_filter, .ringbuf_bytes = o->ringbuf_bytes,
				       .drop_reasons = &r->drop_reasons });
	if ((ret = events_open(&loop)))
		return fail(EXIT_FAILED, ret == -ENOMEM ? "out_of_memory" : "ring_buffer",
			    "cannot read the ring buffer: %s", strerror(-ret));
	r->events_open = true;

	/* --lines-fd: the client writes the trace's header line first; events wait in the ring buffer meanwhile. */
	const char *stop_early = out_lines_direct() ? stop_wait_for_go() : NULL;
	if (stop_early)
		res.reason = stop_early;
	else
		events_loop(&res);

	/*
	 * Stop the programs at once, deliver what fired before the stop, and END:
	 * the trace is over for the reader. The probes are detached after END
	 * (cleanup()), with PROGRESS frames: the kernel takes its time with each.
	 */
	stop_begin(res.reason);
	attach_quiesce(r->skel);
	events_finish(&res);

	/* A fault while the last events were written counts as much as one during the run. */
	const struct out_fault *fault = res.fault ? res.fault : out_fault();
	if (fault)
		return output_fault(fault, &res);
	if (strcmp(res.reason, "out-of-memory") == 0 || out_of_memory())
		return fail(EXIT_FAILED, "out_of_memory", "%s", "the helper ran out of memory");
	if (strcmp(res.reason, "error") == 0)
		return fail(EXIT_FAILED, "ring_buffer", "reading the ring buffer: %s", strerror(-res.err));
	out_end(&(struct end_info){ .reason = res.reason, .events = res.events, .lost = res.counts.lost,
				   .discarded = res.counts.discarded, .skipped = res.counts.skipped,
				   .rate_capped = res.counts.rate_capped });
	return 0;
}

static void cleanup(struct run *r)
{
	/*
	 * The last words (END or ERROR) are written: the probes are detached now,
	 * while they go out to the reader (who need not wait for the kernel's
	 * slow part), with PROGRESS frames for a reader that stays. Then the memory.
	 */
	out_lines_end();
	if (r->attached) {
		stop_begin(stop_reason());
		prog_exact_stop();
		attach_quiesce(r->skel);
	}
	/*
	 * Function probes' links are the kernel's to remove from here on (they
	 * return at once since the quiesce): closing them below does not wait
	 * for the kernel's grace periods, one removal after the other.
	 */
	if (r->backend == BACKEND_KPROBE_MULTI)
		attach_hand_off_multi(&r->att);
	nf_exact_hand_off();
	copy_link_hand_off();
	prog_exact_hand_off();
	handoff_pin();
	if (r->attached)
		attach_detach(&r->att, out_progress);
	out_drain(LAST_WRITE_STALL_MS);
	culprit_end();
	nf_exact_end();
	prog_exact_end();
	copy_link_end();
	if (r->events_open)
		events_close();
	if (r->skel)
		loader_destroy(r->skel);
	handoff_end(); /* every descriptor of theirs closed: the kernel goes on alone */
	btf__free(r->btf);
	probes_free(&r->probes);
	drop_reasons_free(&r->drop_reasons);
	pcap_filter_free(&r->filter);
	symbols_free(&r->symbols);
	fentry_sites_close(r->sites);
	addr_names_free(&r->owners);
	if (r->has_re)
		regfree(&r->re);
	free(r->opts.pcap_filter);
}

static int run(struct run *r, enum options_result parsed)
{
	const struct options *o = &r->opts;
	struct backend_support support;
	int code;

	/* HELLO first, whatever follows: the client knows at once that it speaks to the helper. */
	out_hello(&r->clocks);
	if (out_fault())
		return output_fault(out_fault(), NULL); /* nobody can hear us: nothing to do */
	if (parsed == OPTIONS_NO_MEMORY)
		return fail(EXIT_FAILED, "out_of_memory", "%s", "out of memory");
	if (parsed != OPTIONS_OK)
		return fail(EXIT_BAD_INPUT, "usage", "%s", r->err);
	for (int i = 0; i < o->nline_fds; i++)
		out_add_lines(o->line_fds[i], o->line_names[i]);
	if (o->lines_stream)
		out_lines_to_stream();

	/* Privileges and the kernel's BTF (not for --check, which loads nothing). */
	if (!o->check) {
		if (!privileged())
			return fail(EXIT_FAILED, "not_permitted", "%s",
				    "not permitted: tracing needs root, or CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN "
				    "before 5.8)");
		/*
		 * Function probes need the kernel's symbols and which functions ftrace
		 * can trace, each seconds under emulation, and a test attach that waits
		 * on the kernel: all in threads, beside the BTF.
		 */
		if (o->backend != BACKEND_TRACEPOINT && !o->verify_only && backends_may_have_kprobes()) {
			bool multi = o->backend != BACKEND_KPROBE && traceable_addrs_possible();

			/*
			 * kprobe-multi (6.5+ here): kallsyms, and each function's first
			 * bytes in /proc/kcore, cost the kernel less than formatting
			 * ftrace's list, whose every 4 KiB read walks its records from the
			 * first (BENCHMARKS.md section 8). PWRU_TRACEABLE_FROM=list reads
			 * the list instead (the kernel matrix compares the two).
			 */
			const char *from = getenv("PWRU_TRACEABLE_FROM");
			if (multi && !(from && strcmp(from, "list") == 0))
				r->sites = fentry_sites_open();
			if (r->sites) {
				symbols_start(&r->symbols, false);
				r->symbols_started = true;
			} else {
				/* Or at ftrace's addresses where they can be read: kallsyms waits for READY. */
				if (!multi) {
					symbols_start(&r->symbols, true);
					r->symbols_started = true;
				}
				traceable_prefetch(multi);
			}
			backends_detect_start(true, o->backend == BACKEND_KPROBE);
		}
		double t = mono_ms();
		r->btf = kernel_btf_load();
		r->steps.btf = mono_ms() - t;
		if (!r->btf)
			return fail(EXIT_FAILED, "no_btf", "%s",
				    "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): kubectl-pwru needs a "
				    "kernel built with CONFIG_DEBUG_INFO_BTF=y (5.5 or later; the default on current "
				    "Debian, Ubuntu, Fedora, RHEL 8.2+, COS, Bottlerocket and Amazon Linux 2023)");
	}

	/* The filter compiled, the namespace and interface found: bad input fails before anything is loaded. */
	double t = mono_ms();
	if ((code = check_input(r)) >= 0)
		return code;
	r->steps.input = mono_ms() - t;
	if (o->check)
		return stopped_early("check");
	/* The namespaces' netfilter rules are read meanwhile (child processes), to name what drops. */
	if (!o->verify_only)
		culprit_begin(r->netns);

	/* What to probe, and with which backend. */
	t = mono_ms();
	if ((code = choose_probes(r, &support)) >= 0)
		return code;
	r->steps.probes = mono_ms() - t;

	/* Load the programs, while the lists of what can be probed, and where, are still being read. */
	double t0 = mono_ms();
	if ((code = load(r, &support)) >= 0)
		return code;
	r->steps.load = mono_ms() - t0 - r->steps.netfilter;
	if (o->verify_only)
		return verify_only(r);
	t = mono_ms();
	if ((code = place_probes(r)) >= 0)
		return code;
	r->steps.probes += mono_ms() - t;

	/* Attach them, unless the client went away meanwhile. */
	if (out_fault())
		return output_fault(out_fault(), NULL);
	r->attached = true;
	int ret = attach_all(r->skel, r->backend, &r->probes, &r->att, out_progress, stop_requested, r->err,
			     sizeof(r->err));
	if (ret == -EINTR || (ret && stop_reason()))
		return stopped_early(stop_reason() ? stop_reason() : "signal");
	r->steps.attach = r->att.attach_ms;
	if (ret)
		return fail(EXIT_FAILED, ret == -ENOMEM ? "out_of_memory" : "attach_failed", "%s", r->err);

	/* Trace until told to stop, detach, and say goodbye. */
	return trace(r, mono_ms() - t0);
}

int main(int argc, char **argv)
{
	static struct run r;
	enum options_result parsed;
	int code;

	r.start_ms = mono_ms();
	/* The options are read before anything is written, so that --help and --version print text. */
	parsed = options_parse(argc, argv, &r.opts, r.err, sizeof(r.err));
	if (parsed == OPTIONS_HELP || parsed == OPTIONS_VERSION) {
		if (parsed == OPTIONS_HELP)
			options_usage();
		else
			printf("pwru-helper %s\n", PWRU_HELPER_VERSION);
		return 0;
	}
	stop_init(); /* without its pipe, signals are still noted, only noticed a poll later */
	out_init(r.opts.deflate);
	code = run(&r, parsed);
	cleanup(&r);
	return code;
}
