// Who holds a service's addresses in a network's IPAM (docs/services.md): the VIP and each node's
// load-balancer address are reserved like a container's address, under owners no runtime ever
// uses, so no container gets them and no GC of containers frees them. Shared by the etcd store
// (store.ts, under the pseudo node `knit-services`) and the mesh (pkg/mesh/services.ts, in the
// creating node's own blocks).
import type { Owner } from '../ipam/store';
import type { Endpoint } from '../network/store';

/** The IPAM node that holds every service VIP and node load-balancer address (etcd). */
export const SERVICES_NODE = 'knit-services';
/** The VIP's IPAM owner: per service and creation (two racing creates of one name never share, or free, one reservation). */
export const vipOwner = (service: string, id: string): Owner => ({ containerId: `vip-${service}.${id.slice(0, 12)}`, ifName: 'vip' });
export const lbOwner = (node: string): Owner => ({ containerId: `lb-${node}`, ifName: 'lb' });
/** A node's load-balancer endpoint record: containerId and ifName under <prefix>/endpoints/<net>/<node>/. */
export const LB_CONTAINER = (network: string): string => `lb-${network}`;
export const LB_IFNAME = 'lb';
export const isLbEndpoint = (e: Pick<Endpoint, 'containerId' | 'network'>): boolean => e.containerId === LB_CONTAINER(e.network);
/** Whether an IPAM owner is a service's VIP or a node's load-balancer address (never a container). */
export const isServiceOwner = (o: Owner): boolean =>
  (o.ifName === 'vip' && o.containerId.startsWith('vip-')) || (o.ifName === LB_IFNAME && o.containerId.startsWith('lb-'));
/** Who holds an address, for messages: a service, a node's load balancer, or a container. */
export function holderText(o: Owner, node: string): string {
  if (o.ifName === 'vip' && o.containerId.startsWith('vip-')) return `service ${o.containerId.replace(/^vip-(.*)\.[0-9a-f]+$/, '$1')}`;
  if (o.ifName === LB_IFNAME && o.containerId.startsWith('lb-')) return `the load balancer of node ${o.containerId.slice(3)}`;
  return `container ${o.containerId.slice(0, 12)} on node ${node}`;
}
