// CHECK of a container interface against the ADD result (prevResult) and the config: what every
// main plugin verifies the same way, reported as a list of differences, never just "failed".
import { addrList, routeList, type Link, type Netlink } from '../netlink';
import { formatCIDR, formatIP, networkOf, parseCIDR, parseIP } from '../ip/ip';
import type { Result } from '../cni/types';

/** The drifts of `link` (the pod's interface `ifName`) from prevResult and the configured MTU. */
export function interfaceDrift(pod: Netlink, link: Link, ifName: string, prev: Result, mtu?: number): string[] {
  const drift: string[] = [];
  const want = prev.interfaces?.find((i) => i.name === ifName && i.sandbox);
  if (want?.mac && link.mac !== want.mac.toLowerCase()) drift.push(`container interface MAC is ${link.mac}, prevResult says ${want.mac}`);
  if (mtu && link.mtu !== mtu) drift.push(`container interface MTU is ${link.mtu}, config says ${mtu}`);
  if (!link.up) drift.push(`container interface ${ifName} is down`);
  const have = new Set(addrList(pod, { link: link.index }).map((a) => a.cidr));
  for (const ip of prev.ips ?? []) {
    const n = parseCIDR(ip.address);
    if (n && !have.has(formatCIDR(n))) drift.push(`address ${ip.address} is missing from ${ifName}`);
  }
  const routes = routeList(pod, { table: 254 });
  for (const r of prev.routes ?? []) {
    const dst = parseCIDR(r.dst);
    if (!dst) continue;
    const dstText = formatCIDR(networkOf(dst));
    const gw = r.gw ? parseIP(r.gw) : null;
    if (!routes.some((x) => x.dst === dstText && x.dev === link.index && (!gw || x.gw === formatIP(gw)))) {
      drift.push(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing from the container`);
    }
  }
  return drift;
}
