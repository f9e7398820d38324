// SPDX-License-Identifier: Apache-2.0
#include "own_programs.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>

static int cmp_start(const void *a, const void *b)
{
	const struct own_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static bool is_prog_fd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strcmp(target, "anon_inode:bpf-prog") == 0;
}

static bool push(struct own_programs *p, size_t *cap, uint64_t start, uint64_t len)
{
	if (p->cnt == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct own_range *r = realloc(p->ranges, ncap * sizeof(*r));

		if (!r)
			return false;
		p->ranges = r;
		*cap = ncap;
	}
	p->ranges[p->cnt++] = (struct own_range){ start, start + len };
	return true;
}

/* A program's functions (the main one and its subprograms: the filter) as ranges. */
static bool add_program(struct own_programs *p, size_t *cap, int fd)
{
	struct bpf_prog_info info = { 0 };
	__u32 len = sizeof(info);
	__u64 ksyms[16];
	__u32 lens[16];

	if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || !info.nr_jited_ksyms)
		return true;
	__u32 n = info.nr_jited_ksyms < 16 ? info.nr_jited_ksyms : 16;
	memset(&info, 0, sizeof(info));
	info.nr_jited_ksyms = n;
	info.jited_ksyms = (__u64)(uintptr_t)ksyms;
	info.nr_jited_func_lens = n;
	info.jited_func_lens = (__u64)(uintptr_t)lens;
	len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0)
		return true;
	for (__u32 i = 0; i < n; i++)
		if (ksyms[i] && !push(p, cap, ksyms[i], lens[i]))
			return false;
	return true;
}

void own_programs_read(struct own_programs *p)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	size_t cap = 0;

	p->read = true;
	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d) || !is_prog_fd(fd))
			continue;
		if (!add_program(p, &cap, fd))
			break; /* out of memory: the ranges read so far still help */
	}
	closedir(d);
	qsort(p->ranges, p->cnt, sizeof(*p->ranges), cmp_start);
}

bool own_programs_contain(const struct own_programs *p, uint64_t addr)
{
	size_t lo = 0, hi = p->cnt;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (p->ranges[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && addr < p->ranges[lo - 1].end;
}

void own_programs_free(struct own_programs *p)
{
	free(p->ranges);
	memset(p, 0, sizeof(*p));
}
