// The macvlan's parent: the master (named, or the link of the default route), the 802.1Q
// sub-interface <master>.<vlan> that knit creates when missing, promiscuous mode, and the
// reference count (pkg/iface/parent-refs) that decides when knit undoes what it did to them.
import * as fs from 'node:fs';
import { release as kernelRelease } from 'node:os';
import { CniError, Code, invalidConfig, show } from '../../../pkg/cni/errors';
import { NetlinkError, Netlink, isNetlinkError, isNotNetns, linkAdd, linkDelIfPresent, linkFind, linkGet, linkSet, routeList, type Link } from '../../../pkg/netlink';
import { nsKeyOf, ParentRefs, type AttachmentRecord } from '../../../pkg/iface/parent-refs';
import type { Logger } from '../../../pkg/cni/log';
import type { MacvlanConf } from './config';

/** A netlink refusal as knit's code 100, with errno and the kernel's extack in details. */
export function kernelRefused(e: unknown, what: string): never {
  if (e instanceof NetlinkError) throw new CniError(e.cniCode, `${what}: ${e.message}`, e.cniDetails);
  throw e;
}


/** The namespace holding the master, for messages. */
export const whereText = (cfg: MacvlanConf, netns: string): string =>
  cfg.linkInContainer ? `the container's network namespace ${netns}` : 'the host network namespace';

/** The master link: as configured, or the one the default route leaves by. */
export function findMaster(nl: Netlink, cfg: MacvlanConf, where: string): Link {
  if (cfg.master) {
    const l = linkFind(nl, cfg.master);
    if (!l) throw invalidConfig('master', cfg.master, `no such link in ${where}; name an existing link (ip link) or omit master to use the link of the default route`);
    return l;
  }
  const routes = routeList(nl, { table: 254 })
    .filter((r) => (r.dst === '0.0.0.0/0' || r.dst === '::/0') && r.dev !== undefined)
    .sort((a, b) => a.family - b.family);
  if (!routes.length) {
    throw new CniError(Code.InvalidConfig, `no master given and ${where} has no default route to take it from: set "master" to the parent link, e.g. "eth0"`);
  }
  return linkGet(nl, routes[0]!.dev!);
}

/** The parent's name: the master, or its 802.1Q sub-interface. */
export function parentName(master: string, cfg: MacvlanConf): string {
  if (!cfg.vlan) return master;
  const name = `${master}.${cfg.vlan}`;
  if (name.length > 15) throw invalidConfig('vlan', cfg.vlan, `a VLAN whose sub-interface name "${name}" fits in 15 bytes (master ${master} is too long for it)`);
  return name;
}

/** mtu must not exceed the parent's: a macvlan cannot send larger frames than its lower link. */
export function checkMtu(cfg: MacvlanConf, link: Link, role: string): void {
  if (cfg.mtu && cfg.mtu > link.mtu) {
    throw invalidConfig('mtu', cfg.mtu, `at most ${link.mtu}, the MTU of ${role} ${link.name} (0 or absent: the same as ${link.name})`);
  }
}

export const stateBase = (runDir: string): string => `${runDir.replace(/\/+$/, '')}/macvlan`;

/** The reference count of a parent that lives in netns (null: ours). */
export function refsFor(cfg: MacvlanConf, netns: string | null, parent: string): ParentRefs {
  return new ParentRefs(stateBase(cfg.runDir), nsKeyOf(netns), parent);
}

/**
 * <master>.<vlan>, created (up) when missing and marked as knit's. An existing link of that name
 * must be that VLAN on that master. Runs under the parent's lock.
 */
export function ensureVlan(nl: Netlink, master: Link, vlan: number, refs: ParentRefs): Link {
  const name = refs.parent;
  const have = linkFind(nl, name);
  if (have) {
    if (have.kind !== 'vlan') {
      throw new CniError(Code.Conflict, `${name} exists but is a ${have.kind ?? 'physical device'}, not the 802.1Q sub-interface for vlan ${vlan} on ${master.name}: rename or remove it, or change master/vlan`);
    }
    if (have.vlan?.id !== vlan || have.link !== master.index) {
      throw new CniError(Code.Conflict, `${name} exists but is vlan ${have.vlan?.id ?? '?'} on ifindex ${have.link ?? '?'}, not vlan ${vlan} on ${master.name} (ifindex ${master.index}): remove it or change master/vlan`);
    }
    const mark = refs.created();
    if (mark && mark.ifindex === null) refs.markCreated(have.index); // made by a knit ADD that crashed right after
    else if (mark && mark.ifindex !== have.index) refs.clearCreated(); // knit's one went; this one is someone else's
    if (!have.up) linkSet(nl, have.index, { up: true });
    return linkGet(nl, have.index);
  }
  refs.markCreated(null); // intent first: a crash after the kernel made it still leaves it marked
  try {
    linkAdd(nl, { kind: 'vlan', name, parent: master.index, vlanId: vlan, up: true });
  } catch (e) {
    refs.clearCreated();
    if (isNetlinkError(e, 'EOPNOTSUPP')) {
      throw new CniError(
        Code.KernelFeatureMissing,
        `vlan ${vlan} on ${master.name} needs the kernel's 802.1Q support (module 8021q), which this kernel lacks: ${(e as Error).message}; load it ("modprobe 8021q") or remove "vlan" from the config`,
        `errno EOPNOTSUPP; ${vlanSupport().how}`,
      );
    }
    kernelRefused(e, `cannot create the 802.1Q sub-interface ${name} (vlan ${vlan} on ${master.name})`);
  }
  const made = linkGet(nl, name);
  refs.markCreated(made.index);
  return made;
}

/** Promiscuous mode on the parent, marked as knit's only when knit switched it on. Under the lock. */
export function ensurePromisc(nl: Netlink, parent: Link, refs: ParentRefs): void {
  if (parent.promisc) return; // someone's (or an earlier knit child's, then already marked)
  refs.markPromisc(); // intent first
  linkSet(nl, parent.index, { promisc: true });
}

/** Whether rec's macvlan still exists in its netns, as a child of parent. Unknown failures count as alive. */
function isLive(rec: AttachmentRecord, parent: Link | null, where: { nl: Netlink; path: string | null }): boolean {
  if (!parent) return false; // the parent went, and its children with it
  let pod: Netlink;
  const shared = where.path !== null && rec.netns === where.path;
  if (shared) pod = where.nl;
  else {
    try { pod = Netlink.open(rec.netns); } catch (e) {
      return !isNotNetns(e);
    }
  }
  try {
    const l = linkFind(pod, rec.ifName);
    return !!l && l.kind === 'macvlan' && l.link === parent.index;
  } finally {
    if (!shared) pod.close();
  }
}

/** Deletes rec's macvlan when it is still there and a child of parent (GC, DEL without CNI_NETNS). */
export function deleteChild(rec: AttachmentRecord, parent: Link | null): void {
  if (!parent || !rec.netns) return;
  let pod: Netlink;
  try { pod = Netlink.open(rec.netns); } catch { return; }
  try {
    const l = linkFind(pod, rec.ifName);
    if (l && l.kind === 'macvlan' && l.link === parent.index) linkDelIfPresent(pod, l.index);
  } finally {
    pod.close();
  }
}

/**
 * The namespace of rec's parent directory, opened: 'foreign' when it is a namespace other than
 * ours (another lab host on the same kernel: not ours to touch), null when it is gone (its links
 * went with it; only files are left to clean).
 */
export function locate(refs: ParentRefs, rec: AttachmentRecord): { nl: Netlink; path: string | null } | null | 'foreign' {
  const path = rec.parentNetns ?? null;
  let key: string;
  try { key = nsKeyOf(path); } catch { return path === null ? 'foreign' : null; }
  if (key !== refs.nsKey) return path === null ? 'foreign' : null; // a reused /proc/<pid>/ns/net path: the original is gone
  try { return { nl: Netlink.open(path), path }; } catch { return path === null ? 'foreign' : null; }
}

/**
 * Removes the records `ids` and, when no live knit child of the parent remains, undoes what knit
 * did: deletes the sub-interface it created, or switches off the promiscuous mode it set. Records
 * whose macvlan is gone (a pod deleted without DEL, a crashed ADD) are pruned on the way. Where
 * the parent's namespace is gone (where = null), only the files are cleaned.
 */
export function settle(refs: ParentRefs, ids: Array<{ network: string; containerId: string; ifName: string }>, where: { nl: Netlink; path: string | null } | null, log: Logger): void {
  refs.locked(() => {
    for (const id of ids) refs.remove(id);
    if (!where) {
      if (!refs.list().length) { refs.clearCreated(); refs.clearPromisc(); refs.removeIfUnused(); }
      return;
    }
    const parent = linkFind(where.nl, refs.parent);
    for (const rec of refs.list()) {
      if (isLive(rec, parent, where)) return; // others remain: nothing to undo
      log.info(`pruning the record of ${rec.containerId}/${rec.ifName} (network ${rec.network}): its macvlan is gone from ${show(rec.netns)}`);
      refs.remove(rec);
    }
    const mark = refs.created();
    if (mark && parent && parent.kind === 'vlan' && (mark.ifindex === null || mark.ifindex === parent.index)) {
      log.info(`deleting ${parent.name}: knit created it and its last knit child went`);
      linkDelIfPresent(where.nl, parent.index);
    } else if (refs.promiscSet() && parent?.promisc) {
      log.info(`switching promiscuous mode off on ${parent.name}: knit switched it on and its last knit child went`);
      linkSet(where.nl, parent.index, { promisc: false });
    }
    refs.clearCreated();
    refs.clearPromisc();
    refs.removeIfUnused();
  });
}

/**
 * STATUS probe for 802.1Q, without touching any link: loaded (/proc/net/vlan/config exists in this
 * namespace once 8021q is loaded, /sys/module/8021q), built in (modules.builtin) or loadable on the
 * first VLAN (modules.dep of the running kernel lists 8021q.ko; the kernel requests the module
 * itself when a vlan link is created).
 */
export function vlanSupport(): { available: boolean; how: string } {
  if (fs.existsSync('/proc/net/vlan/config')) return { available: true, how: '8021q is loaded (/proc/net/vlan/config exists)' };
  if (fs.existsSync('/sys/module/8021q')) return { available: true, how: '8021q is loaded (/sys/module/8021q exists)' };
  const dir = `/lib/modules/${kernelRelease()}`;
  const lists = (file: string): boolean => {
    try { return /(^|\/)8021q\.ko(\.[a-z]+)?(:|$)/m.test(fs.readFileSync(`${dir}/${file}`, 'utf8')); } catch { return false; }
  };
  if (lists('modules.builtin')) return { available: true, how: `8021q is built in (${dir}/modules.builtin)` };
  if (lists('modules.dep')) return { available: true, how: `8021q is loadable (${dir}/modules.dep lists it); the kernel loads it for the first VLAN` };
  return { available: false, how: `8021q is not loaded (no /proc/net/vlan/config, no /sys/module/8021q) and ${dir}/modules.dep does not list it` };
}
