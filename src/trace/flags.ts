/**
 * The trace command's flags: the one declaration. oclif parses the command
 * line with it (src/commands/trace.ts), --help lists it, and TraceFlags, the
 * parsed value the rest of the trace reads, is inferred from it.
 *
 * One entry per flag, in the group --help lists it under. A new flag is one
 * more entry in its group; a flag of KUBERNETES_FLAGS is refused with --local.
 * Repeatable flags take one value per use (`--port 53 'host 10.0.0.1'`: the
 * quoted words are the filter, not a second port).
 */
import type { Interfaces } from '@oclif/core';
import { EXIT_DROPPED } from '../errors';
import { PROTO_NAMES } from './filter';
import { BACKENDS, DEFAULT_SNAPLEN } from './request';

// oclif's own entry point, not its index: see src/cli.ts.
const Flags = require('@oclif/core/flags') as typeof import('@oclif/core/lib/flags');

/** The flags as one group of --help: each entry gets the group's heading. */
function group<T extends Interfaces.FlagInput>(heading: string, flags: T): T {
  for (const flag of Object.values(flags)) flag.helpGroup = heading;
  return flags;
}

const WHERE_FLAGS = group('WHERE', {
  local: Flags.boolean({ description: 'trace this host instead of a Kubernetes target (needs root)' }),
});

/** For Kubernetes targets only: refused with --local. */
export const KUBERNETES_FLAGS = group('KUBERNETES', {
  // kubectl's conventions
  namespace: Flags.string({ char: 'n', description: 'namespace of the target (default: from kubeconfig)' }),
  context: Flags.string({ description: 'kubeconfig context to use' }),
  kubeconfig: Flags.string({
    description: 'path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)',
  }),
  selector: Flags.string({ char: 'l', description: 'trace every pod matching this label selector' }),
  'pod-netns-only': Flags.boolean({ description: "only the target pod's own network namespace" }),
  // the debug pod
  image: Flags.string({
    description: 'image of the debug pod (needs node); default an official Node.js image',
  }),
  'debug-namespace': Flags.string({
    description: 'namespace for the debug pod (default: the target namespace)',
  }),
  'print-manifest': Flags.boolean({
    description: 'print the debug Job it would create, as YAML, and create nothing (works without a cluster)',
  }),
  profile: Flags.string({
    description: 'privileged, or capabilities: the capability set of docs/kubernetes.md instead',
    options: ['privileged', 'capabilities'],
  }),
  'image-pull-secret': Flags.string({
    description: 'Secret for pulling --image, in the debug namespace; repeatable',
    multiple: true,
    multipleNonGreedy: true,
  }),
  'pod-patch': Flags.string({
    description: 'strategic merge patch of the debug pod (a Pod fragment, YAML or JSON file)',
  }),
  // kubectl's conventions for the API requests
  'request-timeout': Flags.string({
    description: 'give up on a single API request after this long (30s, 1m; 0: never) [default: 30s]',
  }),
  as: Flags.string({ description: 'user to impersonate for the API requests' }),
  'as-group': Flags.string({
    description: 'group to impersonate; repeatable',
    multiple: true,
    multipleNonGreedy: true,
  }),
});

const MATCH_FLAGS = group('MATCH', {
  port: Flags.string({
    description: 'match this port or range (80, 8000-8080); repeatable',
    multiple: true,
    multipleNonGreedy: true,
  }),
  host: Flags.string({
    description: 'match this address or CIDR; repeatable',
    multiple: true,
    multipleNonGreedy: true,
  }),
  proto: Flags.string({ description: `match this protocol: ${PROTO_NAMES.join(', ')}` }),
  'filter-func': Flags.string({
    description: 'only probe functions/tracepoints whose name matches this regex',
  }),
  'filter-netns': Flags.string({ description: 'only this network namespace: inode, or /proc/PID/ns/net' }),
  'filter-mark': Flags.string({ description: 'only packets with this mark: MARK or MARK/MASK' }),
  'filter-ifname': Flags.string({
    description: 'only packets on this interface (of the --filter-netns namespace, else the host’s)',
  }),
  'filter-track-skb': Flags.boolean({
    description: 'once a packet matched, keep following it through NAT and rewrites',
  }),
  'tunnel-filter': Flags.string({
    description:
      'a pcap expression for the packet inside VXLAN, Geneve, IP-in-IP and GRE: a packet matches when PCAP-FILTER matches it or this matches its inner packet',
  }),
  'vxlan-port': Flags.integer({
    description: "VXLAN's UDP port (default 4789 and 8472)",
    min: 1,
    max: 65535,
  }),
  'geneve-port': Flags.integer({ description: "Geneve's UDP port (default 6081)", min: 1, max: 65535 }),
});

const PROBE_FLAGS = group('PROBES', {
  backend: Flags.string({ description: 'probe backend', options: [...BACKENDS], default: 'auto' }),
  'all-kmods': Flags.boolean({ description: 'also probe functions in kernel modules' }),
  'output-stack': Flags.boolean({ description: 'collect the kernel stack of each step' }),
  'ringbuf-size': Flags.integer({
    description: 'kernel ring buffer size in bytes (power of two)',
    hidden: true,
  }),
});

const STOP_FLAGS = group('STOP', {
  duration: Flags.string({ description: 'stop after this long (30s, 2m)' }),
  'max-events': Flags.integer({ description: 'stop after this many events', min: 1 }),
  drops: Flags.integer({ description: 'with --on-drop: stop after this many reported drops', min: 1 }),
});

/** Long, unattended runs (issue 16): catch the drop, cap the cost. */
const WATCH_FLAGS = group('WATCH', {
  'on-drop': Flags.boolean({
    description:
      'print nothing per event; when a matching packet is dropped, show its path beside the last packet of its flow that got through, and keep watching',
  }),
  'max-rate': Flags.integer({
    description:
      'at most this many matching events a second per node, capped in the kernel program (the rest is counted as skipped)',
    min: 1,
  }),
});

const OUTPUT_FLAGS = group('OUTPUT', {
  output: Flags.string({
    char: 'o',
    description: 'output format',
    options: ['text', 'wide', 'json'],
    default: 'text',
  }),
  'output-file': Flags.string({
    description: 'also save the trace (JSON lines) to this file, for show and diff',
  }),
  'output-file-max-size': Flags.integer({
    description:
      'rotate the --output-file when it would pass this many MiB (FILE.1, FILE.2, …; each starts with the header)',
    min: 1,
  }),
  'output-file-max-backups': Flags.integer({
    description: 'with --output-file-max-size: rotated files to keep (default 3)',
    min: 0,
  }),
  pcapng: Flags.string({
    description: `also write the packets' bytes to this pcapng file for Wireshark (--snaplen, default ${DEFAULT_SNAPLEN})`,
  }),
  snaplen: Flags.integer({
    description:
      'capture this many bytes of each packet from its IP header, at its first step and where it was rewritten (JSON lines and --output-file keep them)',
    min: 1,
    max: 65535,
  }),
  summary: Flags.boolean({ description: 'print only the per-packet verdict table at the end' }),
  'fail-on-drop': Flags.boolean({
    description: `exit with code ${EXIT_DROPPED} if any matching packet was dropped`,
  }),
  'no-color': Flags.boolean({ description: 'no colours (also: NO_COLOR=1, or output not a terminal)' }),
});

export const TRACE_FLAGS = {
  ...WHERE_FLAGS,
  ...KUBERNETES_FLAGS,
  ...MATCH_FLAGS,
  ...PROBE_FLAGS,
  ...STOP_FLAGS,
  ...WATCH_FLAGS,
  ...OUTPUT_FLAGS,
};

/**
 * The flags as oclif's parser returns them: a flag not given is absent
 * (booleans too), except those with a default; integers are numbers.
 */
export type TraceFlags = Omit<Interfaces.InferredFlags<typeof TRACE_FLAGS>, 'json'>;
