// Pods as the IPAM pod GC sees them (pkg/ipam/pod-gc.ts), and their paged listing.
import type * as K8s from '@kubernetes/client-node';

/** What the GC needs to know of a pod (from a Pod list). */
export interface PodInfo {
  namespace: string;
  name: string;
  uid: string;
  nodeName?: string;
  /** Pending, Running, Succeeded, Failed, Unknown. */
  phase?: string;
  /** status.podIPs: empty until the kubelet reports them (after the ADD). */
  podIPs: string[];
}

/** Pods per page of a list: a large cluster's list comes in pieces, not one huge answer. */
const POD_PAGE = 500;

/**
 * Every pod (of one node when given: fieldSelector spec.nodeName), as the IPAM pod GC sees them.
 * A list without resourceVersion is a consistent read of the API server's latest state, which
 * the GC's ordering rule relies on (pkg/ipam/pod-gc.ts); its pages continue that same snapshot.
 */
export async function listPods(api: K8s.CoreV1Api, nodeName?: string): Promise<PodInfo[]> {
  const out: PodInfo[] = [];
  let cont: string | undefined;
  do {
    const l = await api.listPodForAllNamespaces({
      limit: POD_PAGE, ...(nodeName ? { fieldSelector: `spec.nodeName=${nodeName}` } : {}), ...(cont ? { _continue: cont } : {}),
    });
    for (const p of l.items) {
      const m = p.metadata;
      if (!m?.name || !m.namespace || !m.uid) continue;
      const ips = (p.status?.podIPs ?? []).map((x) => x.ip).filter((ip): ip is string => !!ip);
      out.push({
        namespace: m.namespace, name: m.name, uid: m.uid, podIPs: ips.length ? ips : p.status?.podIP ? [p.status.podIP] : [],
        ...(p.spec?.nodeName ? { nodeName: p.spec.nodeName } : {}), ...(p.status?.phase ? { phase: p.status.phase } : {}),
      });
    }
    cont = l.metadata?._continue || undefined;
  } while (cont);
  return out;
}
