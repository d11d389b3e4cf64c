// The etcd v3 client knit uses everywhere (knit-etcd-ipam, knitd's overlay datastore, knitctl):
// the JSON-gateway transport with failover, one deadline, TLS and auth (client.ts), group commit
// of independent transactions (batch.ts), leases and lease-bound puts (lease.ts) and watches
// (watch.ts). It depends on nothing of knit's own: the IPAM and the overlay datastore build on it.
export * from './client';
export { TxnBatcher } from './batch';
export { leaseGrant, leaseKeepAlive, leaseRevoke, leaseTimeToLive, leasedPutIf, type LeasedPutResult } from './lease';
export { EtcdWatch, type EtcdWatchOptions, type WatchEvent } from './watch';
