import { Command, Flags } from '@oclif/core';
import { UserError } from '../errors';

export default class Cleanup extends Command {
  static override description = `Delete debug pods that an interrupted run left behind.

Every debug pod carries the label app.kubernetes.io/managed-by=kubectl-pwru.
A run deletes its own pods when it ends, even on Ctrl-C; a run that was
killed outright leaves pods that stop their probes and end by themselves,
and this removes what is left of them. A pod that is still running and was
started by someone else may be their trace in progress: it is listed but kept,
unless --all.`;

  static override examples = [
    'kubectl pwru cleanup',
    'kubectl pwru cleanup -n kube-system',
    'kubectl pwru cleanup --dry-run',
    'kubectl pwru cleanup --all',
  ];

  static override flags = {
    namespace: Flags.string({
      char: 'n',
      description: 'only this namespace (default: all namespaces)',
    }),
    context: Flags.string({ description: 'kubeconfig context to use' }),
    kubeconfig: Flags.string({
      description: 'path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)',
    }),
    'dry-run': Flags.boolean({ description: 'list the pods that would be deleted, delete nothing' }),
    all: Flags.boolean({
      description: 'also delete running debug pods that someone else started (their traces end)',
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Cleanup);
    const { cleanupDebugPods } = await import('../kube/cleanup');
    const pods = await cleanupDebugPods({
      namespace: flags.namespace,
      context: flags.context,
      kubeconfig: flags.kubeconfig,
      namespaceOnly: flags.namespace !== undefined,
      dryRun: flags['dry-run'],
      all: flags.all,
    });
    const verb = flags['dry-run'] ? 'would delete' : 'deleted';
    for (const p of pods) {
      const who = p.startedBy ? `, started by ${p.startedBy}` : '';
      const what = p.target ? ` tracing ${p.target}` : '';
      const action = p.skipped ? 'kept (may be a trace in progress; --all deletes it)' : verb;
      this.log(
        `${action} pod ${p.namespace}/${p.name} (node ${p.node || '?'}, ${p.phase || 'unknown phase'}${who}${what})`,
      );
    }
    if (pods.length === 0) this.log('no kubectl-pwru debug pods found');
  }

  protected override async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    if (err instanceof UserError) this.error(err.message, { exit: err.exitCode });
    return super.catch(err);
  }
}
