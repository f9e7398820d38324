/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Copies linked to their originals (bpf/copy_link.h): fexit on skb_copy,
 * __pskb_copy_fclone and skb_copy_expand (bpf/copy_link.bpf.c) where the
 * kernel lets them attach, with a function backend, sharing one map with
 * the probes. Where they are not attached (tracepoints; fexit refused), a
 * copy starts as an unrelated packet: the first drop the helper reports
 * says so, once (WARNING copies_not_seen), as a verdict may depend on it.
 */
#ifndef PWRU_COPY_LINK_H_HELPER
#define PWRU_COPY_LINK_H_HELPER

#include <stdbool.h>
#include <stddef.h>

struct btf;

/* Whether any copy function is in vmlinux's BTF; keeps a copy of its bytes for the load. */
bool copy_link_possible(const struct btf *vmlinux);
/*
 * Makes the map the probes share with the copy functions' programs (for
 * loader.c to reuse) and loads and attaches those programs in a thread,
 * beside the probes' load. False (with why) when nothing was begun.
 */
bool copy_link_begin(int *copy_origins_fd, char *why, size_t len);
/* Waits for what copy_link_begin() began. False (with why) when the kernel refused the programs. */
bool copy_link_wait(char *why, size_t len);
/* Copies are linked (the programs are attached). */
bool copy_link_active(void);
/*
 * Called with each drop reported: the first, when copies are not linked,
 * writes WARNING copies_not_seen with why (set by copy_link_not_seen()).
 */
void copy_link_dropped(void);
/* Copies will not be linked in this trace, and why (said at the first drop). */
void copy_link_not_seen(const char *why);
/* Its links, to the kernel to remove after the helper (link_handoff.h). */
void copy_link_hand_off(void);
void copy_link_end(void);

#endif
