// The one adapter from an IPAM backend (backend.ts) to the CNI verbs: knit-host-local and
// knit-etcd-ipam (plugins/ipam/*) each give only their config parser, DEL's fallback config and
// how a backend is made; ADD's result, CHECK against prevResult, STATUS's code 50, GC with the
// runtime's valid attachments (ctx.validAttachments, parsed by pkg/cni/skel.ts) and DEL with a
// config that no longer validates are written here, once.
//
// Static requests (runtimeConfig.ips, args.cni.ips, CNI_ARGS IP=) may name any host address of a
// configured subnet, also outside rangeStart..rangeEnd (like Docker's --ip with --ip-range): the
// range only bounds dynamic allocation. The request's prefix length, if any, is ignored; the
// subnet's is returned.
import { staticIPs, type CniArgs } from '../cni/args';
import { CniError, Code } from '../cni/errors';
import type { Env } from '../cni/env';
import type { Logger } from '../cni/log';
import type { Plugin } from '../cni/skel';
import type { Attachment, NetConf, Result } from '../cni/types';
import type { IpamBackend, PodRef } from './backend';
import type { IpamConfig } from './config';
import { matchPrevResult, type Allocation } from './range';
import { mergeDns, readResolvConf } from './resolv';
import { checkOwner, type Owner } from './store';

/** The parts of the skel's Context an IPAM plugin reads. */
export interface IpamContext {
  containerId: string;
  ifName: string;
  args?: CniArgs | undefined;
  conf: NetConf;
  log: Logger;
  /** GC: the runtime's cni.dev/valid-attachments (pkg/cni/skel.ts); absent: free nothing by list. */
  validAttachments?: Attachment[];
  /** The request's environment (test failpoints, KNIT_FAILPOINT). */
  env?: Env;
}

/** What a plugin gives the adapter. */
export interface IpamPluginSpec<C extends IpamConfig, B extends IpamBackend> {
  name: string;
  about: string;
  parseConfig(conf: NetConf): C;
  /**
   * DEL must clean up even when the config no longer validates (ranges edited since ADD): the
   * config that still finds the attachment's index, or throw `err` when not even that is there.
   */
  configForDel(conf: NetConf, err: unknown): C;
  /** Runs fn with a backend for cfg and releases what the backend holds (files, connections). */
  withBackend<T>(cfg: C, fn: (b: B) => Promise<T>, ctx?: IpamContext): Promise<T>;
  /** Fields every log line of the plugin carries besides the network (e.g. the node). */
  logFields?(cfg: C): Record<string, unknown>;
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

/** The CNI verbs of an IPAM plugin over its backend. */
export function ipamPlugin<C extends IpamConfig, B extends IpamBackend>(spec: IpamPluginSpec<C, B>): Plugin & { name: string } {
  const fields = (cfg: C): Record<string, unknown> => ({ network: cfg.network, ...spec.logFields?.(cfg) });

  async function add(ctx: IpamContext): Promise<Result> {
    const cfg = spec.parseConfig(ctx.conf);
    const owner = ownerOf(ctx);
    const requests = staticIPs(ctx.conf, ctx.args ?? { ignoreUnknown: false, ips: [], raw: {} }).map((s) => s.ip);
    // Read resolv.conf before reserving, so a missing file cannot leave a reservation behind.
    const result = toResult(cfg, ctx.conf.cniVersion, []);
    const allocs = await spec.withBackend(cfg, (b) => b.allocate(owner, requests, podOf(ctx)), ctx);
    result.ips = ipConfigs(allocs);
    ctx.log.debug(`${spec.name}: reserved`, { ...fields(cfg), ips: allocs.map((x) => x.ip) });
    return result;
  }

  async function del(ctx: IpamContext): Promise<void> {
    let cfg: C;
    try {
      cfg = spec.parseConfig(ctx.conf);
    } catch (e) {
      cfg = spec.configForDel(ctx.conf, e);
      ctx.log.warn(`${spec.name}: DEL with an invalid ipam config, releasing by index: ${(e as Error).message}`);
    }
    const owner = ownerOf(ctx);
    const freed = await spec.withBackend(cfg, (b) => b.release(owner));
    ctx.log.debug(`${spec.name}: released`, { ...fields(cfg), ips: freed });
  }

  async function check(ctx: IpamContext): Promise<void> {
    const cfg = spec.parseConfig(ctx.conf);
    const owner = ownerOf(ctx);
    const held = await spec.withBackend(cfg, (b) => b.check(owner));
    const prev = ctx.conf.prevResult?.ips?.map((ip) => ip.address);
    if (prev) matchPrevResult(cfg.rangeSets, owner, held, prev);
  }

  /** STATUS: code 50 when the backend is unreachable or a range set has no free address (every ADD would fail). */
  async function status(ctx: IpamContext): Promise<void> {
    const cfg = spec.parseConfig(ctx.conf);
    let summary: string;
    try {
      summary = await spec.withBackend(cfg, async (b) => {
        const ranges = await b.status();
        const text = ranges.map((r) => `range set ${r.rangeSet} ${r.subnet}: ${r.free} of ${r.size} free${r.note ? `, ${r.note}` : ''}`).join('; ');
        const dry = await b.exhaustedSets(ranges);
        if (dry.length) throw new CniError(Code.PluginNotAvailable, `network ${cfg.network} has no free address in range set ${dry.join(', ')}: ${text}`);
        return text;
      });
    } catch (e) {
      if (e instanceof CniError && e.code === Code.TryAgainLater) throw new CniError(Code.PluginNotAvailable, `network ${cfg.network}: ${e.message}`);
      throw e;
    }
    ctx.log.info(`${spec.name}: ${summary}`, { network: cfg.network });
  }

  /** GC: frees every attachment of this network not in cni.dev/valid-attachments, plus what crashed writers left. */
  async function gc(ctx: IpamContext): Promise<void> {
    const cfg = spec.parseConfig(ctx.conf);
    const valid = ctx.validAttachments?.map((a): Owner => ({ containerId: a.containerID, ifName: a.ifname })) ?? null;
    const report = await spec.withBackend(cfg, (b) => b.gc(valid));
    const blocks = report.blocksReturned ?? [];
    if (report.released.length || report.indexesRemoved || report.indexesRepaired || report.tempRemoved || blocks.length) {
      ctx.log.info(`${spec.name}: gc`, {
        ...fields(cfg),
        released: report.released.map((r) => `${r.ip} ${r.owner.containerId}/${r.owner.ifName} (${r.reason})`),
        indexesRemoved: report.indexesRemoved,
        indexesRepaired: report.indexesRepaired,
        tempRemoved: report.tempRemoved,
        ...(report.blocksReturned ? { blocksReturned: blocks } : {}),
      });
    }
  }

  return {
    name: spec.name,
    add, del, check, status, gc,
    // An IPAM never enters the container's namespace; the reference host-local does not look at it.
    skipNetnsCheck: true,
    about: spec.about,
  };
}
