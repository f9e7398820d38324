/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the tc and XDP programs returned for the traced packets, from the
 * programs themselves: fexit on each tc (cls, act) and XDP program loaded
 * when the trace begins (bpf/prog_verdict.bpf.c, one copy per program),
 * where the kernel lets programs be traced. Each run on a reported packet
 * becomes a PROG frame (or, with --emit json, a "prog" line); a run that
 * dropped is what names a tc or XDP drop's culprit exactly (culprit.c).
 * Programs loaded after the trace began are not traced.
 */
#ifndef PWRU_PROG_EXACT_H
#define PWRU_PROG_EXACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What one traced program returned for a dropped packet. */
struct prog_exact {
	uint32_t id;
	char name[16];
	char tag[17];
	int32_t ret;
	const char *verdict; /* TC_ACT_SHOT, XDP_DROP, XDP_ABORTED */
};

/* Whether the kernel holds any tc or XDP program that could be traced (with BTF): then the probes note their packets. */
bool prog_exact_wanted(void);
/*
 * A run becomes a PROG frame, or with --emit json a "prog" line; with
 * --emit text|wide its line is written too (culprit_words.h).
 * Loads and attaches a copy of the fexit program on every tc and XDP program
 * the kernel holds, sharing the probes' prog_last and prog_drops maps
 * (prog_noted: where a drop's run is read). Returns how many are
 * traced; 0 when there is none to trace; -errno when the kernel refused (no
 * fexit on programs here): drops then name the programs attached, and the
 * first of them says why (prog_exact_refused).
 */
int prog_exact_start(int prog_last_fd, int prog_drops_fd, int prog_noted_fd, bool emit_json, bool emit_text);
bool prog_exact_active(void);
/*
 * Once, for the first tc or XDP drop named by the programs attached: a
 * WARNING programs_not_exact that says why they were not traced, when the
 * kernel refused. Not at the start: on such kernels every trace beside a CNI's
 * programs would say it, drops or not.
 */
void prog_exact_say_refused(void);
/* Writes the runs read so far (PROG frames, or lines), while there is room. Never blocks. */
void prog_exact_pump(void);
/*
 * The run that dropped the packet of a tc (xdp false) or XDP drop event (its
 * skb and ts), as the drop tracepoint noted it. False when none was.
 */
bool prog_exact_drop_of(bool xdp, uint64_t skb, uint64_t ts, struct prog_exact *out);
/* The words for what a program returned: "TC_ACT_REDIRECT", "XDP_PASS", or the number. */
const char *prog_verdict_name(bool xdp, int32_t ret, char *buf, size_t len);
void prog_exact_end(void);

#endif
