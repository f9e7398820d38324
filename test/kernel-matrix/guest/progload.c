// SPDX-License-Identifier: Apache-2.0
/*
 * progload OBJ PROG IFNAME tcx-ingress|tcx-egress|xdp-generic PIN
 *
 * Attaches program PROG of the ELF object OBJ to interface IFNAME of the
 * current network namespace, as the guests have no tc binary: a tcx link
 * (pinned at PIN, so that it outlives this process) or generic XDP (netlink
 * holds it). Built statically with the libbpf the helper links.
 */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

/* enum bpf_attach_type of 6.6+, which libbpf 1.1's headers predate. */
#define ATTACH_TCX_INGRESS 46
#define ATTACH_TCX_EGRESS 47

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	unsigned int ifindex;
	int fd, link, err;

	if (argc != 6) {
		fprintf(stderr, "usage: %s OBJ PROG IFNAME tcx-ingress|tcx-egress|xdp-generic PIN\n", argv[0]);
		return 2;
	}
	if (!(ifindex = if_nametoindex(argv[3]))) {
		fprintf(stderr, "progload: no interface %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || (err = bpf_object__load(obj))) {
		fprintf(stderr, "progload: loading %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (!(prog = bpf_object__find_program_by_name(obj, argv[2]))) {
		fprintf(stderr, "progload: no program %s in %s\n", argv[2], argv[1]);
		return 1;
	}
	fd = bpf_program__fd(prog);
	if (strcmp(argv[4], "xdp-generic") == 0) {
		if ((err = bpf_xdp_attach((int)ifindex, fd, XDP_FLAGS_SKB_MODE, NULL))) {
			fprintf(stderr, "progload: xdp on %s: %s\n", argv[3], strerror(-err));
			return 1;
		}
		return 0;
	}
	link = bpf_link_create(fd, (int)ifindex,
			       strcmp(argv[4], "tcx-egress") == 0 ? ATTACH_TCX_EGRESS : ATTACH_TCX_INGRESS, NULL);
	if (link < 0 || bpf_obj_pin(link, argv[5])) {
		fprintf(stderr, "progload: tcx on %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	return 0;
}
