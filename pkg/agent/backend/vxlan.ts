// The vxlan backend: one device knit.<vni> (learning off, local = the node's underlay address,
// dev = the underlay link) and, per peer, the three entries flannel's vxlan backend programs:
//   route   <peer subnet> via <peer VTEP addr> dev knit.<vni> onlink proto 107
//   neigh   <peer VTEP addr> lladdr <peer VTEP MAC> PERMANENT   (no ARP on the overlay)
//   fdb     <peer VTEP MAC> dst <peer underlay addr> self permanent
// A node's VTEP address is its subnet's network address (/32 on the device); its MAC is derived
// from the node name and VNI, so it stays the same across restarts without any state.
// The MAC travels in the node's lease as the backend data {vtepMac} (knit.dev/vtep-mac on a
// Kubernetes Node); the agent and the datastores carry it without reading it.
import { createHash } from 'node:crypto';
import {
  NUD_PERMANENT, Netlink, addrAdd, addrDel, addrList, fdbDel, fdbList, fdbReplace, isExist, isNotFound, linkAdd,
  linkDel, linkFind, linkGet, linkList, linkSet, neighDel, neighList, neighReplace, type Link,
} from '../../netlink';
import { formatIP, networkOf, parseCIDR, type IPNet } from '../../ip/ip';
import type { Logger } from '../../cni/log';
import {
  configError, emptyReport, type Backend, type BackendConfig, type BackendData, type BackendOptions, type LocalNode, type LocalState, type Peer, type SyncReport,
} from './backend';
import { canonSubnet, ensureForwarding, reconcileRoutes, sameL2, underlayOf, type Underlay, type WantRoute } from './reconcile';
import { register, removeOtherBackends } from './registry';

export interface VxlanConfig extends BackendConfig {
  type: 'vxlan';
  vni: number;
  /** UDP port; default 4789. */
  port?: number;
  mtu?: number;
  /** Peers on the same L2 subnet get a direct route via their underlay address. */
  directRouting?: boolean;
}

export const DEFAULT_VXLAN_PORT = 4789;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
/** The backend data key of the VTEP MAC (Kubernetes: the knit.dev/vtep-mac annotation). */
export const VTEP_MAC_KEY = 'vtepMac';

export function vxlanDeviceName(vni: number): string {
  return `knit.${vni}`;
}

/** knit's VXLAN devices are named knit.<vni> (vxlanDeviceName). */
export const VTEP_NAME = /^knit\.\d+$/;

/**
 * Removes knit's VXLAN devices other than `keep`: left by a node whose backend changed (vxlan to
 * host-gw, or another VNI). Their routes, neighbours and FDB entries go with them.
 */
export function removeStaleVteps(nl: Netlink, keep: string | null, log?: Logger): string[] {
  const removed: string[] = [];
  for (const l of linkList(nl, { kind: 'vxlan' })) {
    if (!VTEP_NAME.test(l.name) || l.name === keep) continue;
    try { linkDel(nl, l.index); } catch (e) { if (!isNotFound(e)) throw e; }
    removed.push(l.name);
    log?.info(`removed ${l.name}: not this node's backend any more`);
  }
  return removed;
}

/** A stable, locally administered unicast MAC for a node's VTEP: the same across restarts. */
export function vtepMacFor(nodeName: string, vni: number): string {
  const h = createHash('sha256').update(`knit-vtep\0${nodeName}\0${vni}`).digest();
  h[0] = (h[0]! & 0xfc) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The subnet's network address: the VTEP address of a node (as flannel). */
export function vtepAddrOf(subnet: string): string {
  const n = parseCIDR(subnet);
  if (!n) throw new Error(`invalid subnet ${JSON.stringify(subnet)}`);
  return formatIP(networkOf(n).ip);
}

const int = (v: unknown, lo: number, hi: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;

/** The network config's backend object for vxlan, with defaults (vni 1, port 4789). */
export function parseVxlanConfig(b: Record<string, unknown>): VxlanConfig {
  for (const k of Object.keys(b)) if (!['type', 'vni', 'port', 'mtu', 'directRouting'].includes(k)) throw configError(`backend.${k}`, b[k], 'unknown key for vxlan (vni, port, mtu, directRouting)');
  const vni = b.vni ?? 1;
  if (!int(vni, 0, 0xffffff)) throw configError('backend.vni', vni, 'an integer from 0 to 16777215 (default 1)');
  const port = b.port ?? DEFAULT_VXLAN_PORT;
  if (!int(port, 1, 65535)) throw configError('backend.port', port, `a UDP port 1-65535 (default ${DEFAULT_VXLAN_PORT})`);
  const cfg: VxlanConfig = { type: 'vxlan', vni: vni as number, port: port as number };
  if (b.mtu !== undefined) {
    if (!int(b.mtu, 68, 65535)) throw configError('backend.mtu', b.mtu, 'an integer from 68 to 65535 (default: underlay MTU − 50)');
    cfg.mtu = b.mtu as number;
  }
  if (b.directRouting !== undefined) {
    if (typeof b.directRouting !== 'boolean') throw configError('backend.directRouting', b.directRouting, 'true or false');
    cfg.directRouting = b.directRouting;
  }
  return cfg;
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

  leaseData(nodeName: string): BackendData {
    return { [VTEP_MAC_KEY]: vtepMacFor(nodeName, this.cfg.vni) };
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
    removeOtherBackends(this.nl, this.type, this.log);
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
    return { mtu, device: this.device };
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
      const mac = p.backendData?.[VTEP_MAC_KEY]?.toLowerCase();
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

register('vxlan', {
  parseConfig: parseVxlanConfig,
  create: (cfg, opts) => new VxlanBackend(cfg as VxlanConfig, opts),
  removeLeftovers: (nl, log) => removeStaleVteps(nl, null, log),
});
