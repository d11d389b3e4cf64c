// Shared reconcile steps of the backends: desired state in, kernel brought to it. Routes are
// knit's when they carry protocol KNIT_RTPROT (107) and sit on a link the backend owns.
import { createHash } from 'node:crypto';
import {
  KNIT_RTPROT, Netlink, addrList, isNotFound, linkDel, linkGet, linkList, routeDel, routeList, routeReplace, type Route,
} from '../../netlink';
import { contains, formatCIDR, formatIP, networkOf, parseCIDR, parseIP, type IPNet } from '../../ip/ip';
import type { Logger } from '../../cni/log';
import type { SyncReport } from './backend';

export interface Underlay {
  index: number;
  name: string;
  mtu: number;
  /** The underlay address's subnet (the node's L2 neighbourhood). */
  net?: IPNet;
}

export function underlayOf(nl: Netlink, iface: string, addr: string): Underlay {
  const l = linkGet(nl, iface);
  const mine = addrList(nl, { link: l.index, family: 4 }).find((a) => a.local === addr);
  const u: Underlay = { index: l.index, name: l.name, mtu: l.mtu };
  if (mine) u.net = networkOf(parseCIDR(mine.cidr)!);
  return u;
}

/** Whether a peer's underlay address is on the node's own L2 subnet. */
/** knit's VXLAN devices are named knit.<vni> (vxlan.ts). */
export const VTEP_NAME = /^knit\.\d+$/;

/**
 * Removes knit's VXLAN devices other than `keep`: left by a node whose backend changed (vxlan to
 * host-gw, or another VNI). Their routes, neighbours and FDB entries go with them.
 */
export function removeStaleVteps(nl: Netlink, keep: string | null, log?: Logger): string[] {
  const removed: string[] = [];
  for (const l of linkList(nl, { kind: 'vxlan' })) {
    if (!VTEP_NAME.test(l.name) || l.name === keep) continue;
    try { linkDel(nl, l.index); } catch (e) { if (!isNotFound(e)) throw e; }
    removed.push(l.name);
    log?.info(`removed ${l.name}: not this node's backend any more`);
  }
  return removed;
}

export function sameL2(u: Underlay, peerAddr: string): boolean {
  const ip = parseIP(peerAddr);
  return !!u.net && !!ip && contains(u.net, ip);
}

/** A stable, locally administered unicast MAC for a node's VTEP: the same across restarts. */
export function vtepMacFor(nodeName: string, vni: number): string {
  const h = createHash('sha256').update(`knit-vtep\0${nodeName}\0${vni}`).digest();
  h[0] = (h[0]! & 0xfc) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The subnet's network address: the VTEP address of a node (as flannel). */
export function vtepAddrOf(subnet: string): string {
  const n = parseCIDR(subnet);
  if (!n) throw new Error(`invalid subnet ${JSON.stringify(subnet)}`);
  return formatIP(networkOf(n).ip);
}

export function canonSubnet(subnet: string): string {
  const n = parseCIDR(subnet);
  if (!n) throw new Error(`invalid subnet ${JSON.stringify(subnet)}`);
  return formatCIDR(networkOf(n));
}

export interface WantRoute {
  dst: string;
  gw: string;
  dev: number;
  onlink: boolean;
}

/**
 * Brings knit's routes to `want`. Owned: protocol 107 in the main table on one of `devs`
 * (inside `network` when given), plus any protocol-107 route to a wanted destination.
 */
export function reconcileRoutes(nl: Netlink, want: Map<string, WantRoute>, devs: number[], network: IPNet | undefined, rep: SyncReport, log?: Logger): void {
  const have = routeList(nl, { family: 4, protocol: KNIT_RTPROT });
  const owned = (r: Route): boolean => {
    if (want.has(r.dst)) return true;
    if (r.dev === undefined || !devs.includes(r.dev)) return false;
    if (!network) return true;
    const n = parseCIDR(r.dst);
    return !!n && n.prefix >= network.prefix && contains(network, n.ip);
  };
  const seen = new Set<string>();
  for (const r of have) {
    if (!owned(r)) continue;
    const w = want.get(r.dst);
    if (w && !seen.has(r.dst) && r.gw === w.gw && r.dev === w.dev && r.onlink === w.onlink) { seen.add(r.dst); continue; }
    if (w && !seen.has(r.dst)) continue; // replaced below
    try {
      routeDel(nl, { dst: r.dst, ...(r.gw ? { gw: r.gw } : {}), ...(r.dev !== undefined ? { dev: r.dev } : {}), protocol: KNIT_RTPROT, ...(r.priority !== undefined ? { priority: r.priority } : {}) });
      rep.removed++;
      log?.info(`removed stale route ${r.dst}${r.gw ? ` via ${r.gw}` : ''}`);
    } catch (e) {
      if (!isNotFound(e) && (e as { code?: string }).code !== 'ESRCH') throw e;
    }
  }
  for (const [dst, w] of want) {
    if (seen.has(dst)) continue;
    const existed = have.some((r) => r.dst === dst);
    routeReplace(nl, { dst, gw: w.gw, dev: w.dev, onlink: w.onlink, protocol: KNIT_RTPROT });
    if (existed) rep.updated++; else rep.added++;
  }
}
