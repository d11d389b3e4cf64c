// etcd leases (grant, keepalive, revoke, time-to-live) and puts bound to a lease over the JSON
// gateway, through EtcdClient.request (the same transport, failover, deadline, TLS and auth token).
import { EtcdClient } from './client';

type Raw = (path: string, body: Record<string, unknown>) => Promise<Record<string, any>>;

export function raw(client: EtcdClient): Raw {
  return (path, body) => client.request(path, body);
}

export const b64 = (v: Buffer | string): string => Buffer.from(v).toString('base64');

/** Grants a lease of ttlSec seconds; returns its id (int64 as a decimal string). */
export async function leaseGrant(client: EtcdClient, ttlSec: number): Promise<string> {
  const r = await raw(client)('/v3/lease/grant', { TTL: String(ttlSec), ID: '0' });
  if (r.error) throw new Error(`etcd lease grant: ${r.error}`);
  return String(r.ID);
}

/** Renews a lease; returns the TTL left (0 when the lease no longer exists). */
export async function leaseKeepAlive(client: EtcdClient, id: string): Promise<number> {
  const r = await raw(client)('/v3/lease/keepalive', { ID: id });
  const res = (r.result ?? r) as Record<string, unknown>;
  return Number(res.TTL ?? 0);
}

export async function leaseRevoke(client: EtcdClient, id: string): Promise<void> {
  try {
    await raw(client)('/v3/lease/revoke', { ID: id });
  } catch (e) {
    if (!/requested lease not found/.test((e as Error).message)) throw e;
  }
}

export async function leaseTimeToLive(client: EtcdClient, id: string): Promise<number> {
  const r = await raw(client)('/v3/lease/timetolive', { ID: id });
  return Number(r.TTL ?? -1);
}

export interface LeasedPutResult {
  succeeded: boolean;
  /** On failure: the key as it is (null when absent). */
  current: { value: Buffer; modRevision: number; lease: string } | null;
  revision: number;
}

/**
 * Puts key=value bound to lease `id` only when the key's mod revision equals `modRevision`
 * (0: the key must be absent); otherwise reads the key back.
 */
export async function leasedPutIf(client: EtcdClient, key: string, value: string, id: string, modRevision: number): Promise<LeasedPutResult> {
  const compare = modRevision === 0
    ? { key: b64(key), target: 'CREATE', result: 'EQUAL', create_revision: '0' }
    : { key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: String(modRevision) };
  const r = await raw(client)('/v3/kv/txn', {
    compare: [compare],
    success: [{ request_put: { key: b64(key), value: b64(value), lease: id } }],
    failure: [{ request_range: { key: b64(key) } }],
  });
  const revision = Number(r.header?.revision ?? 0);
  if (r.succeeded) return { succeeded: true, current: null, revision };
  const kv = r.responses?.[0]?.response_range?.kvs?.[0];
  return {
    succeeded: false, revision,
    current: kv ? { value: Buffer.from(String(kv.value ?? ''), 'base64'), modRevision: Number(kv.mod_revision ?? 0), lease: String(kv.lease ?? '0') } : null,
  };
}
