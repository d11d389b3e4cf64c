// Where knitd's named-network agent (networks.ts) reads networks and endpoints and keeps this
// node's presence: etcd (networks-etcd.ts: prefixes watched, endpoints on the node's lease) or
// the mesh (networks-mesh.ts: the replicated state, endpoints in the node's own record). The
// agent's reconcile (conflists, devices, FDB and neighbours) is the same code on both.
// Each node also publishes a record for its peers of encrypted networks (docs/encryption.md):
// etcd keeps it at <prefix>/netnodes/<node> on the node's lease, the mesh in the node's own record.
import type { Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import type { NodeContext } from '../network/conflist';

/**
 * A node's record for its peers of encrypted networks: its X25519 public key and the highest key
 * generation whose inbound SAs it has installed; both absent while it cannot decrypt.
 */
export interface PeerRecord {
  node: string;
  /** Its underlay address when the source knows one (absent: its endpoints' nodeIp). */
  nodeIp?: string;
  encKey?: string;
  encGen?: number;
}

/** What this node publishes: null while it does not encrypt (or cannot). */
export interface OwnEncryption { key: string; gen: number }

/** Changes after a list, by the keys the list used; `flush` after each batch; `error`: list again. */
export interface SourceEvents {
  network(key: string, value: Network | undefined): void;
  endpoint(key: string, value: Endpoint | undefined): void;
  /** A peer's record changed or went (by node name). */
  node(name: string, value: PeerRecord | undefined): void;
  flush(): void;
  error(err: Error): void;
}

export interface Listed { networks: Map<string, Network>; endpoints: Map<string, Endpoint>; nodes: Map<string, PeerRecord> }

export interface NetworksSource {
  /** Prepares this node (etcd: its lease and the node file the plugins read), `nodeIp` its underlay address. */
  open(nodeIp: string): Promise<void>;
  /** Everything now, by key; then every change through `on` until the next list or close. */
  list(on: SourceEvents): Promise<Listed>;
  /** Publishes this node's record (only a change is written; etcd: again on a new lease). */
  publishNode(enc: OwnEncryption | null): Promise<void>;
  /** Every ttl/3: keeps this node's endpoints alive. */
  keepAlive(): Promise<void>;
  /** What this node's conflists carry (where the plugins record endpoints and take addresses). */
  conflistContext(): NodeContext;
  /** The node's lease, for status (etcd). */
  readonly lease?: string;
  close(): void;
}
