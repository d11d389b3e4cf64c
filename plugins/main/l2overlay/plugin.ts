// knit-l2overlay: a container on a named overlay network, Docker's model. Every node has the
// network's bridge knb<vni> and VXLAN device knv<vni> (made by knitd when the network is created);
// the container joins the bridge as knit-bridge would (the gateway address answers on every
// node; egress leaves through the local node, masqueraded, unless the network is internal) and
// its endpoint (addresses, MAC, node) is recorded in etcd on the node's lease, from where knitd on
// every other node programs the FDB and neighbour entries that reach it. Not the routed pod
// network: that is knit-overlay.
import type { Context, Plugin } from '../../../pkg/cni/skel';
import { CniError, Code } from '../../../pkg/cni/errors';
import type { Result } from '../../../pkg/cni/types';
import { EtcdClient, EtcdError } from '../../../pkg/etcd/client';
import { etcdCniError } from '../../../pkg/ipam/etcd/keys';
import { fdbDel, isNotFound, linkFind, withNetlink } from '../../../pkg/netlink';
import { vxlanName } from '../../../pkg/network/conflist';
import { MeshNetworkClient } from '../../../pkg/mesh/network-client';
import { NetworkStore, type Endpoint } from '../../../pkg/network/store';
import { resident } from '../../../pkg/ipam/resident';
import { bridge } from '../bridge/plugin';
import { aliasesOf, bridgeContext, parseL2Conf, requireEsp, requireNode, type L2Conf } from './config';

/** The network's bridge on this node, or code `code` saying knitd has not made it yet. */
function networkBridgeMtu(cfg: L2Conf, code: number): number {
  const br = withNetlink(null, (nl) => linkFind(nl, cfg.bridge));
  if (!br || br.kind !== 'bridge') {
    throw new CniError(code, `network ${cfg.network} (VNI ${cfg.vni}) is not set up on this node yet: no bridge ${cfg.bridge} (knitd creates it within a second of knitctl network create; is knitd running?)`);
  }
  return br.mtu;
}

/** Under knitd, one etcd client per connection config across requests (keep-alive, no new TCP per call). */
const clients = new Map<string, EtcdClient>();

/** The endpoint calls the plugin makes: etcd's NetworkStore, or the local knitd on the mesh. */
interface EndpointStore {
  putEndpoint(e: Endpoint, lease: string): Promise<void>;
  deleteEndpoint(id: Pick<Endpoint, 'network' | 'node' | 'containerId' | 'ifName'>): Promise<void>;
  endpoints(network?: string): Promise<{ endpoints: Endpoint[] }>;
}

async function withStore<T>(cfg: L2Conf, fn: (s: EndpointStore) => Promise<T>): Promise<T> {
  if (!cfg.etcd) {
    // The mesh: knitd records the endpoint in this node's record (pkg/mesh/networks.ts).
    try {
      return await fn(new MeshNetworkClient(cfg.runDir));
    } catch (e) {
      if (e instanceof CniError) throw e;
      throw new CniError(Code.TryAgainLater, `network ${cfg.network}: cannot reach the endpoint records through knitd (${cfg.runDir}): ${(e as Error).message}`);
    }
  }
  const etcd = cfg.etcd;
  const key = JSON.stringify(etcd);
  const kept = resident.enabled ? clients.get(key) : undefined;
  const client = kept ?? new EtcdClient(etcd);
  if (resident.enabled && !kept) clients.set(key, client);
  try {
    return await fn(new NetworkStore(client, etcd.prefix));
  } catch (e) {
    if (e instanceof CniError) throw e;
    if (e instanceof EtcdError && e.kind === 'config') throw etcdCniError(e); // 7: a TLS file the config names cannot be read
    throw new CniError(Code.TryAgainLater, `network ${cfg.network}: cannot reach the endpoint records in etcd: ${(e as Error).message}`);
  } finally {
    if (!resident.enabled) client.close();
  }
}

/**
 * The bridge may have learnt the container's MAC on the VXLAN port while it belonged to a container
 * on another node (a MAC derived from a reused address, D28): until that entry aged out (300 s)
 * the bridge would send the new container's frames away. Removed, the bridge floods until it
 * learns the new port. Not fatal: the entry ages out anyway.
 */
function forgetLearned(cfg: L2Conf, mac: string, ctx: Context): void {
  if (!mac) return;
  try {
    withNetlink(null, (nl) => fdbDel(nl, { link: vxlanName(cfg.vni), mac, master: true }));
  } catch (e) {
    if (!isNotFound(e)) ctx.log.warn(`removing the bridge's learnt entry of ${mac} on ${vxlanName(cfg.vni)}: ${(e as Error).message}`);
  }
}

const endpointId = (ctx: Context, cfg: L2Conf): Pick<Endpoint, 'network' | 'node' | 'containerId' | 'ifName'> =>
  ({ network: cfg.network, node: cfg.nodeName, containerId: ctx.containerId, ifName: ctx.ifName });

export const l2overlay: Plugin = {
  name: 'knit-l2overlay',
  about: 'knit-l2overlay: CNI plugin (container on a named VXLAN overlay network, Docker\'s model); see https://www.cni.dev/docs/spec/',

  async add(ctx) {
    const cfg = parseL2Conf(ctx.conf);
    const aliases = aliasesOf(ctx.conf, cfg.network);
    requireEsp(cfg);
    const node = requireNode(cfg);
    const bridgeMtu = networkBridgeMtu(cfg, Code.TryAgainLater);
    const mtu = cfg.mtu ?? bridgeMtu;
    const bctx = bridgeContext(ctx, cfg, mtu);
    const endpointOf = (r: Result): Endpoint => ({
      ...endpointId(ctx, cfg), nodeIp: node.nodeIp,
      mac: r.interfaces?.find((i) => i.sandbox && i.name === ctx.ifName)?.mac ?? '', ips: (r.ips ?? []).map((i) => i.address),
      ...(ctx.args.k8sPodName ? { name: ctx.args.k8sPodName } : {}), ...(aliases.length ? { aliases } : {}), created: new Date().toISOString(),
    });
    const record = (r: Result): Promise<void> => withStore(cfg, (s) => s.putEndpoint(endpointOf(r), node.lease));
    // The record is written while knit-bridge's last step (one nft process) runs: etcd's disk
    // write and nft overlap instead of adding up.
    let put: Promise<void> | undefined;
    let result: Result;
    try {
      result = await bridge.addWith(bctx, {
        addressed: (r) => {
          forgetLearned(cfg, endpointOf(r).mac, ctx);
          put = record(r);
          put.catch(() => undefined);
        },
      });
    } catch (e) {
      // Nothing half-done: a record written for an ADD that failed after all is taken back.
      if (put) await put.then(() => withStore(cfg, (s) => s.deleteEndpoint(endpointId(ctx, cfg))), () => undefined)
        .catch((undo) => ctx.log.warn(`removing the endpoint record of the failed ADD: ${(undo as Error).message}`));
      throw e;
    }
    try {
      await (put ?? record(result));
    } catch (e) {
      // Nothing half-done: without its record no other node could reach the container.
      try { await bridge.del(bctx); } catch (undo) { ctx.log.warn(`undoing ADD after the endpoint record failed: ${(undo as Error).message}`); }
      throw e;
    }
    return result;
  },

  async del(ctx) {
    let cfg: L2Conf;
    try { cfg = parseL2Conf(ctx.conf); } catch (e) {
      ctx.log.warn(`DEL with an invalid config: ${(e as Error).message}; cleaning up the attachment only`);
      return bridge.del(ctx);
    }
    // Record first: a remote node must stop sending to the MAC before the address can be reused.
    await withStore(cfg, (s) => s.deleteEndpoint(endpointId(ctx, cfg)));
    await bridge.del(bridgeContext(ctx, cfg, cfg.mtu));
  },

  async check(ctx) {
    const cfg = parseL2Conf(ctx.conf);
    requireNode(cfg);
    const mtu = cfg.mtu ?? networkBridgeMtu(cfg, Code.Conflict);
    await bridge.check(bridgeContext(ctx, cfg, mtu));
    const prev = ctx.conf.prevResult!;
    const want = prev.interfaces?.find((i) => i.sandbox && i.name === ctx.ifName);
    const { endpoints } = await withStore(cfg, (s) => s.endpoints(cfg.network));
    const mine = endpoints.find((e) => e.node === cfg.nodeName && e.containerId === ctx.containerId && e.ifName === ctx.ifName);
    if (!mine) throw new CniError(Code.Conflict, `CHECK found drift: the endpoint record of ${ctx.containerId}/${ctx.ifName} on network ${cfg.network} is missing from etcd (other nodes cannot reach it)`);
    if (want?.mac && mine.mac !== want.mac) throw new CniError(Code.Conflict, `CHECK found drift: the endpoint record's MAC ${mine.mac} is not the interface's ${want.mac}`);
  },

  async status(ctx) {
    const cfg = parseL2Conf(ctx.conf);
    requireEsp(cfg);
    try {
      requireNode(cfg);
      networkBridgeMtu(cfg, Code.PluginNotAvailable);
    } catch (e) {
      throw new CniError(Code.PluginNotAvailable, (e as Error).message);
    }
    await bridge.status(bridgeContext(ctx, cfg, cfg.mtu));
  },

  async gc(ctx) {
    const cfg = parseL2Conf(ctx.conf);
    await bridge.gc(bridgeContext(ctx, cfg, cfg.mtu));
    const valid = new Set(ctx.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
    await withStore(cfg, async (s) => {
      const { endpoints } = await s.endpoints(cfg.network);
      for (const e of endpoints) {
        if (e.node !== cfg.nodeName || valid.has(`${e.containerId}\0${e.ifName}`)) continue;
        ctx.log.info(`GC: removing the endpoint record of ${e.containerId}/${e.ifName}`);
        await s.deleteEndpoint(e);
      }
    });
  },
};
