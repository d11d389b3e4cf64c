// knit-bridge: a veth pair per container, the host end on a Linux bridge (the docker0/cni0 job).
// The container end is created inside the pod netns, already named, with its MAC and MTU
// (never moved); the host end carries an ifalias naming the attachment, which is how DEL, GC
// and the NAT reference count find what ADD made.
import type { Context, Plugin } from '../../../pkg/cni/skel';
import { CniError, Code, show } from '../../../pkg/cni/errors';
import { withIpamCleanup } from '../../../pkg/cni/exec';
import type { Env } from '../../../pkg/cni/env';
import type { IPConfig, Result, Route } from '../../../pkg/cni/types';
import { runIpam } from '../../ipam/registry';
import {
  Netlink, addrAdd, addrDel, addrList, bridgePortSet, isExist, linkAdd, linkDelIfPresent, linkFind, linkGet,
  linkList, linkSet, setSysctl, withNetlink, type Link,
} from '../../../pkg/netlink';
import { addToIP, formatCIDR, formatIP, networkOf, overlaps, parseCIDR, parseIP, type Family, type IPNet } from '../../../pkg/ip/ip';
import { attachmentAlias, hostLinkName, parseAttachmentAlias, sameAttachment, type AttachmentId } from '../../../pkg/iface/attachment';
import { interfaceDrift } from '../../../pkg/iface/check';
import { macFromAddress } from '../../../pkg/ip/mac';
import { configureInterface, gatewaysByFamily } from '../../../pkg/iface/configure';
import { Rollback, failpoint } from '../../../pkg/iface/rollback';
import { openPodNetns, openPodNetnsIfPresent } from '../../../pkg/iface/netns';
import { ensureMasq, masqScript, masqState, removeMasq } from '../../../pkg/nat/masq';
import { applyNft } from '../../../pkg/nat/nft';
import { ensureIsolation, isolationCheck, isolationScript, isolationState, removeIsolation, ISOLATION_TABLE } from '../../../pkg/nat/isolation';
import { parseBridgeConf, type BridgeConf } from './config';
import { aliasesOf } from '../../../pkg/dns/names';
import { removeLocalRecord, removeStaleLocal, writeLocalRecord } from '../../../pkg/dns/local';
import { networkDomain } from '../../../pkg/network/spec';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';

const attachmentOf = (ctx: Context): AttachmentId => ({ network: ctx.conf.name, containerId: ctx.containerId, ifName: ctx.ifName });

/** What a plugin built on knit-bridge (knit-l2overlay) may do in the middle of its ADD. */
export interface BridgeAddHooks {
  /**
   * The interface is up with its addresses and routes; only the network's nftables transaction
   * (an `nft` process) is left. Work started here runs while nft does.
   */
  addressed?(result: Result): void;
}

export const bridge: Plugin & { addWith(ctx: Context, hooks: BridgeAddHooks): Promise<Result> } = {
  name: 'knit-bridge',
  about: 'knit-bridge: CNI plugin (veth pair on a Linux bridge); see https://www.cni.dev/docs/spec/',

  add(ctx) {
    return bridge.addWith(ctx, {});
  },

  async addWith(ctx, hooks) {
    const cfg = parseBridgeConf(ctx.conf, ctx.args);
    const aliases = cfg.resolver ? aliasesOf(ctx.conf, cfg.network) : [];
    const id = attachmentOf(ctx);
    const host = Netlink.open(null);
    const pod = openPodNetns(ctx.netns);
    const undo = new Rollback();
    try {
      // A crashed ADD of this very attachment (a killed plugin or knitd) left its host veth,
      // and with it the pod end: remove it first, so the runtime's retry is not a conflict.
      removeStale(host, id);
      if (linkFind(pod, ctx.ifName)) {
        throw new CniError(Code.Conflict, `CNI_IFNAME ${show(ctx.ifName)} already exists in ${ctx.netns}: pick another interface name or DEL the old attachment`);
      }
      const br = ensureBridge(host, cfg, undo);
      failpoint(ctx.env, 'bridge');
      const build = async (ipam?: Result): Promise<Result> => {
        const nft: string[] = [];
        // An explicit MAC wins; else, when asked, the one derived from the first IPv4 address.
        const mac = cfg.mac ?? (cfg.macFromAddress && ipam ? macFromAddress((ipam.ips ?? []).map((i) => i.address)) : undefined);
        const { hostVeth, podLink } = createVeth(host, pod, ctx, cfg, br, id, undo, mac);
        const result: Result = {
          cniVersion: ctx.conf.cniVersion,
          interfaces: [
            { name: br.name, mac: br.mac ?? '' },
            { name: hostVeth.name, mac: hostVeth.mac ?? '' },
            { name: ctx.ifName, mac: podLink.mac ?? '', sandbox: ctx.netns, ...(cfg.mtu ? { mtu: cfg.mtu } : {}) },
          ],
          ips: [], routes: [],
        };
        if (!ipam) {
          linkSet(pod, podLink.index, { up: true });
        } else {
          if (!ipam.ips?.length) throw new CniError(Code.DelegateFailed, `IPAM ${show(ctx.conf.ipam?.type)} returned no addresses`);
          const ips = withGateways(ipam.ips, cfg);
          const routes = withDefaultRoutes(ipam.routes ?? [], ips, cfg);
          configureInterface(pod, { netns: ctx.netns, ifName: ctx.ifName, index: podLink.index, env: ctx.env }, ips, routes);
          if (cfg.isGateway) setGateways(host, br, ips, cfg, id, undo, ctx.env);
          failpoint(ctx.env, 'forward');
          for (const f of familiesOf(ips)) setSysctl(null, f === 4 ? 'net/ipv4/ip_forward' : 'net/ipv6/conf/all/forwarding', '1');
          if (cfg.ipMasq) nft.push(masqScript(cfg.network, subnetsOf(ips)));
          result.ips = ips.map((ip) => ({ ...ip, interface: 2 }));
          result.routes = routes;
          if (ipam.dns) result.dns = ipam.dns;
        }
        if (cfg.isolation) nft.push(isolationScript(cfg.network, cfg.bridge));
        hooks.addressed?.(result);
        // The network's masquerade and isolation entries: one nft process, one atomic transaction.
        applyNft(nft, 'ipMasq or isolation');
        // Both undo steps before any later failure: the transaction installed both.
        if (cfg.ipMasq && ipam) undo.add('masquerade', () => { if (!othersRemain(host, id)) dropMasq(cfg.network, () => othersRemain(host, id)); });
        if (cfg.isolation) undo.add('isolation', () => { if (!othersRemain(host, id)) dropIsolation(cfg.network, () => othersRemain(host, id)); });
        if (cfg.ipMasq && ipam) failpoint(ctx.env, 'masq');
        if (cfg.isolation) failpoint(ctx.env, 'isolation');
        if (ctx.conf.dns && Object.keys(ctx.conf.dns).length) result.dns = ctx.conf.dns;
        if (cfg.resolver && ipam) {
          // Last: knitd answers the name once this file is there (docs/dns.md, "without a datastore").
          const withGw = (result.ips ?? []).filter((i) => i.gateway);
          writeLocalRecord(cfg.runDir, {
            network: cfg.network, bridge: cfg.bridge, containerId: ctx.containerId, ifName: ctx.ifName, ips: (result.ips ?? []).map((i) => i.address),
            subnets: withGw.map((i) => ({ subnet: formatCIDR(networkOf(parseCIDR(i.address)!)), gateway: i.gateway! })),
            ...(ctx.args.k8sPodName ? { name: ctx.args.k8sPodName } : {}), ...(aliases.length ? { aliases } : {}), created: new Date().toISOString(),
          });
          undo.add('dns record', () => removeLocalRecord(cfg.runDir, cfg.network, ctx.containerId, ctx.ifName));
          if (!result.dns) result.dns = { nameservers: withGw.map((i) => i.gateway!), search: [networkDomain(cfg.network)] };
        }
        // The bridge's MAC can change as the first port joins: report what it is now.
        result.interfaces![0]!.mac = linkGet(host, br.index).mac ?? '';
        failpoint(ctx.env, 'result');
        return result;
      };
      return await (cfg.hasIpam ? withIpamCleanup(ctx, runIpam, build) : build());
    } catch (e) {
      await undo.run(ctx.log);
      throw e;
    } finally {
      pod.close();
      host.close();
    }
  },

  async del(ctx) {
    let cfg: BridgeConf | undefined;
    try { cfg = parseBridgeConf(ctx.conf, ctx.args); } catch (e) { ctx.log.warn(`DEL with an invalid config: ${(e as Error).message}; cleaning up what can be found`); }
    const id = attachmentOf(ctx);
    // The name goes first (before the address can be reused); a no-op without a record.
    const runDir = cfg?.runDir ?? (typeof ctx.conf.runDir === 'string' && ctx.conf.runDir.startsWith('/') ? ctx.conf.runDir : DEFAULT_RUN_DIR);
    try { removeLocalRecord(runDir, ctx.conf.name, ctx.containerId, ctx.ifName); } catch (e) { ctx.log.warn(`name record of ${ctx.containerId}/${ctx.ifName}: ${(e as Error).message}`); }
    const host = Netlink.open(null);
    try {
      // Deleting the host end takes the container end with it, whether or not the netns still exists.
      const hostVeth = linkFind(host, hostLinkName(id));
      if (hostVeth && isOurs(hostVeth, id)) linkDelIfPresent(host, hostVeth.index);
      else if (ctx.netns) deletePodLink(ctx);
      if (cfg?.hasIpam ?? !!ctx.conf.ipam?.type) await runIpam('DEL', ctx, ctx.conf);
      if (!othersRemain(host, id)) {
        const others = (): boolean => othersRemain(host, id);
        if (cfg?.ipMasq) dropMasq(ctx.conf.name, others);
        // Whatever the config says now: entries of an earlier config with isolation on go too.
        dropIsolation(ctx.conf.name, others);
      }
    } finally {
      host.close();
    }
  },

  async check(ctx) {
    const cfg = parseBridgeConf(ctx.conf, ctx.args);
    const prev = ctx.conf.prevResult;
    if (!prev) throw new CniError(Code.InvalidConfig, 'prevResult is required for CHECK: the result of the ADD being checked');
    const id = attachmentOf(ctx);
    const drift: string[] = [];
    const host = Netlink.open(null);
    let pod: Netlink;
    try { pod = openPodNetns(ctx.netns); } catch (e) { host.close(); throw e; }
    try {
      if (cfg.hasIpam) await runIpam('CHECK', ctx, ctx.conf);
      const br = linkFind(host, cfg.bridge);
      if (!br || br.kind !== 'bridge') drift.push(`bridge ${cfg.bridge} ${br ? `is a ${br.kind ?? 'device'}, not a bridge` : 'is missing'}`);
      else if (br.promisc !== cfg.promiscMode) drift.push(`bridge ${cfg.bridge} promiscuous mode is ${br.promisc}, config says ${cfg.promiscMode}`);
      const hostVeth = linkFind(host, hostLinkName(id));
      if (!hostVeth || !isOurs(hostVeth, id)) drift.push(`host veth ${hostLinkName(id)} is missing`);
      else {
        if (br && hostVeth.master !== br.index) drift.push(`host veth ${hostVeth.name} is not on bridge ${cfg.bridge}`);
        if (hostVeth.bridgePort && hostVeth.bridgePort.hairpin !== cfg.hairpinMode) drift.push(`host veth ${hostVeth.name} hairpin is ${hostVeth.bridgePort.hairpin}, config says ${cfg.hairpinMode}`);
      }
      const want = prev.interfaces?.find((i) => i.name === ctx.ifName && i.sandbox);
      const podLink = linkFind(pod, ctx.ifName);
      if (!podLink) drift.push(`container interface ${ctx.ifName} is missing from ${ctx.netns}`);
      else {
        if (podLink.kind !== 'veth') drift.push(`container interface ${ctx.ifName} is a ${podLink.kind ?? 'device'}, not a veth`);
        if (want?.sandbox && want.sandbox !== ctx.netns) drift.push(`prevResult sandbox ${want.sandbox} is not CNI_NETNS ${ctx.netns}`);
        if (hostVeth && podLink.link !== hostVeth.index) drift.push(`container interface ${ctx.ifName} is not the peer of ${hostVeth.name}`);
        drift.push(...interfaceDrift(pod, podLink, ctx.ifName, prev, cfg.mtu));
      }
      if (cfg.ipMasq) {
        const st = masqState(cfg.network);
        for (const s of subnetsOf(prev.ips ?? []).map((n) => formatCIDR(networkOf(n)))) {
          if (!st.chain || !st.subnets.includes(s)) drift.push(`masquerade for ${s} (network ${cfg.network}) is missing from nftables table inet knit-nat`);
        }
      }
      const iso = isolationState(cfg.network);
      if (cfg.isolation && !iso.interfaces.includes(cfg.bridge)) drift.push(`isolation of network ${cfg.network} (bridge ${cfg.bridge}) is missing from nftables table inet ${ISOLATION_TABLE}`);
      else if (!cfg.isolation && iso.interfaces.length) drift.push(`network ${cfg.network} is isolated (table inet ${ISOLATION_TABLE}, set ${iso.interfaces.join(', ')}) but the config says isolation: false`);
      for (const m of iso.missing) drift.push(`isolation of network ${cfg.network}: ${m} of nftables table inet ${ISOLATION_TABLE}`);
    } finally {
      pod.close();
      host.close();
    }
    if (drift.length) throw new CniError(Code.Conflict, `CHECK found drift: ${drift.join('; ')}`);
  },

  async status(ctx) {
    const cfg = parseBridgeConf(ctx.conf, ctx.args);
    withNetlink(null, (host) => {
      const br = linkFind(host, cfg.bridge);
      if (br && br.kind !== 'bridge') {
        throw new CniError(Code.PluginNotAvailable, `${cfg.bridge} exists but is a ${br.kind ?? 'device'}, not a bridge: ADD cannot attach to it`);
      }
    });
    if (cfg.ipMasq) {
      try { masqState(cfg.network); } catch (e) { throw new CniError(Code.PluginNotAvailable, (e as Error).message); }
    }
    if (cfg.isolation) {
      // A dry run of ADD's isolation transaction: nft is there and the kernel takes the rules.
      try { isolationCheck(cfg.network, cfg.bridge); } catch (e) { throw new CniError(Code.PluginNotAvailable, `isolation cannot be installed: ${(e as Error).message}`); }
    }
    if (cfg.hasIpam) await runIpam('STATUS', ctx, ctx.conf);
  },

  async gc(ctx) {
    const cfg = parseBridgeConf(ctx.conf, ctx.args);
    const valid = new Set(ctx.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
    if (cfg.resolver) {
      const n = removeStaleLocal(cfg.runDir, cfg.network, valid);
      if (n) ctx.log.info(`GC: removed ${n} name record(s) of attachments that are gone`);
    }
    withNetlink(null, (host) => {
      for (const l of linkList(host)) {
        const a = parseAttachmentAlias(l.alias);
        if (a && a.network === cfg.network && !valid.has(`${a.containerId}\0${a.ifName}`)) {
          ctx.log.info(`GC: removing ${l.name} of ${a.containerId}/${a.ifName}`);
          linkDelIfPresent(host, l.index);
        }
      }
      const any = (): boolean => linkList(host).some((l) => parseAttachmentAlias(l.alias)?.network === cfg.network);
      if (!any()) {
        if (cfg.ipMasq) dropMasq(cfg.network, any);
        dropIsolation(cfg.network, any);
      }
    });
    if (cfg.hasIpam) await runIpam('GC', ctx, ctx.conf);
  },
};

// ---- steps of ADD ----------------------------------------------------------------------

/** The bridge, created (with a fixed MAC, so it does not follow its ports) when missing. */
function ensureBridge(host: Netlink, cfg: BridgeConf, undo: Rollback): Link {
  let br = linkFind(host, cfg.bridge);
  if (!br) {
    try {
      linkAdd(host, { kind: 'bridge', name: cfg.bridge, ...(cfg.mtu ? { mtu: cfg.mtu } : {}) });
      const made = linkGet(host, cfg.bridge);
      undo.add(`create bridge ${cfg.bridge}`, () => {
        // Only while nothing else joined it meanwhile.
        if (!linkList(host).some((l) => l.master === made.index)) linkDelIfPresent(host, made.index);
      });
      if (made.mac) linkSet(host, made.index, { mac: made.mac });
      // knit owns the routes of this bridge: no router advertisements.
      try { setSysctl(null, `net/ipv6/conf/${cfg.bridge}/accept_ra`, '0'); } catch { /* IPv6 disabled */ }
    } catch (e) {
      if (!isExist(e)) throw e; // a concurrent ADD made it first
    }
    br = linkGet(host, cfg.bridge);
  }
  if (br.kind !== 'bridge') {
    throw new CniError(Code.Conflict, `invalid bridge ${show(cfg.bridge)}: a ${br.kind ?? 'non-bridge'} device of that name exists; name a bridge or a free name`);
  }
  const change = { ...(br.up ? {} : { up: true }), ...(cfg.promiscMode && !br.promisc ? { promisc: true } : {}) };
  if (Object.keys(change).length) linkSet(host, br.index, change);
  return br;
}

/** Deletes the host link of attachment id left by a crashed ADD; refuses a same-named link of anyone else. */
function removeStale(host: Netlink, id: AttachmentId): void {
  const name = hostLinkName(id);
  const stale = linkFind(host, name);
  if (!stale) return;
  if (!isOurs(stale, id)) throw new CniError(Code.Conflict, `host link ${name} exists and belongs to ${stale.alias ?? 'something else'}; cannot attach ${id.containerId}/${id.ifName}`);
  linkDelIfPresent(host, stale.index);
}

function createVeth(host: Netlink, pod: Netlink, ctx: Context, cfg: BridgeConf, br: Link, id: AttachmentId, undo: Rollback, mac: string | undefined): { hostVeth: Link; podLink: Link } {
  const name = hostLinkName(id);
  removeStale(host, id);
  failpoint(ctx.env, 'veth');
  linkAdd(host, {
    kind: 'veth', name, master: br.index, up: true, ...(cfg.mtu ? { mtu: cfg.mtu } : {}),
    peer: { name: ctx.ifName, netns: ctx.netns, ...(mac ? { mac } : {}), ...(cfg.mtu ? { mtu: cfg.mtu } : {}) },
  });
  undo.add(`create veth ${name}`, () => { const l = linkFind(host, name); if (l) linkDelIfPresent(host, l.index); });
  linkSet(host, name, { alias: attachmentAlias(id) });
  failpoint(ctx.env, 'port');
  if (cfg.hairpinMode) bridgePortSet(host, name, { hairpin: true });
  return { hostVeth: linkGet(host, name), podLink: linkGet(pod, ctx.ifName) };
}

/** Fills in the gateway (the subnet's first address) where IPAM gave none and the bridge is the gateway. */
function withGateways(ips: IPConfig[], cfg: BridgeConf): IPConfig[] {
  return ips.map((ip) => {
    if (ip.gateway || !cfg.isGateway) return { ...ip };
    const n = parseCIDR(ip.address);
    return n ? { ...ip, gateway: formatIP(addToIP(networkOf(n).ip, 1n)) } : { ...ip };
  });
}

/** isDefaultGateway: a default route per family via its gateway, unless IPAM gave one. */
function withDefaultRoutes(routes: Route[], ips: IPConfig[], cfg: BridgeConf): Route[] {
  const out = routes.map((r) => ({ ...r }));
  if (!cfg.isDefaultGateway) return out;
  const gw = gatewaysByFamily(ips);
  for (const [fam, dst] of [[4, '0.0.0.0/0'], [6, '::/0']] as const) {
    const g = gw[fam];
    if (g && !out.some((r) => parseCIDR(r.dst)?.prefix === 0 && parseCIDR(r.dst)?.ip.family === fam)) out.push({ dst, gw: g });
  }
  return out;
}

/**
 * Puts each gateway address on the bridge. Several non-overlapping subnets may share a bridge;
 * an address of an overlapping subnet is replaced only with forceAddress (the reference's key),
 * otherwise the error names both addresses and the fix.
 */
function setGateways(host: Netlink, br: Link, ips: IPConfig[], cfg: BridgeConf, id: AttachmentId, undo: Rollback, env: Env): void {
  failpoint(env, 'gateway');
  const existing = addrList(host, { link: br.index });
  for (const ip of ips) {
    const n = parseCIDR(ip.address);
    if (!n || !ip.gateway) continue;
    const gw: IPNet = { ip: parseIP(ip.gateway)!, prefix: n.prefix };
    const gwText = formatCIDR(gw);
    if (existing.some((a) => a.cidr === gwText)) continue;
    for (const a of existing) {
      const have = parseCIDR(a.cidr);
      if (!have || have.ip.family !== gw.ip.family || !overlaps(have, gw) || (have.ip.family === 6 && have.prefix === 64 && a.scope === 253)) continue;
      if (!cfg.forceAddress) {
        throw new CniError(Code.Conflict, `bridge ${cfg.bridge} already has ${a.cidr}, which overlaps the gateway ${gwText} of network ${cfg.network}: remove it, use another bridge, or set forceAddress: true to replace it`);
      }
      addrDel(host, { link: br.index, address: a.cidr });
    }
    try {
      addrAdd(host, { link: br.index, address: gwText, nodad: true });
      undo.add(`gateway ${gwText} on ${cfg.bridge}`, () => {
        // Undo runs before this attachment's own veth is removed: only other attachments keep it.
        if (!linkList(host).some((l) => l.master === br.index && isOtherOf(l, id))) {
          addrDel(host, { link: br.index, address: gwText });
        }
      });
    } catch (e) {
      if (!isExist(e)) throw e; // a concurrent ADD of this network added it
    }
  }
}

// ---- helpers ---------------------------------------------------------------------------

function familiesOf(ips: IPConfig[]): Family[] {
  return [...new Set(ips.map((i) => (i.address.includes(':') ? 6 : 4) as Family))];
}

function subnetsOf(ips: IPConfig[]): IPNet[] {
  return ips.map((i) => parseCIDR(i.address)).filter((n): n is IPNet => !!n).map(networkOf);
}

/** Whether link l is the host end of this very attachment. */
function isOurs(l: Link, id: AttachmentId): boolean {
  const a = parseAttachmentAlias(l.alias);
  return !!a && sameAttachment(a, id);
}

/** Whether link l is the host end of another attachment of the same network. */
function isOtherOf(l: Link, id: AttachmentId): boolean {
  const a = parseAttachmentAlias(l.alias);
  return !!a && a.network === id.network && !sameAttachment(a, id);
}

/** Whether any other attachment of the network still has a host link here. */
function othersRemain(host: Netlink, id: AttachmentId): boolean {
  return linkList(host).some((l) => isOtherOf(l, id));
}

/**
 * Removes a per-network entry of the node (masquerade, isolation) after the network's last
 * attachment went. An ADD of the network may join between the caller's check and the removal;
 * it sets its link's alias before it installs either, so a second look after the removal sees
 * it, and what was removed is put back.
 */
function dropWhenLast<T>(remove: () => T[], putBack: (removed: T[]) => void, othersNow: () => boolean): void {
  const removed = remove();
  if (removed.length && othersNow()) putBack(removed);
}

function dropMasq(network: string, othersNow: () => boolean): void {
  dropWhenLast(() => removeMasq(network), (r) => ensureMasq(network, r.map((s) => parseCIDR(s)).filter((n): n is IPNet => !!n)), othersNow);
}

function dropIsolation(network: string, othersNow: () => boolean): void {
  dropWhenLast(() => removeIsolation(network), (r) => ensureIsolation(network, r), othersNow);
}


/** DEL without our host link: remove the container's veth if the netns is still there (any other way it is gone, its veth went with it). */
function deletePodLink(ctx: Context): void {
  const pod = openPodNetnsIfPresent(ctx.netns);
  if (!pod) return;
  try {
    const l = linkFind(pod, ctx.ifName);
    if (l?.kind === 'veth') linkDelIfPresent(pod, l.index);
  } finally {
    pod.close();
  }
}
