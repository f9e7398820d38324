import { UserError } from '../errors';
import { localHelper } from '../local/helper-binary';
import { runLocalTrace } from '../local/session';
import { shouldColor } from '../output/ansi';
import { createSink } from '../output/create-sink';
import { withEarlyHelper } from '../startup/early-helper';
import { parseDuration } from '../trace/duration';
import { composeFilter, PROTO_NAMES } from '../trace/filter';
import { BACKENDS, type Backend, type TraceRequest } from '../trace/request';

// oclif's own entry points, not its index: see src/cli.ts.
const { Command } = require('@oclif/core/command') as typeof import('@oclif/core/lib/command');
const Flags = require('@oclif/core/flags') as typeof import('@oclif/core/lib/flags');

/** Exit code of --fail-on-drop when a matching packet was dropped (docs/exit-codes.md). */
const EXIT_DROPPED = 3;

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
    const words = argv as string[];

    // Complete: the target, the filter, the request.
    const local = flags.local;
    const target = local || (flags.selector !== undefined && words.length === 0) ? undefined : words[0];
    const expression = (local || target === undefined ? words : words.slice(1)).join(' ');
    if (!local && target === undefined && flags.selector === undefined) {
      throw new UserError(
        'give a TARGET (pod/NAME, node/NAME, svc/NAME, deploy/NAME, ...) or -l SELECTOR, or --local to trace this host; see --help',
        2,
      );
    }
    const request: TraceRequest = {
      pcapFilter: composeFilter({ port: flags.port, host: flags.host, proto: flags.proto }, expression),
      backend: flags.backend as Backend,
      filterFunc: flags['filter-func'],
      filterNetns: flags['filter-netns'],
      filterMark: flags['filter-mark'],
      filterIfname: flags['filter-ifname'],
      trackSkb: flags['filter-track-skb'],
      allKmods: flags['all-kmods'],
      outputStack: flags['output-stack'],
      durationSec: flags.duration !== undefined ? parseDuration('--duration', flags.duration) : undefined,
      maxEvents: flags['max-events'],
      ringbufBytes: flags['ringbuf-size'],
    };

    // Validate: what only makes sense in one mode.
    if (local) {
      for (const kubeFlag of [
        'namespace',
        'context',
        'kubeconfig',
        'selector',
        'image',
        'debug-namespace',
      ] as const) {
        if (flags[kubeFlag] !== undefined)
          throw new UserError(`--${kubeFlag} is for Kubernetes targets, not --local`, 2);
      }
      if (flags['pod-netns-only'] || flags['print-manifest']) {
        throw new UserError(
          '--pod-netns-only and --print-manifest are for Kubernetes targets, not --local',
          2,
        );
      }
    }
    const controller = new AbortController();
    const sink = createSink({
      format: flags.output as 'text' | 'wide' | 'json',
      summary: flags.summary,
      outputFile: flags['output-file'],
      color: shouldColor(process.stdout, flags['no-color']),
      showNode: !local && !/^(pod|po|node|no)\//.test(target ?? '') && !(target && !target.includes('/')),
      stdout: process.stdout,
      stderr: process.stderr,
    });
    const kubeOptions = {
      target,
      selector: flags.selector,
      namespace: flags.namespace,
      context: flags.context,
      kubeconfig: flags.kubeconfig,
      image: flags.image,
      debugNamespace: flags['debug-namespace'],
      podNetnsOnly: flags['pod-netns-only'],
      request,
      sink,
      signal: controller.signal,
    };
    // The Kubernetes client is heavy to load: --local never pays for it.
    const kube = local ? undefined : await import('../kube/run');
    if (kube && flags['print-manifest']) {
      process.stdout.write(await kube.printManifest(kubeOptions));
      return;
    }

    // Run: first Ctrl-C/SIGTERM stops the trace cleanly; a second one forces exit soon after.
    const helper = local ? localHelper() : '';
    let interrupts = 0;
    const onSignal = () => {
      interrupts++;
      if (interrupts === 1) {
        process.stderr.write('stopping (Ctrl-C again to force)...\n');
        controller.abort();
      } else {
        setTimeout(() => process.exit(130), 3000).unref();
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // `kubectl pwru … | head`: a reader that went away ends the trace like Ctrl-C (pods still deleted).
    const onOutputError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') controller.abort();
    };
    process.stdout.on('error', onOutputError);
    process.stderr.on('error', onOutputError);
    try {
      if (kube) await kube.runKubeTrace(kubeOptions);
      // The helper started before oclif loaded, if it runs exactly this (src/startup/early-helper.ts).
      else await withEarlyHelper(() => runLocalTrace(request, sink, controller.signal, helper));
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stdout.off('error', onOutputError);
      process.stderr.off('error', onOutputError);
      await sink.close();
    }
    if (flags['fail-on-drop'] && sink.dropped()) this.exit(EXIT_DROPPED);
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
