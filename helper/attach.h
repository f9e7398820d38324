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

/* Probes the running kernel (the kprobe backends only when try_kprobes: it costs a test attach). */
void backends_detect(struct backend_support *s, bool try_kprobes);

/* Progress callback: phase, done, total. */
typedef void (*attach_progress_fn)(const char *phase, size_t done, size_t total);

struct attachment {
	struct bpf_link **links;
	size_t nlinks, cap;
	int *raw_fds; /* tracepoint attachments */
	size_t nraw, raw_cap;
	size_t attached;  /* probes now attached */
	size_t skipped;   /* probes the kernel refused (not traceable) */
};

/* Attaches every probe (marks probe->attached); returns -errno with a message when nothing could be,
 * -EINTR when stop() said to give up (a signal during a slow attach). */
int attach_all(struct pwru_bpf *skel, enum backend backend, struct probe_set *probes, struct attachment *att,
	       attach_progress_fn progress, bool (*stop)(void), char *err, size_t errlen);

void attach_detach(struct attachment *att, attach_progress_fn progress);

/* The backend to use (the one asked for, or auto's best): the note says how it was chosen; -1 with err. */
int backend_choose(enum backend asked, const struct backend_support *bs, enum backend *chosen, char *note,
		   size_t notelen, char *err, size_t errlen);

#endif
