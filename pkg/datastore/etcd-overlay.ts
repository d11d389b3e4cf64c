// The overlay's datastore in etcd. Keys (prefix default /knit):
//   <prefix>/config                        the cluster network config (JSON)
//   <prefix>/subnets/<a.b.c.d>-<len>       one node's subnet lease (JSON, leaseValue), bound to
//                                          that node agent's etcd lease (TTL, kept alive)
//   <prefix>/keygen                        the encrypted overlay's key generation {generation, at}
// The key is the subnet, so "one holder per subnet" is etcd's create-if-absent; the value names
// the holder, so an agent restarted within the TTL finds and takes over its own subnet.
// A lease's value is {nodeName, underlayAddr, backend, subnet} plus the backend's data, unread
// here, as further top-level string fields: the record knitd wrote before backends had their own
// data, so agents of before and after read each other's leases (test/unit/overlay-lease-wire.test.ts).
import { EtcdClient, type EtcdClientOptions } from '../etcd';
import { leaseGrant, leaseKeepAlive, leaseRevoke, leasedPutIf } from '../etcd';
import { EtcdWatch } from '../etcd';
import { checkBackendData, parseKeyGeneration, type ClaimResult, type Datastore, type KeyGeneration, type LeaseEvent, type SubnetLease, type Watch } from './datastore';

export { parseKeyGeneration };
import { cmp } from '../etcd/client';

export const DEFAULT_ETCD_PREFIX = '/knit';

export function subnetKeyPart(subnet: string): string {
  return subnet.replace('/', '-');
}

export function subnetFromKey(key: string): string | null {
  const m = /([0-9.]+)-(\d+)$/.exec(key);
  return m ? `${m[1]}/${m[2]}` : null;
}

/** The lease's own fields in its JSON value; every other string field is backend data. */
export const LEASE_FIELDS = ['nodeName', 'subnet', 'underlayAddr', 'backend', 'leaseId', 'revision', 'backendData'] as const;

/** A lease's JSON value: its fields, then its backend data as further top-level fields. */
export function leaseValue(lease: SubnetLease): string {
  checkBackendData(lease.backendData, LEASE_FIELDS);
  const { leaseId: _l, revision: _r, backendData, ...rec } = lease;
  return JSON.stringify({ ...rec, ...backendData });
}

export function parseLeaseValue(key: string, value: Buffer | string, revision?: number): SubnetLease | null {
  try {
    const v = JSON.parse(value.toString()) as Record<string, unknown>;
    const subnet = subnetFromKey(key);
    if (!v || typeof v.nodeName !== 'string' || typeof v.underlayAddr !== 'string' || !subnet) return null;
    const lease: SubnetLease = { nodeName: v.nodeName, subnet, underlayAddr: v.underlayAddr };
    if (typeof v.backend === 'string') lease.backend = v.backend;
    const data = Object.entries(v).filter(([k, x]) => !(LEASE_FIELDS as readonly string[]).includes(k) && typeof x === 'string');
    if (data.length) lease.backendData = Object.fromEntries(data) as Record<string, string>;
    if (revision !== undefined) lease.revision = revision;
    return lease;
  } catch {
    return null;
  }
}

export class EtcdDatastore implements Datastore {
  readonly client: EtcdClient;
  readonly prefix: string;
  private leaseId: string | null = null;
  private ttl = 0;

  constructor(private readonly conn: EtcdClientOptions & { prefix?: string }) {
    this.client = new EtcdClient(conn);
    this.prefix = (conn.prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '');
  }

  get configKey(): string { return `${this.prefix}/config`; }
  get subnetsPrefix(): string { return `${this.prefix}/subnets/`; }
  subnetKey(subnet: string): string { return `${this.subnetsPrefix}${subnetKeyPart(subnet)}`; }
  /** This agent's etcd lease id (null before the first claim). */
  get lease(): string | null { return this.leaseId; }

  async getNetworkConfig(): Promise<string | null> {
    const kv = await this.client.get(this.configKey);
    return kv ? kv.value.toString() : null;
  }

  async putNetworkConfig(json: string): Promise<void> {
    await this.client.put(this.configKey, json);
  }

  get keyGenerationKey(): string { return `${this.prefix}/keygen`; }

  async getKeyGeneration(): Promise<KeyGeneration | null> {
    const kv = await this.client.get(this.keyGenerationKey);
    return kv ? parseKeyGeneration(kv.value.toString()) : null;
  }

  async bumpKeyGeneration(expect: number | null): Promise<KeyGeneration> {
    const key = this.keyGenerationKey;
    const cur = await this.client.get(key);
    const now = cur ? parseKeyGeneration(cur.value.toString()) : null;
    if ((now?.generation ?? null) !== expect && !(expect === null && !now)) return now ?? { generation: 0, at: new Date(0).toISOString() };
    const next: KeyGeneration = { generation: (now?.generation ?? 0) + 1, at: new Date().toISOString() };
    const r = await this.client.txn({
      compare: [cur ? cmp.modified(key, cur.modRevision) : cmp.absent(key)],
      success: [{ put: { key, value: JSON.stringify(next) } }],
    });
    if (r.succeeded) return next;
    return (await this.getKeyGeneration()) ?? next;
  }

  async listLeases(): Promise<{ leases: SubnetLease[]; revision: number }> {
    const r = await this.client.range({ key: this.subnetsPrefix, rangeEnd: prefixEndOf(this.subnetsPrefix) });
    const leases = r.kvs.map((kv) => parseLeaseValue(kv.key.toString(), kv.value, kv.modRevision)).filter((l): l is SubnetLease => !!l);
    return { leases, revision: r.revision };
  }

  async claim(lease: SubnetLease, ttlSec: number): Promise<ClaimResult> {
    if (!this.leaseId || this.ttl !== ttlSec) {
      this.leaseId = await leaseGrant(this.client, ttlSec);
      this.ttl = ttlSec;
    }
    const key = this.subnetKey(lease.subnet);
    const value = leaseValue(lease);
    let res = await leasedPutIf(this.client, key, value, this.leaseId, 0);
    for (let i = 0; !res.succeeded && i < 3; i++) {
      const cur = res.current;
      if (!cur) { res = await leasedPutIf(this.client, key, value, this.leaseId, 0); continue; }
      const holder = parseLeaseValue(key, cur.value);
      if (!holder || holder.nodeName !== lease.nodeName) return { ok: false, holder: holder?.nodeName ?? '(unreadable lease)' };
      // Ours from before a restart (or our own renewal): re-bind it to this agent's lease.
      res = await leasedPutIf(this.client, key, value, this.leaseId, cur.modRevision);
      if (res.succeeded && cur.lease !== '0' && cur.lease !== this.leaseId) {
        // The previous agent's etcd lease held only this key: let it go now rather than at its TTL.
        await leaseRevoke(this.client, cur.lease).catch(() => undefined);
      }
    }
    return res.succeeded ? { ok: true } : { ok: false, holder: '(concurrent change)' };
  }

  async keepAlive(): Promise<boolean> {
    if (!this.leaseId) return false;
    const ttl = await leaseKeepAlive(this.client, this.leaseId);
    if (ttl > 0) return true;
    this.leaseId = null;
    return false;
  }

  async releaseNode(nodeName: string): Promise<number> {
    const { leases } = await this.listLeases();
    let n = 0;
    for (const l of leases.filter((x) => x.nodeName === nodeName)) n += await this.client.delete(this.subnetKey(l.subnet));
    return n;
  }

  watchLeases(revision: number, onEvent: (e: LeaseEvent) => void, onError: (err: Error) => void): Watch {
    return new EtcdWatch({
      conn: this.conn, client: this.client, prefix: this.subnetsPrefix, revision,
      onEvents: (events) => {
        for (const e of events) {
          const key = e.kv.key.toString();
          if (e.type === 'del') {
            const subnet = subnetFromKey(key);
            if (subnet) onEvent({ type: 'del', subnet });
          } else {
            const lease = parseLeaseValue(key, e.kv.value, e.kv.modRevision);
            if (lease) onEvent({ type: 'put', lease });
          }
        }
      },
      onError,
    });
  }

  /** Gives the lease back (decommission of this very node). */
  async revoke(): Promise<void> {
    if (this.leaseId) await leaseRevoke(this.client, this.leaseId);
    this.leaseId = null;
  }

  close(): void {
    this.client.close();
  }
}

function prefixEndOf(p: string): Buffer {
  const b = Buffer.from(p);
  b[b.length - 1]!++;
  return b;
}
