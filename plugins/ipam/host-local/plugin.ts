// knit-host-local: addresses from files on the node (pkg/ipam/file-store.ts), allocated by the file
// allocator (pkg/ipam/allocator.ts); the verbs are the shared IPAM adapter's (pkg/ipam/plugin.ts).
// Also called in-process by knit's main plugins (plugins/ipam/registry.ts).
import type { NetConf } from '../../../pkg/cni/types';
import { Allocator } from '../../../pkg/ipam/allocator';
import { DEFAULT_DATA_DIR, IpamConfig, parseIpamConfig } from '../../../pkg/ipam/config';
import { FileStore } from '../../../pkg/ipam/file-store';
import { ipamPlugin, type IpamContext } from '../../../pkg/ipam/plugin';
import { failpoint } from '../../../pkg/iface/rollback';

/**
 * Runs fn with an allocator over this network's file store, closing the store afterwards.
 * Failpoint "reserved" (KNIT_FAILPOINT): the addresses are reserved, their index not yet written.
 */
async function withAllocator<T>(cfg: IpamConfig, fn: (a: Allocator) => Promise<T>, ctx?: IpamContext): Promise<T> {
  const env = ctx?.env;
  const store = new FileStore(cfg.dataDir, cfg.network, env ? { beforeIndex: () => failpoint(env, 'reserved') } : {});
  try {
    return await fn(new Allocator(cfg, store));
  } finally {
    await store.close();
  }
}

/** DEL with an invalid config: the index needs only the network name and dataDir. */
function configForDel(conf: NetConf, err: unknown): IpamConfig {
  const ipam = (conf.ipam ?? {}) as Record<string, unknown>;
  const dataDir = typeof ipam.dataDir === 'string' && ipam.dataDir.startsWith('/') ? ipam.dataDir : DEFAULT_DATA_DIR;
  if (typeof conf.name !== 'string') throw err;
  return { network: conf.name, type: String(ipam.type ?? ''), rangeSets: [], routes: [], dataDir, resolvConf: null, dns: null, raw: ipam };
}

export const hostLocal = ipamPlugin({
  name: 'knit-host-local',
  about: 'knit-host-local: CNI IPAM plugin, addresses from files on the node',
  parseConfig: parseIpamConfig,
  configForDel,
  withBackend: withAllocator,
});
