// What knitd keeps in its datastore, behind one interface (etcd, or the Kubernetes API): the
// cluster network config and one subnet lease per node. A lease lives as long as its holder
// renews it (an etcd lease with a TTL); a lease's key is its subnet, so two nodes can never hold
// the same subnet: claiming is "create if absent", or "take over if it is already mine".

/** A node's subnet lease as published: what peers need to program their datapath. */
export interface SubnetLease {
  nodeName: string;
  /** CIDR, e.g. "10.216.3.0/24". */
  subnet: string;
  /** The node's underlay address (where peers send its pods' traffic: tunnel destination or next hop). */
  underlayAddr: string;
  /** The backend's name (the network config's backend.type). */
  backend?: string;
  /**
   * What the node's backend publishes for its peers' backends, carried as is: datastores never
   * read it. Keys [a-z][a-zA-Z0-9]* (checkBackendData), values strings.
   */
  backendData?: Record<string, string>;
  /** Datastore-specific: the etcd lease id, the record's revision. */
  leaseId?: string;
  revision?: number;
}

export type LeaseEvent = { type: 'put'; lease: SubnetLease } | { type: 'del'; subnet: string };

export interface ClaimResult {
  ok: boolean;
  /** The node holding the subnet when ok is false. */
  holder?: string;
}

export interface Watch {
  close(): void;
}

/**
 * The encrypted overlay's key generation (docs/encryption.md): a counter every node derives its
 * pair keys with, and when it last moved. Never a secret: keys come from each node's own X25519
 * key pair and its peers' public keys.
 */
export interface KeyGeneration {
  generation: number;
  /** RFC 3339. */
  at: string;
}

/** A key generation record's value; an unreadable one counts as generation 0. */
export function parseKeyGeneration(text: string): KeyGeneration {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    if (Number.isSafeInteger(v.generation) && (v.generation as number) >= 0) return { generation: v.generation as number, at: typeof v.at === 'string' ? v.at : new Date(0).toISOString() };
  } catch { /* below */ }
  return { generation: 0, at: new Date(0).toISOString() };
}

/**
 * The generation to use now: the record, first moved to the next one when `everySec` > 0 and it is
 * older than that (or absent). A bump is a compare-and-swap, so the agents of every node (and both
 * of one node's datapaths) move it once per interval between them.
 */
export async function currentKeyGeneration(store: Pick<Datastore, 'getKeyGeneration' | 'bumpKeyGeneration'>, everySec: number, log: { info(msg: string): void }, what = ''): Promise<KeyGeneration | null> {
  let rec = (await store.getKeyGeneration?.()) ?? null;
  if (everySec > 0 && store.bumpKeyGeneration && (!rec || Date.now() - Date.parse(rec.at) >= everySec * 1000)) {
    rec = await store.bumpKeyGeneration(rec?.generation ?? null);
    log.info(`${what}key rotation interval (${everySec} s): key generation is now ${rec.generation}`);
  }
  return rec;
}

export interface Datastore {
  /** The raw network config (JSON text), or null when none is set. */
  getNetworkConfig(): Promise<string | null>;
  putNetworkConfig(json: string): Promise<void>;
  /** Every live lease, and the revision they were read at (for watchLeases). */
  listLeases(): Promise<{ leases: SubnetLease[]; revision: number }>;
  /**
   * Holds `lease.subnet` for `lease.nodeName` with a TTL: created when nobody holds it, taken
   * over (re-attached to this agent's TTL, value refreshed) when the same node already holds it,
   * refused when another node does.
   */
  claim(lease: SubnetLease, ttlSec: number): Promise<ClaimResult>;
  /**
   * Datastores that assign subnets themselves (Kubernetes: Node.spec.podCIDR) answer the node's
   * subnet here, or throw a clear error while it is unassigned; the others pick from the network.
   */
  assignedSubnet?(nodeName: string): Promise<string>;
  /** Renews this agent's TTL; false when the lease already expired (the subnet may be gone). */
  keepAlive(): Promise<boolean>;
  /** Deletes every lease of a node (decommission); returns how many. */
  releaseNode(nodeName: string): Promise<number>;
  /** The key generation record (null: none yet, generation 0); datastores without one omit it. */
  getKeyGeneration?(): Promise<KeyGeneration | null>;
  /**
   * Moves the generation from `expect` (what the caller read; null: no record) to expect + 1,
   * unless it moved meanwhile (then nothing changes); returns the record as it is afterwards.
   */
  bumpKeyGeneration?(expect: number | null): Promise<KeyGeneration>;
  /** Lease changes after `revision`, until closed; onError then a re-list is the caller's job. */
  watchLeases(revision: number, onEvent: (e: LeaseEvent) => void, onError: (err: Error) => void): Watch;
  close(): void;
}

/** A backend data key: a camelCase word, which each datastore maps to its own names. */
export const BACKEND_DATA_KEY = /^[a-z][a-zA-Z0-9]{0,40}$/;

/** Refuses backend data a datastore could not carry (a bad key, a value not a string, a reserved key). */
export function checkBackendData(d: Record<string, string> | undefined, reserved: readonly string[] = []): void {
  for (const [k, v] of Object.entries(d ?? {})) {
    if (!BACKEND_DATA_KEY.test(k) || reserved.includes(k)) {
      throw new Error(`backend data key ${JSON.stringify(k)}: a camelCase word ([a-z][a-zA-Z0-9]*, at most 41 characters) other than ${reserved.join(', ')}`);
    }
    if (typeof v !== 'string') throw new Error(`backend data ${k} ${JSON.stringify(v)}: a string`);
  }
}

/** Whether two leases carry the same backend data (absent = empty). */
export function sameBackendData(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const x = Object.entries(a ?? {});
  const y = b ?? {};
  return x.length === Object.keys(y).length && x.every(([k, v]) => y[k] === v);
}
