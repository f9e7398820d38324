/* SPDX-License-Identifier: Apache-2.0 */
/* Backends: which ones the kernel offers, and attaching the loaded programs with one. */
#ifndef PWRU_ATTACH_H
#define PWRU_ATTACH_H

#include <stdbool.h>
#include <stddef.h>

#include "loader.h"
#include "probes.h"

struct backend_support {
	bool kprobe_multi;
	bool kprobe;
	bool tracepoint;
	bool func_ip; /* bpf_get_func_ip() in kprobe programs (5.15+) */
	char kprobe_multi_why[128];
	char kprobe_why[128];
	char tracepoint_why[128];
};

const char *backend_name(enum backend b);
int backend_parse(const char *s, enum backend *out);

/* Whether the kernel has a kprobe PMU at all (a cheap look, before the test attach of backends_detect). */
bool backends_may_have_kprobes(void);

/*
 * Probes the running kernel (the kprobe backends only when try_kprobes: it
 * costs a test attach; plain kprobes only when want_kprobe or without
 * kprobe-multi).
 */
void backends_detect(struct backend_support *s, bool try_kprobes, bool want_kprobe);
/*
 * The same in a thread, begun early: the test attach waits on the kernel
 * while the BTF and the symbols are read. backends_detect() then takes its
 * answer (it was begun with the same flags) as soon as it is known: the
 * thread removes its test probes after that, beside the loading (a removal
 * waits for RCU grace periods, ~0.15 s under emulation).
 */
void backends_detect_start(bool try_kprobes, bool want_kprobe);

/* Progress callback: phase, done, total. */
typedef void (*attach_progress_fn)(const char *phase, size_t done, size_t total);

struct attachment {
	struct bpf_link **links;
	size_t nlinks, cap;
	int *raw_fds; /* tracepoint attachments */
	size_t nraw, raw_cap;
	size_t attached;  /* probes now attached */
	size_t skipped;   /* probes the kernel refused (not traceable) */
	double attach_ms; /* the attach step alone */
};

/*
 * Attaches every probe (marks probe->attached); returns -errno with a message
 * when nothing could be, or when descriptors or memory ran out (an error,
 * never a skipped probe), -EINTR when stop() said to give up (a signal, or
 * the client gone, during a slow attach). What did attach stays in att, for
 * attach_detach().
 */
int attach_all(struct pwru_bpf *skel, enum backend backend, struct probe_set *probes, struct attachment *att,
	       attach_progress_fn progress, bool (*stop)(void), char *err, size_t errlen);

/* Stops the programs (they return at once) and waits until none still runs: the counters are final then. */
void attach_quiesce(struct pwru_bpf *skel);

/* The kprobe-multi links, to the kernel to remove after the helper (link_handoff.h). */
void attach_hand_off_multi(const struct attachment *att);

/* Detaches everything, from several threads (each probe removed waits in the kernel); progress as it goes. */
void attach_detach(struct attachment *att, attach_progress_fn progress);

/* The backend to use (the one asked for, or auto's best): the note says how it was chosen; -1 with err. */
int backend_choose(enum backend asked, const struct backend_support *bs, enum backend *chosen, char *note,
		   size_t notelen, char *err, size_t errlen);

#endif
