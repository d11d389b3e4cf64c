// knit-overlay's config: `{"type":"knit-overlay","runDir":"/run/knit"}` plus the usual CNI keys.
// Everything else comes from the node's lease (knitd's <runDir>/lease.json): the subnet, the MTU
// and the bridge. The plugin runs as knit-bridge with a config synthesized from both.
import { CniError, Code, invalidConfig } from '../../../pkg/cni/errors';
import type { Context } from '../../../pkg/cni/skel';
import type { IPAMConf, NetConf } from '../../../pkg/cni/types';
import { DEFAULT_OVERLAY_BRIDGE, DEFAULT_RUN_DIR, leaseFilePath, readLeaseFile, readRefusal, type NodeLeaseFile } from '../../../pkg/agent/lease-file';

export function runDirOf(conf: NetConf): string {
  const v = conf.runDir;
  if (v === undefined || v === null) return DEFAULT_RUN_DIR;
  if (typeof v !== 'string' || !v.startsWith('/')) throw invalidConfig('runDir', v, `an absolute directory path (default ${DEFAULT_RUN_DIR})`);
  return v;
}

/** The node's lease; code 11 (try again later) when knitd has not written one yet, knitd's refusal (e.g. 101) when it refuses. */
export function requireLease(conf: NetConf): NodeLeaseFile {
  const runDir = runDirOf(conf);
  let lease: NodeLeaseFile | null;
  try {
    lease = readLeaseFile(runDir);
  } catch (e) {
    throw new CniError(Code.TryAgainLater, `knitd is not ready: ${(e as Error).message}`);
  }
  if (!lease) {
    // knitd refuses this node (e.g. encryption without ESP in the kernel): say why, with its code.
    const refused = readRefusal(runDir);
    if (refused) throw new CniError(refused.code, refused.msg);
    throw new CniError(Code.TryAgainLater, `knitd is not ready: no subnet lease at ${leaseFilePath(runDir)} (is knitd running on this node with --run-dir ${runDir}?)`);
  }
  return lease;
}

/**
 * The IPAM section: in-process knit-host-local over the lease's subnet by default. An ipam key
 * without a type (or of type knit-host-local) and without ranges gets the lease's subnet filled
 * in (so `"ipam": {"type": "knit-host-local", "dataDir": ...}` tunes host-local); any other ipam
 * is used as given.
 */
function ipamOf(conf: NetConf, lease: NodeLeaseFile | null): IPAMConf | undefined {
  const given = conf.ipam && typeof conf.ipam === 'object' ? (conf.ipam as Record<string, unknown>) : {};
  const type = given.type ?? 'knit-host-local';
  if (type !== 'knit-host-local') return conf.ipam;
  if (given.ranges !== undefined || given.subnet !== undefined) return { ...given, type } as IPAMConf;
  return { ...given, type, ...(lease ? { ranges: [[{ subnet: lease.subnet }]] } : {}) } as IPAMConf;
}

/** The knit-bridge config this attachment runs with. */
export function bridgeConfOf(conf: NetConf, lease: NodeLeaseFile | null): Record<string, unknown> {
  const ipam = ipamOf(conf, lease);
  return {
    bridge: lease?.bridge ?? DEFAULT_OVERLAY_BRIDGE,
    isGateway: true,
    isDefaultGateway: true,
    // The lease is the authority on the bridge's gateway: a new subnet replaces the old one.
    forceAddress: true,
    // knitd masquerades the whole node subnet once; no per-network rule here.
    ipMasq: false,
    ...(lease ? { mtu: lease.mtu } : {}),
    ...(ipam ? { ipam } : {}),
  };
}

/** ctx with conf and rawConf replaced by the synthesized knit-bridge config. */
export function bridgeContext(ctx: Context, lease: NodeLeaseFile | null): Context {
  const over = bridgeConfOf(ctx.conf, lease);
  const conf = { ...ctx.conf, ...over } as NetConf;
  if (!over.mtu) delete conf.mtu;
  let raw: Record<string, unknown>;
  try { raw = JSON.parse(ctx.rawConf.toString('utf8')) as Record<string, unknown>; } catch { raw = { ...ctx.conf }; }
  const rawConf = Buffer.from(JSON.stringify({ ...raw, ...over }));
  return { ...ctx, conf, rawConf };
}
