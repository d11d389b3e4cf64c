// Where knitd's service load balancer (services.ts) reads the services and keeps this node's
// load-balancer address: etcd (services-etcd.ts: a watch of <prefix>/services/, addresses from
// knit-etcd-ipam under the pseudo node knit-services, the LB endpoint on the node's lease) or the
// mesh (services-mesh.ts: the replicated service records, the LB address from this node's own
// blocks, the LB endpoint in this node's record). The reconcile and the datapath are the same code.
import type { Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import type { Service } from '../service/spec';

export interface ServicesSource {
  /** Lists the services (again) and follows them, calling `changed` after each change; `failed` when following broke (listed again later). */
  start(changed: () => void, failed: (e: Error) => void): Promise<void>;
  /** The services as last seen. */
  services(): Iterable<Service>;
  /** Whether this node's LB endpoint needs the node's lease (etcd: it is put on it). */
  readonly needsLease: boolean;
  /** This node's load-balancer address on the network, reserved (the same one again when it already is). */
  reserveLb(net: Network): Promise<string>;
  /** Frees it (the network has no services left; `net` undefined: the network is gone). */
  releaseLb(network: string, net: Network | undefined): Promise<void>;
  putEndpoint(e: Endpoint, lease: string | undefined): Promise<void>;
  deleteEndpoint(e: Endpoint): Promise<void>;
  close(): void;
}
