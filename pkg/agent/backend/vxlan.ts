// The vxlan backend: one device knit.<vni> (learning off, local = the node's underlay address,
// dev = the underlay link) and, per peer, the three entries flannel's vxlan backend programs:
//   route   <peer subnet> via <peer VTEP addr> dev knit.<vni> onlink proto 107
//   neigh   <peer VTEP addr> lladdr <peer VTEP MAC> PERMANENT   (no ARP on the overlay)
//   fdb     <peer VTEP MAC> dst <peer underlay addr> self permanent
// A node's VTEP address is its subnet's network address (/32 on the device); its MAC is derived
// from the node name and VNI, so it stays the same across restarts without any state.
import {
  NUD_PERMANENT, Netlink, addrAdd, addrDel, addrList, fdbDel, fdbList, fdbReplace, isExist, isNotFound, linkAdd,
  linkDel, linkFind, linkGet, linkSet, neighDel, neighList, neighReplace, type Link,
} from '../../netlink';
import { parseCIDR, type IPNet } from '../../ip/ip';
import type { Logger } from '../../cni/log';
import { emptyReport, ensureForwarding, type Backend, type BackendOptions, type LocalNode, type LocalState, type Peer, type SyncReport, type VxlanConfig } from './backend';
import { canonSubnet, reconcileRoutes, removeStaleVteps, sameL2, underlayOf, vtepAddrOf, vtepMacFor, type Underlay, type WantRoute } from './reconcile';

export const DEFAULT_VXLAN_PORT = 4789;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

export function vxlanDeviceName(vni: number): string {
  return `knit.${vni}`;
}

export class VxlanBackend implements Backend {
  readonly type = 'vxlan' as const;
  readonly device: string;
  private readonly nl: Netlink;
  private readonly log?: Logger;
  private local?: LocalNode;
  private underlay?: Underlay;

  constructor(private readonly cfg: VxlanConfig, private readonly opts: BackendOptions = {}) {
    if (!Number.isInteger(cfg.vni) || cfg.vni < 0 || cfg.vni > 0xffffff) throw new Error(`invalid vni ${cfg.vni}: 0-16777215`);
    this.device = vxlanDeviceName(cfg.vni);
    this.nl = Netlink.open(opts.netns ?? null);
    if (opts.log) this.log = opts.log;
  }

  get port(): number {
    return this.cfg.port ?? DEFAULT_VXLAN_PORT;
  }

  ensureLocal(local: LocalNode): LocalState {
    this.local = local;
    const u = (this.underlay = underlayOf(this.nl, local.underlayIface, local.underlayAddr));
    const mtu = local.mtu ?? this.cfg.mtu ?? u.mtu - VXLAN_OVERHEAD;
    const mac = vtepMacFor(local.nodeName, this.cfg.vni);
    removeStaleVteps(this.nl, this.device, this.log);
    let l = linkFind(this.nl, this.device);
    if (l && !this.matches(l, u, local.underlayAddr)) {
      this.log?.warn(`${this.device} differs from its configuration (${JSON.stringify(l.vxlan ?? l.kind)}): recreating it`);
      try { linkDel(this.nl, l.index); } catch (e) { if (!isNotFound(e)) throw e; }
      l = null;
    }
    if (!l) {
      try {
        linkAdd(this.nl, {
          kind: 'vxlan', name: this.device, vni: this.cfg.vni, port: this.port, local: local.underlayAddr, dev: u.index,
          learning: false, mtu, mac, up: true,
        });
        this.log?.info(`created ${this.device} (vni ${this.cfg.vni}, port ${this.port}, local ${local.underlayAddr}, dev ${u.name}, mtu ${mtu}, mac ${mac})`);
      } catch (e) {
        if (!isExist(e)) throw e;
      }
      l = linkGet(this.nl, this.device);
    }
    const ch = { ...(l.mtu !== mtu ? { mtu } : {}), ...(l.mac !== mac ? { mac } : {}), ...(l.up ? {} : { up: true }) };
    if (Object.keys(ch).length) linkSet(this.nl, l.index, ch);
    // The VTEP address: the subnet's network address as a /32, nothing else.
    const want = `${vtepAddrOf(local.subnet)}/32`;
    let present = false;
    for (const a of addrList(this.nl, { link: l.index, family: 4 })) {
      if (a.cidr === want) present = true;
      else addrDel(this.nl, { link: l.index, address: a.cidr });
    }
    if (!present) {
      try { addrAdd(this.nl, { link: l.index, address: want }); } catch (e) { if (!isExist(e)) throw e; }
    }
    ensureForwarding(this.opts.netns);
    return { mtu, vtepMac: mac, device: this.device };
  }

  private matches(l: Link, u: Underlay, local: string): boolean {
    const v = l.vxlan;
    return l.kind === 'vxlan' && !!v && v.vni === this.cfg.vni && (v.port ?? DEFAULT_VXLAN_PORT) === this.port &&
      v.local === local && v.dev === u.index && v.learning === false;
  }

  sync(peers: Peer[]): SyncReport {
    const local = this.local;
    if (!local) throw new Error('vxlan backend: sync before ensureLocal');
    // The device may have gone since ensureLocal (deleted by hand): bring it back first.
    let dev = linkFind(this.nl, this.device);
    if (!dev) { this.ensureLocal(local); dev = linkGet(this.nl, this.device); }
    const u = this.underlay!;
    const rep = emptyReport();
    const mine = canonSubnet(local.subnet);
    const routes = new Map<string, WantRoute>();
    const neighs = new Map<string, string>();
    const fdb = new Map<string, string>();
    for (const p of peers) {
      if (p.nodeName === local.nodeName) continue;
      let subnet: string;
      try { subnet = canonSubnet(p.subnet); } catch { rep.skipped.push({ nodeName: p.nodeName, reason: `invalid subnet ${p.subnet}` }); continue; }
      if (subnet === mine) { rep.skipped.push({ nodeName: p.nodeName, reason: `claims this node's subnet ${subnet}` }); continue; }
      if (this.cfg.directRouting && sameL2(u, p.underlayAddr)) {
        routes.set(subnet, { dst: subnet, gw: p.underlayAddr, dev: u.index, onlink: false });
        rep.programmed.push(p.nodeName);
        continue;
      }
      const mac = p.vtepMac?.toLowerCase();
      if (!mac) { rep.skipped.push({ nodeName: p.nodeName, reason: 'no VTEP MAC published' }); continue; }
      const vtep = vtepAddrOf(subnet);
      routes.set(subnet, { dst: subnet, gw: vtep, dev: dev.index, onlink: true });
      neighs.set(vtep, mac);
      fdb.set(mac, p.underlayAddr);
      rep.programmed.push(p.nodeName);
    }
    // Neighbours first, then FDB, then routes: a route never points at an unresolved VTEP.
    for (const n of neighList(this.nl, { link: dev.index, family: 4 })) {
      const want = neighs.get(n.ip);
      if (want && n.mac === want && n.permanent) { neighs.delete(n.ip); continue; }
      if (want) continue; // replaced below
      if (!n.permanent) continue; // the kernel's own, not ours
      try { neighDel(this.nl, { link: dev.index, ip: n.ip }); rep.removed++; } catch (e) { if (!isNotFound(e)) throw e; }
    }
    for (const [ip, mac] of neighs) { neighReplace(this.nl, { link: dev.index, ip, mac, state: NUD_PERMANENT }); rep.added++; }
    const haveFdb = new Set<string>();
    for (const f of fdbList(this.nl, { link: dev.index })) {
      if (!f.self) continue;
      if (f.dst && fdb.get(f.mac) === f.dst) { haveFdb.add(f.mac); continue; }
      try { fdbDel(this.nl, { link: dev.index, mac: f.mac, ...(f.dst ? { dst: f.dst } : {}) }); rep.removed++; } catch (e) { if (!isNotFound(e)) throw e; }
    }
    for (const [mac, dst] of fdb) {
      if (haveFdb.has(mac)) continue;
      fdbReplace(this.nl, { link: dev.index, mac, dst, state: NUD_PERMANENT });
      rep.added++;
    }
    const network: IPNet | undefined = local.network ? parseCIDR(local.network) ?? undefined : undefined;
    reconcileRoutes(this.nl, routes, [dev.index, u.index], network, rep, this.log);
    return rep;
  }

  watched(): { devices: string[] } {
    return { devices: [this.device] };
  }

  close(): void {
    this.nl.close();
  }
}
