// knit-etcd-ipam: cluster-wide addresses in etcd, per-node blocks (the allocator and key layout
// are in etcd-allocator.ts). Reads like the spec: add / del / check / status / gc. Also called
// in-process by knit's main plugins (index.ts requires this file only for this ipam.type).
//
// etcd unreachable: every verb fails with code 11 (try again later) within ipam.etcd.timeoutMs,
// and STATUS with code 50. Nothing is ever half-written: each verb's write is one transaction.
import { staticIPs } from '../cni/args';
import { CniError, Code, invalidConfig } from '../cni/errors';
import type { NetConf, Result } from '../cni/types';
import { EtcdClient } from '../etcd';
import { EtcdAllocator, etcdCniError, type PodRef } from './etcd-allocator';
import { EtcdIpamConfig, parseEtcdConn, parseEtcdIpamConfig, NODE_RE } from './etcd-config';
import { ipConfigs, toResult, type IpamContext } from './host-local';
import { checkOwner } from './file-store';
import type { Owner } from './store';
import { resident } from './resident';

function ownerOf(ctx: IpamContext): Owner {
  const o = { containerId: ctx.containerId, ifName: ctx.ifName };
  checkOwner(o);
  return o;
}

/** The pod the runtime names in CNI_ARGS (kubelet via containerd/CRI-O), recorded for the pod GC. */
function podOf(ctx: IpamContext): PodRef | undefined {
  const a = ctx.args;
  if (!a?.k8sPodNamespace || !a.k8sPodName) return undefined;
  return { namespace: a.k8sPodNamespace, name: a.k8sPodName, ...(a.k8sPodUid ? { uid: a.k8sPodUid } : {}) };
}

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

export async function add(ctx: IpamContext): Promise<Result> {
  const cfg = parseEtcdIpamConfig(ctx.conf);
  const owner = ownerOf(ctx);
  const requests = staticIPs(ctx.conf, ctx.args ?? { ignoreUnknown: false, ips: [], raw: {} }).map((s) => s.ip);
  const result = toResult(cfg, ctx.conf.cniVersion, []);
  const allocs = await withAllocator(cfg, (a) => a.allocate(owner, requests, podOf(ctx)));
  result.ips = ipConfigs(allocs);
  ctx.log.debug('knit-etcd-ipam: reserved', { network: cfg.network, node: cfg.nodeName, ips: allocs.map((x) => x.ip) });
  return result;
}

/** DEL must clean up even when the ranges no longer validate: the index needs only name, node and etcd. */
function configForDel(conf: NetConf): EtcdIpamConfig {
  try {
    return parseEtcdIpamConfig(conf);
  } catch (e) {
    const ipam = (conf.ipam ?? {}) as Record<string, unknown>;
    if (typeof conf.name !== 'string' || ipam.etcd === undefined) throw e;
    const nodeName = typeof ipam.nodeName === 'string' && NODE_RE.test(ipam.nodeName) ? ipam.nodeName : (require('node:os') as typeof import('node:os')).hostname();
    return {
      network: conf.name, type: String(ipam.type ?? ''), rangeSets: [], routes: [], dataDir: '', resolvConf: null, dns: null, raw: ipam,
      nodeName, blockSize: 26, blockSize6: 122, etcd: parseEtcdConn(ipam.etcd),
    };
  }
}

export async function del(ctx: IpamContext): Promise<void> {
  const cfg = configForDel(ctx.conf);
  const freed = await withAllocator(cfg, (a) => a.release(ownerOf(ctx)));
  ctx.log.debug('knit-etcd-ipam: released', { network: cfg.network, node: cfg.nodeName, ips: freed });
}

export async function check(ctx: IpamContext): Promise<void> {
  const cfg = parseEtcdIpamConfig(ctx.conf);
  const prev = ctx.conf.prevResult?.ips?.map((ip) => ip.address);
  await withAllocator(cfg, (a) => a.check(ownerOf(ctx), prev));
}

/** STATUS: 50 when etcd cannot be reached or a range set has no free address; free counts in the log. */
export async function status(ctx: IpamContext): Promise<void> {
  const cfg = parseEtcdIpamConfig(ctx.conf);
  let ranges;
  try {
    ranges = await withAllocator(cfg, (a) => a.status());
  } catch (e) {
    if (e instanceof CniError && e.code === Code.TryAgainLater) throw new CniError(Code.PluginNotAvailable, `network ${cfg.network}: ${e.message}`);
    throw e;
  }
  const summary = ranges.map((r) => `range set ${r.rangeSet} ${r.subnet}: ${r.free} of ${r.size} free, ${r.blocks} blocks claimed (${r.ownBlocks} by ${cfg.nodeName})`).join('; ');
  const free = new Map<number, bigint>();
  for (const r of ranges) free.set(r.rangeSet, (free.get(r.rangeSet) ?? 0n) + BigInt(r.free));
  const dry = [...free].filter(([, f]) => f === 0n).map(([i]) => i);
  if (dry.length) throw new CniError(Code.PluginNotAvailable, `network ${cfg.network} has no free address in range set ${dry.join(', ')}: ${summary}`);
  ctx.log.info(`knit-etcd-ipam: ${summary}`, { network: cfg.network });
}

/** GC: frees this node's attachments not in cni.dev/valid-attachments, orphans, and empty blocks. */
export async function gc(ctx: IpamContext): Promise<void> {
  const cfg = parseEtcdIpamConfig(ctx.conf);
  const raw = ctx.conf['cni.dev/valid-attachments'] ?? ctx.conf['cni.dev/attachments'];
  let valid: Owner[] | null = null;
  if (raw !== undefined) {
    if (!Array.isArray(raw)) throw invalidConfig('cni.dev/valid-attachments', raw, 'an array of {containerID, ifname}');
    valid = raw.map((a: { containerID?: unknown; ifname?: unknown }, i: number) => {
      if (typeof a?.containerID !== 'string' || typeof a?.ifname !== 'string') throw invalidConfig(`cni.dev/valid-attachments[${i}]`, a, 'an object {containerID, ifname}');
      return { containerId: a.containerID, ifName: a.ifname };
    });
  }
  const report = await withAllocator(cfg, (a) => a.gc(valid));
  if (report.released.length || report.indexesRemoved || report.blocksReturned.length) {
    ctx.log.info('knit-etcd-ipam: gc', {
      network: cfg.network, node: cfg.nodeName,
      released: report.released.map((r) => `${r.ip} ${r.owner.containerId}/${r.owner.ifName} (${r.reason})`),
      indexesRemoved: report.indexesRemoved, blocksReturned: report.blocksReturned,
    });
  }
}

export const etcdIpam = {
  name: 'knit-etcd-ipam',
  add, del, check, status, gc,
  skipNetnsCheck: true,
  about: 'knit-etcd-ipam: CNI IPAM plugin, cluster-wide addresses in etcd with per-node blocks',
};
