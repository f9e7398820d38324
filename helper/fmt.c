// SPDX-License-Identifier: Apache-2.0
#include "fmt.h"

#include <stdio.h>

const char fmt_digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
				  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
				  "8081828384858687888990919293949596979899";

/* Decimal, written in place two digits a step: a line has a dozen numbers, timestamps of 14 digits among them. */
void put_u64(struct buf *b, uint64_t v)
{
	int digits = 1;

	/* Four digits a step: the timestamps' 14 digits are most of the counting. */
	for (uint64_t t = v; t >= 10; t /= 10) {
		if (t >= 10000) {
			t /= 1000;
			digits += 3;
		}
		digits++;
	}
	if (!buf_reserve(b, 20))
		return;
	char *end = b->p + b->len + digits, *o = end;
	while (v >= 100) {
		uint64_t q = v / 100;
		unsigned r = (unsigned)(v - q * 100);

		o -= 2;
		o[0] = fmt_digit_pairs[2 * r];
		o[1] = fmt_digit_pairs[2 * r + 1];
		v = q;
	}
	if (v >= 10) {
		o -= 2;
		o[0] = fmt_digit_pairs[2 * v];
		o[1] = fmt_digit_pairs[2 * v + 1];
	} else {
		*--o = (char)('0' + v);
	}
	b->len += digits;
}

void put_hex(struct buf *b, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[20];
	int i = sizeof(tmp);

	do {
		tmp[--i] = digits[v & 0xf];
		v >>= 4;
	} while (v);
	tmp[--i] = 'x';
	tmp[--i] = '0';
	buf_put(b, tmp + i, sizeof(tmp) - i);
}

/* src/record/address.ts: dotted quad, or RFC 5952 (longest run of two or more zero groups as "::"). */
void format_addr(uint8_t family, const uint8_t *b, char *out, size_t len)
{
	uint16_t g[8];
	int best = -1, best_len = 1, n = 0;

	if (family == 4) {
		snprintf(out, len, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		return;
	}
	for (int i = 0; i < 8; i++)
		g[i] = (uint16_t)(b[2 * i] << 8 | b[2 * i + 1]);
	if (!g[0] && !g[1] && !g[2] && !g[3] && !g[4] && g[5] == 0xffff) {
		snprintf(out, len, "::ffff:%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
		return;
	}
	for (int i = 0; i < 8;) {
		if (g[i]) {
			i++;
			continue;
		}
		int j = i;
		while (j < 8 && !g[j])
			j++;
		if (j - i > best_len) {
			best = i;
			best_len = j - i;
		}
		i = j;
	}
	out[0] = 0;
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			n += snprintf(out + n, len - n, "::");
			i += best_len - 1;
			continue;
		}
		bool sep = i > 0 && i != best + best_len;
		n += snprintf(out + n, len - n, "%s%x", sep ? ":" : "", g[i]);
	}
}

const char *l4_name(uint8_t l4)
{
	switch (l4) {
	case 1:
		return "ICMP";
	case 6:
		return "TCP";
	case 17:
		return "UDP";
	case 58:
		return "ICMPv6";
	case 132:
		return "SCTP";
	}
	return NULL;
}


int64_t wall_ms(double real_ms, double mono_base_ms, uint64_t ts)
{
	double exact = real_ms + ((double)ts / 1e6 - mono_base_ms);
	int64_t ms = (int64_t)exact;

	if ((double)ms > exact)
		ms--; /* Math.floor */
	return ms;
}
