// knit-etcd-ipam: cluster-wide addresses in etcd, per-node blocks (the allocator is in
// pkg/ipam/etcd/); the verbs are the shared IPAM adapter's (pkg/ipam/plugin.ts). Also called
// in-process by knit's main plugins (plugins/ipam/registry.ts requires this file only for this
// ipam.type, so plugins on other IPAMs never load the etcd client).
//
// etcd unreachable: every verb fails with code 11 (try again later) within ipam.etcd.timeoutMs,
// and STATUS with code 50. Nothing is ever half-written: each verb's write is one transaction.
import type { NetConf } from '../../../pkg/cni/types';
import { EtcdClient } from '../../../pkg/etcd/client';
import { EtcdAllocator } from '../../../pkg/ipam/etcd/allocator';
import { etcdCniError } from '../../../pkg/ipam/etcd/keys';
import { DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_SIZE6, EtcdIpamConfig, NODE_RE, parseEtcdConn, parseEtcdIpamConfig } from '../../../pkg/ipam/etcd-config';
import { ipamPlugin } from '../../../pkg/ipam/plugin';
import { resident } from '../../../pkg/ipam/resident';

interface Pooled { a: EtcdAllocator; users: number; idle?: NodeJS.Timeout }

/** Allocators kept by a resident process, by everything that shapes them (config and connection). */
const pool = new Map<string, Pooled>();

const poolKey = (cfg: EtcdIpamConfig): string => JSON.stringify(
  { network: cfg.network, node: cfg.nodeName, blocks: [cfg.blockSize, cfg.blockSize6], etcd: cfg.etcd, ranges: cfg.rangeSets },
  (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
);

/**
 * An exec'd plugin makes a fresh allocator and closes its client (the process must be able to
 * exit). A resident process (knitd) keeps one per network and etcd connection: its caches save
 * reads, its client keeps connections, and concurrent ADDs of the node share its batched writes.
 * The caches may go stale (other processes write too); the allocator's compares catch that, and
 * a stale entry only costs a retry.
 */
async function withAllocator<T>(cfg: EtcdIpamConfig, fn: (a: EtcdAllocator) => Promise<T>): Promise<T> {
  if (!resident.enabled) {
    const client = new EtcdClient(cfg.etcd);
    try {
      return await fn(new EtcdAllocator(cfg, client));
    } catch (e) {
      throw etcdCniError(e);
    } finally {
      client.close();
    }
  }
  const key = poolKey(cfg);
  let p = pool.get(key);
  if (!p) pool.set(key, p = { a: new EtcdAllocator(cfg, new EtcdClient(cfg.etcd)), users: 0 });
  const entry = p;
  if (entry.idle) clearTimeout(entry.idle);
  entry.users++;
  try {
    return await fn(entry.a);
  } catch (e) {
    throw etcdCniError(e);
  } finally {
    if (--entry.users === 0) {
      entry.idle = setTimeout(() => { pool.delete(key); entry.a.client.close(); }, resident.idleMs);
      entry.idle.unref();
    }
  }
}

/** DEL with invalid ranges: the index needs only the network name, the node and etcd. */
function configForDel(conf: NetConf, err: unknown): EtcdIpamConfig {
  const ipam = (conf.ipam ?? {}) as Record<string, unknown>;
  if (typeof conf.name !== 'string' || ipam.etcd === undefined) throw err;
  const nodeName = typeof ipam.nodeName === 'string' && NODE_RE.test(ipam.nodeName) ? ipam.nodeName : (require('node:os') as typeof import('node:os')).hostname();
  return {
    network: conf.name, type: String(ipam.type ?? ''), rangeSets: [], routes: [], dataDir: '', resolvConf: null, dns: null, raw: ipam,
    nodeName, blockSize: DEFAULT_BLOCK_SIZE, blockSize6: DEFAULT_BLOCK_SIZE6, etcd: parseEtcdConn(ipam.etcd),
  };
}

export const etcdIpam = ipamPlugin({
  name: 'knit-etcd-ipam',
  about: 'knit-etcd-ipam: CNI IPAM plugin, cluster-wide addresses in etcd with per-node blocks',
  parseConfig: (conf: NetConf) => parseEtcdIpamConfig(conf),
  configForDel,
  withBackend: withAllocator,
  logFields: (cfg) => ({ node: cfg.nodeName }),
});
