// SPDX-License-Identifier: Apache-2.0
/*
 * progload OBJ PROG IFNAME tcx-ingress|tcx-egress|clsact-ingress|clsact-egress|xdp-generic|xdp-native ARG
 *
 * Loads program PROG (alone) of the ELF object OBJ and attaches it to
 * interface IFNAME of the current network namespace, as the guests have no tc
 * binary: a tcx link (pinned at ARG, so that it outlives this process), a
 * cls_bpf filter in direct-action mode on the clsact qdisc (made when
 * missing; what `tc filter add dev IFNAME ingress pref ARG bpf da obj OBJ`
 * does; ARG "-": the kernel picks the preference), or XDP, generic or native
 * (the driver's own: veth runs it in its NAPI poll; netlink holds these). Built statically with the libbpf the helper links.
 */
#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

/* enum bpf_attach_type of 6.6+, which libbpf 1.1's headers predate. */
#define ATTACH_TCX_INGRESS 46
#define ATTACH_TCX_EGRESS 47

/* clsact (the hook's qdisc, if not there yet) and a cls_bpf filter on it at preference pref (0: the kernel picks). */
static int clsact(int ifindex, int fd, bool ingress, unsigned int pref, const char *ifname)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = fd, .priority = pref);
	int err = bpf_tc_hook_create(&hook);

	if (err && err != -EEXIST) {
		fprintf(stderr, "progload: clsact on %s: %s\n", ifname, strerror(-err));
		return 1;
	}
	if ((err = bpf_tc_attach(&hook, &opts))) {
		fprintf(stderr, "progload: cls_bpf filter on %s: %s\n", ifname, strerror(-err));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog, *other;
	unsigned int ifindex;
	int fd, link, err;

	if (argc != 6) {
		fprintf(stderr,
			"usage: %s OBJ PROG IFNAME tcx-ingress|tcx-egress|clsact-ingress|clsact-egress|xdp-generic|xdp-native "
			"ARG\n",
			argv[0]);
		return 2;
	}
	if (!(ifindex = if_nametoindex(argv[3]))) {
		fprintf(stderr, "progload: no interface %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	if (!(obj = bpf_object__open_file(argv[1], NULL))) {
		fprintf(stderr, "progload: opening %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (!(prog = bpf_object__find_program_by_name(obj, argv[2]))) {
		fprintf(stderr, "progload: no program %s in %s\n", argv[2], argv[1]);
		return 1;
	}
	/* The others are not loaded: a trace that runs meanwhile sees only this one appear. */
	bpf_object__for_each_program(other, obj) bpf_program__set_autoload(other, other == prog);
	if ((err = bpf_object__load(obj))) {
		fprintf(stderr, "progload: loading %s: %s\n", argv[1], strerror(-err));
		return 1;
	}
	fd = bpf_program__fd(prog);
	if (strncmp(argv[4], "xdp-", 4) == 0) {
		__u32 mode = strcmp(argv[4], "xdp-native") == 0 ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;

		if ((err = bpf_xdp_attach((int)ifindex, fd, mode, NULL))) {
			fprintf(stderr, "progload: xdp on %s: %s\n", argv[3], strerror(-err));
			return 1;
		}
		return 0;
	}
	if (strncmp(argv[4], "clsact-", 7) == 0)
		return clsact((int)ifindex, fd, strcmp(argv[4], "clsact-ingress") == 0,
			      strcmp(argv[5], "-") == 0 ? 0 : (unsigned int)strtoul(argv[5], NULL, 10), argv[3]);
	link = bpf_link_create(fd, (int)ifindex,
			       strcmp(argv[4], "tcx-egress") == 0 ? ATTACH_TCX_EGRESS : ATTACH_TCX_INGRESS, NULL);
	if (link < 0 || bpf_obj_pin(link, argv[5])) {
		fprintf(stderr, "progload: tcx on %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	return 0;
}
