// knitd's resolver (docs/dns.md): the record table fed by the named-network agent's watch
// (networks, endpoints) and a watch of the services, and the server listening on the gateway
// addresses of the knit networks present on this node.
//
// A network's gateway address appears on this node with its first container here (the plugin
// puts it on the network's bridge); knitd listens on it once it is there: looked at after every
// endpoint change of this node (the plugin records the endpoint after the address is set, so the
// socket is open before the runtime starts the container) and every second. Only an address
// found on the network's own bridge is used: never the underlay.
import * as os from 'node:os';
import type { Logger } from '../cni/log';
import { EtcdClient, prefixEnd } from '../etcd/client';
import { EtcdWatch } from '../etcd/watch';
import type { EtcdConnConfig } from '../ipam/etcd-config';
import { formatIP, parseIP } from '../ip/ip';
import type { NetworksListener } from '../agent/networks';
import { overlayBridgeName } from '../network/conflist';
import type { Network } from '../network/spec';
import { decodeService, servicesPrefix, type Service } from '../service/spec';
import type { Endpoint } from '../network/store';
import { localView, scanLocal, type LocalRecord } from './local';
import { DnsServer, type DnsStats, type Listen } from './server';
import { RecordTable } from './table';
import { Forwarder } from './upstream';

export interface ResolverOptions {
  /** The datastore of the named networks (their services are watched here); absent: local records only. */
  conn?: EtcdConnConfig;
  /** knitd's run directory: the records of plain knit-bridge networks (pkg/dns/local.ts). */
  runDir?: string;
  nodeName: string;
  /** The node's resolv.conf, whose nameservers get the names that are not knit's. */
  resolvConf: string;
  port?: number;
  log: Logger;
}

export interface ResolverStats extends DnsStats {
  networks: number;
  names: number;
  records: number;
}


export class Resolver {
  readonly table = new RecordTable();
  readonly server: DnsServer;
  private readonly client: EtcdClient | null;
  private watch: EtcdWatch | null = null;
  /** The named networks as the agent last gave them, and the local records' view. */
  private named: { networks: Network[]; endpoints: Endpoint[] } = { networks: [], endpoints: [] };
  private local = { networks: new Map<string, Network>(), endpoints: new Map<string, Endpoint>(), bridges: new Map<string, string>() };
  private readonly localCache = new Map<string, { mtimeMs: number; records: LocalRecord[] }>();
  private localTimer: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private syncing: Promise<void> | null = null;
  private again = false;

  constructor(private readonly o: ResolverOptions) {
    this.client = o.conn ? new EtcdClient(o.conn) : null;
    const forwarder = new Forwarder({ resolvConf: o.resolvConf, exclude: () => this.server.addresses() });
    this.server = new DnsServer({ table: this.table, forwarder, log: o.log, ...(o.port !== undefined ? { port: o.port } : {}) });
  }

  /** The listener the named-network agent calls (each new agent instance gets it). */
  readonly listener: NetworksListener = {
    resync: (networks, endpoints) => {
      this.named = { networks, endpoints };
      this.table.resync([...networks, ...this.local.networks.values()], [...endpoints, ...this.local.endpoints.values()]);
      this.sync();
    },
    network: (before, after) => {
      this.named.networks = [...this.named.networks.filter((n) => n.name !== (before ?? after)!.name), ...(after ? [after] : [])];
      this.table.network(before, after);
      this.sync();
    },
    endpoint: (before, after) => {
      this.table.endpoint(before, after);
      if (before?.node === this.o.nodeName || after?.node === this.o.nodeName) this.sync();
    },
  };

  start(): void {
    if (this.client) void this.relistServices();
    this.timer = setInterval(() => this.sync(), 1000);
    this.timer.unref();
    if (this.o.runDir) {
      this.pollLocal();
      // A poll is a few stats (only changed directories are read again): 200 ms keeps a new
      // container's name ahead of its start.
      this.localTimer = setInterval(() => this.pollLocal(), 200);
      this.localTimer.unref();
    }
  }

  /** Applies the local records' changes to the table (networks, then endpoints, as diffs). */
  private pollLocal(): void {
    let view: ReturnType<typeof localView>;
    try { view = localView(scanLocal(this.o.runDir!, this.localCache)); } catch (e) { this.o.log.warn(`dns: local records: ${(e as Error).message}`); return; }
    let changed = false;
    const key = (e: Endpoint): string => `${e.network}\0${e.containerId}\0${e.ifName}`;
    // A named network of the same name wins: the local records of that name are left out.
    const named = new Set(this.named.networks.map((n) => n.name));
    const nets = new Map(view.networks.filter((n) => !named.has(n.name)).map((n) => [n.name, n]));
    const eps = new Map(view.endpoints.filter((e) => !named.has(e.network)).map((e) => [key(e), e]));
    for (const [k, e] of this.local.endpoints) if (!eps.has(k)) { this.table.endpoint(e, undefined); changed = true; }
    for (const [name, n] of this.local.networks) if (!nets.has(name)) { this.table.network(n, undefined); changed = true; }
    for (const [name, n] of nets) {
      const old = this.local.networks.get(name);
      if (!old || JSON.stringify(old.subnets) !== JSON.stringify(n.subnets)) { this.table.network(old, n); changed = true; }
    }
    for (const [k, e] of eps) {
      const old = this.local.endpoints.get(k);
      if (!old || JSON.stringify(old) !== JSON.stringify(e)) { this.table.endpoint(old, e); changed = true; }
    }
    this.local = { networks: nets, endpoints: eps, bridges: view.bridges };
    if (changed) this.sync();
  }

  /** The bridge a network's gateway is on, on this node. */
  private bridgeOf(n: Network): string | null {
    if (n.driver === 'overlay' && n.options.vni !== undefined) return overlayBridgeName(n.options.vni);
    return this.local.bridges.get(n.name) ?? null;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.localTimer) clearInterval(this.localTimer);
    this.watch?.close();
    this.server.stop();
    this.client?.close();
  }

  stats(): ResolverStats {
    return { ...this.server.stats, ...this.table.size() };
  }

  private async relistServices(): Promise<void> {
    if (this.stopped || !this.client || !this.o.conn) return;
    const p = servicesPrefix(this.o.conn.prefix);
    try {
      const r = await this.client.range({ key: p, rangeEnd: prefixEnd(p) });
      this.table.resyncServices(r.kvs.map((kv) => decodeService(kv.value)).filter((s): s is Service => !!s));
      this.watch?.close();
      if (this.stopped) return;
      const byKey = new Map<string, Service>();
      for (const kv of r.kvs) { const s = decodeService(kv.value); if (s) byKey.set(kv.key.toString(), s); }
      this.watch = new EtcdWatch({
        conn: this.o.conn, client: this.client, prefix: p, revision: r.revision,
        onEvents: (events) => {
          for (const ev of events) {
            const key = ev.kv.key.toString();
            const before = byKey.get(key);
            const after = ev.type === 'put' ? decodeService(ev.kv.value) ?? undefined : undefined;
            if (after) byKey.set(key, after); else byKey.delete(key);
            this.table.service(before, after);
          }
        },
        onError: (err) => {
          if (this.stopped) return;
          this.o.log.warn(`dns: services watch: ${err.message}; listing again`);
          setTimeout(() => void this.relistServices(), 1000).unref();
        },
      });
    } catch (e) {
      this.o.log.warn(`dns: services: ${(e as Error).message}; retrying`);
      setTimeout(() => void this.relistServices(), 2000).unref();
    }
  }

  /** The gateway addresses of resolver-enabled networks present on their bridge on this node. */
  wanted(): Listen[] {
    const ifs = os.networkInterfaces();
    const out: Listen[] = [];
    for (const n of this.table.networks()) {
      const br = this.bridgeOf(n);
      if (!br) continue;
      const have = new Set((ifs[br] ?? []).map((a) => { const p = parseIP(a.address.replace(/%.*$/, '')); return p ? formatIP(p) : a.address; }));
      for (const s of n.subnets) {
        const gw = parseIP(s.gateway);
        if (gw && have.has(formatIP(gw))) out.push({ address: formatIP(gw), network: n.name });
      }
    }
    return out;
  }

  /** Brings the sockets in line with wanted(); one pass at a time, one more if asked meanwhile. */
  sync(): void {
    if (this.stopped) return;
    if (this.syncing) { this.again = true; return; }
    this.syncing = (async () => {
      do {
        this.again = false;
        await this.server.listen(this.wanted());
      } while (this.again && !this.stopped);
    })().catch((e) => this.o.log.error(`dns: ${(e as Error).message}`)).finally(() => { this.syncing = null; });
  }
}
