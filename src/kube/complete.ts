/**
 * Shell completion the way kubectl plugins do it: Cobra's `__complete`
 * protocol (candidates one a line, `:DIRECTIVE` last), which kubectl ≥ 1.26
 * asks of the `kubectl_complete-pwru` executable on PATH and which the
 * scripts of `kubectl pwru completion bash|zsh|fish` ask of `kubectl-pwru`.
 * Commands and flags come from oclif.manifest.json; targets, namespaces,
 * pods, nodes and contexts from the cluster (-n, --context and --kubeconfig
 * on the line are honoured), with a short timeout: a slow cluster completes
 * nothing rather than hang the shell.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { connect, loadKubeConfig, paths } from './client';
import { packageRoot } from './debug-pod';

/** Cobra's ShellCompDirective bits. */
export const DIRECTIVE = { error: 1, noSpace: 2, noFileComp: 4, default: 0 } as const;

const KINDS: Record<string, { path: (ns: string) => string; namespaced: boolean }> = {
  pod: { path: (ns) => paths.core('pods', ns), namespaced: true },
  node: { path: () => paths.nodes(), namespaced: false },
  svc: { path: (ns) => paths.core('services', ns), namespaced: true },
  deploy: { path: (ns) => paths.group('apps/v1', 'deployments', ns), namespaced: true },
  ds: { path: (ns) => paths.group('apps/v1', 'daemonsets', ns), namespaced: true },
  sts: { path: (ns) => paths.group('apps/v1', 'statefulsets', ns), namespaced: true },
};
const OTHER_COMMANDS = ['cleanup', 'doctor', 'show', 'diff', 'completion'];
const FILE_FLAGS = new Set(['kubeconfig', 'output-file', 'pod-patch', 'pcapng']);
const TIMEOUT_MS = 5000;

interface ManifestFlag {
  name: string;
  char?: string;
  type: 'boolean' | 'option';
  options?: string[];
}

function manifestFlags(command: string): ManifestFlag[] {
  const m = JSON.parse(readFileSync(join(packageRoot(), 'oclif.manifest.json'), 'utf8')) as {
    commands: Record<string, { flags: Record<string, ManifestFlag> }>;
  };
  return Object.values(m.commands[command]?.flags ?? {});
}

export interface Completion {
  candidates: string[];
  directive: number;
}

/** args: the words after `kubectl pwru`, the last one being completed (maybe ""). */
export async function complete(args: string[]): Promise<Completion> {
  const words = args.slice(0, -1);
  const toComplete = args[args.length - 1] ?? '';
  const command = OTHER_COMMANDS.includes(words[0] ?? '') ? (words[0] as string) : 'trace';
  const flags = manifestFlags(command);
  const byName = (w: string) =>
    flags.find((f) => (w.startsWith('--') ? f.name === w.slice(2) : w.length === 2 && f.char === w[1]));

  // What the line says about the cluster, and the positional words so far.
  const opts: { namespace?: string; context?: string; kubeconfig?: string } = {};
  const positional: string[] = [];
  for (let i = command === 'trace' ? 0 : 1; i < words.length; i++) {
    const w = words[i];
    const [flagWord, inline] =
      w.startsWith('--') && w.includes('=')
        ? [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]
        : [w, undefined];
    const f = w.startsWith('-') ? byName(flagWord) : undefined;
    if (!f) {
      if (!w.startsWith('-')) positional.push(w);
      continue;
    }
    if (f.type === 'option') {
      const value = inline ?? words[++i];
      if (f.name === 'namespace' || f.name === 'context' || f.name === 'kubeconfig') opts[f.name] = value;
    }
  }

  // The value of the flag before the cursor.
  const prev = words[words.length - 1] ?? '';
  const prevFlag = prev.startsWith('-') && !prev.includes('=') ? byName(prev) : undefined;
  if (prevFlag?.type === 'option') return flagValues(prevFlag, toComplete, opts);
  if (toComplete.startsWith('--') && toComplete.includes('=')) {
    const f = byName(toComplete.slice(0, toComplete.indexOf('=')));
    if (f?.type === 'option') {
      const prefix = toComplete.slice(0, toComplete.indexOf('=') + 1);
      const v = await flagValues(f, toComplete.slice(prefix.length), opts);
      return { candidates: v.candidates.map((c) => prefix + c), directive: v.directive };
    }
  }
  if (toComplete.startsWith('-')) {
    return {
      candidates: flags.map((f) => `--${f.name}`).filter((n) => n.startsWith(toComplete)),
      directive: DIRECTIVE.noFileComp,
    };
  }

  if (command === 'completion' && positional.length === 0)
    return {
      candidates: ['bash', 'zsh', 'fish'].filter((s) => s.startsWith(toComplete)),
      directive: DIRECTIVE.noFileComp,
    };
  if (command === 'show' || command === 'diff') return { candidates: [], directive: DIRECTIVE.default };
  if (command === 'doctor' && positional.length === 0)
    return targets(`node/${toComplete.replace(/^node\//, '')}`, opts);
  if (command === 'trace' && positional.length === 0) {
    if (toComplete.includes('/')) return targets(toComplete, opts);
    const kinds = Object.keys(KINDS).map((k) => `${k}/`);
    const pods = await targets(`pod/${toComplete}`, opts);
    const bare = pods.candidates.map((c) => c.slice('pod/'.length));
    const candidates = [...OTHER_COMMANDS, ...kinds, ...bare].filter((c) => c.startsWith(toComplete));
    // Only "kind/" left: no space after it, the name follows.
    const onlyKinds = candidates.length > 0 && candidates.every((c) => c.endsWith('/'));
    return { candidates, directive: DIRECTIVE.noFileComp | (onlyKinds ? DIRECTIVE.noSpace : 0) };
  }
  return { candidates: [], directive: DIRECTIVE.noFileComp };
}

async function flagValues(
  f: ManifestFlag,
  toComplete: string,
  opts: { namespace?: string; context?: string; kubeconfig?: string },
): Promise<Completion> {
  if (f.options)
    return { candidates: f.options.filter((o) => o.startsWith(toComplete)), directive: DIRECTIVE.noFileComp };
  if (FILE_FLAGS.has(f.name)) return { candidates: [], directive: DIRECTIVE.default };
  if (f.name === 'namespace' || f.name === 'debug-namespace') {
    const names = await listNames(paths.namespaces(), opts);
    return { candidates: names.filter((n) => n.startsWith(toComplete)), directive: DIRECTIVE.noFileComp };
  }
  if (f.name === 'context') {
    const kc = loadKubeConfig({ kubeconfig: opts.kubeconfig });
    return {
      candidates: kc
        .getContexts()
        .map((c) => c.name)
        .filter((n) => n.startsWith(toComplete)),
      directive: DIRECTIVE.noFileComp,
    };
  }
  return { candidates: [], directive: DIRECTIVE.noFileComp };
}

/** "kind/prefix" → "kind/NAME" of every such object in the namespace. */
async function targets(
  word: string,
  opts: { namespace?: string; context?: string; kubeconfig?: string },
): Promise<Completion> {
  const slash = word.indexOf('/');
  const kind = word.slice(0, slash);
  const prefix = word.slice(slash + 1);
  const k = KINDS[kind];
  if (!k) return { candidates: [], directive: DIRECTIVE.noFileComp };
  const cluster = connect({ ...opts, requestTimeoutMs: TIMEOUT_MS });
  const names = await listNames(k.path(cluster.namespace), opts);
  return {
    candidates: names.filter((n) => n.startsWith(prefix)).map((n) => `${kind}/${n}`),
    directive: DIRECTIVE.noFileComp,
  };
}

async function listNames(
  path: string,
  opts: { namespace?: string; context?: string; kubeconfig?: string },
): Promise<string[]> {
  const cluster = connect({ ...opts, requestTimeoutMs: TIMEOUT_MS });
  const list = await cluster.api.request<{ items: k8s.KubernetesObject[] }>('GET', path);
  return list.items
    .map((o) => o.metadata?.name ?? '')
    .filter(Boolean)
    .sort();
}

/** The protocol's output: candidates, then ":DIRECTIVE". Failures complete nothing. */
export async function completeToStdout(args: string[]): Promise<void> {
  let out: Completion;
  try {
    out = await complete(args);
  } catch {
    out = { candidates: [], directive: DIRECTIVE.error };
  }
  process.stdout.write(`${[...out.candidates, `:${out.directive}`].join('\n')}\n`);
}

/** `kubectl pwru completion SHELL`: completion of the kubectl-pwru command itself. */
export function completionScript(shell: string): string {
  switch (shell) {
    case 'bash':
      return `# kubectl-pwru completion for bash: source <(kubectl-pwru completion bash)
# (\`kubectl pwru …\` completes through kubectl_complete-pwru, with kubectl >= 1.26)
_kubectl_pwru() {
  local cur out directive
  cur="\${COMP_WORDS[COMP_CWORD]}"
  out=$(kubectl-pwru __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return
  directive=\${out##*:}
  out=\${out%:*}
  if [ $((directive & 1)) -ne 0 ]; then return; fi
  if [ $((directive & 2)) -ne 0 ]; then compopt -o nospace; fi
  if [ $((directive & 4)) -eq 0 ] && [ -z "$out" ]; then COMPREPLY=($(compgen -f -- "$cur")); return; fi
  local IFS=$'\\n'
  COMPREPLY=($(compgen -W "$out" -- "$cur"))
}
complete -F _kubectl_pwru kubectl-pwru
`;
    case 'zsh':
      return `#compdef kubectl-pwru
# kubectl-pwru completion for zsh: source <(kubectl-pwru completion zsh)
_kubectl_pwru() {
  local -a lines cands
  local directive
  lines=("\${(@f)$(kubectl-pwru __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  directive=\${lines[-1]#:}
  cands=("\${(@)lines[1,-2]}")
  (( directive & 1 )) && return 1
  if (( directive & 4 )) || (( \${#cands} )); then
    if (( directive & 2 )); then compadd -S '' -a cands; else compadd -a cands; fi
  else
    _files
  fi
}
compdef _kubectl_pwru kubectl-pwru
`;
    case 'fish':
      return `# kubectl-pwru completion for fish: kubectl-pwru completion fish | source
function __kubectl_pwru_complete
  set -l args (commandline -opc)[2..-1] (commandline -ct)
  kubectl-pwru __complete $args 2>/dev/null | string match -v -r '^:'
end
complete -c kubectl-pwru -f -a '(__kubectl_pwru_complete)'
`;
    default:
      throw new Error(`unknown shell ${shell}`);
  }
}
