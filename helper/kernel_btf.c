// SPDX-License-Identifier: Apache-2.0
#include "kernel_btf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define VMLINUX_BTF "/sys/kernel/btf/vmlinux"

/* libbpf's own reader and free; the helper is linked with --wrap for both (see below). */
struct btf *__real_btf__load_vmlinux_btf(void);
void __real_btf__free(struct btf *btf);

/* Per thread: the netfilter walkers' object loads in its own thread, with its own copy (nf_exact.c). */
static __thread struct btf *given;

/*
 * Kernels since 6.16 let /sys/kernel/btf/vmlinux be mapped: parsing the
 * mapping skips ~1,350 page-sized reads of the sysfs file (~60 -> ~25 ms
 * measured here, on the way to the first probe). Older kernels refuse the
 * mapping; libbpf's reader handles them (and BTF found elsewhere).
 */
struct btf *kernel_btf_load(void)
{
	struct btf *btf = NULL;
	struct stat st;
	void *data;
	int fd;

	fd = open(VMLINUX_BTF, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
		data = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (data != MAP_FAILED) {
			btf = btf__new(data, st.st_size); /* copies what it keeps */
			munmap(data, st.st_size);
		}
	}
	if (fd >= 0)
		close(fd);
	return btf ? btf : __real_btf__load_vmlinux_btf();
}

void kernel_btf_give_to_libbpf(struct btf *btf)
{
	btf__free(given);
	given = btf;
}

/*
 * One parsed copy lent to loads in several threads at once (libbpf only reads
 * the kernel's BTF): btf__free() of it drops one reference.
 */
static _Atomic(struct btf *) shared;
static atomic_int shared_refs;

struct btf *kernel_btf_share(struct btf *btf)
{
	if (atomic_load(&shared) != btf) {
		atomic_store(&shared_refs, 1); /* the caller's own */
		atomic_store(&shared, btf);
	}
	atomic_fetch_add(&shared_refs, 1);
	return btf;
}

/* Every btf__free() outside libbpf's btf.c lands here (the link's --wrap). */
void __wrap_btf__free(struct btf *btf)
{
	if (btf && btf == atomic_load(&shared)) {
		if (atomic_fetch_sub(&shared_refs, 1) > 1)
			return;
		atomic_store(&shared, NULL);
	}
	__real_btf__free(btf);
}

/*
 * libbpf's calls to btf__load_vmlinux_btf() land here (the link's --wrap):
 * the BTF the helper already parsed, once, then fresh copies.
 */
struct btf *__wrap_btf__load_vmlinux_btf(void)
{
	struct btf *btf = given;

	given = NULL;
	return btf ? btf : kernel_btf_load();
}
