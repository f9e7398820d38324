import { UserError } from '../errors';
import { PROTO_NAMES } from '../trace/filter';
import { BACKENDS, DEFAULT_SNAPLEN } from '../trace/request';
import { EXIT_DROPPED, runTrace } from '../trace/run-trace';

// oclif's own entry points, not its index: see src/cli.ts.
const { Command } = require('@oclif/core/command') as typeof import('@oclif/core/lib/command');
const Flags = require('@oclif/core/flags') as typeof import('@oclif/core/lib/flags');

export default class Trace extends Command {
  static override description = `Trace where matching packets go in the kernel, and why they die.

Prints every kernel function or tracepoint each matching packet passes, in
order, ending with the kernel's drop reason when it is dropped. With a
Kubernetes TARGET it runs on that target's node(s) through a short-lived
privileged pod; with --local it traces this host (needs root).

This is the default command: \`kubectl pwru TARGET [PCAP-FILTER]\`.`;

  static override examples = [
    'kubectl pwru pod/web-0 -n shop --port 443',
    "kubectl pwru svc/api --proto tcp 'tcp[tcpflags] & tcp-syn != 0' --duration 30s -o json > trace.jsonl",
    "kubectl pwru node/worker-3 'host 10.0.4.7' --backend tracepoint",
    'kubectl pwru deploy/checkout -l app=checkout --max-events 200',
    "sudo kubectl-pwru --local 'host 10.244.0.5 and udp port 53' --duration 10s",
    'sudo kubectl-pwru --local --port 80 --filter-track-skb --output-file trace.jsonl',
  ];

  static override usage = ['TARGET [PCAP-FILTER] [flags]', '--local [PCAP-FILTER] [flags]'];

  // The pcap expression may be given as several words.
  static override strict = false;

  static override flags = {
    local: Flags.boolean({ description: 'trace this host instead of a Kubernetes target (needs root)' }),
    // kubectl conventions
    namespace: Flags.string({ char: 'n', description: 'namespace of the target (default: from kubeconfig)' }),
    context: Flags.string({ description: 'kubeconfig context to use' }),
    kubeconfig: Flags.string({
      description: 'path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)',
    }),
    selector: Flags.string({ char: 'l', description: 'trace every pod matching this label selector' }),
    // what to match
    port: Flags.string({
      description: 'match this port or range (80, 8000-8080); repeatable',
      multiple: true,
    }),
    host: Flags.string({ description: 'match this address or CIDR; repeatable', multiple: true }),
    proto: Flags.string({ description: `match this protocol: ${PROTO_NAMES.join(', ')}` }),
    'filter-func': Flags.string({
      description: 'only probe functions/tracepoints whose name matches this regex',
    }),
    'filter-netns': Flags.string({ description: 'only this network namespace: inode, or /proc/PID/ns/net' }),
    'filter-mark': Flags.string({ description: 'only packets with this mark: MARK or MARK/MASK' }),
    'filter-ifname': Flags.string({ description: 'only packets on this interface' }),
    'filter-track-skb': Flags.boolean({
      description: 'once a packet matched, keep following it through NAT and rewrites',
    }),
    'pod-netns-only': Flags.boolean({ description: "only the target pod's own network namespace" }),
    // how to probe
    backend: Flags.string({ description: 'probe backend', options: [...BACKENDS], default: 'auto' }),
    'all-kmods': Flags.boolean({ description: 'also probe functions in kernel modules' }),
    'output-stack': Flags.boolean({ description: 'collect the kernel stack of each step' }),
    'ringbuf-size': Flags.integer({
      description: 'kernel ring buffer size in bytes (power of two)',
      hidden: true,
    }),
    // when to stop
    duration: Flags.string({ description: 'stop after this long (30s, 2m)' }),
    'max-events': Flags.integer({ description: 'stop after this many events', min: 1 }),
    // output
    output: Flags.string({
      char: 'o',
      description: 'output format',
      options: ['text', 'wide', 'json'],
      default: 'text',
    }),
    'output-file': Flags.string({
      description: 'also save the trace (JSON lines) to this file, for show and diff',
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
    // the debug pod
    image: Flags.string({
      description: 'image of the debug pod (needs node); default an official Node.js image',
    }),
    'debug-namespace': Flags.string({
      description: 'namespace for the debug pod (default: the target namespace)',
    }),
    'print-manifest': Flags.boolean({
      description: 'print the debug pod it would create, as YAML, and create nothing',
    }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(Trace);
    // src/cli.ts runs the same for the --local command lines it reads without oclif.
    const code = await runTrace(flags, argv as string[]);
    if (code !== 0) this.exit(code);
  }

  protected override async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    // Plain, unwrapped text as kubectl prints it: people read it, scripts grep it.
    if (err instanceof UserError) {
      process.stderr.write(`error: ${err.message}\n`);
      this.exit(err.exitCode);
    }
    return super.catch(err);
  }
}
