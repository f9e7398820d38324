/**
 * The trace command itself: flags and words as the command line gives them →
 * TraceRequest → a local or Kubernetes trace into a sink. Two callers, one
 * behaviour: the oclif command (src/commands/trace.ts) parses and calls this;
 * src/cli.ts calls it directly, without loading oclif, for the `--local`
 * command lines src/startup/speculate.ts reads exactly as oclif would.
 *
 * Failures the user can act on are thrown as UserError (the caller prints
 * `error: <message>` and exits with its code); the resolved value is the exit
 * code of a trace that ran (0, or EXIT_DROPPED for --fail-on-drop).
 */
import { UserError } from '../errors';
import { localHelper } from '../local/helper-binary';
import { runLocalTrace } from '../local/session';
import { shouldColor } from '../output/ansi';
import { createSink } from '../output/create-sink';
import { parseDuration } from './duration';
import { composeFilter } from './filter';
import { type Backend, DEFAULT_SNAPLEN, type TraceRequest } from './request';

/** Exit code of --fail-on-drop when a matching packet was dropped (docs/exit-codes.md). */
export const EXIT_DROPPED = 3;

/**
 * The trace command's flags, as oclif's parser returns them: a flag not given
 * is absent (booleans too), except the two with defaults; integers are numbers.
 */
export interface TraceFlags {
  local?: boolean;
  namespace?: string;
  context?: string;
  kubeconfig?: string;
  selector?: string;
  port?: string[];
  host?: string[];
  proto?: string;
  'filter-func'?: string;
  'filter-netns'?: string;
  'filter-mark'?: string;
  'filter-ifname'?: string;
  'filter-track-skb'?: boolean;
  'pod-netns-only'?: boolean;
  backend: string;
  'all-kmods'?: boolean;
  'output-stack'?: boolean;
  'ringbuf-size'?: number;
  duration?: string;
  'max-events'?: number;
  output: string;
  'output-file'?: string;
  pcapng?: string;
  snaplen?: number;
  summary?: boolean;
  'fail-on-drop'?: boolean;
  'no-color'?: boolean;
  image?: string;
  'debug-namespace'?: string;
  'print-manifest'?: boolean;
}

export interface TraceIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

/** Complete: the target, the filter, the request. */
export function completeTrace(
  flags: TraceFlags,
  words: readonly string[],
): { local: boolean; target: string | undefined; request: TraceRequest } {
  const local = Boolean(flags.local);
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
    // As the command always passed them: undefined when not given (helperArgs asks only if set).
    trackSkb: flags['filter-track-skb'] as boolean,
    allKmods: flags['all-kmods'] as boolean,
    outputStack: flags['output-stack'] as boolean,
    durationSec: flags.duration !== undefined ? parseDuration('--duration', flags.duration) : undefined,
    maxEvents: flags['max-events'],
    ringbufBytes: flags['ringbuf-size'],
    snaplen: flags.snaplen ?? (flags.pcapng !== undefined ? DEFAULT_SNAPLEN : undefined),
  };
  return { local, target, request };
}

export async function runTrace(
  flags: TraceFlags,
  words: readonly string[],
  io: TraceIo = process,
): Promise<number> {
  const { local, target, request } = completeTrace(flags, words);

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
      throw new UserError('--pod-netns-only and --print-manifest are for Kubernetes targets, not --local', 2);
    }
  }
  const controller = new AbortController();
  const sink = createSink({
    format: flags.output as 'text' | 'wide' | 'json',
    summary: flags.summary as boolean,
    outputFile: flags['output-file'],
    pcapng: flags.pcapng,
    color: shouldColor(io.stdout, flags['no-color']),
    showNode: !local && !/^(pod|po|node|no)\//.test(target ?? '') && !(target && !target.includes('/')),
    stdout: io.stdout,
    stderr: io.stderr,
    // A full disk, or `| head` gone: the run stops (close() reports a failure, exit 5).
    onOutputFault: () => controller.abort(),
  });
  const kubeOptions = {
    target,
    selector: flags.selector,
    namespace: flags.namespace,
    context: flags.context,
    kubeconfig: flags.kubeconfig,
    image: flags.image,
    debugNamespace: flags['debug-namespace'],
    podNetnsOnly: flags['pod-netns-only'] as boolean,
    request,
    sink,
    signal: controller.signal,
  };
  // The Kubernetes client is heavy to load: --local never pays for it.
  const kube = local ? undefined : await import('../kube/run');
  if (kube && flags['print-manifest']) {
    io.stdout.write(await kube.printManifest(kubeOptions));
    return 0;
  }

  // Run: first Ctrl-C/SIGTERM stops the trace cleanly; a second one forces exit soon after.
  const helper = local ? localHelper() : '';
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1) {
      io.stderr.write('stopping (Ctrl-C again to force)...\n');
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
  io.stdout.on('error', onOutputError);
  io.stderr.on('error', onOutputError);
  try {
    if (kube) await kube.runKubeTrace(kubeOptions);
    else await runLocalTrace(request, sink, controller.signal, helper);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    io.stdout.off('error', onOutputError);
    io.stderr.off('error', onOutputError);
    await sink.close();
  }
  return flags['fail-on-drop'] && sink.dropped() ? EXIT_DROPPED : 0;
}
