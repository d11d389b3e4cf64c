// The Kubernetes API as knit uses it: the lazily loaded client (client.ts) and the paged pod list
// of the IPAM pod GC (pods.ts). It depends on nothing of knit's own: the overlay's Kubernetes
// datastore (pkg/datastore/kubernetes.ts), the pod GC (pkg/ipam/pod-gc.ts) and knitctl build on it.
export { kubeClient, loadKubeClient, type KubeClient } from './client';
export { listPods, type PodInfo } from './pods';
