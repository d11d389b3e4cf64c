// The overlay agent inside knitd: leases this node's subnet, owns the datapath (a backend) and
// keeps it equal to the leases in the datastore.
//
//   start: network config -> underlay -> claim subnet -> backend.ensureLocal -> lease.json +
//          masquerade -> list leases -> backend.sync -> watch
//   then:  lease watch events, netlink events on knit's objects (device deleted, route removed)
//          and a periodic full resync all end in the same reconcile (debounced); keepalive
//          renews the TTL, and a lost lease is claimed again (the same subnet unless another
//          node took it meanwhile). A changed underlay address (address events, and each
//          resync) is published again and the local datapath rebuilt on it.
// stop() leaves the datapath and the lease up: a restarted knitd takes over where it left.
// An encrypting backend is checked first (preflight): on a kernel
// without ESP the agent refuses (code 101, written to refused.json for knit-overlay and to
// status.json) and never claims a subnet; the key generation in the datastore is followed (and
// moved every --key-rotation-interval), then published in the lease after the backend installed it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../cni/log';
import { nullLogger } from '../cni/log';
import { addrList, linkGet, routeList, subscribe, withNetlink, KNIT_RTPROT, type NetlinkEvent } from '../netlink';
import { parseCIDR } from '../ip/ip';
import { ensureMasq } from '../nat/masq';
import { currentKeyGeneration, type Datastore, type LeaseEvent, type SubnetLease, type Watch } from '../datastore/datastore';
import { newBackend, type Backend, type BackendData, type LocalState, type SyncReport } from './backend';
import { acquireSubnet, savePersisted } from './lease';
import { DEFAULT_OVERLAY_BRIDGE, clearRefusal, removeLeaseFile, writeLeaseFile, writeRefusal, type Refusal } from './lease-file';
import { CniError } from '../cni/errors';
import type { EncryptionStatus } from './backend';
import { parseNetworkConfig, type NetworkConfig } from './network-config';

export const DEFAULT_LEASE_TTL_SEC = 300;
export const DEFAULT_RESYNC_SEC = 60;
/** The nftables network name of the overlay's masquerade (pkg/nat/masq.ts). */
export const MASQ_NETWORK = 'knit-overlay';

export interface AgentOptions {
  store: Datastore;
  nodeName: string;
  /** Underlay link; default the default route's link. */
  iface?: string;
  runDir: string;
  stateDir: string;
  ttlSec?: number;
  resyncSec?: number;
  log?: Logger;
  /** Skip the masquerade rule (tests of hosts without nft). */
  noMasq?: boolean;
  /** Encrypting backends: move the key generation when it is this old (seconds; 0 or absent: only `knitctl key rotate`). */
  keyRotationSec?: number;
  /** Encrypting backends: how often the key generation record is read (seconds, default 5). */
  keyPollSec?: number;
}

export interface AgentStatus {
  nodeName: string;
  subnet?: string;
  network?: string;
  backend?: string;
  device?: string;
  mtu?: number;
  /** What this node's backend publishes in its lease (opaque here). */
  backendData?: BackendData;
  underlay?: { iface: string; addr: string };
  peers: Array<SubnetLease & { programmed: boolean; reason?: string }>;
  lastSync?: { at: string; ms: number; report: SyncReport };
  errors: number;
  syncs: number;
  /** Total seconds spent reconciling. */
  syncSeconds: number;
  /** Encrypting backends: cipher, key generation, keyed and blocked peers (no secrets). */
  encryption?: EncryptionStatus;
  /** Why this node refuses the pod network (e.g. encryption on a kernel without ESP). */
  refused?: Refusal;
}

export class OverlayAgent {
  private cfg?: NetworkConfig;
  private backend?: Backend;
  private local?: LocalState;
  private subnet?: string;
  private underlay?: { iface: string; addr: string };
  private readonly peers = new Map<string, SubnetLease>();
  private watch?: Watch;
  private unsubscribe?: () => void;
  private timers: NodeJS.Timeout[] = [];
  private syncTimer: NodeJS.Timeout | null = null;
  private underlayTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private syncing = false;
  private resyncAgain = false;
  private readonly log: Logger;
  readonly status: AgentStatus;

  constructor(private readonly o: AgentOptions) {
    this.log = o.log ?? nullLogger;
    this.status = { nodeName: o.nodeName, peers: [], errors: 0, syncs: 0, syncSeconds: 0 };
  }

  get ttlSec(): number { return this.o.ttlSec ?? DEFAULT_LEASE_TTL_SEC; }

  async start(): Promise<void> {
    this.cfg = await this.waitConfig();
    this.underlay = findUnderlay(this.o.iface);
    const b = this.cfg.backend;
    this.backend = newBackend(b, { log: this.log, stateDir: this.o.stateDir });
    this.preflight();
    await this.followKeyGeneration(false);
    await this.claim();
    await this.relist();
    this.startWatch();
    this.startNetlinkWatch();
    const ka = Math.max(1, Math.floor(this.ttlSec / 3)) * 1000;
    this.timers.push(setInterval(() => void this.keepAlive(), ka));
    if (this.backend.encrypted && this.backend.setKeyGeneration && this.o.store.getKeyGeneration) {
      this.timers.push(setInterval(() => void this.followKeyGeneration(true).catch((e) => this.fail('key generation', e)), (this.o.keyPollSec ?? 5) * 1000));
    }
    this.timers.push(setInterval(() => {
      this.log.debug('periodic resync');
      void this.checkUnderlay().then(() => this.relist()).catch((e) => this.fail('resync', e));
    }, (this.o.resyncSec ?? DEFAULT_RESYNC_SEC) * 1000));
  }

  /** Stops watching and renewing; the datapath, lease.json and the datastore lease stay. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.syncTimer) clearTimeout(this.syncTimer);
    if (this.underlayTimer) clearTimeout(this.underlayTimer);
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.watch?.close();
    this.unsubscribe?.();
    this.backend?.close();
  }

  /**
   * The backend's refusal (code 101: kernel features missing) is recorded where knit-overlay and
   * knitctl status read it, the stale lease.json removed (no pod may join a datapath this node
   * cannot run as configured), and start fails (knitd retries it).
   */
  private preflight(): void {
    try {
      this.backend!.preflight?.();
    } catch (e) {
      if (!(e instanceof CniError)) throw e;
      this.status.refused = { code: e.code, msg: e.message };
      this.log.error(`refusing the pod network on this node: ${e.message}`);
      try { writeRefusal(this.o.runDir, this.status.refused); removeLeaseFile(this.o.runDir); } catch (w) { this.fail('writing refused.json', w); }
      this.writeStatus();
      throw e;
    }
    if (this.status.refused) delete this.status.refused;
    clearRefusal(this.o.runDir);
  }

  private keyGenBusy = false;

  /**
   * Follows the datastore's key generation (moving it first when older than the rotation
   * interval): the backend installs the new inbound SAs in a sync, then the lease publishes the
   * generation (peers switch their outbound SAs when they see it). `publish`: after start.
   */
  private async followKeyGeneration(publish: boolean): Promise<void> {
    const b = this.backend, store = this.o.store;
    if (!b?.encrypted || !b.setKeyGeneration || !store.getKeyGeneration || this.stopped || this.keyGenBusy) return;
    this.keyGenBusy = true;
    try {
      const rec = await currentKeyGeneration(store, this.o.keyRotationSec ?? 0, this.log);
      const g = rec?.generation ?? 0;
      if (g <= (b.encryption?.()?.generation ?? -1)) return;
      this.log.info(`key generation ${g}: installing its SAs, then publishing it`);
      b.setKeyGeneration(g);
      if (!publish) return; // start: the first claim publishes it
      this.reconcile();
      await this.claim();
    } finally {
      this.keyGenBusy = false;
    }
  }

  private retireTimer: NodeJS.Timeout | null = null;

  private async waitConfig(): Promise<NetworkConfig> {
    for (let warned = false; ; ) {
      const raw = await this.o.store.getNetworkConfig().catch((e) => { this.fail('reading the network config', e); return null; });
      if (raw !== null) return parseNetworkConfig(raw);
      if (!warned) { this.log.warn('no network config in the datastore yet (knitctl pod-network set FILE); waiting'); warned = true; }
      await sleep(2000);
      if (this.stopped) throw new Error('stopped');
    }
  }

  private me(): Omit<SubnetLease, 'subnet'> {
    const data = this.backend!.leaseData(this.o.nodeName);
    return {
      nodeName: this.o.nodeName, underlayAddr: this.underlay!.addr, backend: this.backend!.type,
      ...(Object.keys(data).length ? { backendData: data } : {}),
    };
  }

  /**
   * Claims (or re-claims) the subnet, then makes the local datapath and lease.json match (when
   * the subnet changed, or `rebuild`: the underlay did).
   */
  private async claim(rebuild = false): Promise<void> {
    const cfg = this.cfg!;
    const subnet = await acquireSubnet({ store: this.o.store, cfg, me: this.me(), ttlSec: this.ttlSec, stateDir: this.o.stateDir, log: this.log });
    if (subnet !== this.subnet || rebuild) {
      this.subnet = subnet;
      this.local = this.backend!.ensureLocal({
        nodeName: this.o.nodeName, subnet, underlayIface: this.underlay!.iface, underlayAddr: this.underlay!.addr, network: cfg.network,
      });
      savePersisted(this.o.stateDir, { nodeName: this.o.nodeName, network: cfg.network, subnet });
      writeLeaseFile(this.o.runDir, {
        network: cfg.network, subnet, mtu: this.local.mtu, bridge: DEFAULT_OVERLAY_BRIDGE, nodeName: this.o.nodeName,
        backend: cfg.backend.type, updated: new Date().toISOString(),
      });
      if (!this.o.noMasq) {
        try { ensureMasq(MASQ_NETWORK, [parseCIDR(cfg.network)!]); } catch (e) { this.fail('masquerade', e); }
      }
      Object.assign(this.status, {
        subnet, network: cfg.network, backend: cfg.backend.type, device: this.local.device, mtu: this.local.mtu,
        underlay: this.underlay, backendData: this.backend!.leaseData(this.o.nodeName),
      });
      this.log.info(`lease ${subnet} written to ${path.join(this.o.runDir, 'lease.json')} (mtu ${this.local.mtu}, ${cfg.backend.type})`);
    }
  }

  /**
   * The underlay address changed (DHCP, renumbering): peers must learn the new one, and the
   * backend's local datapath follow it (a tunnel's local address). While the link has no
   * address, the old one is kept.
   */
  async checkUnderlay(): Promise<void> {
    if (this.stopped || !this.underlay || !this.subnet) return;
    let now: { iface: string; addr: string };
    try {
      now = findUnderlay(this.o.iface);
    } catch (e) {
      this.log.debug(`underlay: ${(e as Error).message}; keeping ${this.underlay.iface} ${this.underlay.addr}`);
      return;
    }
    if (now.iface === this.underlay.iface && now.addr === this.underlay.addr) return;
    this.log.warn(`underlay changed from ${this.underlay.iface} ${this.underlay.addr} to ${now.iface} ${now.addr}: publishing it and rebuilding the local datapath`);
    this.underlay = now;
    await this.claim(true);
    this.scheduleSync();
  }

  private scheduleUnderlayCheck(): void {
    if (this.stopped || this.underlayTimer) return;
    this.underlayTimer = setTimeout(() => {
      this.underlayTimer = null;
      void this.checkUnderlay().catch((e) => this.fail('underlay change', e));
    }, 200);
  }

  private async keepAlive(): Promise<void> {
    if (this.stopped) return;
    try {
      if (await this.o.store.keepAlive()) return;
      this.log.warn(`lease of ${this.subnet} expired; claiming again`);
      await this.claim();
      this.scheduleSync();
    } catch (e) {
      this.fail('lease keepalive', e);
    }
  }

  private async relist(): Promise<void> {
    const { leases, revision } = await this.o.store.listLeases();
    this.peers.clear();
    for (const l of leases) this.peers.set(l.subnet, l);
    this.reconcile();
    this.revision = revision;
  }

  private revision = 0;

  private startWatch(): void {
    if (this.stopped) return;
    this.watch = this.o.store.watchLeases(this.revision, (e: LeaseEvent) => {
      if (e.type === 'put') this.peers.set(e.lease.subnet, e.lease); else this.peers.delete(e.subnet);
      if (e.type === 'del' && e.subnet === this.subnet) {
        // Our own lease was deleted under us (by hand, or `knitctl node rm` while knitd still
        // runs): publish it again rather than leave a subnet in use that others may claim.
        this.log.warn(`this node's lease ${e.subnet} was deleted from the datastore; claiming it again (stop knitd before knitctl node rm)`);
        void this.claim().catch((err) => this.fail('re-claim', err));
      }
      if (e.type === 'put' && e.lease.revision) this.revision = Math.max(this.revision, e.lease.revision);
      this.scheduleSync();
    }, (err) => {
      if (this.stopped) return;
      this.log.warn(`lease watch ended: ${err.message}; re-listing`);
      setTimeout(() => {
        if (this.stopped) return;
        this.relist().then(() => this.startWatch(), (e) => { this.fail('re-list', e); setTimeout(() => this.startWatch(), 1000); });
      }, 1000);
    });
  }

  private startNetlinkWatch(): void {
    const devices = new Set(this.backend!.watched().devices);
    try {
      this.unsubscribe = subscribe({ links: true, addresses: true, routes: true, neighbours: true, ref: false }, (ev: NetlinkEvent) => {
        if (ev.kind === 'overrun') { this.scheduleUnderlayCheck(); return this.scheduleSync(); }
        if (ev.kind === 'addr' && ev.addr.family === 4) return this.scheduleUnderlayCheck();
        if (ev.kind === 'link' && ev.type === 'del' && devices.has(ev.link.name)) {
          this.log.warn(`${ev.link.name} was deleted; repairing`);
          this.scheduleSync();
        } else if (ev.kind === 'route' && ev.type === 'del' && ev.route.protocol === KNIT_RTPROT && !this.syncing) {
          this.scheduleSync();
        } else if ((ev.kind === 'neigh' || ev.kind === 'fdb') && ev.type === 'del' && !this.syncing) {
          this.scheduleSync();
        }
      });
    } catch (e) {
      this.fail('netlink subscribe (repair on events disabled; periodic resync still runs)', e);
    }
  }

  private scheduleSync(): void {
    if (this.stopped || this.syncTimer) return;
    this.syncTimer = setTimeout(() => { this.syncTimer = null; this.reconcile(); }, 50);
  }

  /** Makes the datapath match the known leases. */
  reconcile(): SyncReport | undefined {
    if (this.stopped || !this.backend || !this.subnet) return undefined;
    if (this.syncing) { this.resyncAgain = true; return undefined; }
    this.syncing = true;
    const t0 = process.hrtime.bigint();
    try {
      const mine = this.subnet;
      const peers = [...this.peers.values()].filter((l) => l.subnet !== mine && l.nodeName !== this.o.nodeName);
      const own = this.peers.get(mine);
      if (own && own.nodeName !== this.o.nodeName) this.log.error(`subnet ${mine} is published by ${own.nodeName}: lease lost; will re-claim`);
      const report = this.backend.sync(peers.map((p) => ({ nodeName: p.nodeName, subnet: p.subnet, underlayAddr: p.underlayAddr, ...(p.backendData ? { backendData: p.backendData } : {}) })));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const prog = new Set(report.programmed);
      const reasons = new Map(report.skipped.map((s) => [s.nodeName, s.reason]));
      this.status.peers = peers.map((p) => ({ ...p, programmed: prog.has(p.nodeName), ...(reasons.has(p.nodeName) ? { reason: reasons.get(p.nodeName)! } : {}) }));
      this.status.lastSync = { at: new Date().toISOString(), ms, report };
      this.status.syncs++;
      this.status.syncSeconds += ms / 1000;
      const enc = this.backend.encryption?.();
      if (enc) {
        this.status.encryption = enc;
        // Inbound SAs of an old generation wait for the peer to switch: look again soon.
        if (enc.retiring > 0 && !this.retireTimer && !this.stopped) this.retireTimer = setTimeout(() => { this.retireTimer = null; this.scheduleSync(); }, 5000);
      }
      if (report.added || report.updated || report.removed) this.log.info(`synced ${peers.length} peer(s): +${report.added} ~${report.updated} -${report.removed} in ${ms.toFixed(1)} ms`);
      for (const s of report.skipped) this.log.warn(`peer ${s.nodeName} not programmed: ${s.reason}`);
      this.writeStatus();
      return report;
    } catch (e) {
      this.fail('reconcile', e);
      return undefined;
    } finally {
      this.syncing = false;
      if (this.resyncAgain) { this.resyncAgain = false; this.scheduleSync(); }
    }
  }

  private writeStatus(): void {
    try {
      const file = path.join(this.o.runDir, 'status.json');
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(this.status, null, 2));
      fs.renameSync(`${file}.tmp`, file);
    } catch { /* best effort */ }
  }

  private fail(what: string, e: unknown): void {
    this.status.errors++;
    this.log.error(`${what}: ${(e as Error).message ?? e}`);
  }
}

/** The underlay link and its first global IPv4 address (default: the default route's link). */
export function findUnderlay(iface?: string): { iface: string; addr: string } {
  return withNetlink(null, (nl) => {
    let name = iface;
    if (!name) {
      const def = routeList(nl, { family: 4 }).find((r) => r.dst === '0.0.0.0/0' && r.dev !== undefined);
      if (!def) throw new Error('no default route to pick the underlay link from: pass --iface');
      name = linkGet(nl, def.dev!).name;
    }
    const l = linkGet(nl, name);
    const a = addrList(nl, { link: l.index, family: 4 }).find((x) => x.scope === 0);
    if (!a) throw new Error(`underlay link ${name} has no IPv4 address`);
    return { iface: name, addr: a.local };
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
