/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where this process's own BPF programs were JIT'd. A stack taken inside a
 * probe begins with the probe's program; when kallsyms was read before the
 * program was loaded, the program's address falls after some other symbol
 * (a module's function, the XDP dispatcher) and would be named after it. The
 * kernel tells each program's exact ranges, whatever kallsyms holds.
 */
#ifndef PWRU_OWN_PROGRAMS_H
#define PWRU_OWN_PROGRAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct own_programs {
	struct own_range {
		uint64_t start, end;
	} *ranges; /* sorted by start */
	size_t cnt;
	bool read;
};

/* Reads the ranges of every BPF program this process holds open (once, after they are loaded). */
void own_programs_read(struct own_programs *p);
bool own_programs_contain(const struct own_programs *p, uint64_t addr);
void own_programs_free(struct own_programs *p);

#endif
