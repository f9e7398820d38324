/**
 * Addresses → "namespace/name" of the pod or service that owns them, looked
 * up once per run, so that a trace says shop/web-0 instead of 10.244.1.7.
 * Names ride along in the tuple (srcName, dstName); they are a comfort: when
 * the user may not list pods or services cluster-wide the trace goes on
 * without them.
 */

import type * as k8s from '@kubernetes/client-node';
import type { HelperDropReport, TraceSink } from '../output/sink';
import type { PacketDoneInfo } from '../record/decode';
import type { TraceDigest, TraceEvent, Tuple } from '../record/event';
import { type Cluster, paths } from './client';

/** A node's own addresses: "node/NAME". */
export function nodeNames(node: k8s.V1Node, names: Map<string, string>): void {
  for (const a of node.status?.addresses ?? []) {
    if (a.type === 'InternalIP' || a.type === 'ExternalIP')
      names.set(a.address, `node/${node.metadata?.name}`);
  }
}

/** Never rejects: names are a comfort. */
export async function lookupNames(cluster: Cluster): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  const [pods, services] = await Promise.allSettled([
    cluster.api.request<k8s.V1PodList>('GET', paths.core('pods')),
    cluster.api.request<k8s.V1ServiceList>('GET', paths.core('services')),
  ]);
  if (pods.status === 'fulfilled') {
    // Every pod tells its node's address: the node is named even without the right to list nodes.
    for (const pod of pods.value.items) {
      const node = pod.spec?.nodeName;
      if (!node) continue;
      for (const ip of pod.status?.hostIPs ?? [])
        if (ip.ip && !names.has(ip.ip)) names.set(ip.ip, `node/${node}`);
      if (pod.status?.hostIP && !names.has(pod.status.hostIP)) names.set(pod.status.hostIP, `node/${node}`);
    }
    for (const pod of pods.value.items) {
      // Host-network pods share the node's address: naming it after one of them would mislead.
      if (pod.spec?.hostNetwork) continue;
      const phase = pod.status?.phase;
      if (phase === 'Succeeded' || phase === 'Failed') continue;
      const id = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
      for (const ip of pod.status?.podIPs ?? []) if (ip.ip) names.set(ip.ip, id);
      if (pod.status?.podIP) names.set(pod.status.podIP, id);
    }
  }
  if (services.status === 'fulfilled') {
    for (const svc of services.value.items) {
      const id = `svc/${svc.metadata?.namespace}/${svc.metadata?.name}`;
      for (const ip of svc.spec?.clusterIPs ?? []) if (ip !== 'None') names.set(ip, id);
    }
  }
  return names;
}

/**
 * The names as the helper reads them (--addr-names): "ADDRESS NAME" lines.
 * Kubernetes names have no spaces or line breaks; anything else is left out.
 */
export function namesFile(names: ReadonlyMap<string, string>): string {
  let text = '';
  for (const [addr, name] of names) if (!/\s/.test(addr + name) && addr && name) text += `${addr} ${name}\n`;
  return text;
}

/** Sets the tuple's srcName/dstName where the address is known. */
export function nameTuple(tuple: Tuple, names: Map<string, string>): Tuple {
  const src = names.get(tuple.src);
  const dst = names.get(tuple.dst);
  if (src) tuple.srcName = src;
  if (dst) tuple.dstName = dst;
  return tuple;
}

/** A sink that names tuple addresses before passing events on; `names` may fill in while it runs. */
export function withNames(sink: TraceSink, names: Map<string, string>): TraceSink {
  return {
    progress: (m) => sink.progress(m),
    header: (h) => sink.header(h),
    event: (e: TraceEvent) => {
      if (e.tuple) e.tuple = nameTuple(e.tuple, names);
      sink.event(e);
    },
    culprit: (c) => sink.culprit?.(c),
    prog: (p) => sink.prog?.(p),
    // --on-drop: the reports' steps are named like events (the sink tells whether it takes reports).
    ...(sink.dropReport
      ? {
          dropReport: (r: HelperDropReport) => {
            for (const e of [...r.bad, ...r.good, ...r.copies.flat()])
              if (e.tuple) e.tuple = nameTuple(e.tuple, names);
            sink.dropReport?.(r);
          },
        }
      : {}),
    // The helper writes the lines (Kubernetes mode with one node: --lines-stream), naming addresses itself
    // from namesFile(); finished packets and the digest still come here.
    ...(sink.acceptsLines ? { acceptsLines: sink.acceptsLines } : {}),
    ...(sink.lines ? { lines: (text: Buffer) => sink.lines?.(text) } : {}),
    ...(sink.packetDone
      ? {
          packetDone: (info: PacketDoneInfo, events: TraceEvent[]) => {
            for (const e of events) if (e.tuple) e.tuple = nameTuple(e.tuple, names);
            sink.packetDone?.(info, events);
          },
        }
      : {}),
    ...(sink.digest ? { digest: (d: TraceDigest) => sink.digest?.(d) } : {}),
    watch: (w, node) => sink.watch?.(w, node),
    stats: (s) => sink.stats(s),
    flush: () => sink.flush?.(),
    waitForDrain: () => sink.waitForDrain?.(),
    warning: (m) => sink.warning(m),
    close: () => sink.close(),
  };
}
