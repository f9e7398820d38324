/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the tc and XDP programs returned for the traced packets, from the
 * programs themselves: fexit on each tc (cls, act) and XDP program
 * (bpf/prog_verdict.bpf.c, one copy per program), where the kernel lets
 * programs be traced. Those loaded when the trace begins are traced before
 * the probes attach; those loaded later (a CNI agent that restarts) by a
 * thread that looks for new program ids every 200 ms. Each run on a reported
 * packet becomes a PROG frame (or, with --emit json, a "prog" line); a run
 * that dropped is what names a tc or XDP drop's culprit exactly (culprit.c).
 * A drop by a program not traced (yet) names the programs attached there,
 * and says why each was not (prog_exact_why_not).
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

/*
 * Loads and attaches a copy of the fexit program on every tc and XDP program
 * the kernel holds, sharing the probes' maps (prog_last, prog_drops,
 * prog_pending; prog_runs: the runs read; prog_noted: where a drop's run
 * is read), then starts the thread that does
 * the same for programs loaded later. traced_flag (the probes' prog_traced)
 * is set once a copy is attached: the probes note their packets from then
 * on. Returns how many are traced now; -errno when the kernel refused (no
 * fexit on programs here): drops then name the programs attached, and the
 * first of them says why (prog_exact_say_refused). A run becomes a PROG
 * frame, or with --emit json a "prog" line; with --emit text|wide its line
 * is written too (culprit_words.h); without write_runs (--on-drop, which
 * writes reports only) runs are read and let go, and only drops are named.
 */
struct prog_map_fds;
int prog_exact_start(const struct prog_map_fds *maps, volatile bool *traced_flag, bool write_runs, bool emit_json,
		     bool emit_text, const char *node);
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
/*
 * Why a drop (its event's ts) at a hook where program id is attached was not
 * named exactly by it: not traced (no BTF; loaded after the trace began and
 * not traced yet), or traced but not seen returning that drop. False when
 * programs are not traced in this run at all, or the kernel refused every
 * copy (prog_exact_say_refused says that once).
 */
bool prog_exact_why_not(uint32_t id, uint64_t drop_ts, char *out, size_t len);
/* The words for what a program returned: "TC_ACT_REDIRECT", "XDP_PASS", or the number. */
const char *prog_verdict_name(bool xdp, int32_t ret, char *buf, size_t len);
/* No more programs traced from now on (the trace is stopping); those traced stay until prog_exact_end. */
void prog_exact_stop(void);
/* Its links, to the kernel to remove after the helper (link_handoff.h); after prog_exact_stop(). */
void prog_exact_hand_off(void);
void prog_exact_end(void);

#endif
