// SPDX-License-Identifier: Apache-2.0
#include "pcap_compile.h"

#include <pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cbpf_compile(const char *expr, enum cbpf_link link, struct cbpf_insn **insns, size_t *cnt, char *err,
		 size_t errlen)
{
	pcap_t *pcap = pcap_open_dead(link == CBPF_LINK_ETHERNET ? DLT_EN10MB : DLT_RAW, 262144);
	struct bpf_program prog;

	if (!pcap) {
		snprintf(err, errlen, "libpcap: cannot open a dead capture handle");
		return -1;
	}
	if (pcap_compile(pcap, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(err, errlen, "%s", pcap_geterr(pcap));
		pcap_close(pcap);
		return -1;
	}
	*cnt = prog.bf_len;
	*insns = calloc(prog.bf_len, sizeof(**insns));
	if (!*insns) {
		snprintf(err, errlen, "out of memory");
		pcap_freecode(&prog);
		pcap_close(pcap);
		return -1;
	}
	for (size_t i = 0; i < prog.bf_len; i++) {
		(*insns)[i].code = prog.bf_insns[i].code;
		(*insns)[i].jt = prog.bf_insns[i].jt;
		(*insns)[i].jf = prog.bf_insns[i].jf;
		(*insns)[i].k = prog.bf_insns[i].k;
	}
	pcap_freecode(&prog);
	pcap_close(pcap);
	return 0;
}
