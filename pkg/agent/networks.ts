// knitd's named-network agent: every network in the datastore becomes, on this node, a conflist in
// the CNI config directory (so runtimes find it by name) and, for overlay networks, a bridge and a
// VXLAN device whose FDB and neighbour tables hold the network's endpoints on other nodes.
//
//   networks   --source-->  conflists + devices     (create/rm on any node)
//   endpoints  --source-->  fdb + neigh per remote  (the plugins' ADD/DEL)
//
// The source (networks-source.ts) is etcd (networks-etcd.ts: prefixes watched, endpoints on the
// node's lease) or the mesh (networks-mesh.ts: the replicated records, endpoints in each node's
// own record); either way a node that dies takes its endpoints with it. Every change, source
// event or timer tick leads to one reconcile of the whole desired state, debounced: the same code
// converges after a restart, a missed event or a network removed while the node was down.
//
// Encrypted networks (-o encrypted, docs/encryption.md): their VXLAN devices use their cipher's own
// port (4798 AES-GCM, 4797 ChaCha20-Poly1305) and between this node and every remote node with
// endpoints on one of them the traffic is ESP (pkg/agent/backend/esp.ts, one named-networks domain
// per cipher, NAMED_NETWORKS_ESP_BY_CIPHER; each cipher's datapath is independent): the catch-all
// block policy is in before any such device exists, per-pair SAs are derived from the node key
// pair the pod network uses, and the public key and key generation go out in this node's record
// through the source. The generation is the pod network's (the Datastore's getKeyGeneration /
// bumpKeyGeneration): one rotation re-keys both. A kernel without ESP or without a network's
// cipher: no device for the networks of that cipher, the refusal logged, and knit-l2overlay
// answers ADD with code 101.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../cni/log';
import type { EtcdConnConfig } from '../ipam/etcd-config';
import { removeMasq } from '../nat/masq';
import { Netlink, linkGet, openXfrm } from '../netlink';
import { currentKeyGeneration, type Datastore } from '../datastore/datastore';
import { EspDatapath, NAMED_NETWORKS_ESP_BY_CIPHER, espUnavailable, probeEsp, removeEspLeftovers, type EspPeer } from './backend/esp';
import { DEFAULT_ESP_CIPHER, ESP_CIPHERS, ESP_OVERHEAD, loadNodeKey, type EspCipherName, type NodeKey } from './backend/esp-keys';
import { CONFLIST_PREFIX, conflistFile, renderConflist } from '../network/conflist';
import { ensureOverlay, overlayVnis, removeOverlay, setFdb, setNeigh, syncRemotes, vxlanOf, type RemoteEndpoint, type Underlay } from '../network/datapath';
import { EntryOwners, addrs } from '../network/owners';
import { writeAtomic } from '../network/node-file';
import { cipherOf, type Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import { findUnderlay } from './agent';
import { EtcdNetworksSource } from './networks-etcd';
import type { NetworksSource, PeerRecord } from './networks-source';

export interface NetworksAgentOptions {
  /** etcd (the source is made from it), or `source` (the mesh). */
  conn?: EtcdConnConfig;
  source?: NetworksSource;
  nodeName: string;
  iface?: string;
  runDir: string;
  stateDir: string;
  confDir: string;
  ttlSec: number;
  resyncSec: number;
  log: Logger;
  /** Where the key generation lives (knitd: the pod network's Datastore); without it, generation 0 and no rotation. */
  keyGeneration?: Pick<Datastore, 'getKeyGeneration' | 'bumpKeyGeneration'>;
  /** Encrypted networks: move the key generation when it is this old (seconds; 0 or absent: only `knitctl key rotate`). */
  keyRotationSec?: number;
  /** Encrypted networks: how often the key generation record is read (seconds, default 5). */
  keyPollSec?: number;
  /** Encrypted networks: how long an inbound SA no longer wanted is kept at most (ms). */
  retireGraceMs?: number;
}

/** The ESP of encrypted networks of one cipher on this node (no secrets). */
export interface NetworksEncryption {
  /** The network's -o cipher (aes-gcm, chacha20-poly1305). */
  name: EspCipherName;
  cipher: string;
  port: number;
  generation: number;
  keyed: Array<{ nodeName: string; txGeneration: number }>;
  blocked: Array<{ nodeName: string; reason: string }>;
  retiring: number;
}

export interface NetworksStatus {
  networks: number;
  endpoints: number;
  remoteEndpoints: number;
  reconciles: number;
  errors: number;
  lastReconcileMs: number;
  lease?: string;
  nodeIp?: string;
  /** One per cipher in use. */
  encryption?: NetworksEncryption[];
  /** Why encrypted networks are refused on this node (a kernel without ESP or a cipher): code 101's message(s). */
  refused?: string;
}

const DEBOUNCE_MS = 10;

/** An encrypted overlay network (-o encrypted): ESP between nodes, or no devices at all. */
const isEncrypted = (n: Network): boolean => cipherOf(n) !== null;
const CIPHERS = Object.keys(ESP_CIPHERS) as EspCipherName[];
const RELIST_EVERY = 10;

/**
 * What other parts of knitd (the resolver, the service load balancer) learn from the same watch:
 * `resync` with everything after each (re)list, then one call per change. Called synchronously
 * from the watch; a listener that throws is logged and does not stop the others.
 */
export interface NetworksListener {
  resync?(networks: Network[], endpoints: Endpoint[]): void;
  network?(before: Network | undefined, after: Network | undefined): void;
  endpoint?(before: Endpoint | undefined, after: Endpoint | undefined): void;
}

export class NetworksAgent {
  readonly status: NetworksStatus = { networks: 0, endpoints: 0, remoteEndpoints: 0, reconciles: 0, errors: 0, lastReconcileMs: 0 };
  private readonly source: NetworksSource;
  private readonly nl = Netlink.open(null);
  private readonly networks = new Map<string, Network>();
  private readonly endpoints = new Map<string, Endpoint>();
  /** The endpoints by MAC and address: which record owns each FDB and neighbour entry (several may claim one). */
  private readonly owners: EntryOwners;
  /** Whether the first list is done (subscribers then get a resync at once). */
  private listed = false;
  private timers: NodeJS.Timeout[] = [];
  private pending: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private underlay?: Underlay;
  /** Endpoint changes since the last pass (old and new value by key); null: a full pass is due. */
  private changes: Map<string, { before?: Endpoint; after?: Endpoint }> | null = null;
  private readonly listeners: NetworksListener[] = [];
  /** Networks created, changed or removed since the last pass (by name): only theirs are re-synced. */
  private dirtyNets = new Set<string>();
  /** Peers' records for encrypted networks (public keys, generations), by node name. */
  private readonly peers = new Map<string, PeerRecord>();
  /** The ESP datapath of each cipher with encrypted networks here (and a kernel that has it). */
  private readonly esps = new Map<EspCipherName, EspDatapath>();
  /** Why each cipher's networks are refused here. */
  private readonly refusals = new Map<EspCipherName, string>();
  private nodeKey?: NodeKey;
  private keyGen = 0;
  /** A peer record or an encrypted network's endpoint changed: the next pass syncs the SAs. */
  private espDirty = false;
  private readonly leftoversChecked = new Set<EspCipherName>();
  private keyGenBusy = false;

  constructor(private readonly o: NetworksAgentOptions) {
    if (!o.source && !o.conn) throw new Error('NetworksAgent: give conn (etcd) or source');
    this.owners = new EntryOwners(o.nodeName);
    this.source = o.source ?? new EtcdNetworksSource({ conn: o.conn!, nodeName: o.nodeName, runDir: o.runDir, stateDir: o.stateDir, ttlSec: o.ttlSec, log: o.log });
  }

  async start(): Promise<void> {
    this.underlay = this.findUnderlay();
    await this.source.open(this.underlay.addr);
    this.status.nodeIp = this.underlay.addr;
    if (this.source.lease) this.status.lease = this.source.lease;
    this.keyGen = (await this.o.keyGeneration?.getKeyGeneration?.())?.generation ?? 0;
    await this.relist();
    await this.reconcile();
    await this.publishNode();
    if (this.o.keyGeneration?.getKeyGeneration) {
      this.timers.push(setInterval(() => void this.followKeyGeneration().catch((e) => this.fail('key generation', e)), (this.o.keyPollSec ?? 5) * 1000));
    } else if (this.o.keyRotationSec) {
      this.o.log.warn(`--key-rotation-interval: this datastore keeps no key generation: encrypted named networks stay on generation ${this.keyGen}`);
    }
    this.timers.push(setInterval(() => {
      if (this.stopped) return;
      this.source.keepAlive().then(() => { if (this.source.lease) this.status.lease = this.source.lease; }, (e) => this.fail('lease keepalive', e));
    }, Math.max(1, Math.floor(this.o.ttlSec / 3)) * 1000));
    // The watch delivers every change in order (a compacted or broken watch errors and re-lists), so
    // the timer's job is the kernel: a full pass over the view repairs entries changed behind knitd's
    // back. Re-reading etcd (10,000 endpoints: a few MB of JSON) is kept for every RELIST_EVERY ticks.
    let ticks = 0;
    this.timers.push(setInterval(() => {
      if (++ticks % RELIST_EVERY === 0) void this.relist().then(() => this.schedule(), (e) => this.fail('resync', e));
      else { this.changes = null; this.schedule(); }
    }, this.o.resyncSec * 1000));
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.pending) clearTimeout(this.pending);
    this.source.close();
    this.nl.close();
    for (const esp of this.esps.values()) esp.close();
  }

  /** Adds a listener; it gets `resync` with the current state right away when the agent has one. */
  subscribe(l: NetworksListener): void {
    this.listeners.push(l);
    if (this.listed) this.notify(l, (x) => x.resync?.([...this.networks.values()], [...this.endpoints.values()]));
  }

  /** The networks and endpoints as last seen (read-only views). */
  view(): { networks: ReadonlyMap<string, Network>; endpoints: ReadonlyMap<string, Endpoint> } {
    return { networks: this.networks, endpoints: this.endpoints };
  }

  private notify(l: NetworksListener, call: (l: NetworksListener) => void): void {
    try { call(l); } catch (e) { this.fail('listener', e); }
  }

  private emit(call: (l: NetworksListener) => void): void {
    for (const l of this.listeners) this.notify(l, call);
  }

  /** Reconciles now (tests, knitctl): resolves when the node matches the datastore as last seen. */
  async sync(): Promise<void> {
    await this.reconcile();
  }

  /**
   * This node's record through the source: its key and generation once it encrypts (its SAs of
   * that generation are in, for every cipher: all datapaths move together in syncEsp).
   */
  private publishNode(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const gens = [...this.esps.values()].map((e) => e.generation);
    return this.source.publishNode(gens.length && this.nodeKey ? { key: this.nodeKey.publicKey, gen: Math.min(...gens) } : null);
  }

  /**
   * Follows the key generation (the pod network's record: one rotation re-keys both), moving it
   * when older than keyRotationSec; a new one: its SAs installed, then published, so peers switch
   * their outbound SAs to it (make before break). Also retires SAs that wait for it.
   */
  private async followKeyGeneration(): Promise<void> {
    const store = this.o.keyGeneration;
    if (!this.esps.size || !store?.getKeyGeneration || this.stopped || this.keyGenBusy) return;
    this.keyGenBusy = true;
    try {
      const rec = await currentKeyGeneration(store, this.o.keyRotationSec ?? 0, this.o.log);
      const g = rec?.generation ?? 0;
      if (!this.esps.size) return;
      if (g > this.keyGen) {
        this.keyGen = g;
        for (const esp of this.esps.values()) esp.setGeneration(g);
        this.o.log.info(`named networks: key generation ${g}: installing its SAs, then publishing it`);
        this.syncEsp();
        await this.publishNode();
      } else if ([...this.esps.values()].some((e) => e.pendingRetirement)) this.syncEsp();
    } finally {
      this.keyGenBusy = false;
    }
  }

  /**
   * Before ESP starts (an encrypted network and no datapath yet), the current generation: the
   * record may have moved since knitd started, and the poll only runs while ESP does.
   */
  private async refreshKeyGen(): Promise<void> {
    const store = this.o.keyGeneration;
    if (this.esps.size || !store?.getKeyGeneration) return;
    if (![...this.networks.values()].some((n) => { const c = cipherOf(n); return c && !this.refusals.has(c); })) return;
    try {
      this.keyGen = Math.max(this.keyGen, (await store.getKeyGeneration())?.generation ?? 0);
    } catch (e) {
      this.fail('key generation (ESP starts on the last one read)', e);
    }
  }

  /** ESP for the encrypted networks of one cipher: ready (base policies in), or false with the refusal logged. */
  private ensureEsp(cipher: EspCipherName, names: string[]): boolean {
    if (this.esps.has(cipher)) return true;
    const missing = probeEsp(null, cipher);
    if (missing.length) {
      const msg = espUnavailable(missing, `encrypted network${names.length === 1 ? '' : 's'} ${names.join(', ')}${cipher === DEFAULT_ESP_CIPHER ? '' : ` (${cipher})`}`).message;
      if (msg !== this.refusals.get(cipher)) this.o.log.error(`refusing on this node (code 101): ${msg}`);
      this.refusals.set(cipher, msg);
      this.showRefusals();
      return false;
    }
    this.refusals.delete(cipher);
    this.showRefusals();
    this.nodeKey ??= loadNodeKey(this.o.stateDir);
    const d = NAMED_NETWORKS_ESP_BY_CIPHER[cipher];
    const esp = new EspDatapath(this.nodeKey, d.port, null, this.o.log, this.o.retireGraceMs, cipher, d);
    try {
      esp.setGeneration(this.keyGen);
      esp.ensureBase(this.underlay!.addr);
    } catch (e) {
      esp.close();
      throw e;
    }
    this.esps.set(cipher, esp);
    this.leftoversChecked.add(cipher);
    this.espDirty = true;
    this.o.log.info(`named networks: ESP ${ESP_CIPHERS[cipher].aead} on UDP ${d.port}, key generation ${this.keyGen}; nothing leaves in clear to unkeyed peers`);
    return true;
  }

  private showRefusals(): void {
    if (this.refusals.size) this.status.refused = [...this.refusals.values()].join('; ');
    else delete this.status.refused;
  }

  /** No encrypted network of this cipher (left): its domain's policies and SAs go (also those of a run before a restart). */
  private dropEsp(cipher: EspCipherName): void {
    this.refusals.delete(cipher);
    this.showRefusals();
    const esp = this.esps.get(cipher);
    if (esp) {
      esp.removeAll();
      esp.close();
      this.esps.delete(cipher);
      this.status.encryption = this.status.encryption?.filter((e) => e.name !== cipher);
      if (!this.status.encryption?.length) delete this.status.encryption;
      void this.publishNode().catch((e) => this.fail('publishing the node record', e));
      return;
    }
    if (this.leftoversChecked.has(cipher)) return;
    this.leftoversChecked.add(cipher);
    try {
      const nl = openXfrm(null);
      try { removeEspLeftovers(nl, this.o.log, NAMED_NETWORKS_ESP_BY_CIPHER[cipher]); } finally { nl.close(); }
    } catch { /* no xfrm in this kernel: nothing to remove */ }
  }

  /** The SAs and policies toward every remote node with endpoints on an encrypted network, per cipher; publishes this node's record once they are in. */
  private syncEsp(): void {
    if (!this.esps.size) return;
    this.espDirty = false;
    const encryption: NetworksEncryption[] = [];
    for (const [cipher, esp] of this.esps) {
      const nets = new Set([...this.networks.values()].filter((n) => cipherOf(n) === cipher).map((n) => n.name));
      const addrOf = new Map<string, string>();
      for (const e of this.endpoints.values()) if (nets.has(e.network) && e.node !== this.o.nodeName) addrOf.set(e.node, e.nodeIp);
      const peers: EspPeer[] = [...addrOf].map(([node, ip]) => {
        const rec = this.peers.get(node);
        return { nodeName: node, underlayAddr: rec?.nodeIp || ip, ...(rec?.encKey ? { publicKey: rec.encKey } : {}), generation: rec?.encGen ?? 0 };
      });
      const r = esp.sync(peers);
      const d = NAMED_NETWORKS_ESP_BY_CIPHER[cipher];
      encryption.push({ name: cipher, cipher: `esp ${ESP_CIPHERS[cipher].aead} 128`, port: d.port, generation: esp.generation, keyed: r.keyed, blocked: r.blocked, retiring: esp.pendingRetirement });
    }
    this.status.encryption = encryption;
    void this.publishNode().catch((e) => this.fail('publishing the node record', e));
  }

  private isEncrypted(network: string): boolean {
    for (const n of this.networks.values()) if (n.name === network) return isEncrypted(n);
    return false;
  }

  private findUnderlay(): Underlay {
    const u = findUnderlay(this.o.iface);
    const l = linkGet(this.nl, u.iface);
    return { index: l.index, name: l.name, mtu: l.mtu, addr: u.addr };
  }

  /** Reads everything and follows the source's changes from there. */
  private async relist(): Promise<void> {
    const { networks, endpoints, nodes } = await this.source.list({
      network: (key, v) => this.onNetworkEvent(key, v),
      endpoint: (key, v) => this.onEndpointEvent(key, v),
      node: (name, v) => { if (v) this.peers.set(name, v); else this.peers.delete(name); this.espDirty = true; },
      flush: () => this.schedule(),
      error: (err) => {
        if (this.stopped) return;
        this.o.log.warn(`${err.message}; listing again`);
        setTimeout(() => void this.relist().then(() => this.schedule(), (e) => this.fail('relist', e)), 1000).unref();
      },
    });
    this.networks.clear();
    for (const [k, n] of networks) this.networks.set(k, n);
    this.endpoints.clear();
    this.owners.clear();
    for (const [k, e] of endpoints) { this.endpoints.set(k, e); this.owners.set(k, undefined, e); }
    this.peers.clear();
    for (const [k, p] of nodes) this.peers.set(k, p);
    this.espDirty = true;
    this.changes = null;
    this.listed = true;
    if (this.stopped) return;
    this.emit((l) => l.resync?.([...this.networks.values()], [...this.endpoints.values()]));
  }

  private onNetworkEvent(key: string, after: Network | undefined): void {
    const before = this.networks.get(key);
    if (after) this.networks.set(key, after); else this.networks.delete(key);
    for (const n of [before, after]) if (n) this.dirtyNets.add(n.name);
    this.emit((l) => l.network?.(before, after));
  }

  /** An endpoint put or deleted: remembered for an incremental pass (one FDB and neighbour change, no dumps). */
  private onEndpointEvent(key: string, after: Endpoint | undefined): void {
    const before = this.endpoints.get(key);
    if (after) this.endpoints.set(key, after); else this.endpoints.delete(key);
    this.owners.set(key, before, after);
    this.emit((l) => l.endpoint?.(before, after));
    if (this.esps.size && [before, after].some((e) => e && this.isEncrypted(e.network))) this.espDirty = true;
    if (!this.changes) return; // a full pass is due anyway
    const prev = this.changes.get(key);
    this.changes.set(key, { ...(prev ? (prev.before ? { before: prev.before } : {}) : before ? { before } : {}), ...(after ? { after } : {}) });
  }

  private schedule(): void {
    if (this.stopped || this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      void this.reconcile().catch((e) => this.fail('reconcile', e));
    }, DEBOUNCE_MS);
  }

  /** One pass at a time; a request during a pass runs one more pass after it. */
  private async reconcile(): Promise<void> {
    if (this.running) { this.again = true; return this.running; }
    this.running = (async () => {
      do {
        this.again = false;
        const t0 = performance.now();
        await this.refreshKeyGen();
        const changes = this.changes;
        const nets = this.dirtyNets;
        this.changes = new Map();
        this.dirtyNets = new Set();
        try {
          if (!changes) this.apply();
          else {
            // Networks first: a new network's devices exist before its endpoints' entries go in.
            if (nets.size) this.applyNetworks(nets);
            this.applyEndpointChanges(changes);
            if (this.espDirty) this.syncEsp();
          }
        } catch (e) {
          this.changes = null; // whatever failed, the next pass looks at everything
          this.fail('reconcile', e);
        }
        this.status.reconciles++;
        this.status.lastReconcileMs = performance.now() - t0;
      } while (this.again && !this.stopped);
    })().finally(() => { this.running = null; });
    return this.running;
  }

  /** The full pass: everything the view holds, made true in the kernel and the conf dir. */
  private apply(): void {
    this.applyNetworks(null);
    this.status.endpoints = this.endpoints.size;
  }

  /**
   * Networks changed (`names`; null: all): every conflist is checked (one read each), devices of
   * removed networks go, and only the named networks' devices and remote entries are synced, so
   * creating the 200th network does not walk the entries of the other 199.
   */
  private applyNetworks(names: Set<string> | null): void {
    const nets = [...this.networks.values()];
    this.status.networks = nets.length;
    this.syncConflists(nets);
    // Overlay devices: those of existing networks made or corrected, the rest removed.
    const overlays = new Map(nets.filter((n) => n.driver === 'overlay' && n.options.vni !== undefined).map((n) => [n.options.vni!, n]));
    for (const vni of overlayVnis(this.nl)) {
      if (!overlays.has(vni)) { removeOverlay(this.nl, vni); this.o.log.info(`removed the devices of VNI ${vni}: its network is gone`); }
    }
    const byNet = new Map<string, RemoteEndpoint[]>();
    for (const e of this.endpoints.values()) {
      if (e.node === this.o.nodeName || !e.mac || (names && !names.has(e.network))) continue;
      const list = byNet.get(e.network) ?? [];
      // Each entry goes to its owner only (a MAC or address on several records: pkg/network/owners.ts).
      const mac = e.mac.toLowerCase();
      list.push({ mac, nodeIp: e.nodeIp, fdb: this.owners.fdb(e.network, mac) === e.nodeIp, ips: addrs(e).filter((ip) => this.owners.neigh(e.network, ip) === mac) });
      byNet.set(e.network, list);
    }
    // Encrypted networks: each cipher's ESP base policies before its networks' devices, or no devices at all.
    const encrypted = [...overlays.values()].filter(isEncrypted).map((n) => n.name).sort();
    const ready = new Set<EspCipherName>();
    for (const c of CIPHERS) {
      const of = [...overlays.values()].filter((n) => cipherOf(n) === c).map((n) => n.name).sort();
      try {
        if (!of.length) this.dropEsp(c);
        else if (this.ensureEsp(c, of)) ready.add(c);
      } catch (e) {
        this.fail(`ESP ${c} of the encrypted networks ${of.join(', ')} (no devices for them this pass)`, e); // the others go on
      }
    }
    let remote = 0;
    for (const [vni, n] of overlays) {
      if (names && !names.has(n.name)) continue;
      const cipher = cipherOf(n);
      if (cipher && !ready.has(cipher)) { removeOverlay(this.nl, vni); continue; } // never in clear
      ensureOverlay(this.nl, vni, this.underlay!, n.options.mtu, cipher ? ESP_OVERHEAD : 0, cipher ? NAMED_NETWORKS_ESP_BY_CIPHER[cipher].port : undefined);
      const remotes = byNet.get(n.name) ?? [];
      remote += remotes.length;
      syncRemotes(this.nl, vni, remotes);
    }
    if (!names) this.status.remoteEndpoints = remote;
    if (ready.size && (!names || this.espDirty || encrypted.some((e) => names.has(e)))) this.syncEsp();
  }

  /**
   * Only endpoints changed: the FDB entries of their MACs and the neighbour entries of their
   * addresses are set from their owners now (a put or delete each), so a new container costs the
   * same with 10 or 10,000 others. Never "remove what the old record had": another record (a
   * container that took the address, and with it the derived MAC, on another node) may own it
   * now (pkg/network/owners.ts). Local endpoints count too: one appearing takes its MAC and
   * addresses from remote entries. The timer's full pass still catches anything this misses.
   */
  private applyEndpointChanges(changes: Map<string, { before?: Endpoint; after?: Endpoint }>): void {
    const vniOf = new Map<string, number>();
    for (const n of this.networks.values()) {
      // An encrypted network without ESP here has no devices (applyNetworks): nothing to add to.
      const cipher = cipherOf(n);
      if (n.driver === 'overlay' && n.options.vni !== undefined && (!cipher || this.esps.has(cipher))) vniOf.set(n.name, n.options.vni);
    }
    const devices = new Map<number, ReturnType<typeof vxlanOf>>();
    const done = new Set<string>();
    for (const { before, after } of changes.values()) {
      for (const e of [after, before]) {
        const vni = e ? vniOf.get(e.network) : undefined;
        if (!e || vni === undefined) continue;
        if (!devices.has(vni)) devices.set(vni, vxlanOf(this.nl, vni));
        const vx = devices.get(vni);
        if (!vx) continue;
        // FDB before neighbour entries: an address is answered only once its MAC leads somewhere.
        const mac = e.mac.toLowerCase();
        if (mac && !done.has(`m\0${e.network}\0${mac}`)) {
          done.add(`m\0${e.network}\0${mac}`);
          setFdb(this.nl, vx, mac, this.owners.fdb(e.network, mac));
        }
        for (const ip of addrs(e)) {
          if (done.has(`i\0${e.network}\0${ip}`)) continue;
          done.add(`i\0${e.network}\0${ip}`);
          setNeigh(this.nl, vx, ip, this.owners.neigh(e.network, ip));
        }
      }
    }
    this.status.endpoints = this.endpoints.size;
  }

  /** Conflists of knit's networks: written when missing or different, removed when their network is gone. */
  private syncConflists(nets: Network[]): void {
    const dir = this.o.confDir;
    fs.mkdirSync(dir, { recursive: true });
    const want = new Map(nets.map((n) => [conflistFile(n.name), n]));
    for (const f of fs.readdirSync(dir)) {
      if (!f.startsWith(CONFLIST_PREFIX) || !f.endsWith('.conflist') || want.has(f)) continue;
      fs.rmSync(path.join(dir, f), { force: true });
      const name = f.slice(CONFLIST_PREFIX.length, -'.conflist'.length);
      try { removeMasq(name); } catch (e) { this.o.log.warn(`masquerade of removed network ${name}: ${(e as Error).message}`); }
      this.o.log.info(`removed ${f}: network ${name} is gone`);
    }
    for (const [file, n] of want) {
      const text = JSON.stringify(renderConflist(n, this.source.conflistContext()), null, 2) + '\n';
      const full = path.join(dir, file);
      let have = '';
      try { have = fs.readFileSync(full, 'utf8'); } catch { /* new */ }
      if (have !== text) {
        writeAtomic(full, text, 0o600);
        this.o.log.info(`wrote ${file} (network ${n.name}, driver ${n.driver})`);
      }
    }
  }

  private fail(what: string, e: unknown): void {
    this.status.errors++;
    this.o.log.error(`networks: ${what}: ${(e as Error).message ?? e}`);
  }
}
