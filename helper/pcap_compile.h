/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libpcap's compiler, kept apart: its headers clash with the kernel's BPF
 * headers. Each form of the expression (raw IP and Ethernet) compiles in a
 * child process of its own, so that a compile that would take minutes
 * (libpcap's optimizer on the Ethernet form of a long expression) can be cut
 * short, and stops at once with the run.
 */
#ifndef PWRU_PCAP_COMPILE_H
#define PWRU_PCAP_COMPILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A classic BPF instruction, same layout as libpcap's and the kernel's sock_filter. */
struct cbpf_insn {
	uint16_t code;
	uint8_t jt;
	uint8_t jf;
	uint32_t k;
};

/* One form of the expression. */
struct cbpf_prog {
	bool ok; /* compiled: insns/cnt hold it */
	struct cbpf_insn *insns;
	size_t cnt;
	char err[512]; /* libpcap's words when it refused the expression */
};

struct compile_request {
	const char *expr;
	/*
	 * The Ethernet form only when the raw form is refused (`ether host …`):
	 * enough to tell whether the expression is valid (--check).
	 */
	bool ethernet_when_needed;
	int optional_ms; /* how long the Ethernet form may take when the raw form compiled */
	int required_ms; /* how long a form that is needed may take */
};

enum compile_outcome {
	COMPILE_OK,	  /* at least one form compiled (raw/eth say which) */
	COMPILE_REFUSED,  /* libpcap refused the expression: err says why */
	COMPILE_TOO_SLOW, /* a form that is needed took longer than required_ms */
	COMPILE_STOPPED,  /* the run is stopping (stop.h) */
	COMPILE_FAILED,	  /* the system failed us (fork, pipe, memory): err says how */
};

/*
 * Compiles the expression for raw IP and for Ethernet. With COMPILE_OK,
 * *eth_skipped says that the Ethernet form was given up for taking longer
 * than optional_ms (the raw form compiled).
 */
enum compile_outcome cbpf_compile(const struct compile_request *req, struct cbpf_prog *raw, struct cbpf_prog *eth,
				  bool *eth_skipped, char *err, size_t errlen);

void cbpf_prog_free(struct cbpf_prog *p);

#endif
