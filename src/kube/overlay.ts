/**
 * Overlays: between two nodes of an overlay network a pod's packet travels
 * inside a tunnel (VXLAN, IP-in-IP), its addresses only in the inner header.
 * For a target with pod addresses on such a node, the helper also gets a
 * --tunnel-filter with those addresses, so that the tunnelled part of the
 * path is traced too (docs/kubernetes.md, "Overlays").
 */
import type * as k8s from '@kubernetes/client-node';
import type { TraceRequest } from '../trace/request';

/**
 * The overlay a node's annotations say it runs, if any: flannel's backend
 * type, Calico's tunnel addresses. Other CNIs (Cilium) say nothing there:
 * give --tunnel-filter for them.
 */
export function nodeOverlay(node: k8s.V1Node): string | undefined {
  const a = node.metadata?.annotations ?? {};
  const flannel = a['flannel.alpha.coreos.com/backend-type'];
  if (flannel === 'vxlan' || flannel === 'ipip') return `flannel ${flannel}`;
  if (a['projectcalico.org/IPv4VXLANTunnelAddr'] || a['projectcalico.org/IPv6VXLANTunnelAddr'])
    return 'calico vxlan';
  if (a['projectcalico.org/IPv4IPIPTunnelAddr']) return 'calico ipip';
  return undefined;
}

/**
 * The inner filter a node's helper gets: the user's --tunnel-filter, or on an
 * overlay node, for a target with pod addresses, the trace's own filter. Both
 * already hold the target's addresses (src/trace/request.ts). Undefined: none.
 */
export function innerFilter(
  addresses: readonly string[],
  request: TraceRequest,
  overlay: boolean,
): string | undefined {
  return request.tunnelFilter ?? (overlay && addresses.length ? request.pcapFilter : undefined);
}
