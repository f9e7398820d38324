/**
 * The trace command's command line as the trace reads it, once oclif has
 * parsed it with the flag table (src/trace/flags.ts): the positional words
 * (TARGET, then the pcap expression), and every value and combination of
 * flags checked before anything is looked up or created.
 */
import { BadInput } from '../errors';
import { KUBERNETES_FLAGS, type TraceFlags } from './flags';
import { buildRequest } from './request';

/** The positional words: the target (unless --local or -l alone), then the pcap expression. */
export interface CommandWords {
  target?: string;
  expression: string;
}

export function readWords(flags: TraceFlags, words: readonly string[]): CommandWords {
  if (flags.local) return { expression: words.join(' ') };
  if (flags.selector !== undefined && words.length === 0) return { expression: '' };
  if (words.length === 0) {
    throw new BadInput(
      'give a TARGET (pod/NAME, node/NAME, svc/NAME, deploy/NAME, ...) or -l SELECTOR, or --local to trace this host; see --help',
    );
  }
  return { target: words[0], expression: words.slice(1).join(' ') };
}

/** Validate: every value and every combination of flags checked, before anything is looked up or created. */
export function checkRequestFlags(flags: TraceFlags, words: CommandWords): void {
  if (flags.local) {
    for (const kubeFlag of Object.keys(KUBERNETES_FLAGS) as (keyof typeof KUBERNETES_FLAGS)[]) {
      if (flags[kubeFlag] !== undefined && flags[kubeFlag] !== false)
        throw new BadInput(`--${kubeFlag} is for Kubernetes targets, not --local`);
    }
  }
  if (flags.drops !== undefined && !flags['on-drop'])
    throw new BadInput('--drops counts the drops --on-drop reports: add --on-drop');
  if (flags['on-drop'] && flags.summary)
    throw new BadInput('--on-drop prints each drop as it is caught: leave out --summary');
  if (flags['on-drop'] && (flags.snaplen !== undefined || flags.pcapng !== undefined))
    throw new BadInput('--on-drop reports steps, not packet bytes: leave out --snaplen and --pcapng');
  if (flags['output-file-max-size'] !== undefined && flags['output-file'] === undefined)
    throw new BadInput('--output-file-max-size rotates the --output-file: give one');
  if (flags['output-file-max-backups'] !== undefined && flags['output-file-max-size'] === undefined)
    throw new BadInput('--output-file-max-backups needs --output-file-max-size (when to rotate)');
  buildRequest(flags, words, { nodes: [], addresses: [], kubernetes: false, warnings: [] });
}
