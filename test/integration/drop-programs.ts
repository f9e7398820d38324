/**
 * Small tc and XDP programs that drop one UDP port each, built with clang for
 * the tests that need a BPF program to be the culprit of a drop:
 * section tc/ingress (pwru_tc_drop, port 6201), tc/egress (pwru_tc_egress,
 * port 6203) and xdp (pwru_xdp_drop, port 6202).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const PROGRAM = `
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

static __always_inline int udp_dport(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP ||
	    ip->ihl != 5)
		return -1;
	return bpf_ntohs(udp->dest);
}

SEC("tc/ingress")
int pwru_tc_drop(struct __sk_buff *skb)
{
	return udp_dport((void *)(long)skb->data, (void *)(long)skb->data_end) == 6201 ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("tc/egress")
int pwru_tc_egress(struct __sk_buff *skb)
{
	return udp_dport((void *)(long)skb->data, (void *)(long)skb->data_end) == 6203 ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("xdp")
int pwru_xdp_drop(struct xdp_md *ctx)
{
	return udp_dport((void *)(long)ctx->data, (void *)(long)ctx->data_end) == 6202 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
`;

/** Compiles the programs into obj (an ELF object tc and ip can load). */
export function buildDropPrograms(obj: string): void {
  const src = `${obj}.c`;
  writeFileSync(src, PROGRAM);
  const multiarch = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-c', src, '-o', obj]);
}

/** `tc filter add dev DEV DIR bpf da obj OBJ sec SEC`'s arguments (after `tc`): one of obj's programs on clsact. */
export function tcFilterArgs(
  dev: string,
  dir: 'ingress' | 'egress',
  obj: string,
  sec = `tc/${dir}`,
): string[] {
  return ['filter', 'add', 'dev', dev, dir, 'bpf', 'da', 'obj', obj, 'sec', sec];
}
