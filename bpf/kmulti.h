/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kprobe-multi program's one map the helper fills before attaching
 * (helper/attach.c): for each probed function, under the address the kernel
 * reports it by, its probe id and the position of its skb argument.
 *
 * The includer provides __u32.
 */
#ifndef PWRU_KMULTI_H
#define PWRU_KMULTI_H

struct kmulti_func {
	__u32 probe_id;
	__u32 skb_pos; /* 1-5 */
};

#endif
