// The overlay datapath, one implementation per file (as flannel's pkg/backend): the agent says
// who this node is (ensureLocal) and who its peers are (sync); a backend makes the kernel match,
// listing what knit owns and adding what is missing, replacing what differs and deleting what is
// extra. Backends are synchronous (netlink round trips take microseconds) and work on the
// namespace they were opened for (null: the current one), which is how the lab tests run them.
import type { Logger } from '../../cni/log';
import { getSysctl, setSysctl } from '../../netlink';

export interface LocalNode {
  nodeName: string;
  /** This node's subnet lease, e.g. "10.216.3.0/24". */
  subnet: string;
  /** The underlay link (its name), e.g. "eth0". */
  underlayIface: string;
  /** This node's address on the underlay, without prefix. */
  underlayAddr: string;
  /** Overlay MTU; default: underlay MTU − 50 (vxlan) or the underlay MTU (host-gw). */
  mtu?: number;
  /** The cluster network: knit-tagged routes outside it on the underlay link are not ours. */
  network?: string;
}

export interface Peer {
  nodeName: string;
  subnet: string;
  underlayAddr: string;
  /** The peer's VTEP MAC (vxlan). */
  vtepMac?: string;
}

/** What ensureLocal made: what the node publishes and what pods get. */
export interface LocalState {
  /** The MTU pods on this node must use. */
  mtu: number;
  /** The VTEP's MAC (vxlan), published in the node's lease. */
  vtepMac?: string;
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
  readonly type: BackendConfig['type'];
  ensureLocal(local: LocalNode): LocalState;
  sync(peers: Peer[]): SyncReport;
  /** The device(s) and links a netlink event on which calls for a repair. */
  watched(): { devices: string[] };
  close(): void;
}

export interface VxlanConfig {
  type: 'vxlan';
  vni: number;
  /** UDP port; default 4789. */
  port?: number;
  mtu?: number;
  /** Peers on the same L2 subnet get a direct route via their underlay address. */
  directRouting?: boolean;
}

export interface HostGwConfig {
  type: 'host-gw';
}

export type BackendConfig = VxlanConfig | HostGwConfig;

export interface BackendOptions {
  /** Network namespace to program (a /run/netns path); default the current one. */
  netns?: string | null;
  log?: Logger;
  /** Where vxlan keeps its VTEP MAC (optional: the MAC is derived from the node name anyway). */
  stateDir?: string;
}

export function emptyReport(): SyncReport {
  return { added: 0, updated: 0, removed: 0, skipped: [], programmed: [] };
}

export function newBackend(cfg: BackendConfig, opts: BackendOptions = {}): Backend {
  switch (cfg.type) {
    case 'vxlan': return new (require('./vxlan') as typeof import('./vxlan')).VxlanBackend(cfg, opts);
    case 'host-gw': return new (require('./host-gw') as typeof import('./host-gw')).HostGwBackend(opts);
    default: throw new Error(`unknown backend type ${JSON.stringify((cfg as { type?: unknown }).type)}: vxlan or host-gw`);
  }
}

/**
 * Turns IPv4 forwarding on, writing only when it is off: in an unprivileged container (a
 * DaemonSet with NET_ADMIN only) /proc/sys is read-only, and forwarding is usually on already
 * (kubeadm's preflight requires it).
 */
export function ensureForwarding(netns: string | null | undefined): void {
  if (getSysctl(netns, 'net/ipv4/ip_forward').trim() !== '1') setSysctl(netns, 'net/ipv4/ip_forward', '1');
}
