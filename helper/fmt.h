/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Numbers, addresses and protocol names as the client writes them: the
 * pieces the helper's line writers (event_json.c, event_text.c) share.
 */
#ifndef PWRU_FMT_H
#define PWRU_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* "00" to "99", two characters each. */
extern const char fmt_digit_pairs[];

/* v in decimal. */
void put_u64(struct buf *b, uint64_t v);
/* v as "0x…", lowercase, no leading zeros. */
void put_hex(struct buf *b, uint64_t v);
/* src/record/address.ts: dotted quad, or RFC 5952 (longest run of two or more zero groups as "::"). */
void format_addr(uint8_t family, const uint8_t *b, char *out, size_t len);
/* The name the client gives an IP protocol number (src/record/decode.ts L4_NAMES); NULL when it has none. */
const char *l4_name(uint8_t l4);
/*
 * The wall-clock millisecond of an event's monotonic ts, computed as
 * src/record/decode.ts computes it (the same doubles, the same rounding).
 */
int64_t wall_ms(double real_ms, double mono_base_ms, uint64_t ts);

#endif
