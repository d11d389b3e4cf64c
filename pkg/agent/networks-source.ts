// Where knitd's named-network agent (networks.ts) reads networks and endpoints and keeps this
// node's presence: etcd (networks-etcd.ts: prefixes watched, endpoints on the node's lease) or
// the mesh (networks-mesh.ts: the replicated state, endpoints in the node's own record). The
// agent's reconcile (conflists, devices, FDB and neighbours) is the same code on both.
import type { Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import type { NodeContext } from '../network/conflist';

/** Changes after a list, by the keys the list used; `flush` after each batch; `error`: list again. */
export interface SourceEvents {
  network(key: string, value: Network | undefined): void;
  endpoint(key: string, value: Endpoint | undefined): void;
  flush(): void;
  error(err: Error): void;
}

export interface NetworksSource {
  /** Prepares this node (etcd: its lease and the node file the plugins read), `nodeIp` its underlay address. */
  open(nodeIp: string): Promise<void>;
  /** Everything now, by key; then every change through `on` until the next list or close. */
  list(on: SourceEvents): Promise<{ networks: Map<string, Network>; endpoints: Map<string, Endpoint> }>;
  /** Every ttl/3: keeps this node's endpoints alive. */
  keepAlive(): Promise<void>;
  /** What this node's conflists carry (where the plugins record endpoints and take addresses). */
  conflistContext(): NodeContext;
  /** The node's lease, for status (etcd). */
  readonly lease?: string;
  close(): void;
}
