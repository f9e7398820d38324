/**
 * The trace command, front to back, after oclif has parsed the command line
 * (src/commands/trace.ts):
 *
 *   1. the words: TARGET (unless --local) and the pcap expression; every
 *      value and combination of flags checked before anything is looked up
 *   2. where to trace: this host (one node), or a Kubernetes target's nodes
 *   3. the request, built once from the flags and that place (its addresses
 *      join the filter); nothing changes it after this
 *   4. the sink, made from facts: a NODE column when there is more than one
 *      node, the node named in every line of a Kubernetes run
 *   5. run: a local session, or one debug pod per node
 *
 * Failures the user can act on are thrown as UserError (the command prints
 * `error: <message>` and exits with its code); the resolved value is the exit
 * code of a trace that ran (0, or EXIT_DROPPED for --fail-on-drop).
 */
import { EXIT_DROPPED, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK } from './errors';
import { checkWithHelper, helperToCheckWith } from './local/check';
import { localHelper } from './local/helper-binary';
import { runLocalTrace } from './local/session';
import { shouldColor } from './output/ansi';
import { createSink } from './output/create-sink';
import { createOnDropSink } from './output/on-drop-sink';
import { type CommandWords, checkRequestFlags, readWords } from './trace/command-line';
import type { TraceFlags } from './trace/flags';
import { type TracePlace, thisHost } from './trace/place';
import { buildRequest } from './trace/request';

export interface TraceIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

const MIB = 1 << 20;

export async function runTrace(
  flags: TraceFlags,
  argv: readonly string[],
  io: TraceIo = process,
): Promise<number> {
  // 1. The words, and every value checked.
  const words = readWords(flags, argv);
  checkRequestFlags(flags, words);

  // From here on, the first Ctrl-C/SIGTERM stops the run cleanly, whatever step it is in; a second one
  // forces exit soon after. `kubectl pwru … | head`: a reader that went away stops it too.
  const controller = new AbortController();
  // The second: what is still stopping gets 3 s (a debug pod's deletion starts at once).
  const forced = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1) {
      io.stderr.write('stopping (Ctrl-C again to force)...\n');
      controller.abort();
    } else {
      forced.abort();
      setTimeout(() => process.exit(EXIT_INTERRUPTED), 3000).unref();
    }
  };
  const onOutputError = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  io.stdout.on('error', onOutputError);
  io.stderr.on('error', onOutputError);
  try {
    return await traceFrom(flags, words, io, controller, forced.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    io.stdout.off('error', onOutputError);
    io.stderr.off('error', onOutputError);
  }
}

/** Steps 2 to 5. */
async function traceFrom(
  flags: TraceFlags,
  words: CommandWords,
  io: TraceIo,
  controller: AbortController,
  force: AbortSignal,
): Promise<number> {
  const signal = controller.signal;
  // 2. Where. The Kubernetes client is heavy to load: --local never pays for it.
  const kube = flags.local ? undefined : await import('./kube/run');
  const kubeOptions = kube?.kubeFlagOptions(flags);
  const where = {
    target: words.target,
    selector: flags.selector,
    namespace: flags.namespace,
    context: flags.context,
    kubeconfig: flags.kubeconfig,
    podNetnsOnly: Boolean(flags['pod-netns-only']),
    filterNetns: flags['filter-netns'],
    signal,
    ...kubeOptions,
  };
  const pods = { image: flags.image, debugNamespace: flags['debug-namespace'], ...kubeOptions };
  const build = (place: TracePlace) => buildRequest(flags, words, place);
  if (kube && flags['print-manifest']) {
    // Works without a cluster: placeholders where only the cluster could say.
    let manifest: string;
    try {
      const place = await kube.resolveKubePlace({
        ...where,
        requestTimeoutMs: Math.min(where.requestTimeoutMs || 5000, 5000),
      });
      manifest = kube.printManifest({ place, request: build(place), ...pods });
    } catch (err) {
      if (!kube.unreachable(err)) throw err;
      io.stderr.write(
        `warning: ${(err as Error).message.split('\n')[0]}\nprinting the manifest with placeholders where the cluster would say\n`,
      );
      manifest = kube.printManifestWithoutCluster(where, build, pods);
    }
    io.stdout.write(manifest);
    return EXIT_OK;
  }
  const cluster = kube ? await kube.resolveKubePlace(where) : undefined;
  const place = cluster ?? thisHost();

  // 3. The request, checked by the helper itself before anything is started: locally the whole of it; for
  // Kubernetes what does not depend on the node (its namespaces and interfaces are not this machine's).
  const request = build(place);
  const helper = kube ? '' : localHelper();
  const checker = kube ? helperToCheckWith() : helper;
  if (checker) {
    await checkWithHelper(
      checker,
      kube ? { ...request, filterNetns: undefined, filterIfname: undefined } : request,
    );
  }

  // 4. The sink.
  const rotation =
    flags['output-file-max-size'] !== undefined
      ? { maxBytes: flags['output-file-max-size'] * MIB, maxBackups: flags['output-file-max-backups'] ?? 3 }
      : undefined;
  const common = {
    outputFile: flags['output-file'],
    rotation,
    color: shouldColor(io.stdout, flags['no-color']),
    stdout: io.stdout,
    stderr: io.stderr,
    // A full disk, or `| head` gone: the run stops (close() reports a failure, exit 5).
    onOutputFault: () => controller.abort(),
  };
  const sink = flags['on-drop']
    ? createOnDropSink({
        ...common,
        json: flags.output === 'json',
        maxDrops: flags.drops,
        enough: () => controller.abort(),
        columns: io.stdout.columns,
      })
    : createSink({
        ...common,
        format: flags.output as 'text' | 'wide' | 'json',
        summary: Boolean(flags.summary),
        pcapng: flags.pcapng,
        verdicts: flags['fail-on-drop'],
        showNode: place.nodes.length > 1,
      });
  for (const warning of place.warnings) sink.warning(warning);

  // 5. Run.
  try {
    if (kube && cluster) await kube.runKubeTrace({ place: cluster, request, ...pods, sink, signal, force });
    else await runLocalTrace(request, sink, signal, helper);
  } finally {
    await sink.close();
  }
  return flags['fail-on-drop'] ? failOnDropCode(sink, io.stderr) : EXIT_OK;
}

/**
 * --fail-on-drop's answer: a drop seen is a drop (3); none seen is "no drop"
 * (0) only when the kernel handed over every event, since a lost or skipped
 * one may have been the drop (6).
 */
function failOnDropCode(
  sink: { dropped(): boolean; missedEvents(): number },
  stderr: NodeJS.WritableStream,
): number {
  if (sink.dropped()) return EXIT_DROPPED;
  const missed = sink.missedEvents();
  if (missed === 0) return EXIT_OK;
  stderr.write(
    `error: --fail-on-drop cannot say "no drop": ${missed} matching events were lost or skipped (--max-rate), and a drop may be among them; narrow the filter\n`,
  );
  return EXIT_INCOMPLETE;
}
