// A container's MAC derived from its IPv4 address (Docker's 02:42:<address>, OVN's 0a:58:<address>):
// an address handed to a new container comes with the MAC the old one had, so a neighbour cache
// anywhere on the segment that still maps the address is right at once (design.md, D28).
import { parseCIDR, parseIP } from './ip';

/**
 * knit's prefix: locally administered (0x02), unicast (bit 0 clear); 0x6b is "k". Not Docker's
 * 02:42 nor OVN's 0a:58, so `ip neigh` shows whose the MAC is; knit's bridges, VXLAN devices and
 * host veths have kernel-random MACs and the pod network's VTEPs hashed ones (vtepMacFor).
 */
export const DERIVED_MAC_PREFIX = '02:6b';

/**
 * The MAC of an interface whose first IPv4 address is in `addresses` (CIDR or bare addresses, in
 * the order the IPAM gave them); undefined when there is none (an IPv6-only attachment keeps the
 * kernel's random MAC: the low bits of IPv6 addresses are not unique across subnets).
 */
export function macFromAddress(addresses: readonly string[]): string | undefined {
  for (const a of addresses) {
    const ip = parseCIDR(a)?.ip ?? parseIP(a);
    if (ip?.family !== 4) continue;
    return [DERIVED_MAC_PREFIX, ...[...ip.bytes].map((b) => b.toString(16).padStart(2, '0'))].join(':');
  }
  return undefined;
}
