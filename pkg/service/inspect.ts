// What `knitctl service inspect` and `service ls` show. Keys follow `docker service inspect`'s
// Endpoint part (Spec.Mode, VirtualIPs, Ports) so scripts find them; knit adds the backends on
// every node with their addresses and each node's load-balancer address.
import type { Endpoint } from '../network/store';
import type { Service } from './spec';
import { isLbEndpoint } from './owners';

export interface ServiceInspect {
  Name: string;
  ID: string;
  CreatedAt: string;
  Network: string;
  Endpoint: {
    Spec: { Mode: 'vip' };
    VirtualIPs: Array<{ Network: string; Addr: string }>;
    Ports: Array<{ Protocol: string; TargetPort: number }>;
  };
  /** The containers the VIP balances over (name or alias = the service's name), on every node. */
  Backends: Array<{ Name: string; ContainerID: string; Host: string; NodeIP: string; Addresses: string[]; Aliases: string[] }>;
  /** Each node's source address for the VIP's connections (docs/services.md). */
  LoadBalancers: Array<{ Host: string; Address: string }>;
}

const isBackend = (s: Service, e: Endpoint): boolean => e.network === s.network && !isLbEndpoint(e) && (e.name === s.name || (e.aliases ?? []).includes(s.name));

export function inspectService(s: Service, endpoints: readonly Endpoint[]): ServiceInspect {
  const eps = endpoints.filter((e) => e.network === s.network).sort((a, b) => a.node.localeCompare(b.node) || a.containerId.localeCompare(b.containerId));
  return {
    Name: s.name, ID: s.id, CreatedAt: s.created, Network: s.network,
    Endpoint: { Spec: { Mode: 'vip' }, VirtualIPs: s.vips.map((v) => ({ Network: s.network, Addr: v })), Ports: s.ports.map((p) => ({ Protocol: p.proto, TargetPort: p.port })) },
    Backends: eps.filter((e) => isBackend(s, e)).map((e) => ({
      Name: e.name ?? e.containerId.slice(0, 12), ContainerID: e.containerId, Host: e.node, NodeIP: e.nodeIp, Addresses: e.ips, Aliases: e.aliases ?? [],
    })),
    LoadBalancers: eps.filter(isLbEndpoint).map((e) => ({ Host: e.node, Address: e.ips[0] ?? '' })),
  };
}

/** `service ls` rows: ID (12), NAME, NETWORK, MODE, VIP, PORTS, BACKENDS. */
export function serviceRows(services: readonly Service[], endpoints: readonly Endpoint[]): string[][] {
  return [['ID', 'NAME', 'NETWORK', 'MODE', 'VIP', 'PORTS', 'BACKENDS'], ...services.map((s) => [
    s.id.slice(0, 12), s.name, s.network, 'vip', s.vips.join(','), s.ports.length ? s.ports.map((p) => `${p.port}/${p.proto}`).join(',') : '*',
    String(endpoints.filter((e) => isBackend(s, e)).length),
  ])];
}
