// Configures a container interface from a CNI result: addresses (IPv6 without DAD, so pods
// start without a seconds-long wait), link up, routes with the family's gateway as default
// next hop — what the reference does in ipam.ConfigureIface, through one netlink handle.
import { addrAdd, linkSetUp, routeReplace, type Netlink } from '../netlink';
import { setSysctl } from '../netlink';
import { parseCIDR, type Family } from '../ip/ip';
import type { IPConfig, Route } from '../cni/types';
import type { Env } from '../cni/env';
import { failpoint } from './rollback';

export interface PodInterface {
  /** The pod's netns path (for sysctls). */
  netns: string;
  /** The request's environment (test failpoints). */
  env: Env;
  ifName: string;
  index: number;
}

/** The first gateway of each family among the IP configs. */
export function gatewaysByFamily(ips: IPConfig[]): Partial<Record<Family, string>> {
  const gw: Partial<Record<Family, string>> = {};
  for (const ip of ips) {
    const net = parseCIDR(ip.address);
    if (net && ip.gateway && !gw[net.ip.family]) gw[net.ip.family] = ip.gateway;
  }
  return gw;
}

export function configureInterface(pod: Netlink, iface: PodInterface, ips: IPConfig[], routes: Route[]): void {
  // Announce the new address at once (gratuitous ARP), as the reference does.
  if (ips.some((i) => !i.address.includes(':'))) {
    setSysctl(iface.netns, `net/ipv4/conf/${iface.ifName}/arp_notify`, '1');
  }
  failpoint(iface.env, 'address');
  for (const ip of ips) addrAdd(pod, { link: iface.index, address: ip.address, nodad: true });
  linkSetUp(pod, iface.index);
  failpoint(iface.env, 'route');
  const gw = gatewaysByFamily(ips);
  for (const r of routes) {
    const dst = parseCIDR(r.dst);
    if (!dst) continue;
    const via = r.gw ?? gw[dst.ip.family];
    routeReplace(pod, {
      dst: r.dst, dev: iface.index,
      ...(via ? { gw: via } : {}),
      ...(r.mtu ? { mtu: r.mtu } : {}),
      ...(r.advmss ? { advmss: r.advmss } : {}),
      ...(r.priority ? { priority: r.priority } : {}),
      ...(r.table ? { table: r.table } : {}),
    });
  }
}
