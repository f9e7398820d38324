/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few kernel types the probe program reads, declared CO-RE style: field
 * offsets are relocated against the running kernel's BTF at load time, so one
 * object runs on every kernel with BTF. Only names matter here, not layout
 * (except pt_regs, whose layout is the architecture's ABI).
 */
#ifndef PWRU_VMLINUX_MIN_H
#define PWRU_VMLINUX_MIN_H
/* Tells bpf_tracing.h to use the kernel's pt_regs field names. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#elif defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
struct pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#else
#error "set __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	char name[16];
	int ifindex;
	unsigned int mtu;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	__u32 mark;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned int tail;
	unsigned int end;
	unsigned char *head;
	unsigned char *data;
	__u8 pkt_type : 3;
	__u8 tc_at_ingress : 1; /* bpf/prog_verdict.bpf.c: which way a tc program saw it */
} __attribute__((preserve_access_index));

/* XDP (bpf/prog_verdict.bpf.c): where a program's packet came in. */
struct xdp_rxq_info {
	struct net_device *dev;
} __attribute__((preserve_access_index));
struct xdp_buff {
	void *data;
	void *data_hard_start;
	struct xdp_rxq_info *rxq;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

/* At skb->head + skb->end: what clones of an skb share. */
struct skb_shared_info {
	atomic_t dataref;
} __attribute__((preserve_access_index));

/* Netfilter (bpf/nf_verdict.bpf.c): the table walkers' arguments. nf_tables and x_tables are modules: CO-RE finds them in their BTF. */
struct nf_hook_state {
	__u8 hook;
	__u8 pf;
} __attribute__((preserve_access_index));
struct nft_pktinfo {
	struct sk_buff *skb;
	const struct nf_hook_state *state;
} __attribute__((preserve_access_index));
struct nft_table {
	__u16 family : 6;
	char *name;
} __attribute__((preserve_access_index));
/* 5.17+: a chain's rules, packed for nft_do_chain; one blob per generation. */
struct nft_rule_blob {
	unsigned long size;
	unsigned char data[];
} __attribute__((preserve_access_index));
struct nft_rule_dp {
	__u64 header; /* is_last:1, dlen:12, handle:42: read as a word (bpf/nf_verdict.bpf.c) */
	unsigned char data[];
} __attribute__((preserve_access_index));
struct nft_chain {
	struct nft_rule_blob *blob_gen_0;
	struct nft_rule_blob *blob_gen_1;
	struct nft_table *table;
	char *name;
} __attribute__((preserve_access_index));
struct nft_verdict {
	__u32 code;
	struct nft_chain *chain;
} __attribute__((preserve_access_index));
struct nft_regs {
	union {
		__u32 data[20];
		struct nft_verdict verdict;
	};
} __attribute__((preserve_access_index));
struct nft_expr {
	const void *ops;
	unsigned char data[];
} __attribute__((preserve_access_index));
struct xt_table {
	__u8 af;
	const char name[32];
} __attribute__((preserve_access_index));
/* Kernel 5.17+; CO-RE tells whether the running kernel has it. */
enum skb_drop_reason {
	SKB_CONSUMED = 1,
};

#endif
