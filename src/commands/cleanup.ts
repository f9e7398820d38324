import { Command, Flags } from '@oclif/core';
import { BadInput, reportError } from '../errors';

export default class Cleanup extends Command {
  static override description = `Delete debug pods and Jobs that interrupted runs left behind.

Every debug Job and pod carries the label app.kubernetes.io/managed-by=kubectl-pwru.
A run deletes its own when it ends, even on Ctrl-C; a run that was killed
outright leaves a pod that stops its probes and ends by itself, and whose Job
the cluster deletes 10 s later. This removes whatever is still there. A debug
pod whose trace is still running (anyone's, yours from another terminal too)
is listed but kept, unless --all. Like kubectl: the current namespace, -n NS,
or -A for every namespace.`;

  static override examples = [
    'kubectl pwru cleanup',
    'kubectl pwru cleanup -A',
    'kubectl pwru cleanup -n kube-system --dry-run',
    'kubectl pwru cleanup -A --all',
  ];

  static override flags = {
    namespace: Flags.string({ char: 'n', description: 'namespace (default: the context namespace)' }),
    'all-namespaces': Flags.boolean({ char: 'A', description: 'every namespace' }),
    context: Flags.string({ description: 'kubeconfig context to use' }),
    kubeconfig: Flags.string({
      description: 'path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)',
    }),
    'request-timeout': Flags.string({
      description: 'give up on a single API request after this long (30s, 1m; 0: never)',
      default: '30s',
    }),
    as: Flags.string({ description: 'user to impersonate for this command' }),
    'as-group': Flags.string({ description: 'group to impersonate; repeatable', multiple: true }),
    'dry-run': Flags.boolean({ description: 'list what would be deleted, delete nothing' }),
    all: Flags.boolean({
      description: 'also delete debug pods whose trace is still running (those traces end)',
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Cleanup);
    if (flags.namespace && flags['all-namespaces']) throw new BadInput('-n and -A: pick one');
    const { parseRequestTimeout } = await import('../kube/api');
    const { cleanupDebugPods } = await import('../kube/cleanup');
    const pods = await cleanupDebugPods({
      namespace: flags.namespace,
      context: flags.context,
      kubeconfig: flags.kubeconfig,
      requestTimeoutMs: parseRequestTimeout(flags['request-timeout']),
      as: flags.as,
      asGroups: flags['as-group'],
      allNamespaces: flags['all-namespaces'],
      dryRun: flags['dry-run'],
      all: flags.all,
    });
    const verb = flags['dry-run'] ? 'would delete' : 'deleted';
    for (const p of pods) {
      const who = p.startedBy ? `, started by ${p.startedBy}` : '';
      const what = p.target ? ` tracing ${p.target}` : '';
      const action = p.skipped
        ? 'kept (its trace is running; --all deletes it)'
        : p.terminating
          ? `${verb} (still terminating)`
          : verb;
      this.log(
        `${action} ${p.kind} ${p.namespace}/${p.name} (node ${p.node || '?'}, ${p.phase || 'unknown phase'}${who}${what})`,
      );
    }
    if (pods.length === 0) this.log('no kubectl-pwru debug pods found');
  }

  protected override async catch(err: Error): Promise<unknown> {
    return reportError(this, err);
  }
}
