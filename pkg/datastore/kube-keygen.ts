// The encrypted overlay's key generation on the Kubernetes API (docs/encryption.md): the ConfigMap
// knit-keygen in knit's namespace (POD_NAMESPACE, default knit-system), data.keygen =
// {"generation": N, "at": RFC 3339}, the same record as etcd's <prefix>/keygen. A bump is a
// compare-and-swap: created only when absent (409 AlreadyExists otherwise), else merge-patched
// with the resourceVersion it was read at (409 Conflict when anyone wrote it since). knitd on
// every node (KubernetesDatastore) and `knitctl key rotate --datastore kubernetes` share it.
import type { KubeClient } from '../kube';
import { parseKeyGeneration, type KeyGeneration } from './datastore';

export const KEYGEN_CONFIGMAP = 'knit-keygen';
export const DEFAULT_KUBE_NAMESPACE = 'knit-system';

/** knit's namespace: the pod's own (POD_NAMESPACE, from the downward API), else knit-system. */
export function kubeNamespace(env: NodeJS.ProcessEnv = process.env): string {
  return env.POD_NAMESPACE || DEFAULT_KUBE_NAMESPACE;
}

const httpCode = (e: unknown): number | undefined => (e as { code?: number }).code;

/** The record and the resourceVersion it was read at; null when the ConfigMap does not exist. */
async function read(kube: KubeClient, namespace: string): Promise<{ rec: KeyGeneration; rv: string } | null> {
  try {
    const cm = await kube.api.readNamespacedConfigMap({ name: KEYGEN_CONFIGMAP, namespace });
    return { rec: parseKeyGeneration(cm.data?.keygen ?? ''), rv: cm.metadata?.resourceVersion ?? '' };
  } catch (e) {
    if (httpCode(e) === 404) return null;
    throw e;
  }
}

export async function getKubeKeyGeneration(kube: KubeClient, namespace: string): Promise<KeyGeneration | null> {
  return (await read(kube, namespace))?.rec ?? null;
}

/** Moves the generation from `expect` (null: no record yet) to expect + 1 unless it moved meanwhile; the record afterwards. */
export async function bumpKubeKeyGeneration(kube: KubeClient, namespace: string, expect: number | null): Promise<KeyGeneration> {
  const cur = await read(kube, namespace);
  if ((cur?.rec.generation ?? null) !== expect) return cur?.rec ?? { generation: 0, at: new Date(0).toISOString() };
  const next: KeyGeneration = { generation: (cur?.rec.generation ?? 0) + 1, at: new Date().toISOString() };
  const data = { keygen: JSON.stringify(next) };
  try {
    if (!cur) {
      await kube.api.createNamespacedConfigMap({ namespace, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: KEYGEN_CONFIGMAP, namespace }, data } });
    } else {
      // metadata.resourceVersion in a patch is a precondition: the API server answers 409 when it differs.
      await kube.api.patchNamespacedConfigMap({ name: KEYGEN_CONFIGMAP, namespace, body: { metadata: { resourceVersion: cur.rv }, data } },
        kube.k8s.setHeaderOptions('Content-Type', kube.k8s.PatchStrategy.MergePatch));
    }
    return next;
  } catch (e) {
    if (httpCode(e) !== 409) throw e;
    return (await read(kube, namespace))?.rec ?? next; // another writer won: its record
  }
}
