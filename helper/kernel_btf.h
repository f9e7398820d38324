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

#endif
