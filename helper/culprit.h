/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Naming the culprit of a drop (docs/record-stream.md, CULPRIT): for a tc or
 * XDP drop, the programs attached there (culprit_bpf.c); for a
 * NETFILTER_DROP, the rule that dropped it, known by its counters moving in
 * the namespace where the drop happened. The namespaces' rules are read
 * before the trace begins and again after each drop (culprit_tools.c runs the
 * node's own tools); the rules that drop and counted packets in between name
 * it, or the frame says why it could not tell. Nothing here blocks the
 * tracing loop: the readings run in child processes, and their answers are
 * picked up by culprit_pump().
 */
#ifndef PWRU_CULPRIT_H
#define PWRU_CULPRIT_H

#include <stdbool.h>
#include <stdint.h>

#include "probes.h"

struct pwru_event;

/*
 * Starts reading the rules of every namespace (only_netns: of that one), so
 * that they are known before the first packet is traced.
 */
void culprit_begin(unsigned int only_netns);
/* Waits (at most max_ms, or until a stop) for those first readings: the trace begins after them. */
void culprit_wait_first(int max_ms);
/*
 * How drops are recognised, and where the answer goes (--emit json: a line;
 * else a CULPRIT frame, and with --emit text|wide its line too).
 */
void culprit_configure(const struct drop_reasons *reasons, bool emit_json, bool emit_text, const char *node);
/*
 * A drop event as it is delivered (caller: its drop location's name, or
 * NULL): a NETFILTER_DROP gets its namespace's rules read again; a drop by a
 * tc or XDP program names the programs attached there (asked at once).
 */
void culprit_drop(const struct pwru_event *ev, const char *caller);
/* Picks up finished readings and writes their culprits; starts the next ones. Never blocks. */
void culprit_pump(void);
/* At the end of the trace: the readings for the last drops, waited for at most max_ms. */
void culprit_finish(int max_ms);
/* Kills readings still running, frees everything. */
void culprit_end(void);

#endif
