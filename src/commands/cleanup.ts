import { Command, Flags } from '@oclif/core';
import { UserError } from '../errors';

export default class Cleanup extends Command {
  static override description = `Delete debug pods that an interrupted run left behind.

Every debug pod carries the label app.kubernetes.io/managed-by=kubectl-pwru.
A run deletes its own pods when it ends, even on Ctrl-C; a run that was
killed outright leaves pods that stop their probes and end by themselves,
and this removes what is left of them.`;

  static override examples = [
    'kubectl pwru cleanup',
    'kubectl pwru cleanup -n kube-system',
    'kubectl pwru cleanup --dry-run',
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
    });
    const verb = flags['dry-run'] ? 'would delete' : 'deleted';
    for (const p of pods) {
      const who = p.startedBy ? `, started by ${p.startedBy}` : '';
      const what = p.target ? ` tracing ${p.target}` : '';
      this.log(
        `${verb} pod ${p.namespace}/${p.name} (node ${p.node || '?'}, ${p.phase || 'unknown phase'}${who}${what})`,
      );
    }
    if (pods.length === 0) this.log('no kubectl-pwru debug pods found');
  }

  protected override async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    if (err instanceof UserError) this.error(err.message, { exit: err.exitCode });
    return super.catch(err);
  }
}
