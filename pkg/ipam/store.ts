// What the file allocator (allocator.ts) needs from persistence. The file store (host-local) and
// the in-memory store (tests) implement it; the allocator's correctness rests on exactly one
// property: reserve() is an atomic create, so two callers can never both own one address, without
// any lock. (knit-etcd-ipam does not use a Store: its allocator writes etcd transactions, etcd/.)
import { validateContainerId, validateIfName } from '../cni/env';

/** One attachment of a container to the network (spec: containerID + ifname). */
export interface Owner {
  containerId: string;
  ifName: string;
}

/** An address reservation as stored. */
export interface Reservation {
  ip: string;
  owner: Owner;
  /** The reservation may belong to an ADD still running (its process lives, or it is younger
   *  than the grace period): a sweep must not treat it as orphaned yet. */
  maybeInFlight: boolean;
}

/** The per-attachment index: its addresses, so DEL and repeated ADD never scan. */
export interface AttachmentRecord {
  owner: Owner;
  ips: string[];
  maybeInFlight: boolean;
}

export interface Store {
  /** Atomically claims `ip` for `owner`; false when anyone (even `owner`) already holds it. */
  reserve(ip: string, owner: Owner): Promise<boolean>;
  /** The reservation of `ip`, or null when free. */
  get(ip: string): Promise<Reservation | null>;
  /** Frees `ip` when `owner` holds it; true when it did. */
  release(ip: string, owner: Owner): Promise<boolean>;

  getAttachment(owner: Owner): Promise<AttachmentRecord | null>;
  /** Writes the index atomically (readers see the old or the new one, never a part). */
  putAttachment(owner: Owner, ips: string[]): Promise<void>;
  deleteAttachment(owner: Owner): Promise<void>;

  /** Round-robin hint per range set; a lost or stale hint only costs fairness. */
  getLastReserved(rangeSet: number): Promise<string | null>;
  setLastReserved(rangeSet: number, ip: string): Promise<void>;

  /** Slow path only: the reserved addresses (names only, no contents). */
  reservedIps(): Promise<string[]>;
  /** Slow path only (exhaustion, STATUS, GC, tools): every reservation with its owner. */
  listReservations(): Promise<Reservation[]>;
  listAttachments(): Promise<AttachmentRecord[]>;
  /** Removes leftovers of crashed writers (temp files); returns how many. */
  sweepTemp(): Promise<number>;
  /**
   * Optional: frees what a killed ADD of `owner` reserved without writing its index (found from
   * the temp files it left, which go too); the addresses freed, [] in the usual case.
   */
  releaseStray?(owner: Owner): Promise<string[]>;

  /** Frees per-invocation resources (temp files). Always called, even after errors. */
  close(): Promise<void>;
}

export function ownerKey(o: Owner): string {
  return `${o.containerId}:${o.ifName}`;
}

export function sameOwner(a: Owner, b: Owner): boolean {
  return a.containerId === b.containerId && a.ifName === b.ifName;
}

/** An attachment's identity, checked with pkg/cni's rules before it reaches a file or key name. */
export function checkOwner(o: Owner): void {
  validateContainerId(o.containerId);
  validateIfName(o.ifName);
}
