// knit-bridge's own keys: parsed and validated by hand (no schema library on the start-up path),
// every message naming the key, the value and what is valid.
import { ifNameProblem } from '../../../pkg/cni/env';
import { requestedMac, type CniArgs } from '../../../pkg/cni/args';
import { invalidConfig } from '../../../pkg/cni/errors';
import type { NetConf } from '../../../pkg/cni/types';

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
  /** False when ipam is absent or {} (a layer-2 only attachment, as in the reference). */
  hasIpam: boolean;
}

export const DEFAULT_BRIDGE = 'knit0';

function bool(conf: NetConf, key: string, dflt = false): boolean {
  const v = conf[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw invalidConfig(key, v, 'true or false');
  return v;
}

export function parseBridgeConf(conf: NetConf, args: CniArgs): BridgeConf {
  const bridge = conf.bridge ?? DEFAULT_BRIDGE;
  if (typeof bridge !== 'string' || ifNameProblem(bridge)) {
    throw invalidConfig('bridge', bridge, "an interface name of 1-15 bytes without '/', ':' or whitespace (default knit0)");
  }
  const isDefaultGateway = bool(conf, 'isDefaultGateway');
  const out: BridgeConf = {
    network: conf.name,
    bridge,
    isDefaultGateway,
    // A default gateway must be a gateway (as in the reference).
    isGateway: bool(conf, 'isGateway') || isDefaultGateway,
    forceAddress: bool(conf, 'forceAddress'),
    ipMasq: bool(conf, 'ipMasq'),
    isolation: bool(conf, 'isolation', true),
    hairpinMode: bool(conf, 'hairpinMode'),
    promiscMode: bool(conf, 'promiscMode'),
    hasIpam: !!conf.ipam && Object.keys(conf.ipam).length > 0,
  };
  if (out.hairpinMode && out.promiscMode) {
    throw invalidConfig('hairpinMode', true, 'false when promiscMode is true (a promiscuous bridge already reflects frames)');
  }
  const mtu: unknown = conf.mtu;
  if (mtu !== undefined && mtu !== null && mtu !== 0) {
    if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw invalidConfig('mtu', mtu, 'an integer from 68 to 65535 (0 or absent: the kernel default)');
    out.mtu = mtu;
  }
  const mac = requestedMac(conf, args);
  if (mac) out.mac = mac;
  if (out.ipMasq && !out.hasIpam) throw invalidConfig('ipMasq', true, 'false when there is no ipam (nothing to masquerade)');
  return out;
}
