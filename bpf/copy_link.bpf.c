// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fexit on the kernel's skb copy functions: each copy made is noted under
 * its new skb with the skb and data buffer it was made from (bpf/copy_link.h).
 * fexit sees the arguments and the value returned in one call, so no entry
 * has to be matched with its return. Loaded apart from the probe programs
 * (helper/copy_link.c): where fentry/fexit is refused or a function is
 * missing, the trace goes on without it and says copies are not seen.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "copy_link.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void note_copy(struct sk_buff *from, struct sk_buff *copy)
{
	struct copy_origin o;
	__u64 key = (__u64)copy;

	if (!copy || !from)
		return;
	o.skb = (__u64)from;
	o.head = (__u64)BPF_CORE_READ(from, head);
	o.copy_head = (__u64)BPF_CORE_READ(copy, head);
	bpf_map_update_elem(&copy_origins, &key, &o, BPF_ANY);
}

/* struct sk_buff *skb_copy(const struct sk_buff *skb, gfp_t gfp_mask) */
SEC("fexit")
int BPF_PROG(copy_skb_copy, struct sk_buff *skb, unsigned int gfp, struct sk_buff *ret)
{
	note_copy(skb, ret);
	return 0;
}

/* struct sk_buff *__pskb_copy_fclone(struct sk_buff *skb, int headroom, gfp_t gfp_mask, bool fclone): pskb_copy() */
SEC("fexit")
int BPF_PROG(copy_pskb_copy, struct sk_buff *skb, int headroom, unsigned int gfp, bool fclone, struct sk_buff *ret)
{
	note_copy(skb, ret);
	return 0;
}

/* struct sk_buff *skb_copy_expand(const struct sk_buff *skb, int newheadroom, int newtailroom, gfp_t gfp_mask) */
SEC("fexit")
int BPF_PROG(copy_skb_copy_expand, struct sk_buff *skb, int newheadroom, int newtailroom, unsigned int gfp,
	     struct sk_buff *ret)
{
	note_copy(skb, ret);
	return 0;
}
