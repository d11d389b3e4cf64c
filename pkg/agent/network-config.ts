// The cluster network config kept at <prefix>/config, e.g.
//   {"network":"10.216.0.0/16","subnetLen":24,"backend":{"type":"vxlan","vni":1,"port":4789}}
// Validated by hand (no schema library): every message names the key, the value and what is valid.
import { formatCIDR, networkOf, parseCIDR } from '../ip/ip';
import { configError as bad, get as backendOf, has as isBackend, names as backendNames, type BackendConfig } from './backend';

/** The backend when the config names none. */
export const DEFAULT_BACKEND = 'vxlan';

export interface NetworkConfig {
  network: string;
  subnetLen: number;
  backend: BackendConfig;
}

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
  const b = v.backend ?? { type: DEFAULT_BACKEND };
  if (!isObj(b)) throw bad('backend', b, `an object {type: ${backendNames().map((n) => JSON.stringify(n)).join('|')}, ...}`);
  const type = b.type ?? DEFAULT_BACKEND;
  if (!isBackend(type)) throw bad('backend.type', type, backendNames().map((n) => JSON.stringify(n)).join(' or '));
  // Each backend validates its own keys (registry.ts).
  const backend: BackendConfig = backendOf(type).parseConfig({ ...b, type });
  return { network: v.network as string, subnetLen: subnetLen as number, backend };
}
