/**
 * The trace command itself: flags and words as oclif parsed them
 * (src/commands/trace.ts) → TraceRequest → a local or Kubernetes trace into a
 * sink.
 *
 * Failures the user can act on are thrown as UserError (the caller prints
 * `error: <message>` and exits with its code); the resolved value is the exit
 * code of a trace that ran (0, or EXIT_DROPPED for --fail-on-drop).
 */
import { BadInput, EXIT_DROPPED, EXIT_OK, UserError } from '../errors';
import { localHelper } from '../local/helper-binary';
import { runLocalTrace } from '../local/session';
import { shouldColor } from '../output/ansi';
import { createSink } from '../output/create-sink';
import { createOnDropSink } from '../output/on-drop-sink';
import { TX_START_FUNCS } from '../reading/kernel-functions';
import { parseDuration } from './duration';
import { composeFilter } from './filter';
import { KUBERNETES_FLAGS, type TraceFlags } from './flags';
import { type Backend, DEFAULT_SNAPLEN, type TraceRequest } from './request';

export interface TraceIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

const MIB = 1 << 20;

/** --on-drop's ring buffer: 4 MiB (~25,000 events) instead of 8, so the helper stays well under 32 MiB. */
const ON_DROP_RINGBUF_BYTES = 4 << 20;

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
    // --on-drop runs for hours: the ring is mapped into the helper (its pages count in its memory) twice over.
    ringbufBytes: flags['ringbuf-size'] ?? (flags['on-drop'] ? ON_DROP_RINGBUF_BYTES : undefined),
    tunnelFilter: flags['tunnel-filter'],
    vxlanPort: flags['vxlan-port'],
    genevePort: flags['geneve-port'],
    snaplen: flags.snaplen ?? (flags.pcapng !== undefined ? DEFAULT_SNAPLEN : undefined),
    maxRate: flags['max-rate'],
    ...(flags['on-drop'] ? { onDrop: { packetStarts: [...TX_START_FUNCS] } } : {}),
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
    for (const kubeFlag of Object.keys(KUBERNETES_FLAGS) as (keyof typeof KUBERNETES_FLAGS)[]) {
      if (flags[kubeFlag] !== undefined && flags[kubeFlag] !== false)
        throw new BadInput(`--${kubeFlag} is for Kubernetes targets, not --local`);
    }
  }
  if (flags.drops !== undefined && !flags['on-drop'])
    throw new UserError('--drops counts the drops --on-drop reports: add --on-drop', 2);
  if (flags['on-drop'] && flags.summary)
    throw new UserError('--on-drop prints each drop as it is caught: leave out --summary', 2);
  if (flags['on-drop'] && (flags.snaplen !== undefined || flags.pcapng !== undefined))
    throw new UserError('--on-drop reports steps, not packet bytes: leave out --snaplen and --pcapng', 2);
  const controller = new AbortController();
  if (flags['output-file-max-size'] !== undefined && flags['output-file'] === undefined)
    throw new UserError('--output-file-max-size rotates the --output-file: give one', 2);
  if (flags['output-file-max-backups'] !== undefined && flags['output-file-max-size'] === undefined)
    throw new UserError('--output-file-max-backups needs --output-file-max-size (when to rotate)', 2);
  const rotation =
    flags['output-file-max-size'] !== undefined
      ? { maxBytes: flags['output-file-max-size'] * MIB, maxBackups: flags['output-file-max-backups'] ?? 3 }
      : undefined;
  const sink = flags['on-drop']
    ? createOnDropSink({
        json: flags.output === 'json',
        outputFile: flags['output-file'],
        rotation,
        onOutputFault: () => controller.abort(),
        color: shouldColor(io.stdout, flags['no-color']),
        stdout: io.stdout,
        stderr: io.stderr,
        maxDrops: flags.drops,
        enough: () => controller.abort(),
        columns: io.stdout.columns,
      })
    : createSink({
        format: flags.output as 'text' | 'wide' | 'json',
        summary: flags.summary as boolean,
        outputFile: flags['output-file'],
        rotation,
        pcapng: flags.pcapng,
        verdicts: flags['fail-on-drop'],
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
  if (kube) Object.assign(kubeOptions, kube.kubeFlagOptions(flags));
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
  return flags['fail-on-drop'] && sink.dropped() ? EXIT_DROPPED : EXIT_OK;
}
