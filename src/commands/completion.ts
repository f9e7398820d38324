import { Args, Command } from '@oclif/core';

export default class Completion extends Command {
  static override description = `Print a shell completion script for kubectl-pwru.

Through kubectl (\`kubectl pwru …\`, kubectl 1.26 or later), completion comes
from the kubectl_complete-pwru executable this package installs next to
kubectl-pwru: nothing to set up beyond kubectl's own completion. For the
kubectl-pwru command itself, load one of these scripts. Targets, namespaces,
pods and nodes complete from the cluster.`;

  static override examples = [
    'source <(kubectl-pwru completion bash)',
    'source <(kubectl-pwru completion zsh)',
    'kubectl-pwru completion fish | source',
  ];

  static override args = {
    shell: Args.string({ description: 'the shell', options: ['bash', 'zsh', 'fish'], required: true }),
  };

  async run(): Promise<void> {
    const { args } = await this.parse(Completion);
    const { completionScript } = await import('../kube/complete');
    process.stdout.write(completionScript(args.shell));
  }
}
