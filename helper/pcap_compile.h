/* SPDX-License-Identifier: Apache-2.0 */
/* libpcap's compiler, kept apart: its headers clash with the kernel's BPF headers. */
#ifndef PWRU_PCAP_COMPILE_H
#define PWRU_PCAP_COMPILE_H

#include <stddef.h>
#include <stdint.h>

/* A classic BPF instruction, same layout as libpcap's and the kernel's sock_filter. */
struct cbpf_insn {
	uint16_t code;
	uint8_t jt;
	uint8_t jf;
	uint32_t k;
};

enum cbpf_link { CBPF_LINK_RAW_IP, CBPF_LINK_ETHERNET };

/* Compiles a pcap-filter expression. On failure returns -1 with libpcap's message in err. */
int cbpf_compile(const char *expr, enum cbpf_link link, struct cbpf_insn **insns, size_t *cnt, char *err,
		 size_t errlen);

#endif
