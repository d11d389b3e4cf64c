// What `knitctl network inspect` and `network ls` show, shaped like Docker's output so that
// scripts written for `docker network inspect` find the same keys (Name, Id, Driver, IPAM.Config,
// Containers, Options, Peers). knit adds the host of each container ("Host") and the interface.
import type { Network } from './spec';
import type { Endpoint } from './store';

export interface DockerInspect {
  Name: string;
  Id: string;
  Created: string;
  Scope: 'swarm' | 'local';
  Driver: string;
  EnableIPv6: boolean;
  IPAM: { Driver: 'knit-etcd-ipam'; Options: null; Config: Array<{ Subnet: string; Gateway: string; IPRange?: string; AuxiliaryAddresses?: Record<string, string> }> };
  Internal: boolean;
  Attachable: boolean;
  Containers: Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string; Host: string; Interface: string }>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  Peers: Array<{ Name: string; IP: string }>;
}

/** Docker's option keys for what knit stores typed. */
export function optionsOf(n: Network): Record<string, string> {
  const o: Record<string, string> = {};
  if (n.options.vni !== undefined) o['com.docker.network.driver.overlay.vxlanid_list'] = String(n.options.vni);
  if (n.options.mtu) o['com.docker.network.driver.mtu'] = String(n.options.mtu);
  if (n.options.parent) o.parent = n.options.parent;
  if (n.options.macvlanMode) o.macvlan_mode = n.options.macvlanMode;
  if (!n.options.isolation) o.isolation = 'false';
  if (n.options.dns !== undefined) o.dns = String(n.options.dns);
  if (n.options.encrypted) o.encrypted = 'true';
  if (n.options.cipher) o.cipher = n.options.cipher;
  return o;
}

export function inspect(n: Network, endpoints: Endpoint[]): DockerInspect {
  const containers: DockerInspect['Containers'] = {};
  const peers = new Map<string, string>();
  for (const e of endpoints.filter((x) => x.network === n.name).sort((a, b) => a.containerId.localeCompare(b.containerId) || a.ifName.localeCompare(b.ifName))) {
    const key = containers[e.containerId] ? `${e.containerId}/${e.ifName}` : e.containerId;
    containers[key] = {
      Name: e.name ?? e.containerId.slice(0, 12), EndpointID: `${e.node}/${e.containerId}/${e.ifName}`, MacAddress: e.mac,
      IPv4Address: e.ips.find((a) => !a.includes(':')) ?? '', IPv6Address: e.ips.find((a) => a.includes(':')) ?? '', Host: e.node, Interface: e.ifName,
    };
    peers.set(e.node, e.nodeIp);
  }
  return {
    Name: n.name, Id: n.id, Created: n.created, Scope: n.driver === 'overlay' ? 'swarm' : 'local', Driver: n.driver, EnableIPv6: n.ipv6,
    IPAM: {
      Driver: 'knit-etcd-ipam', Options: null,
      Config: n.subnets.map((s) => ({
        Subnet: s.subnet, Gateway: s.gateway, ...(s.ipRange ? { IPRange: s.ipRange } : {}),
        ...(Object.keys(s.auxAddresses).length ? { AuxiliaryAddresses: s.auxAddresses } : {}),
      })),
    },
    Internal: n.internal, Attachable: true, Containers: containers, Options: optionsOf(n), Labels: n.labels,
    Peers: [...peers].sort().map(([Name, IP]) => ({ Name, IP })),
  };
}

/** `network ls` rows: NETWORK ID (12), NAME, DRIVER, SCOPE, plus knit's SUBNETS and CONTAINERS. */
export function lsRows(nets: Network[], endpoints: Endpoint[]): string[][] {
  const count = new Map<string, number>();
  for (const e of endpoints) count.set(e.network, (count.get(e.network) ?? 0) + 1);
  return [['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE', 'SUBNETS', 'CONTAINERS'],
    ...[...nets].sort((a, b) => a.name.localeCompare(b.name)).map((n) => [
      n.id.slice(0, 12), n.name, n.driver, n.driver === 'overlay' ? 'swarm' : 'local', n.subnets.map((s) => s.subnet).join(','), String(count.get(n.name) ?? 0),
    ])];
}
