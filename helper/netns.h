/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Network namespaces: the one --filter-netns names, and an interface's index
 * inside one. --filter-ifname NAME means the interface of that name in that
 * namespace (the helper's own when none is given), as pwru has it: on a node,
 * a name alone would match every pod's eth0.
 */
#ifndef PWRU_NETNS_H
#define PWRU_NETNS_H

#include <stddef.h>

/* The inode of a namespace given as an inode number or a path (/proc/PID/ns/net, /run/netns/NAME). */
int netns_inode(const char *spec, unsigned int *inode, char *err, size_t errlen);

/* The inode of the helper's own namespace. */
int netns_own(unsigned int *inode);

/*
 * The index of interface name in the namespace of inode (0: the helper's
 * own). Returns 0, -ENODEV when there is no such interface, -EPERM when
 * entering the namespace is not permitted, or another -errno; err says it.
 */
int netns_ifindex(unsigned int inode, const char *name, unsigned int *ifindex, char *err, size_t errlen);

#endif
