/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The functions ftrace can trace, from tracefs: by name, and where the kernel
 * lists them (available_filter_functions_addrs, 6.5+, read on x86-64) with
 * ftrace's address for each, which kprobe-multi attaches by with no symbol
 * table (the address is the call to __fentry__: the function's start, or 4
 * bytes past it when it begins with endbr64).
 */
#ifndef PWRU_TRACEABLE_H
#define PWRU_TRACEABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether ftrace's addresses can be read here (x86-64 and a kernel that lists them). */
bool traceable_addrs_possible(void);

/*
 * Starts reading the list in a thread (the kernel formats it line by line on
 * each read, ~50k functions: ~0.5 s under emulation): with the addresses
 * when with_addrs and they can be read.
 */
void traceable_prefetch(bool with_addrs);

struct traceable_list;
/*
 * The list (waiting for the thread, or read now without addresses), kept
 * until traceable_release(); empty when tracefs is not readable.
 */
const struct traceable_list *traceable_get(void);
size_t traceable_count(const struct traceable_list *l);
/* Whether the list carries ftrace's addresses. */
bool traceable_has_addrs(const struct traceable_list *l);
/* Whether name is traceable; *addr gets ftrace's address (0 without addresses), the lowest of several of that name. */
bool traceable_find(const struct traceable_list *l, const char *name, uint64_t *addr);
void traceable_release(void);

#endif
