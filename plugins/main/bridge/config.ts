// knit-bridge's own keys: parsed and validated by hand (no schema library on the start-up path),
// every message naming the key, the value and what is valid.
import { requestedMac, type CniArgs } from '../../../pkg/cni/args';
import { bool, ifName, mtu } from '../../../pkg/cni/confkeys';
import { invalidConfig } from '../../../pkg/cni/errors';
import type { NetConf } from '../../../pkg/cni/types';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';

export interface BridgeConf {
  network: string;
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  /** Isolation from the node's other isolated knit networks (pkg/nat/isolation); default on. */
  isolation: boolean;
  hairpinMode: boolean;
  promiscMode: boolean;
  /** Unset: the kernel's default for new links (1500). */
  mtu?: number;
  /** The container interface's MAC, from mac / runtimeConfig.mac / args.cni.mac / CNI_ARGS MAC=. */
  mac?: string;
  /**
   * No explicit MAC: the container interface's MAC is derived from its first IPv4 address
   * (pkg/ip/mac.ts), as knitd's rendered conflists ask; an explicit `mac` always wins.
   */
  macFromAddress: boolean;
  /** False when ipam is absent or {} (a layer-2 only attachment, as in the reference). */
  hasIpam: boolean;
  /** Names answered by knitd on this host (docs/dns.md, "without a datastore"): a record per attachment under runDir. */
  resolver: boolean;
  runDir: string;
}

export const DEFAULT_BRIDGE = 'knit0';

export function parseBridgeConf(conf: NetConf, args: CniArgs): BridgeConf {
  const bridge = ifName('bridge', conf.bridge ?? DEFAULT_BRIDGE, "an interface name of 1-15 bytes without '/', ':' or whitespace (default knit0)");
  const isDefaultGateway = bool('isDefaultGateway', conf.isDefaultGateway);
  const out: BridgeConf = {
    network: conf.name,
    bridge,
    isDefaultGateway,
    // A default gateway must be a gateway (as in the reference).
    isGateway: bool('isGateway', conf.isGateway) || isDefaultGateway,
    forceAddress: bool('forceAddress', conf.forceAddress),
    ipMasq: bool('ipMasq', conf.ipMasq),
    isolation: bool('isolation', conf.isolation, true),
    hairpinMode: bool('hairpinMode', conf.hairpinMode),
    promiscMode: bool('promiscMode', conf.promiscMode),
    hasIpam: !!conf.ipam && Object.keys(conf.ipam).length > 0,
    resolver: bool('resolver', conf.resolver),
    macFromAddress: bool('macFromAddress', conf.macFromAddress),
    runDir: typeof conf.runDir === 'string' ? conf.runDir : DEFAULT_RUN_DIR,
  };
  if (conf.runDir !== undefined && (typeof conf.runDir !== 'string' || !conf.runDir.startsWith('/'))) throw invalidConfig('runDir', conf.runDir, `an absolute directory path (default ${DEFAULT_RUN_DIR}), knitd's --run-dir`);
  if (out.resolver && (!out.isGateway || !out.hasIpam)) throw invalidConfig('resolver', true, 'only with isGateway and an ipam: knitd answers on the gateway address the containers get');
  if (out.hairpinMode && out.promiscMode) {
    throw invalidConfig('hairpinMode', true, 'false when promiscMode is true (a promiscuous bridge already reflects frames)');
  }
  const m = mtu('mtu', conf.mtu);
  if (m !== undefined) out.mtu = m;
  const mac = requestedMac(conf, args);
  if (mac) out.mac = mac;
  if (out.macFromAddress && !out.hasIpam) throw invalidConfig('macFromAddress', true, 'false when there is no ipam (the MAC is derived from the address the IPAM gives)');
  if (out.ipMasq && !out.hasIpam) throw invalidConfig('ipMasq', true, 'false when there is no ipam (nothing to masquerade)');
  return out;
}
