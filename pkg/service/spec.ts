// A service (swarm's endpoint mode `vip`): a name on one network given a virtual address that
// load-balances over the network's containers holding that name as an alias (or container name).
//
//   <prefix>/services/<network>/<name>   Service (JSON)
//
// The record is the contract between knitctl (writes it), knitd's resolver (the name answers the
// VIP) and knitd's load balancer (the VIP's nftables map over the backends' addresses).
import { contains, formatIP, lastOf, parseCIDR, parseIP, type IPAddr } from '../ip/ip';
import { SpecError, type Network } from '../network/spec';

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

// ---- validation (pure: every rule unit-tested without etcd) ---------------------------------


/** What `knitctl service create` was given, flags as strings. */
export interface ServiceRequest {
  name: string;
  network: string;
  /** --vip: absent, the store allocates one from the network's IPAM. */
  vip?: string;
  /** --port PROTO:PORT, any number of times. */
  ports?: string[];
}

const bad = (flag: string, value: unknown, valid: string): SpecError =>
  new SpecError(`invalid ${flag} ${JSON.stringify(value)}: ${valid}`);

/** Docker's service name rule (a DNS label: the name resolves to the VIP), at most 63 characters. */
export const SERVICE_NAME_RE = /^[a-zA-Z0-9](?:[-_]*[a-zA-Z0-9]+)*$/;

export function checkServiceName(name: string): void {
  if (!SERVICE_NAME_RE.test(name) || name.length > 63) {
    throw bad('service name', name, 'letters and digits, "-" or "_" between them, at most 63 characters (it becomes a DNS name)');
  }
}

/** PROTO:PORT (tcp:80, udp:53) or PORT (tcp); sorted, duplicates refused. */
export function parsePorts(items: readonly string[]): ServicePort[] {
  const out: ServicePort[] = [];
  for (const it of items) {
    const m = /^(?:(tcp|udp):)?(\d{1,5})$/i.exec(it);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) throw bad('--port', it, 'PROTO:PORT with PROTO tcp or udp and PORT from 1 to 65535, e.g. tcp:80 (PORT alone is tcp)');
    const proto = (m[1]?.toLowerCase() ?? 'tcp') as ServicePort['proto'];
    if (out.some((p) => p.proto === proto && p.port === port)) throw bad('--port', it, `each PROTO:PORT once (${proto}:${port} is given twice)`);
    out.push({ proto, port });
  }
  return out.sort((a, b) => a.proto.localeCompare(b.proto) || a.port - b.port);
}

/** Only overlay networks: their VXLAN segment is what carries a VIP's connections to every node. */
export function checkServiceNetwork(net: Network | null, name: string): Network {
  if (!net) throw bad('--network', name, 'the name of an existing network (knitctl network ls lists them)');
  if (net.driver !== 'overlay') throw bad('--network', name, `an overlay network (services balance across nodes over its VXLAN segment); ${name} is a ${net.driver} network`);
  return net;
}

/**
 * A --vip given by the admin: an IPv4 host address of one of the network's subnets, not its
 * network or broadcast address, gateway or an aux address (those are the network's own), and
 * not the VIP of another service. Whether a container or node already holds it is for the IPAM.
 */
export function checkVip(vip: string, net: Network, services: readonly Service[]): IPAddr {
  const ip = parseIP(vip);
  if (!ip) throw bad('--vip', vip, 'an IPv4 address such as 10.0.0.200');
  if (ip.family !== 4) throw bad('--vip', vip, 'an IPv4 address: knit balances IPv4 VIPs only (docs/services.md)');
  const text = formatIP(ip);
  const subnets = net.subnets.filter((s) => parseCIDR(s.subnet)!.ip.family === 4);
  const s = subnets.find((x) => contains(parseCIDR(x.subnet)!, ip));
  if (!s) throw bad('--vip', vip, `an address inside the subnets of network ${net.name}: ${subnets.map((x) => x.subnet).join(', ')}`);
  const n = parseCIDR(s.subnet)!;
  if (text === formatIP(n.ip) || (n.prefix < 31 && text === formatIP(lastOf(n)))) throw bad('--vip', vip, `a host address of ${s.subnet}, not its network or broadcast address`);
  if (text === s.gateway) throw bad('--vip', vip, `an address other than the gateway ${s.gateway} of ${s.subnet}`);
  const aux = Object.entries(s.auxAddresses).find(([, v]) => v === text);
  if (aux) throw bad('--vip', vip, `an address other than the aux address ${aux[0]}=${aux[1]} of network ${net.name}`);
  const other = services.find((x) => x.vips.includes(text));
  if (other) throw bad('--vip', vip, `an address no other service has (service ${other.name} has it)`);
  return ip;
}

/** The services' identifier in nft and etcd listings: readable, unique per network and name. */
/** The services named `name` among `list` (those of one network, or all); SpecError when there is none. */
export function servicesNamed(list: readonly Service[], name: string, network?: string): Service[] {
  const found = list.filter((s) => s.name === name);
  if (!found.length) throw new SpecError(`no service named ${name}${network ? ` on network ${network}` : ''} (knitctl service ls lists them)`);
  return found;
}

export const serviceLabel = (s: Pick<Service, 'network' | 'name'>): string => `${s.network}/${s.name}`;
