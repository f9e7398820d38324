/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loads the probe programs: opens the embedded BPF object, sets its read-only
 * configuration, splices the compiled packet filter into every program, and
 * loads one copy of a tracepoint program per tracepoint.
 */
#ifndef PWRU_LOADER_H
#define PWRU_LOADER_H

#include <bpf/libbpf.h>
#include <stdbool.h>

#include "filter_translate.h"
#include "probes.h"

struct pwru_bpf;

enum backend { BACKEND_AUTO, BACKEND_KPROBE_MULTI, BACKEND_KPROBE, BACKEND_TRACEPOINT };

struct load_config {
	enum backend backend; /* resolved, never AUTO */
	const struct pcap_filter *filter;
	bool has_filter;
	unsigned int netns;
	unsigned int mark, mark_mask;
	unsigned int ifindex, ifindex_netns; /* --filter-ifname: the device, 0 = any */
	bool track_skb;
	bool output_stack;
	unsigned int snaplen; /* 0: no packet bytes */
	unsigned int vxlan_port, geneve_port; /* 0: the usual ports */
	bool has_func_ip;
	unsigned int ringbuf_bytes;
	uint64_t max_rate; /* --max-rate: matching events per second, 0 = no cap */
	bool bench_floor; /* every program returns at once */
	/* NETFILTER_DROP's verdicts kept for helper/nf_exact.c (the table walkers are probed): its value. */
	bool nf_exact;
	uint32_t nf_drop_reason;
	int nf_last_fd, nf_inside_fd; /* > 0: those maps, made by helper/nf_exact.c, are shared */
	/* tc and XDP programs may be traced (helper/prog_exact.c): the maps for it, sized; prog_traced switches it on. */
	bool prog_exact;
	/* The copy functions are probed (helper/copy_link.c): copy_origins is that descriptor, shared. */
	bool copy_link;
	int copy_origins_fd;
};

/* Copies noted and not yet reported at once, at most (copy_origins, bpf/copy_link.h). */
#define LOADER_COPY_ORIGINS 4096

/* Registers the program handlers and libbpf's printer; call before any BPF object is opened. */
int loader_init(void);
/* libbpf's messages from the calling thread are dropped (a load that may be refused, with another way to go). */
void loader_quiet_thread(void);

/* Opens and loads. probes[i] gets probe id i; programs are chosen for the probes present. */
struct pwru_bpf *loader_load(const struct load_config *cfg, const struct probe_set *probes, char *err,
			     size_t errlen);

/* The program that serves a probe under the configured backend. */
struct bpf_program *loader_program_for(struct pwru_bpf *skel, enum backend backend, const struct probe *p);

/*
 * A file descriptor of a loaded program for tracepoint probe id (may be called
 * from several threads at once): the program
 * itself for the first tracepoint of its kind, a fresh copy otherwise (tp_btf
 * programs are bound to one tracepoint at load). Copies are closed by
 * loader_destroy(). Returns -errno.
 */
int loader_tracepoint_fd(struct pwru_bpf *skel, const struct probe_set *probes, size_t id, char *err,
			 size_t errlen);

/* The maps a NETFILTER_DROP's verdict goes through (helper/nf_exact.c shares them). */
void loader_nf_map_fds(struct pwru_bpf *skel, int *nf_last, int *nf_inside, int *nf_drops);

/* The probes' maps that the copies of helper/prog_exact.c share (bpf/prog_verdict.h). */
struct prog_map_fds {
	int last;    /* the packet each CPU last reported */
	int drops;   /* the runs that returned a drop */
	int noted;   /* those runs under their drop events */
	int runs;    /* the runs on traced packets (a ring) */
	int pending; /* XDP runs waiting for the skb built around their buffer */
	int built;   /* skbs built from another, by their data buffer */
};

/* The maps the probes note each reported packet in, and the programs' runs and drops. */
void loader_prog_map_fds(struct pwru_bpf *skel, struct prog_map_fds *out);
/* The probes' switch for noting their packets, set once a program is traced (helper/prog_exact.c). */
volatile bool *loader_prog_traced(struct pwru_bpf *skel);

void loader_destroy(struct pwru_bpf *skel);

#endif
