// The one interface both IPAM backends implement: the file allocator (allocator.ts, over a Store:
// knit-host-local) and the etcd allocator (etcd/allocator.ts: knit-etcd-ipam). The plugin adapter
// (plugin.ts) turns any backend into the CNI verbs; what differs between the plugins is only how a
// backend is made (config, store, connection) and released.
import type { IPAddr } from '../ip/ip';
import type { Allocation } from './range';
import type { Owner } from './store';

/** The Kubernetes pod an attachment was made for (CNI_ARGS K8S_POD_NAMESPACE/NAME/UID). */
export interface PodRef {
  namespace: string;
  name: string;
  uid?: string;
}

export interface RangeStatus {
  rangeSet: number;
  subnet: string;
  /** Allocatable addresses of rangeStart..rangeEnd, and how many of those are free (decimal text:
   *  IPv6 counts do not fit a number). */
  size: string;
  free: string;
  /** What the backend knows besides counts, for STATUS's summary (e.g. blocks claimed). */
  note?: string;
}

export interface GcReport {
  /** Reservations freed, with why: 'not-valid' (GC's valid-attachments), 'orphan', or the pod GC's reason. */
  released: Array<{ ip: string; owner: Owner; reason: string }>;
  indexesRemoved: number;
  indexesRepaired: number;
  tempRemoved: number;
  /** Blocks returned to the pool (etcd only). */
  blocksReturned?: string[];
}

export interface IpamBackend {
  /** ADD: one address per range set (static `requests` placed in theirs); a repeated ADD returns
   *  what the attachment holds. `pod` is recorded by backends that judge attachments by their pod. */
  allocate(owner: Owner, requests?: IPAddr[], pod?: PodRef): Promise<Allocation[]>;
  /** DEL: frees the attachment's addresses; nothing to free is success. Returns what was freed. */
  release(owner: Owner): Promise<string[]>;
  /** CHECK: the attachment's addresses, each still reserved for it, one per range set (else code
   *  104, or 3 when it holds none). prevResult is compared by the adapter (range.ts matchPrevResult). */
  check(owner: Owner): Promise<Allocation[]>;
  /** STATUS: allocatable and free counts per range. */
  status(): Promise<RangeStatus[]>;
  /** The range sets of `ranges` where every ADD would fail (STATUS then answers code 50). */
  exhaustedSets(ranges: RangeStatus[]): Promise<number[]>;
  /** GC: frees attachments not in `valid` (null: keep all) and what crashed writers left. */
  gc(valid: Owner[] | null): Promise<GcReport>;
}
