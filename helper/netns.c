// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE /* setns */
#include "netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse_inode(const char *s, unsigned long long *v)
{
	char *end;

	if (!*s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno || *end ? -1 : 0;
}

int netns_inode(const char *spec, unsigned int *inode, char *err, size_t errlen)
{
	unsigned long long v;
	struct stat sb;

	if (parse_inode(spec, &v) == 0) {
		if (v == 0 || v > UINT32_MAX) {
			snprintf(err, errlen, "--filter-netns %s: not a namespace inode number", spec);
			return -EINVAL;
		}
		*inode = (unsigned int)v;
		return 0;
	}
	if (stat(spec, &sb) != 0) {
		int e = errno;
		snprintf(err, errlen, "--filter-netns %s: %s (give an inode number or a path like /proc/PID/ns/net)",
			 spec, strerror(e));
		return -e;
	}
	*inode = (unsigned int)sb.st_ino;
	return 0;
}

int netns_own(unsigned int *inode)
{
	struct stat sb;

	if (stat("/proc/self/ns/net", &sb) != 0)
		return -errno;
	*inode = (unsigned int)sb.st_ino;
	return 0;
}

/*
 * A file of the namespace with that inode: a name under /run/netns, or a
 * process in it. -EACCES when it may be one of the processes we may not look
 * at (another user's, without privileges).
 */
static int find_netns(unsigned int inode, dev_t nsfs, char *path, size_t len)
{
	static const char *const dirs[] = { "/run/netns", "/var/run/netns", "/proc" };
	bool denied = false;
	struct stat sb;

	for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
		DIR *dir = opendir(dirs[d]);
		struct dirent *de;
		bool proc = strcmp(dirs[d], "/proc") == 0;

		if (!dir)
			continue;
		while ((de = readdir(dir))) {
			if (de->d_name[0] == '.' || (proc && (de->d_name[0] < '0' || de->d_name[0] > '9')))
				continue;
			snprintf(path, len, proc ? "%s/%s/ns/net" : "%s/%s", dirs[d], de->d_name);
			if (stat(path, &sb) != 0) {
				denied |= errno == EACCES || errno == EPERM;
				continue;
			}
			if (sb.st_ino == inode && sb.st_dev == nsfs) {
				closedir(dir);
				return 0;
			}
		}
		closedir(dir);
	}
	return denied ? -EACCES : -ENOENT;
}

struct lookup {
	int nsfd;
	const char *name;
	unsigned int ifindex;
	int err;
};

/* A thread of its own enters the namespace: the rest of the helper stays where it is. */
static void *lookup_in_netns(void *arg)
{
	struct lookup *l = arg;

	if (setns(l->nsfd, CLONE_NEWNET) != 0) {
		l->err = -errno;
		return NULL;
	}
	l->ifindex = if_nametoindex(l->name);
	l->err = l->ifindex ? 0 : -errno;
	return NULL;
}

int netns_ifindex(unsigned int inode, const char *name, unsigned int *ifindex, char *err, size_t errlen)
{
	struct lookup l = { .nsfd = -1, .name = name };
	unsigned int own = 0;
	struct stat self;
	char path[300];
	pthread_t t;
	int ret;

	if ((ret = netns_own(&own)) || stat("/proc/self/ns/net", &self) != 0) {
		snprintf(err, errlen, "--filter-ifname %s: cannot read the helper's network namespace: %s", name,
			 strerror(ret ? -ret : errno));
		return ret ? ret : -errno;
	}
	if (inode == 0 || inode == own) {
		l.ifindex = if_nametoindex(name);
		l.err = l.ifindex ? 0 : -errno;
	} else if ((ret = find_netns(inode, self.st_dev, path, sizeof(path))) != 0) {
		snprintf(err, errlen, "--filter-ifname %s: %s network namespace %u to look the interface up in", name,
			 ret == -EACCES ? "not permitted to find" : "no process or /run/netns name is in", inode);
		return ret;
	} else if ((l.nsfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		l.err = -errno;
	} else if ((ret = pthread_create(&t, NULL, lookup_in_netns, &l)) != 0) {
		l.err = -ret;
	} else {
		pthread_join(t, NULL);
	}
	if (l.nsfd >= 0)
		close(l.nsfd);
	if (l.err == -ENODEV || l.err == -ENXIO) {
		snprintf(err, errlen, "--filter-ifname %s: no such interface in network namespace %u", name,
			 inode ? inode : own);
		return -ENODEV;
	}
	if (l.err) {
		snprintf(err, errlen, "--filter-ifname %s: cannot look it up in network namespace %u: %s", name,
			 inode ? inode : own, strerror(-l.err));
		return l.err;
	}
	*ifindex = l.ifindex;
	return 0;
}
