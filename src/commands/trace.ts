import { BadInput, reportError, UserError } from '../errors';
import { runTrace } from '../run-trace';
import { TRACE_FLAGS } from '../trace/flags';

// oclif's own entry points, not its index: see src/cli.ts.
const { Command } = require('@oclif/core/command') as typeof import('@oclif/core/lib/command');

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
    'kubectl pwru svc/api --port 443 --on-drop --duration 8h --output-file caught.jsonl',
  ];

  static override usage = ['TARGET [PCAP-FILTER] [flags]', '--local [PCAP-FILTER] [flags]'];

  // The pcap expression may be given as several words.
  static override strict = false;

  static override flags = TRACE_FLAGS;

  async run(): Promise<void> {
    const parsed = await this.parse(Trace).catch((err: Error) => {
      throw parseError(err);
    });
    // The positional words in the order they were typed (oclif's argv is sorted by first appearance,
    // which moves a word that equals an earlier flag's value).
    const words = parsed.raw.flatMap((token) => (token.type === 'arg' ? [token.input] : []));
    const code = await runTrace(parsed.flags, words);
    if (code !== 0) this.exit(code);
  }

  protected override async catch(err: Error): Promise<unknown> {
    return reportError(this, err);
  }
}

/** oclif's parser refused the command line: one plain line and exit code 2, as for any bad input. */
function parseError(err: Error & { flags?: unknown }): Error {
  if (err instanceof UserError) return err;
  const help = 'see kubectl pwru trace --help';
  if (Array.isArray(err.flags) && err.flags.length > 0) {
    return new BadInput(`unknown flag ${err.flags.join(', ')}: ${help}`);
  }
  const lower = (s: string) => `${s.charAt(0).toLowerCase()}${s.slice(1)}`;
  const lines = err.message
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/^See more help/.test(line));
  // "Parsing --max-events" then why, on lines of their own.
  const flag = /^Parsing (--\S+)$/.exec(lines[0] ?? '');
  const what = flag ? `${flag[1]}: ${lower(lines.slice(1).join('; '))}` : lower(lines.join(': '));
  return new BadInput(`${what}: ${help}`);
}
