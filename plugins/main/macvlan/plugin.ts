// knit-macvlan: the container's interface is a macvlan child of a parent link (the Docker macvlan
// driver's job): the master itself, or with `vlan: N` the 802.1Q sub-interface <master>.<N>, made
// when missing and removed after the last knit child went if knit made it. The macvlan is created
// inside the pod netns, already named, with its MAC and MTU (never moved).
//
// ADD holds the parent's lock across "record the attachment, ensure the parent (VLAN, promisc),
// create the macvlan"; DEL and GC hold it across "drop the record; if no child remains, undo what
// knit did to the parent" (./parent.ts, pkg/iface/parent-refs.ts).
import type { Context, Plugin } from '../../../pkg/cni/skel';
import { CniError, Code, show } from '../../../pkg/cni/errors';
import { withIpamCleanup } from '../../../pkg/cni/exec';
import type { Result } from '../../../pkg/cni/types';
import { runIpam } from '../../ipam/registry';
import { Netlink, NetlinkError, linkAdd, linkDelIfPresent, linkFind, linkGet, linkSet, withNetlink, type Link } from '../../../pkg/netlink';
import { interfaceDrift } from '../../../pkg/iface/check';
import { configureInterface } from '../../../pkg/iface/configure';
import { Rollback, failpoint } from '../../../pkg/iface/rollback';
import { openPodNetns, openPodNetnsIfPresent } from '../../../pkg/iface/netns';
import { hostLinkName } from '../../../pkg/iface/attachment';
import { DEFAULT_RUN_DIR, ParentRefs, type AttachmentRecord } from '../../../pkg/iface/parent-refs';
import { parseMacvlanConf, type MacvlanConf } from './config';
import {
  checkMtu, deleteChild, ensurePromisc, ensureVlan, findMaster, kernelRefused, locate, parentName,
  refsFor, settle, stateBase, vlanSupport, whereText,
} from './parent';

const attachmentOf = (ctx: Context, cfg?: MacvlanConf): AttachmentRecord => ({
  network: ctx.conf.name, containerId: ctx.containerId, ifName: ctx.ifName, netns: ctx.netns,
  parentNetns: cfg?.linkInContainer ? ctx.netns : null,
});

export const macvlan: Plugin = {
  name: 'knit-macvlan',
  about: 'knit-macvlan: CNI plugin (macvlan on a parent link or its 802.1Q sub-interface); see https://www.cni.dev/docs/spec/',

  async add(ctx) {
    const cfg = parseMacvlanConf(ctx.conf, ctx.args, ctx.env);
    const rec = attachmentOf(ctx, cfg);
    const pod = openPodNetns(ctx.netns);
    // The master's namespace: the host's, or the container's with linkInContainer.
    const nl = cfg.linkInContainer ? pod : Netlink.open(null);
    const where = { nl, path: cfg.linkInContainer ? ctx.netns : null };
    const undo = new Rollback();
    try {
      const master = findMaster(nl, cfg, whereText(cfg, ctx.netns));
      checkMtu(cfg, master, 'master');
      const refs = refsFor(cfg, where.path, parentName(master.name, cfg));
      const parent = refs.locked(() => {
        removeStale(pod, refs, rec, ctx);
        if (linkFind(pod, ctx.ifName)) {
          throw new CniError(Code.Conflict, `CNI_IFNAME ${show(ctx.ifName)} already exists in ${ctx.netns}: pick another interface name or DEL the old attachment`);
        }
        refs.add(rec);
        undo.add(`attachment on ${refs.parent}`, () => {
          for (const name of [ctx.ifName, temporaryName(ctx)]) {
            const l = linkFind(pod, name);
            if (l?.kind === 'macvlan') linkDelIfPresent(pod, l.index);
          }
          settle(refs, [rec], where, ctx.log);
        });
        failpoint(ctx.env, 'record');
        const p = cfg.vlan ? ensureVlan(nl, master, cfg.vlan, refs) : master;
        if (cfg.promisc) ensurePromisc(nl, p, refs);
        failpoint(ctx.env, 'parent');
        checkMtu(cfg, p, cfg.vlan ? 'sub-interface' : 'master');
        createMacvlan(nl, pod, ctx, cfg, p);
        return p;
      });
      failpoint(ctx.env, 'macvlan');
      const podLink = linkGet(pod, ctx.ifName);
      const build = async (ipam?: Result): Promise<Result> => {
        const result: Result = {
          cniVersion: ctx.conf.cniVersion,
          interfaces: [{ name: ctx.ifName, mac: podLink.mac ?? '', sandbox: ctx.netns, ...(cfg.mtu ? { mtu: cfg.mtu } : {}) }],
          ips: [], routes: [],
        };
        if (!ipam) {
          linkSet(pod, podLink.index, { up: true }); // layer 2 only
        } else {
          if (!ipam.ips?.length) throw new CniError(Code.DelegateFailed, `IPAM ${show(ctx.conf.ipam?.type)} returned no addresses`);
          result.ips = ipam.ips.map((ip) => ({ ...ip, interface: 0 }));
          result.routes = (ipam.routes ?? []).map((r) => ({ ...r }));
          configureInterface(pod, { netns: ctx.netns, ifName: ctx.ifName, index: podLink.index, env: ctx.env }, result.ips, result.routes);
          if (ipam.dns) result.dns = ipam.dns;
        }
        if (ctx.conf.dns && Object.keys(ctx.conf.dns).length) result.dns = ctx.conf.dns;
        failpoint(ctx.env, 'result');
        ctx.log.debug('attached', { parent: parent.name, mode: cfg.mode });
        return result;
      };
      return await (cfg.hasIpam ? withIpamCleanup(ctx, runIpam, build) : build());
    } catch (e) {
      await undo.run(ctx.log);
      if (e instanceof NetlinkError) kernelRefused(e, `ADD of ${ctx.containerId}/${ctx.ifName} failed`);
      throw e;
    } finally {
      if (nl !== pod) nl.close();
      pod.close();
    }
  },

  async del(ctx) {
    let cfg: MacvlanConf | undefined;
    try { cfg = parseMacvlanConf(ctx.conf, ctx.args, ctx.env); } catch (e) { ctx.log.warn(`DEL with an invalid config: ${(e as Error).message}; cleaning up what can be found`); }
    const id = attachmentOf(ctx);
    if (ctx.netns) deletePodMacvlan(ctx);
    // Every parent holding this attachment's record (found by name, so a master renamed or a
    // default route changed since ADD does not matter).
    for (const refs of ParentRefs.scan(stateBase(cfg?.runDir ?? runDirOf(ctx)))) {
      const rec = refs.get(id);
      if (!rec) { refs.removeStray(id); continue; }
      const where = locate(refs, rec);
      if (where === 'foreign') continue;
      try {
        if (!ctx.netns && where) deleteChild(rec, linkFind(where.nl, refs.parent));
        settle(refs, [id], where, ctx.log);
      } finally {
        where?.nl.close();
      }
    }
    if (cfg?.hasIpam ?? !!ctx.conf.ipam?.type) await runIpam('DEL', ctx, ctx.conf);
  },

  async check(ctx) {
    const cfg = parseMacvlanConf(ctx.conf, ctx.args, ctx.env);
    const prev = ctx.conf.prevResult;
    if (!prev) throw new CniError(Code.InvalidConfig, 'prevResult is required for CHECK: the result of the ADD being checked');
    const drift: string[] = [];
    const pod = openPodNetns(ctx.netns);
    const nl = cfg.linkInContainer ? pod : Netlink.open(null);
    try {
      if (cfg.hasIpam) await runIpam('CHECK', ctx, ctx.conf);
      let parent: Link | null = null;
      let master: Link | null = null;
      try { master = findMaster(nl, cfg, whereText(cfg, ctx.netns)); } catch (e) { drift.push((e as Error).message); }
      if (master) {
        const name = parentName(master.name, cfg);
        parent = linkFind(nl, name);
        if (!parent) drift.push(`sub-interface ${name} (vlan ${cfg.vlan} on ${master.name}) is missing`);
        else if (cfg.vlan && (parent.kind !== 'vlan' || parent.vlan?.id !== cfg.vlan)) drift.push(`${name} is not vlan ${cfg.vlan} on ${master.name}`);
        else if (!parent.up) drift.push(`${name} is down: the pod's traffic cannot pass`);
        else if (cfg.promisc && !parent.promisc) drift.push(`${name} is not in promiscuous mode, config says promisc: true`);
        if (parent && (cfg.vlan || cfg.promisc) && !refsFor(cfg, cfg.linkInContainer ? ctx.netns : null, name).has(attachmentOf(ctx))) {
          drift.push(`knit's record of this attachment on ${name} is missing (another attachment's DEL could remove what it needs)`);
        }
      }
      const want = prev.interfaces?.find((i) => i.name === ctx.ifName && i.sandbox);
      if (want?.sandbox && want.sandbox !== ctx.netns) drift.push(`prevResult sandbox ${want.sandbox} is not CNI_NETNS ${ctx.netns}`);
      const l = linkFind(pod, ctx.ifName);
      if (!l) drift.push(`container interface ${ctx.ifName} is missing from ${ctx.netns}`);
      else {
        if (l.kind !== 'macvlan') drift.push(`container interface ${ctx.ifName} is a ${l.kind ?? 'device'}, not a macvlan`);
        else if (l.macvlan?.mode !== cfg.mode) drift.push(`container interface ${ctx.ifName} is in macvlan mode ${l.macvlan?.mode}, config says ${cfg.mode}`);
        if (parent && l.kind === 'macvlan' && l.link !== parent.index) drift.push(`container interface ${ctx.ifName} is not a child of ${parent.name}`);
        drift.push(...interfaceDrift(pod, l, ctx.ifName, prev, cfg.mtu));
      }
    } finally {
      if (nl !== pod) nl.close();
      pod.close();
    }
    if (drift.length) throw new CniError(Code.Conflict, `CHECK found drift: ${drift.join('; ')}`);
  },

  async status(ctx) {
    const cfg = parseMacvlanConf(ctx.conf, ctx.args, ctx.env);
    // With linkInContainer the master is in a container STATUS does not name: nothing to look at.
    if (!cfg.linkInContainer) {
      withNetlink(null, (nl) => {
        let master: Link;
        try { master = findMaster(nl, cfg, 'the host network namespace'); } catch (e) { throw new CniError(Code.PluginNotAvailable, (e as Error).message); }
        if (!cfg.vlan) return;
        const name = parentName(master.name, cfg);
        const sub = linkFind(nl, name);
        if (sub && sub.kind !== 'vlan') throw new CniError(Code.PluginNotAvailable, `${name} exists but is a ${sub.kind ?? 'physical device'}, not the 802.1Q sub-interface for vlan ${cfg.vlan}`);
        if (sub) return; // the sub-interface is there: nothing more is needed from the kernel
        const v = vlanSupport();
        if (!v.available) {
          throw new CniError(Code.PluginNotAvailable, `vlan ${cfg.vlan} on ${master.name} needs the kernel's 802.1Q support (module 8021q), which this kernel lacks: ${v.how}`);
        }
      });
    }
    if (cfg.hasIpam) await runIpam('STATUS', ctx, ctx.conf);
  },

  async gc(ctx) {
    const cfg = parseMacvlanConf(ctx.conf, ctx.args, ctx.env);
    const valid = new Set(ctx.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
    // Only what knit recorded can be found: the macvlans live in pod namespaces. Those still
    // there are deleted; the parents' reference counts settle as DEL would.
    for (const refs of ParentRefs.scan(stateBase(cfg.runDir))) {
      const stale = refs.list().filter((r) => r.network === cfg.network && !valid.has(`${r.containerId}\0${r.ifName}`));
      if (!stale.length) continue;
      const where = locate(refs, stale[0]!);
      if (where === 'foreign') continue;
      try {
        const parent = where ? linkFind(where.nl, refs.parent) : null;
        for (const r of stale) {
          ctx.log.info(`GC: removing ${r.containerId}/${r.ifName} from ${refs.parent}`);
          deleteChild(r, parent);
        }
        settle(refs, stale, where, ctx.log);
      } finally {
        where?.nl.close();
      }
    }
    if (cfg.hasIpam) await runIpam('GC', ctx, ctx.conf);
  },
};

// ---- steps -------------------------------------------------------------------------------

/**
 * The macvlan, born in the pod netns (never moved) with its mode, MAC and MTU, then named.
 * Kernels before 6.4 or so look a new link's name up in the requesting namespace even when
 * IFLA_NET_NS_FD puts the link elsewhere, so "eth0" collides with the host's own eth0: the link
 * is created under a name free in both namespaces and renamed inside the pod while still down.
 */
function createMacvlan(nl: Netlink, pod: Netlink, ctx: Context, cfg: MacvlanConf, parent: Link): void {
  const inPlace = cfg.linkInContainer; // created in the pod's own namespace: no collision possible
  const name = inPlace ? ctx.ifName : temporaryName(ctx);
  try {
    linkAdd(nl, {
      kind: 'macvlan', name, parent: parent.index, mode: cfg.mode,
      ...(inPlace ? {} : { netns: ctx.netns }),
      ...(cfg.mac ? { mac: cfg.mac } : {}), ...(cfg.mtu ? { mtu: cfg.mtu } : {}),
    });
  } catch (e) {
    kernelRefused(e, `cannot create macvlan ${ctx.ifName} (mode ${cfg.mode}) on ${parent.name} in ${ctx.netns}`);
  }
  if (inPlace) return;
  failpoint(ctx.env, 'rename');
  try {
    linkSet(pod, name, { name: ctx.ifName });
  } catch (e) {
    const l = linkFind(pod, name);
    if (l) linkDelIfPresent(pod, l.index);
    kernelRefused(e, `cannot name macvlan ${ctx.ifName} in ${ctx.netns}`);
  }
}

/**
 * "kmv" + 12 hex digits of the attachment (network, container, interface): free in both
 * namespaces for the instant it exists, and a process killed before the rename leaves a link
 * that DEL and the next ADD find by this name (an ifalias cannot be set in the creating message).
 */
function temporaryName(ctx: Context): string {
  return hostLinkName({ network: ctx.conf.name, containerId: ctx.containerId, ifName: ctx.ifName }, 'kmv');
}

/** A macvlan of this very attachment left by a crashed ADD (its record is still there): remove it. */
function removeStale(pod: Netlink, refs: ParentRefs, rec: AttachmentRecord, ctx: Context): void {
  const l = linkFind(pod, rec.ifName);
  if (l?.kind === 'macvlan' && refs.get(rec)?.netns === rec.netns) linkDelIfPresent(pod, l.index);
  // Killed between creating it and naming it: the temporary name is this attachment's alone.
  const t = linkFind(pod, temporaryName(ctx));
  if (t?.kind === 'macvlan') linkDelIfPresent(pod, t.index);
}

/** DEL: the container's macvlan (under its name or its temporary one), if the netns and it are still there. */
function deletePodMacvlan(ctx: Context): void {
  const pod = openPodNetnsIfPresent(ctx.netns);
  if (!pod) return;
  try {
    for (const name of [ctx.ifName, temporaryName(ctx)]) {
      const l = linkFind(pod, name);
      if (l?.kind === 'macvlan') linkDelIfPresent(pod, l.index);
    }
  } finally {
    pod.close();
  }
}

function runDirOf(ctx: Context): string {
  const r = ctx.conf.runDir;
  return typeof r === 'string' && r.startsWith('/') ? r : ctx.env.KNIT_RUN_DIR || DEFAULT_RUN_DIR;
}
