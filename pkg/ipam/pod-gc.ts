// knit-etcd-ipam's GC against the pods that exist: frees the addresses of attachments whose
// Kubernetes pod is gone. Users of other CNIs have seen such GCs free addresses still in use,
// because a pod's status lists its addresses only some time after the CNI ADD. Three rules keep
// this one safe:
//  1. Order. The attachments are read from etcd first, then the pods are listed (a consistent
//     list from the API server). Every attachment read was made for a pod that existed before the
//     list started, so a pod missing from the list was deleted. An ADD in flight is never judged
//     against a list older than its pod.
//  2. Identity, not status. A pod that exists (same namespace and name, and same uid when the
//     runtime gave K8S_POD_UID) keeps its attachments whatever its status says. Status only tells
//     which of several sandboxes of one pod is current, and only when it lists the newer one's
//     address and none of the older one's.
//  3. Two sightings. An attachment is released only after it has been judged stale in two passes
//     at least `graceMs` apart, with its index unchanged (same mod_revision). The release
//     transaction compares that revision again, so a repeated ADD in between wins.
// Attachments without a pod (no K8S_POD_NAME in CNI_ARGS: podman, plain CNI) are never touched.
import type { EtcdClient } from '../etcd';
import { EtcdKeys, readAttachments, releaseAttachments, type AttachmentRow, type EtcdGcReport, type PodRef } from './etcd-allocator';
import { ownerKey } from './store';
import type { PodInfo } from '../kube/pods';

export interface Judgement {
  row: AttachmentRow;
  stale: boolean;
  reason: string;
}

/** Phases after which a pod's containers never run again (its sandbox only waits for teardown). */
const FINISHED = new Set(['Succeeded', 'Failed']);

const podName = (p: PodRef): string => `${p.namespace}/${p.name}`;
const rowKey = (r: AttachmentRow): string => `${r.node}/${ownerKey(r.owner)}`;

/**
 * Judges each attachment against the pods listed. `podsOfNode`: the list was only this
 * Kubernetes node's pods (fieldSelector spec.nodeName), which the messages then say.
 */
export function judge(rows: AttachmentRow[], pods: PodInfo[], podsOfNode?: string): Judgement[] {
  const byName = new Map(pods.map((p) => [podName(p), p]));
  // The newest attachment (highest mod_revision) per pod and interface: the current sandbox.
  const newest = new Map<string, AttachmentRow>();
  for (const r of rows) {
    if (!r.rec.pod) continue;
    const k = `${podName(r.rec.pod)}/${r.rec.pod.uid ?? ''}/${r.owner.ifName}`;
    const n = newest.get(k);
    if (!n || r.modRevision > n.modRevision) newest.set(k, r);
  }
  return rows.map((row): Judgement => {
    const ref = row.rec.pod;
    if (!ref) return { row, stale: false, reason: 'no pod recorded (the runtime sent no K8S_POD_NAME)' };
    const name = podName(ref);
    const pod = byName.get(name);
    if (!pod) return { row, stale: true, reason: `pod ${name} no longer exists${podsOfNode ? ` on node ${podsOfNode}` : ''}` };
    if (ref.uid && pod.uid !== ref.uid) return { row, stale: true, reason: `pod ${name} was recreated (uid ${ref.uid}, now ${pod.uid})` };
    if (pod.phase && FINISHED.has(pod.phase)) return { row, stale: true, reason: `pod ${name} has finished (${pod.phase})` };
    const cur = newest.get(`${name}/${ref.uid ?? ''}/${row.owner.ifName}`)!;
    const ips = new Set(row.rec.ips.map((a) => a.ip));
    if (cur !== row && pod.podIPs.length && !pod.podIPs.some((ip) => ips.has(ip)) && cur.rec.ips.some((a) => pod.podIPs.includes(a.ip))) {
      return { row, stale: true, reason: `an earlier sandbox of pod ${name} (the pod's addresses are now ${pod.podIPs.join(', ')})` };
    }
    return { row, stale: false, reason: `pod ${name} exists` };
  });
}

/** Remembers stale attachments between passes; confirms those stale long enough, unchanged. */
export class StaleTracker {
  private seen = new Map<string, { modRevision: number; since: number }>();

  constructor(readonly graceMs: number) {}

  /** Records this pass's stale judgements; returns the ones seen stale, unchanged, for graceMs or more. */
  confirm(stale: Judgement[], now: number): Judgement[] {
    const next = new Map<string, { modRevision: number; since: number }>();
    const out: Judgement[] = [];
    for (const j of stale) {
      const k = rowKey(j.row);
      const prev = this.seen.get(k);
      const again = prev !== undefined && prev.modRevision === j.row.modRevision;
      const entry = again ? prev : { modRevision: j.row.modRevision, since: now };
      if (again && now - entry.since >= this.graceMs) out.push(j);
      else next.set(k, entry);
    }
    // What is confirmed (released now) or no longer stale is forgotten: a later sighting starts over.
    this.seen = next;
    return out;
  }

  /** Attachments waiting for their second sighting. */
  get pending(): number { return this.seen.size; }
}

export interface PodGcPass {
  /** Every attachment of the scope with its verdict. */
  judged: Judgement[];
  /** Stale, confirmed by this pass (released unless dryRun). */
  confirmed: Judgement[];
  /** What the release did (null: nothing to release, or dryRun). */
  report: EtcdGcReport | null;
}

/**
 * One pass of the pod GC over a network: read the attachments (of `node` only, when given),
 * then list the pods (rule 1), judge, confirm with the tracker, release what is confirmed.
 */
export async function podGcPass(
  client: EtcdClient, keys: EtcdKeys, listPods: () => Promise<PodInfo[]>, tracker: StaleTracker,
  opts: { node?: string; podsOfNode?: string; dryRun?: boolean; now?: number } = {},
): Promise<PodGcPass> {
  const rows = await readAttachments(client, keys, opts.node);
  const pods = await listPods();
  const judged = judge(rows, pods, opts.podsOfNode);
  const confirmed = tracker.confirm(judged.filter((j) => j.stale), opts.now ?? Date.now());
  if (opts.dryRun || !confirmed.length) return { judged, confirmed, report: null };
  const why = new Map(confirmed.map((j) => [rowKey(j.row), j.reason]));
  const report = await releaseAttachments(client, keys, confirmed.map((j) => j.row), (r) => why.get(rowKey(r)) ?? 'stale');
  return { judged, confirmed, report };
}
