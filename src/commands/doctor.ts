import { Args, Command, Flags } from '@oclif/core';
import { reportError, UserError } from '../errors';

export default class Doctor extends Command {
  static override description = `Check a node and your rights before an incident needs it.

Says, as a table: the node's kernel, whether it has BTF, which probe backends
really attach there and how fast, how many drop reasons its kernel names,
whether the debug pod is admitted in the namespace (Pod Security, policies),
and whether your rights (manifests/rbac.yaml) suffice. The node is checked by
the same debug pod a trace uses, for a few seconds, then deleted.

Exit code 0: a trace can run there; 1: something stops it (the table says
what); 2: bad input (no such node).`;

  static override examples = [
    'kubectl pwru doctor',
    'kubectl pwru doctor node/worker-3 -n pwru-debug',
    'kubectl pwru doctor node/worker-3 --profile capabilities -o json',
  ];

  static override args = {
    node: Args.string({ description: 'node/NAME (default: the first Ready node)' }),
  };

  static override flags = {
    namespace: Flags.string({
      char: 'n',
      description: 'namespace of the debug pod (default: the context namespace)',
    }),
    context: Flags.string({ description: 'kubeconfig context to use' }),
    kubeconfig: Flags.string({
      description: 'path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)',
    }),
    'request-timeout': Flags.string({
      description: 'give up on a single API request after this long (0: never)',
      default: '30s',
    }),
    as: Flags.string({ description: 'user to impersonate' }),
    'as-group': Flags.string({ description: 'group to impersonate; repeatable', multiple: true }),
    image: Flags.string({ description: 'image of the debug pod (needs node)' }),
    profile: Flags.string({
      description: 'privileged, or capabilities',
      options: ['privileged', 'capabilities'],
    }),
    'image-pull-secret': Flags.string({
      description: 'Secret for pulling --image; repeatable',
      multiple: true,
    }),
    'pod-patch': Flags.string({ description: 'strategic merge patch of the debug pod' }),
    output: Flags.string({
      char: 'o',
      description: 'output format',
      options: ['table', 'json'],
      default: 'table',
    }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Doctor);
    const { kubeFlagOptions } = await import('../kube/run');
    const { runDoctor, doctorExitCode } = await import('../kube/doctor');
    const controller = new AbortController();
    const onSignal = () => controller.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const rows = await runDoctor({
      ...kubeFlagOptions(flags),
      namespace: flags.namespace,
      context: flags.context,
      kubeconfig: flags.kubeconfig,
      image: flags.image,
      node: args.node,
      signal: controller.signal,
      progress: (m) => process.stderr.write(`${m}\n`),
    }).catch((err: Error) => {
      if (err.name === 'AbortedError') throw new UserError('interrupted; the debug pod was deleted', 130);
      throw err;
    });
    if (flags.output === 'json') {
      process.stdout.write(`${JSON.stringify({ ok: doctorExitCode(rows) === 0, checks: rows })}\n`);
    } else {
      const Table = (await import('cli-table3')).default;
      const table = new Table({
        head: ['CHECK', 'RESULT', 'DETAIL'],
        style: { head: [], border: [] },
        chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
        wordWrap: true,
        colWidths: [22, 8, Math.max(40, (process.stdout.columns || 120) - 30)],
      });
      for (const r of rows) table.push([r.check, r.verdict, r.detail]);
      process.stdout.write(`${table.toString()}\n`);
    }
    const code = doctorExitCode(rows);
    if (code !== 0) this.exit(code);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return reportError(this, err);
  }
}
