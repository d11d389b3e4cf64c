// The vxlan backend: one device knit.<vni> (learning off, local = the node's underlay address,
// dev = the underlay link) and, per peer, the three entries flannel's vxlan backend programs:
//   route   <peer subnet> via <peer VTEP addr> dev knit.<vni> onlink proto 107
//   neigh   <peer VTEP addr> lladdr <peer VTEP MAC> PERMANENT   (no ARP on the overlay)
//   fdb     <peer VTEP MAC> dst <peer underlay addr> self permanent
// A node's VTEP address is its subnet's network address (/32 on the device); its MAC is derived
// from the node name and VNI, so it stays the same across restarts without any state.
// The MAC travels in the node's lease as the backend data {vtepMac} (knit.dev/vtep-mac on a
// Kubernetes Node); the agent and the datastores carry it without reading it.
// With `encrypted: true` the VXLAN traffic between nodes is ESP (esp.ts, docs/encryption.md):
// its own UDP port (4799, so plain VXLAN on 4789 coexists), MTU less the ESP overhead, the
// node's public key and key generation in the backend data (encKey, encGen).
import { createHash } from 'node:crypto';
import {
  NUD_PERMANENT, Netlink, addrAdd, addrDel, addrList, fdbDel, fdbList, fdbReplace, isExist, isNotFound, linkAdd,
  linkDel, linkFind, linkGet, linkList, linkSet, neighDel, neighList, neighReplace, openXfrm, type Link,
} from '../../netlink';
import { formatIP, networkOf, parseCIDR, type IPNet } from '../../ip/ip';
import type { Logger } from '../../cni/log';
import {
  configError, emptyReport, type Backend, type BackendConfig, type BackendData, type BackendOptions, type EncryptionStatus, type LocalNode, type LocalState, type Peer, type SyncReport,
} from './backend';
import { canonSubnet, ensureForwarding, reconcileRoutes, sameL2, underlayOf, type Underlay, type WantRoute } from './reconcile';
import { register, removeOtherBackends } from './registry';
import { EspDatapath, espUnavailable, probeEsp, removeEspLeftovers } from './esp';
import { DEFAULT_ESP_CIPHER, ENC_GEN, ENC_KEY, ESP_CIPHERS, ESP_OVERHEAD, isEspCipher, loadNodeKey, newNodeKey, parseGeneration, type EspCipherName, type NodeKey } from './esp-keys';

export interface VxlanConfig extends BackendConfig {
  type: 'vxlan';
  vni: number;
  /** UDP port; default 4789. */
  port?: number;
  mtu?: number;
  /** Peers on the same L2 subnet get a direct route via their underlay address. */
  directRouting?: boolean;
  /** ESP between the nodes (docs/encryption.md). */
  encrypted?: boolean;
  /** The AEAD when encrypted; default aes-gcm (every node of the network uses the same). */
  cipher?: EspCipherName;
}

export const DEFAULT_VXLAN_PORT = 4789;
/** Encrypted VXLAN's own port: ESP policies select by port, and plain VXLAN (named overlays) keeps 4789. */
export const ENCRYPTED_VXLAN_PORT = 4799;
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
  for (const k of Object.keys(b)) if (!['type', 'vni', 'port', 'mtu', 'directRouting', 'encrypted', 'cipher'].includes(k)) throw configError(`backend.${k}`, b[k], 'unknown key for vxlan (vni, port, mtu, directRouting, encrypted, cipher)');
  const vni = b.vni ?? 1;
  if (!int(vni, 0, 0xffffff)) throw configError('backend.vni', vni, 'an integer from 0 to 16777215 (default 1)');
  if (b.encrypted !== undefined && typeof b.encrypted !== 'boolean') throw configError('backend.encrypted', b.encrypted, 'true or false');
  const encrypted = b.encrypted === true;
  const port = b.port ?? (encrypted ? ENCRYPTED_VXLAN_PORT : DEFAULT_VXLAN_PORT);
  if (!int(port, 1, 65535)) throw configError('backend.port', port, `a UDP port 1-65535 (default ${DEFAULT_VXLAN_PORT}, encrypted ${ENCRYPTED_VXLAN_PORT})`);
  if (encrypted && port === DEFAULT_VXLAN_PORT) throw configError('backend.port', port, `another port than ${DEFAULT_VXLAN_PORT} when encrypted (default ${ENCRYPTED_VXLAN_PORT}): the plain VXLAN of named overlay networks uses ${DEFAULT_VXLAN_PORT}, and ESP policies select by port`);
  if (encrypted && b.directRouting === true) throw configError('backend.directRouting', true, 'false when encrypted: direct routes would carry pod traffic in plain text');
  if (b.cipher !== undefined && !isEspCipher(b.cipher)) throw configError('backend.cipher', b.cipher, `one of ${Object.keys(ESP_CIPHERS).join(', ')} (default ${DEFAULT_ESP_CIPHER})`);
  if (b.cipher !== undefined && !encrypted) throw configError('backend.cipher', b.cipher, 'only with "encrypted": true');
  const cfg: VxlanConfig = { type: 'vxlan', vni: vni as number, port: port as number, ...(encrypted ? { encrypted } : {}), ...(isEspCipher(b.cipher) && b.cipher !== DEFAULT_ESP_CIPHER ? { cipher: b.cipher } : {}) };
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
  private nodeKey?: NodeKey;
  private esp?: EspDatapath;
  private keyGen = 0;
  private encStatus?: EncryptionStatus;

  constructor(private readonly cfg: VxlanConfig, private readonly opts: BackendOptions = {}) {
    if (!Number.isInteger(cfg.vni) || cfg.vni < 0 || cfg.vni > 0xffffff) throw new Error(`invalid vni ${cfg.vni}: 0-16777215`);
    this.device = vxlanDeviceName(cfg.vni);
    this.nl = Netlink.open(opts.netns ?? null);
    if (opts.log) this.log = opts.log;
  }

  leaseData(nodeName: string): BackendData {
    const d: BackendData = { [VTEP_MAC_KEY]: vtepMacFor(nodeName, this.cfg.vni) };
    if (this.cfg.encrypted) Object.assign(d, { [ENC_KEY]: this.key().publicKey, [ENC_GEN]: String(this.keyGen) });
    return d;
  }

  /** The node's X25519 key: kept in the state directory, else (tests) made for this process. */
  private key(): NodeKey {
    return (this.nodeKey ??= this.opts.stateDir ? loadNodeKey(this.opts.stateDir) : newNodeKey());
  }

  preflight(): void {
    if (!this.cfg.encrypted) return;
    const missing = probeEsp(this.opts.netns, this.cipher);
    if (missing.length) throw espUnavailable(missing, `encrypted VXLAN (${this.device})`);
  }

  setKeyGeneration(gen: number): void {
    if (Number.isInteger(gen) && gen > this.keyGen) this.keyGen = gen;
    this.esp?.setGeneration(this.keyGen);
  }

  encryption(): EncryptionStatus | undefined {
    return this.encStatus;
  }

  get encrypted(): boolean {
    return this.cfg.encrypted === true;
  }

  private get cipher(): EspCipherName { return this.cfg.cipher ?? DEFAULT_ESP_CIPHER; }

  /** What status shows: `esp rfc4106(gcm(aes)) 128`. */
  private get cipherLabel(): string { const c = ESP_CIPHERS[this.cipher]; return `esp ${c.aead} ${c.keyBits}`; }

  get port(): number {
    return this.cfg.port ?? (this.cfg.encrypted ? ENCRYPTED_VXLAN_PORT : DEFAULT_VXLAN_PORT);
  }

  ensureLocal(local: LocalNode): LocalState {
    this.local = local;
    const u = (this.underlay = underlayOf(this.nl, local.underlayIface, local.underlayAddr));
    const mtu = local.mtu ?? this.cfg.mtu ?? u.mtu - VXLAN_OVERHEAD - (this.cfg.encrypted ? ESP_OVERHEAD : 0);
    const mac = vtepMacFor(local.nodeName, this.cfg.vni);
    if (this.cfg.encrypted) {
      // Refuse before anything exists, and block clear VXLAN before the device does.
      if (!this.esp) {
        this.preflight();
        this.esp = new EspDatapath(this.key(), this.port, this.opts.netns, this.log, this.opts.retireGraceMs, this.cipher);
        this.esp.setGeneration(this.keyGen);
      }
      this.esp.ensureBase(local.underlayAddr);
      this.encStatus ??= { cipher: this.cipherLabel, generation: this.keyGen, peers: [], blocked: [], retiring: 0 };
    } else {
      removeXfrmLeftovers(this.opts.netns, this.log);
    }
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
    const blocked = new Map<string, string>();
    if (this.esp) {
      const r = this.esp.sync(peers.filter((p) => p.nodeName !== local.nodeName).map((p) => ({
        nodeName: p.nodeName, underlayAddr: p.underlayAddr, generation: parseGeneration(p.backendData?.[ENC_GEN]) ?? 0,
        ...(p.backendData?.[ENC_KEY] ? { publicKey: p.backendData[ENC_KEY] } : {}),
      })));
      for (const b of r.blocked) blocked.set(b.nodeName, b.reason);
      rep.added += r.added;
      rep.removed += r.removed;
      this.encStatus = { cipher: this.cipherLabel, generation: this.keyGen, peers: r.keyed, blocked: r.blocked, retiring: this.esp.pendingRetirement };
    }
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
      // Encrypted, no key yet: routed into the tunnel, where the block policy drops it (never
      // out of the default route in clear); reported as not programmed.
      const why = blocked.get(p.nodeName);
      if (why) rep.skipped.push({ nodeName: p.nodeName, reason: why });
      else rep.programmed.push(p.nodeName);
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
    this.esp?.close();
  }
}

/** A plain backend removes what an encrypted one left (policies would block its peers' port). */
function removeXfrmLeftovers(netns: string | null | undefined, log?: Logger): void {
  let nl;
  try { nl = openXfrm(netns); } catch { return; /* no xfrm in this kernel: nothing can be left */ }
  try { removeEspLeftovers(nl, log); } catch (e) { log?.warn(`removing knit's xfrm objects: ${(e as Error).message}`); } finally { nl.close(); }
}

register('vxlan', {
  parseConfig: parseVxlanConfig,
  create: (cfg, opts) => new VxlanBackend(cfg as VxlanConfig, opts),
  // Its VXLAN devices, and the xfrm policies and SAs of its encrypted mode (host-gw taking over).
  removeLeftovers: (nl, log) => {
    const removed = removeStaleVteps(nl, null, log);
    removeXfrmLeftovers(nl.netnsPath, log);
    return removed;
  },
});
