// knit-overlay: a pod on the node's overlay bridge with an address from the node's subnet lease
// (written by knitd). The attachment itself is knit-bridge's, run with a synthesized config:
// bridge knit-ov0 (or the lease's), gateway = the subnet's first address, default route, MTU
// from the lease, in-process knit-host-local over the lease's subnet unless `ipam` says otherwise.
import type { Plugin } from '../../../pkg/cni/skel';
import { CniError, Code } from '../../../pkg/cni/errors';
import { DEFAULT_OVERLAY_BRIDGE, readLeaseFile, type NodeLeaseFile } from '../../../pkg/agent/lease-file';
import { addrDel, addrList, isNotFound, linkFind, withNetlink } from '../../../pkg/netlink';
import { addToIP, contains, formatIP, networkOf, parseCIDR } from '../../../pkg/ip/ip';
import { bridge } from '../bridge/plugin';
import { bridgeContext, requireLease, runDirOf } from './config';

export const overlay: Plugin = {
  name: 'knit-overlay',
  about: 'knit-overlay: CNI plugin (pod on the node overlay bridge, subnet leased by knitd); see https://www.cni.dev/docs/spec/',

  async add(ctx) {
    const lease = requireLease(ctx.conf);
    dropOldGateways(lease);
    return bridge.add(bridgeContext(ctx, lease));
  },

  async del(ctx) {
    // DEL must work without knitd (node being drained): without a lease the veth and the
    // host-local reservation are still found by attachment and container id.
    let lease = null;
    try { lease = readLeaseFile(runDirOf(ctx.conf)); } catch (e) { ctx.log.warn(`DEL without a readable lease: ${(e as Error).message}`); }
    await bridge.del(bridgeContext(ctx, lease));
  },

  async check(ctx) {
    const lease = requireLease(ctx.conf);
    await bridge.check(bridgeContext(ctx, lease));
  },

  async status(ctx) {
    let lease;
    try {
      lease = requireLease(ctx.conf);
    } catch (e) {
      // A refusal keeps its own code (101: a kernel feature missing); anything else: not available.
      if (e instanceof CniError && e.code !== Code.TryAgainLater) throw e;
      throw new CniError(Code.PluginNotAvailable, (e as Error).message);
    }
    await bridge.status(bridgeContext(ctx, lease));
  },

  async gc(ctx) {
    let lease = null;
    try { lease = readLeaseFile(runDirOf(ctx.conf)); } catch (e) { ctx.log.warn(`GC without a readable lease: ${(e as Error).message}`); }
    // Without a lease, IPAM GC has no ranges to check against: collect links only.
    const bctx = bridgeContext(ctx, lease);
    if (!lease && (bctx.conf.ipam?.type ?? 'knit-host-local') === 'knit-host-local') delete bctx.conf.ipam;
    await bridge.gc(bctx);
  },
};

/**
 * The node's subnet changed (its old lease was lost): gateways of other subnets of the cluster
 * network on the bridge are the old lease's, and would route the new subnet's traffic wrongly.
 */
function dropOldGateways(lease: NodeLeaseFile): void {
  const net = parseCIDR(lease.network);
  const sub = parseCIDR(lease.subnet);
  if (!net || !sub) return;
  const gw = `${formatIP(addToIP(networkOf(sub).ip, 1n))}/${sub.prefix}`;
  withNetlink(null, (nl) => {
    const br = linkFind(nl, lease.bridge ?? DEFAULT_OVERLAY_BRIDGE);
    if (!br) return;
    for (const a of addrList(nl, { link: br.index, family: 4 })) {
      const ip = parseCIDR(a.cidr);
      if (!ip || a.cidr === gw || !contains(net, ip.ip)) continue;
      try { addrDel(nl, { link: br.index, address: a.cidr }); } catch (e) { if (!isNotFound(e)) throw e; }
    }
  });
}
