/**
 * The debug pod: manifests/debug-pod.yaml, filled in for one node, and the
 * one-shot Job that runs it. The template is parsed as data and filled field
 * by field, never by text substitution, so no user input can change the pod's
 * shape — except --pod-patch, a strategic merge patch the user writes on
 * purpose, after which the fields kubectl-pwru relies on are set again.
 *
 * Why a Job: a pod object outlives its container. When the CLI is killed
 * (SIGKILL) the runner stops the helper and the container exits, but the
 * pod object would stay (Succeeded) until someone deleted it. A Job with
 * ttlSecondsAfterFinished is deleted by the cluster itself (the TTL-after-
 * finished controller, on by default since Kubernetes 1.23), and its pod with
 * it: nothing remains within a minute, with nobody doing anything.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { BadInput } from '../errors';
import { k8sLib } from './client';
import { strategicMerge } from './strategic-merge';

/** A maintained Node.js LTS (24, until 2028-04), the small Alpine variant. */
export const DEFAULT_IMAGE = 'node:24-alpine';
export const CONTAINER = 'pwru';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_SELECTOR = `${MANAGED_BY_LABEL}=kubectl-pwru`;
export const SESSION_LABEL = 'pwru.kubectl.io/session';
export const ANNOTATIONS = {
  startedBy: 'pwru.kubectl.io/started-by',
  startedAt: 'pwru.kubectl.io/started-at',
  target: 'pwru.kubectl.io/target',
  filter: 'pwru.kubectl.io/filter',
} as const;
/**
 * Without --duration the trace runs until it is stopped (an --on-drop watch
 * for hours): the pod's deadline is only the last backstop, 7 days. What ends
 * a pod whose client went away is the runner, CLIENT_GRACE_SEC after the client's last word.
 */
export const DEFAULT_DEADLINE_SEC = 7 * 24 * 3600;
/** Time for scheduling, pulling the image and attaching, on top of --duration. */
export const START_ALLOWANCE_SEC = 120;
/** The finished Job (and its pod) is deleted by the cluster this long after it ends. */
export const JOB_TTL_SEC = 10;

/** --profile capabilities: what tracing needs instead of privileged (docs/kubernetes.md says why each). */
export const CAPABILITIES = ['BPF', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE', 'NET_ADMIN'];
/**
 * Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, which only this raises.
 * Later kernels do not need it, and some runtimes may not grant it (their own
 * bounding set lacks it): asked for only where it is needed.
 */
export const OLD_KERNEL_CAPABILITY = 'SYS_RESOURCE';

/** The capability set for a node's kernel ("5.10.0-23-amd64"); an unknown kernel gets the old kernels' set. */
export function capabilitiesFor(kernelVersion?: string): string[] {
  const m = /^(\d+)\.(\d+)/.exec(kernelVersion ?? '');
  const old = !m || Number(m[1]) < 5 || (Number(m[1]) === 5 && Number(m[2]) < 11);
  return old ? [...CAPABILITIES, OLD_KERNEL_CAPABILITY] : [...CAPABILITIES];
}
export const PROFILES = ['privileged', 'capabilities'] as const;
export type Profile = (typeof PROFILES)[number];

/** The installed package's root: manifests/, helper/build/ and dist/runner/ hang off it. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'manifests'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error(`cannot find the kubectl-pwru package root above ${__dirname}`);
}

export function loadTemplate(): k8s.V1Pod {
  const text = readFileSync(join(packageRoot(), 'manifests', 'debug-pod.yaml'), 'utf8');
  return k8sLib().loadYaml(text) as k8s.V1Pod;
}

export function newSessionId(): string {
  return randomBytes(5).toString('hex');
}

export function startedBy(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {}
  return `${user}@${hostname()}`;
}

/** --pod-patch FILE: a Pod fragment in YAML or JSON, checked to be one. */
export function loadPodPatch(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BadInput(`--pod-patch ${file}: ${(err as Error).message}`);
  }
  let patch: unknown;
  try {
    patch = k8sLib().loadYaml(text);
  } catch (err) {
    throw new BadInput(`--pod-patch ${file}: not YAML or JSON: ${(err as Error).message}`);
  }
  if (!patch || typeof patch !== 'object' || Array.isArray(patch)) {
    throw new BadInput(`--pod-patch ${file}: expected a Pod fragment (a map with metadata and/or spec)`);
  }
  const unknown = Object.keys(patch).filter((k) => !['metadata', 'spec', 'apiVersion', 'kind'].includes(k));
  if (unknown.length > 0) {
    throw new BadInput(
      `--pod-patch ${file}: a Pod patch has metadata and spec, not ${unknown.join(', ')} (it is merged into the pod, not the Job)`,
    );
  }
  return patch as Record<string, unknown>;
}

export interface DebugPodParams {
  node: string;
  namespace: string;
  image: string;
  session: string;
  /** "pod/shop/web-0": for people reading the pod's annotations. */
  target: string;
  filter: string;
  durationSec?: number;
  profile?: Profile;
  imagePullSecrets?: string[];
  /** node.status.nodeInfo.kernelVersion: which capabilities --profile capabilities needs. */
  kernelVersion?: string;
  /** --pod-patch, already loaded. */
  patch?: Record<string, unknown>;
}

/** A generateName prefix from a node name: lower case, DNS-safe, short enough for the random suffixes. */
function namePrefix(node: string): string {
  const clean = node
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `pwru-${clean.slice(0, 40).replace(/-+$/, '')}-`;
}

function pwruContainer(pod: k8s.V1Pod, what: string): k8s.V1Container {
  const container = pod.spec?.containers?.find((c) => c.name === CONTAINER);
  if (!container) throw new BadInput(`${what} has no container named ${CONTAINER}`);
  return container;
}

export function buildDebugPod(p: DebugPodParams, template: k8s.V1Pod = loadTemplate()): k8s.V1Pod {
  let pod = structuredClone(template);
  const spec = pod.spec;
  if (!spec) throw new Error('manifests/debug-pod.yaml has no spec');
  const container = pwruContainer(pod, 'manifests/debug-pod.yaml');
  container.image = p.image;
  if (p.profile === 'capabilities') {
    container.securityContext = {
      capabilities: { add: capabilitiesFor(p.kernelVersion) },
      seccompProfile: { type: 'Unconfined' },
      appArmorProfile: { type: 'Unconfined' },
    };
  }
  if (p.imagePullSecrets?.length) spec.imagePullSecrets = p.imagePullSecrets.map((name) => ({ name }));
  if (p.patch) pod = strategicMerge(pod as never, p.patch as never) as unknown as k8s.V1Pod;

  // What kubectl-pwru relies on, whatever the patch said.
  const meta = pod.metadata ?? {};
  pod.metadata = meta;
  meta.generateName = namePrefix(p.node);
  delete meta.name;
  meta.namespace = p.namespace;
  meta.labels = { ...meta.labels, [MANAGED_BY_LABEL]: 'kubectl-pwru', [SESSION_LABEL]: p.session };
  meta.annotations = {
    ...meta.annotations,
    [ANNOTATIONS.startedBy]: startedBy(),
    [ANNOTATIONS.startedAt]: new Date().toISOString(),
    [ANNOTATIONS.target]: p.target,
    [ANNOTATIONS.filter]: p.filter,
  };
  const s = pod.spec as k8s.V1PodSpec;
  s.nodeName = p.node;
  s.restartPolicy = 'Never';
  s.activeDeadlineSeconds =
    p.durationSec !== undefined ? Math.ceil(p.durationSec) + START_ALLOWANCE_SEC : DEFAULT_DEADLINE_SEC;
  const c = pwruContainer(pod, '--pod-patch: the patched pod');
  c.stdin = true;
  c.stdinOnce = false;
  c.tty = false;
  return pod;
}

/**
 * The one-shot Job around a debug pod: never retried (a failed or deleted pod
 * fails the Job), deleted by the cluster JOB_TTL_SEC after it ends, and never
 * outliving the pod's own deadline.
 */
export function buildDebugJob(pod: k8s.V1Pod): k8s.V1Job {
  const meta = pod.metadata ?? {};
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      generateName: meta.generateName,
      namespace: meta.namespace,
      labels: { ...meta.labels },
      annotations: { ...meta.annotations },
    },
    spec: {
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      ttlSecondsAfterFinished: JOB_TTL_SEC,
      activeDeadlineSeconds: pod.spec?.activeDeadlineSeconds,
      // The pod's own metadata (a --pod-patch may add finalizers, more labels...), but its name comes from the Job.
      template: {
        metadata: (({ name: _n, generateName: _g, namespace: _ns, ...rest }) => rest)(structuredClone(meta)),
        spec: pod.spec,
      },
    },
  };
}
