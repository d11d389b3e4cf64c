// knitd's service load balancer (docs/services.md): every service (from etcd's <prefix>/services/,
// or from the mesh's replica: the source, services-source.ts) whose network is an overlay network becomes, on this node, an nftables map over its backends (the
// network's endpoints holding the service's name), a local route for its VIP on the network's
// bridge, and this node's load-balancer address on the network (reserved, published as an
// endpoint record, a local route). The datapath is pkg/service/lb.ts.
//
//   services (the source)      --watch------------------->  desired state  --> nft table, routes
//        networks, endpoints   --NetworksAgent.subscribe-->       |
//                                                          LB reservations and endpoint records
//
// Like the networks agent: every change leads to one debounced pass over the whole desired state,
// so a restart, a missed event or a service removed while knitd was down converge the same way.
import type { Logger } from '../cni/log';
import type { EtcdConnConfig } from '../ipam/etcd-config';
import { contains, parseCIDR, parseIP } from '../ip/ip';
import { Netlink, linkFind } from '../netlink';
import { overlayBridgeName } from '../network/conflist';
import type { Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import { applyTable, backendsOf, renderChanges, syncLocalRoutes, type LbService } from '../service/lb';
import { LB_CONTAINER, LB_IFNAME, isLbEndpoint } from '../service/owners';
import type { Service } from '../service/spec';
import type { NetworksAgent, NetworksListener } from './networks';
import { EtcdServicesSource } from './services-etcd';
import type { ServicesSource } from './services-source';

const epKey = (e: Pick<Endpoint, 'network' | 'node' | 'containerId' | 'ifName'>): string => `${e.network}/${e.node}/${e.containerId}/${e.ifName}`;

export interface ServicesAgentOptions {
  /** etcd (the source is made from it), or `source` (the mesh). */
  conn?: EtcdConnConfig;
  source?: ServicesSource;
  nodeName: string;
  resyncSec: number;
  log: Logger;
}

export interface ServicesStatus {
  /** Services balanced on this node (their network is here and has a load-balancer address). */
  services: number;
  /** Backends over every service's map. */
  backends: number;
  /** Table replacements (only when the rendered table changed). */
  applies: number;
  passes: number;
  errors: number;
  lastPassMs: number;
}

const DEBOUNCE_MS = 10;
/** A pass that could not finish a network (its bridge not made yet, no lease yet) runs again after this. */
const RETRY_MS = 250;

export class ServicesAgent implements NetworksListener {
  readonly status: ServicesStatus = { services: 0, backends: 0, applies: 0, passes: 0, errors: 0, lastPassMs: 0 };
  private readonly source: ServicesSource;
  private readonly networks = new Map<string, Network>();
  private readonly endpoints = new Map<string, Endpoint>();
  /** This node's load-balancer address per network, as reserved. */
  private readonly lbs = new Map<string, string>();
  private readonly nl = Netlink.open(null);
  private agent: NetworksAgent | null = null;
  private timers: NodeJS.Timeout[] = [];
  private pending: NodeJS.Timeout | null = null;
  private pendingDue = 0;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** The services the table holds as last written; null: write the whole table next time. */
  private applied: LbService[] | null = null;
  private haveNetworks = false;

  constructor(private readonly o: ServicesAgentOptions) {
    if (o.source) this.source = o.source;
    else if (o.conn) this.source = new EtcdServicesSource(o.conn, o.nodeName, o.log);
    else throw new Error('ServicesAgent: conn or source');
  }

  /** Follows this networks agent (a restarted one replaces the last). */
  attach(agent: NetworksAgent): void {
    this.agent = agent;
    agent.subscribe(this);
  }

  /** Lists and follows the services; while the source cannot be reached, tries again every few seconds. */
  async start(): Promise<void> {
    try {
      await this.source.start(() => this.schedule(), (e) => this.fail('relist', e));
    } catch (e) {
      if (this.stopped) return;
      this.fail('start', e);
      await new Promise((r) => setTimeout(r, 2000).unref());
      return this.start();
    }
    this.timers.push(setInterval(() => {
      this.lbs.clear(); // reservations checked again: someone may have released one
      void this.source.start(() => this.schedule(), (e) => this.fail('relist', e)).then(() => this.schedule(), (e) => this.fail('resync', e));
    }, this.o.resyncSec * 1000));
    for (const t of this.timers) t.unref();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.pending) clearTimeout(this.pending);
    this.source.close();
    this.nl.close();
  }

  /** Runs a pass now (tests): resolves when the node matches the state as last seen. */
  async sync(): Promise<void> { await this.pass(); }

  // ---- NetworksListener ----------------------------------------------------------------------

  resync(networks: Network[], endpoints: Endpoint[]): void {
    this.networks.clear();
    for (const n of networks) this.networks.set(n.name, n);
    this.endpoints.clear();
    for (const e of endpoints) this.endpoints.set(epKey(e), e);
    this.haveNetworks = true;
    this.schedule();
  }

  network(before: Network | undefined, after: Network | undefined): void {
    if (before) this.networks.delete(before.name);
    if (after) this.networks.set(after.name, after);
    this.schedule();
  }

  endpoint(before: Endpoint | undefined, after: Endpoint | undefined): void {
    if (before) this.endpoints.delete(epKey(before));
    if (after) this.endpoints.set(epKey(after), after);
    this.schedule();
  }

  // ---- passes --------------------------------------------------------------------------------

  /** A pass after `delay`, unless one is already due sooner (a change never waits for a retry's timer). */
  private schedule(delay = DEBOUNCE_MS): void {
    if (this.stopped) return;
    const due = Date.now() + delay;
    if (this.pending && this.pendingDue <= due) return;
    if (this.pending) clearTimeout(this.pending);
    this.pendingDue = due;
    this.pending = setTimeout(() => {
      this.pending = null;
      void this.pass().catch((e) => this.fail('pass', e));
    }, delay);
  }

  private async pass(): Promise<void> {
    if (this.running) { this.again = true; return this.running; }
    this.running = (async () => {
      do {
        this.again = false;
        const t0 = performance.now();
        try {
          if (!(await this.reconcile()) && !this.stopped) this.schedule(RETRY_MS);
        } catch (e) {
          this.fail('reconcile', e);
          if (!this.stopped) this.schedule(RETRY_MS * 4);
        }
        this.status.passes++;
        this.status.lastPassMs = performance.now() - t0;
      } while (this.again && !this.stopped);
    })().finally(() => { this.running = null; });
    return this.running;
  }

  /** One pass; false when something is not ready yet (a retry is scheduled). */
  private async reconcile(): Promise<boolean> {
    if (!this.haveNetworks) return true; // the networks agent's first list is still to come
    let complete = true;
    const byNet = new Map<string, Service[]>();
    for (const s of this.source.services()) {
      const n = this.networks.get(s.network);
      if (!n || n.driver !== 'overlay' || n.options.vni === undefined) continue;
      byNet.set(n.name, [...(byNet.get(n.name) ?? []), s]);
    }
    const lease = this.agent?.status.lease;
    const nodeIp = this.agent?.status.nodeIp;

    // This node's load-balancer address on each network with services: reserved, published.
    const ready = new Map<string, { lb: string; bridge: string }>();
    for (const name of byNet.keys()) {
      const net = this.networks.get(name)!;
      const bridge = overlayBridgeName(net.options.vni!);
      const br = linkFind(this.nl, bridge);
      if (!br?.mac || (this.source.needsLease && !lease) || !nodeIp) { complete = false; continue; }
      let lb = this.lbs.get(name);
      if (!lb) {
        lb = await this.source.reserveLb(net);
        this.lbs.set(name, lb);
      }
      const at = parseIP(lb)!;
      const prefix = net.subnets.map((s) => parseCIDR(s.subnet)!).find((n) => contains(n, at))?.prefix ?? 32;
      const rec: Endpoint = {
        network: name, containerId: LB_CONTAINER(name), ifName: LB_IFNAME, node: this.o.nodeName, nodeIp, mac: br.mac, ips: [`${lb}/${prefix}`], created: '',
      };
      const have = this.endpoints.get(epKey(rec));
      if (!have || have.mac !== rec.mac || have.nodeIp !== rec.nodeIp || have.ips.join() !== rec.ips.join()) {
        const put = { ...rec, created: have?.created || new Date().toISOString() };
        await this.source.putEndpoint(put, lease);
        this.endpoints.set(epKey(put), put); // the watch confirms it; no second put meanwhile
        this.o.log.info(`services: load-balancer address ${lb} of network ${name} on ${bridge} published`);
      }
      ready.set(name, { lb, bridge });
    }
    // Networks without services (here): this node's record and reservation go.
    for (const e of [...this.endpoints.values()]) {
      if (e.node !== this.o.nodeName || !isLbEndpoint(e) || byNet.has(e.network)) continue;
      await this.source.deleteEndpoint(e);
      this.endpoints.delete(epKey(e));
      await this.source.releaseLb(e.network, this.networks.get(e.network)).catch(() => undefined);
      this.lbs.delete(e.network);
      this.o.log.info(`services: network ${e.network} has no services: load-balancer address released`);
    }

    const lbServices: LbService[] = [];
    const routes = new Map<string, string[]>();
    for (const [name, svcs] of byNet) {
      const r = ready.get(name);
      if (!r) continue;
      const local = [r.lb];
      for (const s of svcs) {
        const vip = s.vips.find((v) => v.includes('.'));
        if (!vip) continue;
        lbServices.push({ network: name, name: s.name, vip, ports: s.ports, backends: backendsOf(s, this.endpoints.values()), lb: r.lb });
        local.push(vip);
      }
      routes.set(r.bridge, local);
    }
    syncLocalRoutes(this.nl, routes);
    const script = renderChanges(this.applied, lbServices);
    if (script) {
      this.applied = null; // unknown until nft says it is done: a failed change means a whole write next time
      applyTable(script);
      this.status.applies++;
      this.o.log.debug(`services: table ${lbServices.length ? `updated (${lbServices.length} service(s))` : 'removed'}`);
    }
    this.applied = lbServices;
    this.status.services = lbServices.length;
    this.status.backends = lbServices.reduce((n, s) => n + s.backends.length, 0);
    return complete;
  }

  private fail(what: string, e: unknown): void {
    this.status.errors++;
    this.o.log.error(`services: ${what}: ${(e as Error).message ?? e}`);
  }
}
