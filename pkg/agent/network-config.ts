// The cluster network config kept at <prefix>/config, e.g.
//   {"network":"10.216.0.0/16","subnetLen":24,"backend":{"type":"vxlan","vni":1,"port":4789}}
// Validated by hand (no schema library): every message names the key, the value and what is valid.
import { formatCIDR, networkOf, parseCIDR } from '../ip/ip';
import type { BackendConfig } from './backend/backend';
import { DEFAULT_VXLAN_PORT } from './backend/vxlan';

export interface NetworkConfig {
  network: string;
  subnetLen: number;
  backend: BackendConfig;
}

const bad = (key: string, v: unknown, valid: string): Error => new Error(`invalid network config: ${key} ${JSON.stringify(v)}: ${valid}`);
const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const int = (v: unknown, lo: number, hi: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;

export function parseNetworkConfig(input: string | unknown): NetworkConfig {
  let v: unknown = input;
  if (typeof input === 'string') {
    try { v = JSON.parse(input); } catch (e) { throw new Error(`invalid network config: not JSON: ${(e as Error).message}`); }
  }
  if (!isObj(v)) throw bad('(config)', v, 'an object {network, subnetLen, backend}');
  for (const k of Object.keys(v)) if (!['network', 'subnetLen', 'backend'].includes(k)) throw bad(k, v[k], 'unknown key (network, subnetLen, backend)');
  const net = typeof v.network === 'string' ? parseCIDR(v.network) : null;
  if (!net || net.ip.family !== 4) throw bad('network', v.network, 'an IPv4 CIDR such as "10.216.0.0/16"');
  if (formatCIDR(networkOf(net)) !== v.network) throw bad('network', v.network, `the network address, i.e. "${formatCIDR(networkOf(net))}"`);
  const subnetLen = v.subnetLen ?? 24;
  if (!int(subnetLen, net.prefix + 1, 30)) throw bad('subnetLen', subnetLen, `an integer from ${net.prefix + 1} (longer than the network's /${net.prefix}) to 30`);
  const b = v.backend ?? { type: 'vxlan' };
  if (!isObj(b)) throw bad('backend', b, 'an object {type: "vxlan"|"host-gw", ...}');
  const type = b.type ?? 'vxlan';
  let backend: BackendConfig;
  if (type === 'vxlan') {
    for (const k of Object.keys(b)) if (!['type', 'vni', 'port', 'mtu', 'directRouting'].includes(k)) throw bad(`backend.${k}`, b[k], 'unknown key for vxlan (vni, port, mtu, directRouting)');
    const vni = b.vni ?? 1;
    if (!int(vni, 0, 0xffffff)) throw bad('backend.vni', vni, 'an integer from 0 to 16777215 (default 1)');
    const port = b.port ?? DEFAULT_VXLAN_PORT;
    if (!int(port, 1, 65535)) throw bad('backend.port', port, `a UDP port 1-65535 (default ${DEFAULT_VXLAN_PORT})`);
    backend = { type, vni: vni as number, port: port as number };
    if (b.mtu !== undefined) {
      if (!int(b.mtu, 68, 65535)) throw bad('backend.mtu', b.mtu, 'an integer from 68 to 65535 (default: underlay MTU − 50)');
      backend.mtu = b.mtu as number;
    }
    if (b.directRouting !== undefined) {
      if (typeof b.directRouting !== 'boolean') throw bad('backend.directRouting', b.directRouting, 'true or false');
      backend.directRouting = b.directRouting;
    }
  } else if (type === 'host-gw') {
    for (const k of Object.keys(b)) if (k !== 'type') throw bad(`backend.${k}`, b[k], 'unknown key for host-gw (only type)');
    backend = { type };
  } else {
    throw bad('backend.type', type, '"vxlan" or "host-gw"');
  }
  return { network: v.network as string, subnetLen: subnetLen as number, backend };
}
