/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The BPF programs attached where a packet was dropped: tc (tcx links and
 * clsact cls_bpf filters) at an interface's ingress or egress, and XDP. Asked
 * of the kernel in the interface's own network namespace (a thread enters
 * it): BPF_PROG_QUERY for tcx, rtnetlink for clsact filters and XDP, then each
 * program's name and tag by its id.
 */
#ifndef PWRU_CULPRIT_BPF_H
#define PWRU_CULPRIT_BPF_H

#include <stddef.h>
#include <stdint.h>

enum bpf_point { POINT_TC_INGRESS, POINT_TC_EGRESS, POINT_XDP };

struct attached_prog {
	uint32_t id;
	char name[16];	  /* the program's own name (BPF_OBJ_NAME_LEN) */
	char tag[17];	  /* hex */
	char attach[16];  /* tcx, clsact, xdp-native, xdp-generic, xdp-offload */
	char detail[128]; /* clsact: the filter's name, priority and handle; empty otherwise */
};

/*
 * The programs attached at that point of interface ifindex in the network
 * namespace named by ns_path (NULL: the helper's own). Returns how many (at
 * most max), or -errno with err saying what failed.
 */
int attached_programs(const char *ns_path, uint32_t ifindex, enum bpf_point point, struct attached_prog *out,
		      size_t max, char *err, size_t errlen);

#endif
