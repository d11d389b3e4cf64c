// knit-mesh-ipam: addresses of a named network on the mesh (docs/mesh.md), from knitd's per-node
// blocks (pkg/mesh/ipam.ts), asked through the local knitd's <runDir>/mesh.sock; the verbs are
// the shared IPAM adapter's (pkg/ipam/plugin.ts). Only in-process (knit-l2overlay, knit-bridge,
// knit-macvlan under a conflist knitd rendered on the mesh): there is no executable of its own.
// knitd unreachable or no quorum for a new block: code 11 (try again later).
import { CniError, Code } from '../../../pkg/cni/errors';
import type { NetConf } from '../../../pkg/cni/types';
import { formatIP, type IPAddr } from '../../../pkg/ip/ip';
import type { GcReport, IpamBackend, RangeStatus } from '../../../pkg/ipam/backend';
import { parseIpamConfig, type IpamConfig } from '../../../pkg/ipam/config';
import { ipamPlugin } from '../../../pkg/ipam/plugin';
import type { Allocation } from '../../../pkg/ipam/range';
import type { Owner } from '../../../pkg/ipam/store';
import { controlCall } from '../../../pkg/mesh/control';
import { invalidConfig } from '../../../pkg/cni/errors';

interface MeshIpamConfig extends IpamConfig { runDir: string }

function parse(conf: NetConf): MeshIpamConfig {
  const cfg = parseIpamConfig(conf);
  const runDir = (conf.ipam as Record<string, unknown>).runDir;
  if (typeof runDir !== 'string' || !runDir.startsWith('/')) throw invalidConfig('ipam.runDir', runDir, 'knitd\'s --run-dir, an absolute path (knitd renders it)');
  return { ...cfg, runDir };
}

/** knitd's answer, or its error as a CniError (its own code, else 11: knitd not there or not ready). */
async function call<T>(cfg: MeshIpamConfig, req: Record<string, unknown>): Promise<T> {
  try {
    return await controlCall<T>(cfg.runDir, { ...req, network: cfg.network });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    throw new CniError(typeof code === 'number' ? code : Code.TryAgainLater, `network ${cfg.network}: ${(e as Error).message}`);
  }
}

class MeshBackend implements IpamBackend {
  constructor(private readonly cfg: MeshIpamConfig) {}
  allocate(owner: Owner, requests: IPAddr[] = []): Promise<Allocation[]> { return call(this.cfg, { op: 'ipam-add', owner, requests: requests.map(formatIP) }); }
  release(owner: Owner): Promise<string[]> { return call(this.cfg, { op: 'ipam-del', owner }); }
  check(owner: Owner): Promise<Allocation[]> { return call(this.cfg, { op: 'ipam-check', owner }); }
  async status(): Promise<RangeStatus[]> {
    await call(this.cfg, { op: 'ipam-ls' });
    return this.cfg.rangeSets.map((s) => ({ rangeSet: s.index, subnet: s.ranges.map((r) => r.subnet).join(','), size: '?', free: '?', note: 'per-node blocks on the mesh' }));
  }
  async exhaustedSets(): Promise<number[]> { return []; }
  async gc(valid: Owner[] | null): Promise<GcReport> {
    const released = valid ? await call<string[]>(this.cfg, { op: 'ipam-gc', valid }) : [];
    return { released: released.map((ip) => ({ ip, owner: { containerId: '?', ifName: '?' }, reason: 'not-valid' })), indexesRemoved: 0, indexesRepaired: 0, tempRemoved: 0 };
  }
}

export const meshIpam = ipamPlugin({
  name: 'knit-mesh-ipam',
  about: 'knit-mesh-ipam: CNI IPAM plugin, addresses of a named network on the knitd mesh (per-node blocks)',
  parseConfig: parse,
  configForDel: (conf: NetConf, err: unknown) => {
    const runDir = (conf.ipam as Record<string, unknown> | undefined)?.runDir;
    if (typeof conf.name !== 'string' || typeof runDir !== 'string') throw err;
    return { network: conf.name, type: 'knit-mesh-ipam', rangeSets: [], routes: [], dataDir: '', resolvConf: null, dns: null, raw: {}, runDir };
  },
  withBackend: (cfg, fn) => fn(new MeshBackend(cfg)),
});
