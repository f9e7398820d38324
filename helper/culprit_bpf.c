// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE /* setns */
#include "culprit_bpf.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>

/* enum bpf_attach_type of 6.6+ (tcx), which the build's uapi headers may predate. */
#define ATTACH_TCX_INGRESS 46
#define ATTACH_TCX_EGRESS 47

struct query {
	const char *ns_path;
	uint32_t ifindex;
	enum bpf_point point;
	struct attached_prog *out;
	size_t max, n;
	int err;
	char *msg;
	size_t msglen;
};

static void add(struct query *q, uint32_t id, const char *attach, const char *detail)
{
	struct attached_prog *p;

	for (size_t i = 0; i < q->n; i++)
		if (q->out[i].id == id && strcmp(q->out[i].attach, attach) == 0)
			return;
	if (!id || q->n >= q->max)
		return;
	p = &q->out[q->n++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	snprintf(p->attach, sizeof(p->attach), "%s", attach);
	snprintf(p->detail, sizeof(p->detail), "%s", detail ? detail : "");
}

/* tcx: the links' programs, in the order they run. Kernels before 6.6 have none (EINVAL). */
static void query_tcx(struct query *q)
{
	__u32 ids[64], cnt = 64, flags = 0;

	if (bpf_prog_query((int)q->ifindex, q->point == POINT_TC_INGRESS ? ATTACH_TCX_INGRESS : ATTACH_TCX_EGRESS, 0,
			   &flags, ids, &cnt) != 0)
		return;
	for (__u32 i = 0; i < cnt; i++)
		add(q, ids[i], "tcx", NULL);
}

/* clsact: the cls_bpf filters of the ingress or egress hook, dumped over rtnetlink. */
static void query_clsact(struct query *q)
{
	struct {
		struct nlmsghdr n;
		struct tcmsg t;
	} req = {
		.n = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg)),
		       .nlmsg_type = RTM_GETTFILTER,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
		       .nlmsg_seq = 1 },
		.t = { .tcm_family = AF_UNSPEC,
		       .tcm_ifindex = (int)q->ifindex,
		       .tcm_parent = TC_H_MAKE(TC_H_CLSACT,
					       q->point == POINT_TC_INGRESS ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS) },
	};
	static char buf[32768];
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	bool done = false;

	if (fd < 0)
		return;
	if (send(fd, &req, req.n.nlmsg_len, 0) < 0) {
		close(fd);
		return;
	}
	while (!done) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);

		if (len <= 0)
			break;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
			struct tcmsg *t = NLMSG_DATA(h);
			int alen = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*t));
			char kind[16] = "", name[96] = "", detail[128];
			uint32_t id = 0;

			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
				done = true;
				break;
			}
			if (h->nlmsg_type != RTM_NEWTFILTER)
				continue;
			for (struct rtattr *a = (struct rtattr *)((char *)t + NLMSG_ALIGN(sizeof(*t))); RTA_OK(a, alen);
			     a = RTA_NEXT(a, alen)) {
				if (a->rta_type == TCA_KIND)
					snprintf(kind, sizeof(kind), "%.*s", (int)RTA_PAYLOAD(a), (char *)RTA_DATA(a));
				if (a->rta_type != TCA_OPTIONS)
					continue;
				int olen = (int)RTA_PAYLOAD(a);
				for (struct rtattr *o = RTA_DATA(a); RTA_OK(o, olen); o = RTA_NEXT(o, olen)) {
					if (o->rta_type == TCA_BPF_ID && RTA_PAYLOAD(o) >= 4)
						memcpy(&id, RTA_DATA(o), 4);
					if (o->rta_type == TCA_BPF_NAME)
						snprintf(name, sizeof(name), "%.*s", (int)RTA_PAYLOAD(o),
							 (char *)RTA_DATA(o));
				}
			}
			if (strcmp(kind, "bpf") != 0 || !id)
				continue;
			snprintf(detail, sizeof(detail), "filter %s pref %u handle 0x%x", name[0] ? name : "bpf",
				 t->tcm_info >> 16, t->tcm_handle);
			add(q, id, "clsact", detail);
		}
	}
	close(fd);
}

static void query_xdp(struct query *q)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, o);

	if (bpf_xdp_query((int)q->ifindex, 0, &o) != 0)
		return;
	add(q, o.drv_prog_id, "xdp-native", NULL);
	add(q, o.skb_prog_id, "xdp-generic", NULL);
	add(q, o.hw_prog_id, "xdp-offload", NULL);
}

/* Each program's name and tag, from its id (ids are global: any namespace will do). */
static void describe(struct query *q)
{
	for (size_t i = 0; i < q->n; i++) {
		struct attached_prog *p = &q->out[i];
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);
		int fd = bpf_prog_get_fd_by_id(p->id);

		if (fd < 0)
			continue; /* gone since: its id is what is left to say */
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
			snprintf(p->name, sizeof(p->name), "%s", info.name);
			for (int b = 0; b < 8; b++)
				snprintf(p->tag + 2 * b, 3, "%02x", info.tag[b]);
		}
		close(fd);
	}
}

static void *query_in_netns(void *arg)
{
	struct query *q = arg;

	if (q->ns_path) {
		int fd = open(q->ns_path, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
			q->err = -errno;
			snprintf(q->msg, q->msglen, "entering network namespace %s: %s", q->ns_path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return NULL;
		}
		close(fd);
	}
	if (q->point == POINT_XDP) {
		query_xdp(q);
	} else {
		query_tcx(q);
		query_clsact(q);
	}
	describe(q);
	return NULL;
}

int attached_programs(const char *ns_path, uint32_t ifindex, enum bpf_point point, struct attached_prog *out,
		      size_t max, char *err, size_t errlen)
{
	struct query q = { .ns_path = ns_path, .ifindex = ifindex, .point = point, .out = out, .max = max,
			   .msg = err, .msglen = errlen };
	pthread_t t;
	int ret;

	/* A thread of its own enters the namespace: the rest of the helper stays where it is. */
	if ((ret = pthread_create(&t, NULL, query_in_netns, &q)) != 0) {
		snprintf(err, errlen, "cannot start a thread: %s", strerror(ret));
		return -ret;
	}
	pthread_join(t, NULL);
	return q.err ? q.err : (int)q.n;
}
