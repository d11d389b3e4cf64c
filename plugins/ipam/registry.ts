// knit's IPAM plugins by type name, and the IPAM entry for main plugins (docs/design.md, in-process
// IPAM): knit's own IPAM types run in-process, saving a second Node start (~30 ms); any other
// ipam.type is exec'd from CNI_PATH per the spec. Each plugin's module is required only when a
// network uses it, so plugins on other IPAMs never load knit-etcd-ipam's etcd client.
import { parseConf } from '../../pkg/cni/conf';
import { execIpam, type DelegateCommand, type IpamRunner } from '../../pkg/cni/exec';
import type { Context, Plugin } from '../../pkg/cni/skel';
import type { NetConf, Result } from '../../pkg/cni/types';

/** The table: type name → loader of the plugin (a require, so bundles load it on first use). */
export const IPAM_PLUGINS: ReadonlyMap<string, () => Plugin> = new Map<string, () => Plugin>([
  ['knit-host-local', () => (require('./host-local/plugin') as typeof import('./host-local/plugin')).hostLocal],
  ['knit-etcd-ipam', () => (require('./etcd/plugin') as typeof import('./etcd/plugin')).etcdIpam],
  // On the mesh: asks the local knitd (in-process only, no executable).
  ['knit-mesh-ipam', () => (require('./mesh/plugin') as typeof import('./mesh/plugin')).meshIpam],
]);

/** The types served in-process. */
export const IN_PROCESS_TYPES: readonly string[] = [...IPAM_PLUGINS.keys()];

/** knit's IPAM plugin of this type, loaded now; null for any other type. */
export function ipamPluginOf(type: unknown): Plugin | null {
  return (typeof type === 'string' && IPAM_PLUGINS.get(type)?.()) || null;
}

function confOf(ctx: Context, conf: NetConf | Buffer): NetConf {
  if (!Buffer.isBuffer(conf)) return conf;
  return conf === ctx.rawConf ? ctx.conf : parseConf(conf, ctx.command);
}

/** Runs the IPAM named by conf.ipam.type for `command`; ADD resolves to its result. */
export const runIpam: IpamRunner = async (command: DelegateCommand, ctx: Context, conf: NetConf | Buffer = ctx.conf): Promise<Result | undefined> => {
  const c = confOf(ctx, conf);
  const ipam = ipamPluginOf(c.ipam?.type);
  if (!ipam) return execIpam(command, ctx, conf);
  const ictx = { ...ctx, conf: c };
  switch (command) {
    case 'ADD': return ipam.add(ictx);
    case 'DEL': await ipam.del(ictx); return undefined;
    case 'CHECK': await ipam.check(ictx); return undefined;
    case 'STATUS': await ipam.status(ictx); return undefined;
    case 'GC': await ipam.gc(ictx); return undefined;
  }
};
