/**
 * Where a trace runs, resolved before its request is built: this host, or
 * the nodes of a Kubernetes target. The local host is one node. The sink is
 * made from these facts, not from how the target was spelled.
 */
import { hostname } from 'node:os';

export interface TracePlace {
  /** The nodes the trace runs on (this host's name for --local). */
  nodes: readonly string[];
  /** The target's own addresses (pods, cluster IPs): they join the filter. None for a node or this host. */
  addresses: readonly string[];
  /** A Kubernetes run: every line names its node (docs/json-schema.md). */
  kubernetes: boolean;
  /** What the user should know about the target: pods skipped, nodes not ready. */
  warnings: readonly string[];
}

export function thisHost(): TracePlace {
  return { nodes: [hostname()], addresses: [], kubernetes: false, warnings: [] };
}
