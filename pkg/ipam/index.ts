// knit's IPAM entry for main plugins (DESIGN.md decision 5): knit's own IPAM types run in-process,
// saving a second Node start (~30 ms); any other ipam.type is exec'd from CNI_PATH per the spec.
import { parseConf } from '../cni/conf';
import { execIpam, type DelegateCommand, type IpamRunner } from '../cni/exec';
import type { Context } from '../cni/skel';
import type { NetConf, Result } from '../cni/types';
import { hostLocal } from './host-local';

export { hostLocal };
export { Allocator } from './allocator';
export { parseIpamConfig } from './config';
export { FileStore } from './file-store';
export type { Store, Owner, Reservation, AttachmentRecord } from './store';

/** The types served in-process. knit-etcd-ipam is required only when a network uses it, so
 *  plugins on other IPAMs never load its etcd client. */
export const IN_PROCESS_TYPES: readonly string[] = ['knit-host-local', 'knit-etcd-ipam'];

type IpamVerbs = Pick<typeof hostLocal, 'add' | 'del' | 'check' | 'status' | 'gc'>;

function inProcess(type: unknown): IpamVerbs | null {
  if (type === 'knit-host-local') return hostLocal;
  if (type === 'knit-etcd-ipam') return (require('./etcd-ipam') as typeof import('./etcd-ipam')).etcdIpam;
  return null;
}

function confOf(ctx: Context, conf: NetConf | Buffer): NetConf {
  if (!Buffer.isBuffer(conf)) return conf;
  return conf === ctx.rawConf ? ctx.conf : parseConf(conf, ctx.command);
}

/** Runs the IPAM named by conf.ipam.type for `command`; ADD resolves to its result. */
export const runIpam: IpamRunner = async (command: DelegateCommand, ctx: Context, conf: NetConf | Buffer = ctx.conf): Promise<Result | undefined> => {
  const c = confOf(ctx, conf);
  const ipam = inProcess(c.ipam?.type);
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
