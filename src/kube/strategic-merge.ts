/**
 * A strategic merge patch of a Pod, as `kubectl patch --type strategic` and
 * `kubectl debug --custom` apply one, for --pod-patch: maps merge key by key
 * (null deletes a key); lists of the Pod's keyed objects merge item by item on
 * their merge key (containers by name, env by name, volumeMounts by
 * mountPath, ...), the other lists are replaced; `$patch: delete` in a list
 * item removes the item with that key, `$patch: replace` in a map or list
 * item replaces instead of merging.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonMap = { [k: string]: Json };

/** The merge keys of the Pod API's lists (patchMergeKey in the Kubernetes OpenAPI). */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  env: 'name',
  ports: 'containerPort',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
  resourceClaims: 'name',
  topologySpreadConstraints: 'topologyKey',
  readinessGates: 'conditionType',
};

function isMap(v: unknown): v is JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function strategicMerge(original: Json, patch: Json, key?: string): Json {
  if (isMap(patch)) {
    if (patch.$patch === 'replace') {
      const { $patch: _, ...rest } = patch;
      return rest;
    }
    if (patch.$patch === 'delete') return null;
    const out: JsonMap = isMap(original) ? { ...original } : {};
    for (const [k, v] of Object.entries(patch)) {
      if (k === '$patch') continue;
      if (v === null) delete out[k];
      else {
        const merged = strategicMerge(out[k] ?? null, v, k);
        if (merged === null) delete out[k];
        else out[k] = merged;
      }
    }
    return out;
  }
  if (Array.isArray(patch)) {
    const mergeKey = key ? MERGE_KEYS[key] : undefined;
    if (!mergeKey || !Array.isArray(original)) return patch.filter((p) => !(isMap(p) && p.$patch));
    const out: Json[] = [...original];
    for (const item of patch) {
      if (!isMap(item) || item[mergeKey] === undefined) {
        out.push(item);
        continue;
      }
      const at = out.findIndex((o) => isMap(o) && o[mergeKey] === item[mergeKey]);
      if (item.$patch === 'delete') {
        if (at >= 0) out.splice(at, 1);
        continue;
      }
      if (at >= 0) out[at] = strategicMerge(out[at], item) as Json;
      else out.push(strategicMerge(null, item) as Json);
    }
    return out;
  }
  return patch;
}
