/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Whether ftrace can trace a function, from the function's own first bytes in
 * /proc/kcore: its start (or, past endbr64 or the nop the kernel seals an
 * unused endbr64 into, 4 bytes in) holds the 5-byte call site the compiler
 * put there for ftrace (a nop, or a call while something traces it).
 * Functions built notrace have none. This answers for a few thousand
 * functions in ~10 ms under emulation, where ftrace's own list
 * (traceable.h) costs the kernel ~0.5 s to format.
 */
#ifndef PWRU_FENTRY_SITE_H
#define PWRU_FENTRY_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fentry_sites;

/* Opens /proc/kcore (root, no lockdown); NULL when it cannot be read. */
struct fentry_sites *fentry_sites_open(void);
void fentry_sites_close(struct fentry_sites *fs);

/* Whether the function starting at addr begins with ftrace's call site (false when its text cannot be read). */
bool fentry_site_at(const struct fentry_sites *fs, uint64_t addr);

/* The same decision on bytes already read (code: len bytes from the function's start). */
bool fentry_site_in(const uint8_t *code, size_t len);

#endif
