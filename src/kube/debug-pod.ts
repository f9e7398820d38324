/**
 * The debug pod: manifests/debug-pod.yaml, filled in for one node. The
 * template is parsed as data and filled field by field, never by text
 * substitution, so no user input can change the pod's shape.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { k8sLib } from './client';

export const DEFAULT_IMAGE = 'node:20-bookworm-slim';
export const CONTAINER = 'pwru';
export const MANAGED_BY_SELECTOR = 'app.kubernetes.io/managed-by=kubectl-pwru';
export const SESSION_LABEL = 'pwru.kubectl.io/session';
export const ANNOTATIONS = {
  startedBy: 'pwru.kubectl.io/started-by',
  startedAt: 'pwru.kubectl.io/started-at',
  target: 'pwru.kubectl.io/target',
  filter: 'pwru.kubectl.io/filter',
} as const;
/** Without --duration the pod ends itself after this long at the latest. */
export const DEFAULT_DEADLINE_SEC = 3600;
/** Time for scheduling, pulling the image and attaching, on top of --duration. */
export const START_ALLOWANCE_SEC = 120;

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

export interface DebugPodParams {
  node: string;
  namespace: string;
  image: string;
  session: string;
  /** "pod/shop/web-0": for people reading the pod's annotations. */
  target: string;
  filter: string;
  durationSec?: number;
}

/** A generateName prefix from a node name: lower case, DNS-safe, short enough for the random suffix. */
function namePrefix(node: string): string {
  const clean = node
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `pwru-${clean.slice(0, 40).replace(/-+$/, '')}-`;
}

export function buildDebugPod(p: DebugPodParams, template: k8s.V1Pod = loadTemplate()): k8s.V1Pod {
  const pod = structuredClone(template);
  const meta = pod.metadata ?? {};
  pod.metadata = meta;
  meta.generateName = namePrefix(p.node);
  meta.namespace = p.namespace;
  meta.labels = { ...meta.labels, [SESSION_LABEL]: p.session };
  meta.annotations = {
    ...meta.annotations,
    [ANNOTATIONS.startedBy]: startedBy(),
    [ANNOTATIONS.startedAt]: new Date().toISOString(),
    [ANNOTATIONS.target]: p.target,
    [ANNOTATIONS.filter]: p.filter,
  };
  const spec = pod.spec;
  if (!spec) throw new Error('manifests/debug-pod.yaml has no spec');
  spec.nodeName = p.node;
  spec.activeDeadlineSeconds =
    p.durationSec !== undefined ? Math.ceil(p.durationSec) + START_ALLOWANCE_SEC : DEFAULT_DEADLINE_SEC;
  const container = spec.containers.find((c) => c.name === CONTAINER);
  if (!container) throw new Error(`manifests/debug-pod.yaml has no container named ${CONTAINER}`);
  container.image = p.image;
  return pod;
}
