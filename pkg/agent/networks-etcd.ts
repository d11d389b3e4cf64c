// The named-network agent's source on etcd (networks-source.ts): <prefix>/networks/* and
// <prefix>/endpoints/* listed and watched from the revision read; this node's endpoints live on
// its etcd lease (kept in the state dir, so a restarted knitd keeps a live lease or moves its
// endpoints to a new one), named in <runDir>/networks/node.json for the plugins.
// <prefix>/netnodes/<node>: each node's record for encrypted networks (public key, key
// generation), on its lease too.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../cni/log';
import { EtcdClient, prefixEnd } from '../etcd/client';
import { leaseGrant, leaseKeepAlive, leaseTimeToLive } from '../etcd/lease';
import { EtcdWatch, type WatchEvent } from '../etcd/watch';
import type { EtcdConnConfig } from '../ipam/etcd-config';
import type { NodeContext } from '../network/conflist';
import { writeAtomic, writeNodeFile } from '../network/node-file';
import type { Network } from '../network/spec';
import { NetworkStore, decodeEndpoint, decodeNetwork, decodeNode, type Endpoint, type NetworkNode } from '../network/store';
import type { Listed, NetworksSource, OwnEncryption, PeerRecord, SourceEvents } from './networks-source';

export interface EtcdSourceOptions { conn: EtcdConnConfig; nodeName: string; runDir: string; stateDir: string; ttlSec: number; log: Logger }

export class EtcdNetworksSource implements NetworksSource {
  readonly client: EtcdClient;
  readonly store: NetworkStore;
  lease = '';
  private nodeIp = '';
  private watches: EtcdWatch[] = [];
  private closed = false;
  /** This node's record as last asked for (null: not yet), and what was last written (lease + JSON). */
  private record: Omit<NetworkNode, 'updated'> | null = null;
  private written = '';
  /** Writes of the node record, one after the other (a later record never lands before an earlier one). */
  private writes: Promise<void> = Promise.resolve();

  constructor(private readonly o: EtcdSourceOptions) {
    this.client = new EtcdClient(o.conn);
    this.store = new NetworkStore(this.client, o.conn.prefix);
  }

  conflistContext(): NodeContext { return { nodeName: this.o.nodeName, etcd: this.o.conn, runDir: this.o.runDir }; }

  async open(nodeIp: string): Promise<void> {
    this.nodeIp = nodeIp;
    await this.ensureLease();
  }

  private leaseFile(): string { return path.join(this.o.stateDir, 'networks-lease'); }

  /** A live lease for this node: the one kept in the state dir if etcd still has it, else a new one. */
  private async ensureLease(): Promise<void> {
    let kept = '';
    try { kept = fs.readFileSync(this.leaseFile(), 'utf8').trim(); } catch { /* none yet */ }
    if (kept && (await leaseTimeToLive(this.client, kept)) > 0) {
      this.lease = kept;
    } else {
      this.lease = await leaseGrant(this.client, this.o.ttlSec);
      fs.mkdirSync(this.o.stateDir, { recursive: true });
      writeAtomic(this.leaseFile(), `${this.lease}\n`, 0o600);
      if (kept) await this.moveOwnEndpoints();
    }
    writeNodeFile(this.o.runDir, { nodeName: this.o.nodeName, nodeIp: this.nodeIp, lease: this.lease, etcd: this.o.conn, updated: new Date().toISOString() });
    await this.writeRecord(); // a new lease: the record goes on it
  }

  async publishNode(enc: OwnEncryption | null): Promise<void> {
    this.record = { node: this.o.nodeName, nodeIp: this.nodeIp, ...(enc ? { encKey: enc.key, encGen: enc.gen } : {}) };
    await this.writeRecord();
  }

  private writeRecord(): Promise<void> {
    const next = this.writes.then(async () => {
      if (!this.record || !this.lease || this.closed) return;
      const text = `${this.lease} ${JSON.stringify(this.record)}`;
      if (text === this.written) return;
      await this.store.putNode({ ...this.record, updated: new Date().toISOString() }, this.lease);
      this.written = text;
    });
    this.writes = next.catch(() => undefined);
    return next;
  }

  /** The lease was lost (knitd was down past its TTL, or etcd forgot it): this node's endpoints go on the new one. */
  private async moveOwnEndpoints(): Promise<void> {
    const { endpoints } = await this.store.endpoints();
    const mine = endpoints.filter((e) => e.node === this.o.nodeName);
    for (const e of mine) await this.store.putEndpoint({ ...e, nodeIp: this.nodeIp }, this.lease);
    if (mine.length) this.o.log.info(`moved ${mine.length} endpoint record(s) of this node to lease ${this.lease}`);
  }

  async keepAlive(): Promise<void> {
    if (this.closed) return;
    const ttl = await leaseKeepAlive(this.client, this.lease);
    if (ttl <= 0) {
      this.o.log.warn(`lease ${this.lease} expired: taking a new one`);
      await this.ensureLease();
    }
  }

  /** Reads both prefixes and (re)starts the watches from the revision read. */
  async list(on: SourceEvents): Promise<Listed> {
    const np = this.store.networksPrefix();
    const ep = this.store.endpointsPrefix();
    const nn = this.store.nodesPrefix();
    const nets = await this.client.range({ key: np, rangeEnd: prefixEnd(np) });
    const eps = await this.client.range({ key: ep, rangeEnd: prefixEnd(ep) });
    const nds = await this.client.range({ key: nn, rangeEnd: prefixEnd(nn) });
    const networks = new Map<string, Network>();
    for (const kv of nets.kvs) { const n = decodeNetwork(kv); if (n) networks.set(kv.key.toString(), n); }
    const endpoints = new Map<string, Endpoint>();
    for (const kv of eps.kvs) { const e = decodeEndpoint(kv); if (e) endpoints.set(kv.key.toString(), e); }
    const nodes = new Map<string, PeerRecord>();
    for (const kv of nds.kvs) { const n = decodeNode(kv); if (n) nodes.set(n.node, n); }
    for (const w of this.watches) w.close();
    this.watches = [];
    if (this.closed) return { networks, endpoints, nodes };
    const decoded = <T>(ev: WatchEvent, decode: (kv: WatchEvent['kv']) => T | null): T | undefined => (ev.type === 'del' ? undefined : decode(ev.kv) ?? undefined);
    this.watches = [
      this.watch(np, nets.revision, on, (ev) => on.network(ev.kv.key.toString(), decoded(ev, decodeNetwork))),
      this.watch(ep, eps.revision, on, (ev) => on.endpoint(ev.kv.key.toString(), decoded(ev, decodeEndpoint))),
      this.watch(nn, nds.revision, on, (ev) => on.node(ev.kv.key.toString().slice(nn.length), decoded(ev, decodeNode))),
    ];
    return { networks, endpoints, nodes };
  }

  private watch(prefix: string, revision: number, on: SourceEvents, apply: (ev: WatchEvent) => void): EtcdWatch {
    return new EtcdWatch({
      conn: this.o.conn, client: this.client, prefix, revision,
      onEvents: (events) => { for (const ev of events) apply(ev); on.flush(); },
      onError: (err) => { if (!this.closed) on.error(new Error(`watch ${prefix}: ${err.message}`)); },
    });
  }

  close(): void {
    this.closed = true;
    for (const w of this.watches) w.close();
    this.client.close();
  }
}
