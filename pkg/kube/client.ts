// The Kubernetes API client, loaded only when a code path needs it (knitd --datastore kubernetes,
// the IPAM pod GC, knitctl ipam gc --pods): @kubernetes/client-node is 15 MB bundled and ~0.2 s
// to load, so nothing on the plugin path imports it (only its types, which vanish at build).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import type * as K8s from '@kubernetes/client-node';

/**
 * @kubernetes/client-node, loaded at first use: kube-client.js (the client as one CommonJS file,
 * built by esbuild.config.mjs and scripts/release.mjs, which keep it out of every executable)
 * from bin/../lib beside a bundled knitd or beside the release executable; else node_modules.
 */
export function loadKubeClient(): typeof K8s {
  const candidates = [path.join(__dirname, '..', 'lib', 'kube-client.js'), path.join(path.dirname(process.execPath), 'kube-client.js')];
  for (const f of candidates) {
    // createRequire: a single executable's own require loads built-in modules only.
    if (fs.existsSync(f)) return createRequire(f)(f) as typeof K8s;
  }
  return require('@kubernetes/client-node') as typeof K8s;
}

export interface KubeClient { k8s: typeof K8s; kc: K8s.KubeConfig; api: K8s.CoreV1Api }

/** A client from a kubeconfig file, a kubeconfig's text (tests), or the in-cluster config. */
export function kubeClient(o: { kubeconfig?: string; kubeconfigYaml?: string }): KubeClient {
  const k8s = loadKubeClient();
  const kc = new k8s.KubeConfig();
  if (o.kubeconfigYaml !== undefined) kc.loadFromString(o.kubeconfigYaml);
  else if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
  else {
    if (!process.env.KUBERNETES_SERVICE_HOST) throw new Error('no --kubeconfig and not in a pod (KUBERNETES_SERVICE_HOST unset): cannot reach the Kubernetes API');
    kc.loadFromCluster();
  }
  return { k8s, kc, api: kc.makeApiClient(k8s.CoreV1Api) };
}
