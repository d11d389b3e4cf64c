// The overlay datapath's interface, one implementation per file (as flannel's pkg/backend): the
// agent says who this node is (ensureLocal) and who its peers are (sync); a backend makes the
// kernel match, listing what knit owns and adding what is missing, replacing what differs and
// deleting what is extra. Backends are synchronous (netlink round trips take microseconds) and
// work on the namespace they were opened for (null: the current one), which is how the lab tests
// run them. Each backend registers itself by name (registry.ts); index.ts imports them all.
// This file imports no backend: it is what the agent, the registry and the backends share.
import type { Logger } from '../../cni/log';

/**
 * What a backend publishes in its node's lease for the peers' backends (vxlan: the VTEP MAC;
 * an encrypted backend: a public key). Opaque to the agent and the datastores, which carry it
 * as is. Keys are camelCase words ([a-z][a-zA-Z0-9]*), values strings.
 */
export type BackendData = Record<string, string>;

export interface LocalNode {
  nodeName: string;
  /** This node's subnet lease, e.g. "10.216.3.0/24". */
  subnet: string;
  /** The underlay link (its name), e.g. "eth0". */
  underlayIface: string;
  /** This node's address on the underlay, without prefix. */
  underlayAddr: string;
  /** Overlay MTU; default: the backend's (its config's, else the underlay MTU less its overhead). */
  mtu?: number;
  /** The cluster network: knit-tagged routes outside it on the underlay link are not ours. */
  network?: string;
}

export interface Peer {
  nodeName: string;
  subnet: string;
  underlayAddr: string;
  /** What the peer's backend published (its leaseData). */
  backendData?: BackendData;
}

/** An encrypting backend's state, for status.json and knitctl status. */
export interface EncryptionStatus {
  /** e.g. "esp rfc4106(gcm(aes)) 128". */
  cipher: string;
  generation: number;
  /** Peers with an outbound SA and the generation it uses. */
  peers: Array<{ nodeName: string; txGeneration: number }>;
  /** Peers traffic to which is blocked, with why. */
  blocked: Array<{ nodeName: string; reason: string }>;
  /** Inbound SAs kept for a peer that may still use them. */
  retiring: number;
}

/** What ensureLocal made: what pods get. */
export interface LocalState {
  /** The MTU pods on this node must use. */
  mtu: number;
  /** The datapath device (vxlan) or the underlay link (host-gw). */
  device: string;
}

export interface SyncReport {
  added: number;
  updated: number;
  removed: number;
  /** Peers that cannot be programmed, with why (e.g. host-gw peer off this L2). */
  skipped: Array<{ nodeName: string; reason: string }>;
  /** Peers programmed after this sync, by node name. */
  programmed: string[];
}

export interface Backend {
  /** The name it is registered under (the network config's backend.type). */
  readonly type: string;
  /**
   * What this node publishes in its lease for the peers' backends; known before the subnet is
   * (the agent claims the subnet with it, then calls ensureLocal).
   */
  leaseData(nodeName: string): BackendData;
  ensureLocal(local: LocalNode): LocalState;
  sync(peers: Peer[]): SyncReport;
  /**
   * Throws a CniError (code 101, the missing kernel features named) when this node cannot run
   * the backend as configured (an encrypted backend on a kernel without ESP); the agent calls it
   * before claiming a subnet, and refuses rather than fall back to something weaker.
   */
  preflight?(): void;
  /** Whether this backend, as configured, encrypts (then the agent follows the key generation). */
  readonly encrypted?: boolean;
  /** Encrypting backends: moves to key generation `gen` (rotation); the next sync acts on it. */
  setKeyGeneration?(gen: number): void;
  /** Encrypting backends: what STATUS shows (never a secret). */
  encryption?(): EncryptionStatus | undefined;
  /** The device(s) and links a netlink event on which calls for a repair. */
  watched(): { devices: string[] };
  close(): void;
}

/** The network config's `backend` object, validated by its backend's parseConfig. */
export interface BackendConfig {
  type: string;
  [key: string]: unknown;
}

export interface BackendOptions {
  /** Network namespace to program (a /run/netns path); default the current one. */
  netns?: string | null;
  log?: Logger;
  /** Where a backend may keep state (vxlan: its X25519 key when encrypted; its MAC is derived from the node name). */
  stateDir?: string;
  /** Encrypted backends: how long an inbound SA no longer wanted is kept (default 60 s; tests shorten it). */
  retireGraceMs?: number;
}

export function emptyReport(): SyncReport {
  return { added: 0, updated: 0, removed: 0, skipped: [], programmed: [] };
}

/** A network config error: names the key, the value and what is valid. */
export function configError(key: string, v: unknown, valid: string): Error {
  return new Error(`invalid network config: ${key} ${JSON.stringify(v)}: ${valid}`);
}
