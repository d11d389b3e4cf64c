// knit-macvlan's own keys: parsed and validated by hand (no schema library on the start-up path),
// every message naming the key, the value and what is valid. Checks that need the kernel (the
// master exists, mtu ≤ the master's) happen in the plugin.
import type { Env } from '../../../pkg/cni/env';
import { requestedMac, type CniArgs } from '../../../pkg/cni/args';
import { bool, ifName, mtu } from '../../../pkg/cni/confkeys';
import { invalidConfig } from '../../../pkg/cni/errors';
import type { NetConf } from '../../../pkg/cni/types';
import type { MacvlanMode } from '../../../pkg/netlink';
import { DEFAULT_RUN_DIR } from '../../../pkg/iface/parent-refs';

export interface MacvlanConf {
  network: string;
  /** Unset: the link of the default route (in the container's netns with linkInContainer). */
  master?: string;
  mode: MacvlanMode;
  /** Unset: the parent's MTU (the kernel's default for a macvlan). */
  mtu?: number;
  /** The container interface's MAC, from mac / runtimeConfig.mac / args.cni.mac / CNI_ARGS MAC=. */
  mac?: string;
  /** Put the parent in promiscuous mode (restored after the last knit child went, if knit set it). */
  promisc: boolean;
  /** The master lives in the container's netns (SR-IOV VFs and the like moved there beforehand). */
  linkInContainer: boolean;
  /** 802.1Q VLAN id: the parent becomes <master>.<vlan>, created when missing. */
  vlan?: number;
  /** False when ipam is absent or {}: a layer-2 only attachment, as in the reference. */
  hasIpam: boolean;
  /** Where the reference counts of shared parents live: runDir/macvlan/... */
  runDir: string;
}

export const MODES: readonly MacvlanMode[] = ['bridge', 'private', 'vepa', 'passthru'];

export function parseMacvlanConf(conf: NetConf, args: CniArgs, env: Env): MacvlanConf {
  const out: MacvlanConf = {
    network: conf.name,
    mode: 'bridge',
    promisc: bool('promisc', conf.promisc),
    linkInContainer: bool('linkInContainer', conf.linkInContainer),
    hasIpam: !!conf.ipam && Object.keys(conf.ipam).length > 0,
    runDir: DEFAULT_RUN_DIR,
  };
  const master: unknown = conf.master;
  if (master !== undefined && master !== null && master !== '') {
    out.master = ifName('master', master, "an interface name of 1-15 bytes without '/', ':' or whitespace (absent: the link of the default route)");
  }
  const mode: unknown = conf.mode;
  if (mode !== undefined && mode !== null && mode !== '') {
    if (typeof mode !== 'string' || !MODES.includes(mode as MacvlanMode)) throw invalidConfig('mode', mode, `one of ${MODES.join(', ')} (default bridge)`);
    out.mode = mode as MacvlanMode;
  }
  const m = mtu('mtu', conf.mtu, "an integer from 68 to the master's MTU (0 or absent: the master's)");
  if (m !== undefined) out.mtu = m;
  const vlan: unknown = conf.vlan;
  if (vlan !== undefined && vlan !== null) {
    if (typeof vlan !== 'number' || !Number.isInteger(vlan) || vlan < 1 || vlan > 4094) {
      throw invalidConfig('vlan', vlan, 'an 802.1Q VLAN id, an integer from 1 to 4094 (absent: no VLAN)');
    }
    out.vlan = vlan;
    if (out.master && Buffer.byteLength(`${out.master}.${vlan}`) > 15) {
      throw invalidConfig('master', out.master, `a name short enough that the sub-interface "${out.master}.${vlan}" fits in 15 bytes`);
    }
  }
  const mac = requestedMac(conf, args);
  if (mac) out.mac = mac;
  const runDir: unknown = conf.runDir ?? (env.KNIT_RUN_DIR || undefined);
  if (runDir !== undefined) {
    if (typeof runDir !== 'string' || !runDir.startsWith('/')) {
      throw invalidConfig(conf.runDir !== undefined ? 'runDir' : 'KNIT_RUN_DIR', runDir, `an absolute directory path (default ${DEFAULT_RUN_DIR})`);
    }
    out.runDir = runDir;
  }
  return out;
}
