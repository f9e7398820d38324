/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Copies: skb_copy(), __pskb_copy_fclone() (pskb_copy) and skb_copy_expand()
 * make a new skb with a data buffer of its own (nft `dup`, iptables TEE,
 * mirroring), which nothing in the new skb ties to the old one. fexit on
 * them (bpf/copy_link.bpf.c, loaded by helper/copy_link.c where the kernel
 * lets them attach, with a function backend) notes each copy under its new
 * skb; the probes (bpf/pwru.bpf.c) take the note at the copy's next reported
 * step and send a struct pwru_copy just before that event (bpf/event.h). A
 * copy freed before any step of it was reported leaves its note behind, and
 * its address is soon another skb's: the note names the copy's data buffer
 * too, and an skb at that address with another buffer is not the copy.
 *
 * The includer provides __u8.. __u64 (and, in BPF programs, bpf_helpers.h: the shared map at the end).
 */
#ifndef PWRU_COPY_LINK_H
#define PWRU_COPY_LINK_H

/* What a copy was made of. */
struct copy_origin {
	__u64 skb;	 /* the original skb */
	__u64 head;	 /* its data buffer (skb->head) when it was copied */
	__u64 copy_head; /* the copy's own data buffer: a note is taken only by an skb that still has it */
};

#ifdef __bpf__
/*
 * The copies made and not yet reported, by the new skb: the copy functions
 * write it, the probes take an entry out at the copy's next step. Declared
 * once for both objects; the helper gives the copy functions' object the
 * probes' descriptor (helper/copy_link.c). Not for the helper's own includes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* resized to 4096 with cfg_copy_link (helper/loader.c) */
	__type(key, __u64);
	__type(value, struct copy_origin);
} copy_origins SEC(".maps");
#endif

#endif
