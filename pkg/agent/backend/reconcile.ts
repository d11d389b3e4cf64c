// Reconcile steps every backend shares: desired state in, kernel brought to it. Routes are
// knit's when they carry protocol KNIT_RTPROT (107) and sit on a link the backend owns.
// Backend-specific helpers live in the backend's own file (vxlan.ts).
import {
  KNIT_RTPROT, Netlink, addrList, getSysctl, isNotFound, linkGet, routeDel, routeList, routeReplace, setSysctl, type Route,
} from '../../netlink';
import { contains, formatCIDR, networkOf, parseCIDR, parseIP, type IPNet } from '../../ip/ip';
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
export function sameL2(u: Underlay, peerAddr: string): boolean {
  const ip = parseIP(peerAddr);
  return !!u.net && !!ip && contains(u.net, ip);
}

/** The subnet's canonical form: its network address and prefix. */
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

/**
 * Turns IPv4 forwarding on, writing only when it is off: in an unprivileged container (a
 * DaemonSet with NET_ADMIN only) /proc/sys is read-only, and forwarding is usually on already
 * (kubeadm's preflight requires it).
 */
export function ensureForwarding(netns: string | null | undefined): void {
  if (getSysctl(netns, 'net/ipv4/ip_forward').trim() !== '1') setSysctl(netns, 'net/ipv4/ip_forward', '1');
}
