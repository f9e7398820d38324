/**
 * What a node's kernel can offer, read from its Node object
 * (status.nodeInfo.kernelVersion) before any pod exists: a backend the kernel
 * is too old for is bad input, refused like a bad flag. A kernel new enough
 * can still lack it (built without fprobe or BTF): the helper says so then.
 */
import { BadInput } from '../errors';
import type { Backend } from '../trace/request';

/** The first kernel of each backend: kprobe-multi came in 5.18, tp_btf in 5.5; plain kprobes are older than us. */
const FIRST_KERNEL: Partial<Record<Backend, [number, number]>> = {
  'kprobe-multi': [5, 18],
  tracepoint: [5, 5],
};

/** Refuses a --backend the node's kernel is too old for; an unreadable version is left to the helper. */
export function checkBackendOnKernel(node: string, backend: Backend, kernelVersion: string): void {
  const first = FIRST_KERNEL[backend];
  const m = /^(\d+)\.(\d+)/.exec(kernelVersion);
  if (!first || !m) return;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major > first[0] || (major === first[0] && minor >= first[1])) return;
  throw new BadInput(
    `--backend ${backend} needs Linux ${first.join('.')} or later; node ${node} runs ${kernelVersion}: use --backend kprobe or auto`,
  );
}
