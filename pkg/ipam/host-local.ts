// knit-host-local: addresses from files on the node. Reads like the spec: add / del / check /
// status / gc. Also called in-process by knit's main plugins (see index.ts).
//
// Static requests (runtimeConfig.ips, args.cni.ips, CNI_ARGS IP=) may name any host address of a
// configured subnet, also outside rangeStart..rangeEnd (like Docker's --ip with --ip-range): the
// range only bounds dynamic allocation. The request's prefix length, if any, is ignored; the
// subnet's is returned.
import { staticIPs, type CniArgs } from '../cni/args';
import { CniError, Code, invalidConfig } from '../cni/errors';
import type { Logger } from '../cni/log';
import type { NetConf, Result } from '../cni/types';
import { Allocation, Allocator } from './allocator';
import { DEFAULT_DATA_DIR, IpamConfig, parseIpamConfig } from './config';
import { FileStore, type FileStoreOptions } from './file-store';
import type { Env } from '../cni/env';
import { failpoint } from '../iface/rollback';
import { mergeDns, readResolvConf } from './resolv';
import type { Owner } from './store';

/** The parts of the skel's Context this plugin reads. */
export interface IpamContext {
  containerId: string;
  ifName: string;
  args?: CniArgs | undefined;
  conf: NetConf;
  log: Logger;
  /** The request's environment (test failpoints). */
  env?: Env;
}

function ownerOf(ctx: IpamContext): Owner {
  return { containerId: ctx.containerId, ifName: ctx.ifName };
}

/** Runs fn with an allocator over this network's file store, closing the store afterwards. */
async function withAllocator<T>(cfg: IpamConfig, fn: (a: Allocator) => Promise<T>, opts: FileStoreOptions = {}): Promise<T> {
  const store = new FileStore(cfg.dataDir, cfg.network, opts);
  try {
    return await fn(new Allocator(cfg, store));
  } finally {
    await store.close();
  }
}

export function ipConfigs(allocs: Allocation[]): NonNullable<Result['ips']> {
  return allocs.map((a) => (a.gateway ? { address: `${a.ip}/${a.prefix}`, gateway: a.gateway } : { address: `${a.ip}/${a.prefix}` }));
}

export function toResult(cfg: IpamConfig, cniVersion: string, allocs: Allocation[]): Result {
  const result: Result = { cniVersion, ips: ipConfigs(allocs) };
  if (cfg.routes.length) result.routes = cfg.routes.map((r) => ({ ...r }));
  const dns = mergeDns(cfg.resolvConf ? readResolvConf(cfg.resolvConf) : null, cfg.dns);
  if (dns) result.dns = dns;
  return result;
}

export async function add(ctx: IpamContext): Promise<Result> {
  const cfg = parseIpamConfig(ctx.conf);
  const requests = staticIPs(ctx.conf, ctx.args ?? { ignoreUnknown: false, ips: [], raw: {} }).map((s) => s.ip);
  // Read resolv.conf before reserving, so a missing file cannot leave a reservation behind.
  const result = toResult(cfg, ctx.conf.cniVersion, []);
  // Failpoint "reserved": the addresses are reserved, their index not yet written.
  const allocs = await withAllocator(cfg, (a) => a.allocate(ownerOf(ctx), requests), { beforeIndex: () => { if (ctx.env) failpoint(ctx.env, 'reserved'); } });
  result.ips = ipConfigs(allocs);
  ctx.log.debug('knit-host-local: reserved', { network: cfg.network, ips: allocs.map((x) => x.ip) });
  return result;
}

/**
 * DEL must clean up even when the config no longer validates (ranges edited since ADD): the index
 * needs only the network name and dataDir.
 */
function configForDel(conf: NetConf, log: Logger): IpamConfig {
  try {
    return parseIpamConfig(conf);
  } catch (e) {
    const ipam = (conf.ipam ?? {}) as Record<string, unknown>;
    const dataDir = typeof ipam.dataDir === 'string' && ipam.dataDir.startsWith('/') ? ipam.dataDir : DEFAULT_DATA_DIR;
    if (typeof conf.name !== 'string') throw e;
    log.warn(`knit-host-local: DEL with an invalid ipam config, releasing by index: ${(e as Error).message}`);
    return { network: conf.name, type: String(ipam.type ?? ''), rangeSets: [], routes: [], dataDir, resolvConf: null, dns: null, raw: ipam };
  }
}

export async function del(ctx: IpamContext): Promise<void> {
  const cfg = configForDel(ctx.conf, ctx.log);
  const freed = await withAllocator(cfg, (a) => a.release(ownerOf(ctx)));
  ctx.log.debug('knit-host-local: released', { network: cfg.network, ips: freed });
}

export async function check(ctx: IpamContext): Promise<void> {
  const cfg = parseIpamConfig(ctx.conf);
  const prev = ctx.conf.prevResult?.ips?.map((ip) => ip.address);
  await withAllocator(cfg, (a) => a.check(ownerOf(ctx), prev));
}

/** STATUS: code 50 when a range set has no free address (every ADD would fail). */
export async function status(ctx: IpamContext): Promise<void> {
  const cfg = parseIpamConfig(ctx.conf);
  await withAllocator(cfg, async (a) => {
    const ranges = await a.status();
    const summary = ranges.map((r) => `range set ${r.rangeSet} ${r.subnet}: ${r.free} of ${r.size} free`).join('; ');
    const dry = await a.exhaustedSets(ranges);
    if (dry.length) {
      throw new CniError(Code.PluginNotAvailable, `network ${cfg.network} has no free address in range set ${dry.join(', ')}: ${summary}`);
    }
    ctx.log.info(`knit-host-local: ${summary}`, { network: cfg.network });
  });
}

/** GC: frees every reservation of this network not in cni.dev/valid-attachments, plus orphans. */
export async function gc(ctx: IpamContext): Promise<void> {
  const cfg = parseIpamConfig(ctx.conf);
  const raw = ctx.conf['cni.dev/valid-attachments'] ?? ctx.conf['cni.dev/attachments'];
  let valid: Owner[] | null = null;
  if (raw !== undefined) {
    if (!Array.isArray(raw)) throw invalidConfig('cni.dev/valid-attachments', raw, 'an array of {containerID, ifname}');
    valid = raw.map((a: { containerID?: unknown; ifname?: unknown }, i: number) => {
      if (typeof a?.containerID !== 'string' || typeof a?.ifname !== 'string') {
        throw invalidConfig(`cni.dev/valid-attachments[${i}]`, a, 'an object {containerID, ifname}');
      }
      return { containerId: a.containerID, ifName: a.ifname };
    });
  }
  const report = await withAllocator(cfg, (a) => a.gc(valid));
  if (report.released.length || report.indexesRemoved || report.indexesRepaired || report.tempRemoved) {
    ctx.log.info('knit-host-local: gc', {
      network: cfg.network,
      released: report.released.map((r) => `${r.ip} ${r.owner.containerId}/${r.owner.ifName} (${r.reason})`),
      indexesRemoved: report.indexesRemoved,
      indexesRepaired: report.indexesRepaired,
      tempRemoved: report.tempRemoved,
    });
  }
}

export const hostLocal = {
  name: 'knit-host-local',
  add, del, check, status, gc,
  // An IPAM never enters the container's namespace; the reference host-local does not look at it.
  skipNetnsCheck: true,
  about: 'knit-host-local: CNI IPAM plugin, addresses from files on the node',
};
