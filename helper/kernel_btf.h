/* SPDX-License-Identifier: Apache-2.0 */
#ifndef PWRU_KERNEL_BTF_H
#define PWRU_KERNEL_BTF_H

#include <bpf/btf.h>

/* The running kernel's BTF, or NULL with errno set. */
struct btf *kernel_btf_load(void);

/*
 * Gives btf to libbpf, which would otherwise read and parse the kernel's BTF
 * again when it loads the programs (~60 ms here), in the calling thread.
 * libbpf frees it.
 */
void kernel_btf_give_to_libbpf(struct btf *btf);

/*
 * Lends btf once more (to a load in another thread: libbpf only reads it),
 * and returns it: each holder frees it with btf__free(), which frees it with
 * the last. Parsing a second copy took ~0.2 s under emulation.
 */
struct btf *kernel_btf_share(struct btf *btf);

#endif
