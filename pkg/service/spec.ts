// A service (swarm's endpoint mode `vip`): a name on one network given a virtual address that
// load-balances over the network's containers holding that name as an alias (or container name).
//
//   <prefix>/services/<network>/<name>   Service (JSON)
//
// The record is the contract between knitctl (writes it), knitd's resolver (the name answers the
// VIP) and knitd's load balancer (the VIP's nftables map over the backends' addresses).

export interface ServicePort {
  proto: 'tcp' | 'udp';
  port: number;
}

export interface Service {
  name: string;
  network: string;
  /** The virtual address(es), one per address family the network has, without prefix length. */
  vips: string[];
  /** Empty: every port of the VIP is balanced. */
  ports: ServicePort[];
  id: string;
  created: string;
}

export function servicesPrefix(prefix: string, network?: string): string {
  return `${prefix}/services/${network ? `${network}/` : ''}`;
}

export function serviceKey(prefix: string, network: string, name: string): string {
  return `${servicesPrefix(prefix, network)}${name}`;
}

/** A stored service, or null when the value is not one (another writer's junk is ignored, not fatal). */
export function decodeService(value: Buffer | string): Service | null {
  try {
    const s = JSON.parse(value.toString()) as Service;
    return s && typeof s.name === 'string' && typeof s.network === 'string' && Array.isArray(s.vips) && Array.isArray(s.ports) ? s : null;
  } catch {
    return null;
  }
}
