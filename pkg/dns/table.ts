// The resolver's records: every name of every knit network, scoped per network, built from the
// same datastore records every node sees (networks, endpoints, services), so every knitd answers
// alike. Pure: knitd feeds it from its watches, knitctl from one read, tests from literals.
//
// Per network, a name maps to addresses from:
//   container  the endpoint's name (the runtime's K8S_POD_NAME: podman's container name)
//   alias      the endpoint's aliases (CNI `aliases` capability: podman --network-alias)
//   service    a service's VIPs (knitctl service create); while a service holds a name, the name
//              answers the VIPs only and `tasks.<name>` answers its containers (swarm's names)
// A name held by several containers answers all their addresses, rotated on each answer (DNS
// round robin).
import { contains, formatIP, parseCIDR, parseIP, type IPNet } from '../ip/ip';
import { resolverOn, type Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import type { Service } from '../service/spec';
import { isDnsName, networkDomain, normalizeName, ZONE } from './names';

export type RecordSource =
  | { kind: 'container' | 'alias'; node: string; containerId: string; ifName: string }
  | { kind: 'service'; service: string };

/** A record's origin in words: `container web1 (3f2a9c1b7d0e/eth0) on node h1`. */
export function describeSource(s: RecordSource): string {
  if (s.kind === 'service') return `service ${s.service} (VIP)`;
  return `${s.kind === 'alias' ? 'alias of' : 'container'} ${s.containerId.slice(0, 12)}/${s.ifName} on node ${s.node}`;
}

export interface DnsRecord {
  network: string;
  name: string;
  address: string;
  family: 4 | 6;
  source: RecordSource;
}

/** What a name resolves to in a client's scope: null when no network of the scope has it. */
export interface Resolution {
  network: string;
  records: DnsRecord[];
}

interface Scope {
  net: Network;
  subnets: IPNet[];
  /** name -> records (container and alias sources). */
  names: Map<string, DnsRecord[]>;
  /** name -> records (service sources). */
  services: Map<string, DnsRecord[]>;
}

const TASKS = 'tasks.';
const bare = (cidr: string): string => cidr.split('/')[0]!;
const canon = (ip: string): string | null => { const p = parseIP(bare(ip)); return p ? formatIP(p) : null; };
const containerKey = (e: Pick<Endpoint, 'node' | 'containerId'>): string => `${e.node}\0${e.containerId}`;
const sameAttachment = (s: { node: string; containerId: string; ifName: string }, e: Endpoint): boolean =>
  s.node === e.node && s.containerId === e.containerId && s.ifName === e.ifName;
const endpointKey = (e: Endpoint): string => `${e.network}\0${e.node}\0${e.containerId}\0${e.ifName}`;

/** The names an endpoint publishes, each with the kind of source it came from. */
function endpointNames(e: Endpoint): Array<{ name: string; kind: 'container' | 'alias' }> {
  const out: Array<{ name: string; kind: 'container' | 'alias' }> = [];
  const add = (n: string | undefined, kind: 'container' | 'alias'): void => {
    if (!n || !isDnsName(n)) return; // a name DNS cannot carry is simply not published
    const name = normalizeName(n);
    if (!out.some((o) => o.name === name)) out.push({ name, kind });
  };
  add(e.name, 'container');
  for (const a of e.aliases ?? []) add(a, 'alias');
  return out;
}

export class RecordTable {
  private readonly scopes = new Map<string, Scope>();
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly services = new Map<string, Service>();
  /** address -> the endpoints holding it (a client's address tells its container). */
  private readonly byAddress = new Map<string, Endpoint[]>();
  /** node+container -> networks it is on. */
  private readonly containers = new Map<string, Set<string>>();
  /** Round robin position per network and name. */
  private readonly turns = new Map<string, number>();
  /** Every network, also those whose resolver is off (-o dns=false: no records, no scope). */
  private readonly nets = new Map<string, Network>();

  /** Replaces everything (after a (re)list). */
  resync(networks: Iterable<Network>, endpoints: Iterable<Endpoint>, services: Iterable<Service> = this.services.values()): void {
    const svcs = [...services];
    this.scopes.clear(); this.endpoints.clear(); this.services.clear(); this.byAddress.clear(); this.containers.clear(); this.nets.clear();
    for (const n of networks) this.putNetwork(n);
    for (const e of endpoints) this.putEndpoint(e);
    for (const s of svcs) this.putService(s);
  }

  /** Replaces the endpoints only (networks and services kept). */
  resyncEndpoints(endpoints: Iterable<Endpoint>): void {
    this.resync([...this.nets.values()], endpoints);
  }

  /** Replaces the services only. */
  resyncServices(services: Iterable<Service>): void {
    for (const s of [...this.services.values()]) this.removeService(s);
    for (const s of services) this.putService(s);
  }

  network(before: Network | undefined, after: Network | undefined): void {
    const name = after?.name ?? before?.name;
    if (!name) return;
    // A network changed or removed: rebuild its scope from the records kept.
    this.scopes.delete(name); this.nets.delete(name);
    if (after) this.putNetwork(after);
    const scope = this.scopes.get(name);
    if (!scope) return;
    for (const e of this.endpoints.values()) if (e.network === name) this.index(scope, e);
    for (const s of this.services.values()) if (s.network === name) this.indexService(scope, s);
  }

  endpoint(before: Endpoint | undefined, after: Endpoint | undefined): void {
    if (before) this.removeEndpoint(before);
    if (after) this.putEndpoint(after);
  }

  service(before: Service | undefined, after: Service | undefined): void {
    if (before) this.removeService(before);
    if (after) this.putService(after);
  }

  private putNetwork(n: Network): void {
    this.nets.set(n.name, n);
    // Named overlay networks (unless -o dns=false), and plain knit-bridge networks whose records
    // say so (pkg/dns/local.ts sets options.dns; -o dns=true is refused for any other driver).
    if (!resolverOn(n) && n.options.dns !== true) return;
    const subnets = n.subnets.map((s) => parseCIDR(s.subnet)).filter((x): x is IPNet => !!x);
    this.scopes.set(n.name, { net: n, subnets, names: new Map(), services: new Map() });
  }

  private putEndpoint(e: Endpoint): void {
    const key = endpointKey(e);
    const old = this.endpoints.get(key);
    if (old) this.removeEndpoint(old);
    this.endpoints.set(key, e);
    for (const ip of e.ips) {
      const a = canon(ip);
      if (!a) continue;
      const list = this.byAddress.get(a) ?? [];
      list.push(e);
      this.byAddress.set(a, list);
    }
    const c = this.containers.get(containerKey(e)) ?? new Set<string>();
    c.add(e.network);
    this.containers.set(containerKey(e), c);
    const scope = this.scopes.get(e.network);
    if (scope) this.index(scope, e);
  }

  private removeEndpoint(e: Endpoint): void {
    const key = endpointKey(e);
    const kept = this.endpoints.get(key);
    if (!kept) return;
    this.endpoints.delete(key);
    for (const ip of kept.ips) {
      const a = canon(ip);
      if (!a) continue;
      const list = (this.byAddress.get(a) ?? []).filter((x) => endpointKey(x) !== key);
      if (list.length) this.byAddress.set(a, list); else this.byAddress.delete(a);
    }
    const ck = containerKey(kept);
    if (![...this.endpoints.values()].some((x) => x.network === kept.network && containerKey(x) === ck)) {
      const c = this.containers.get(ck);
      c?.delete(kept.network);
      if (c && !c.size) this.containers.delete(ck);
    }
    const scope = this.scopes.get(kept.network);
    if (!scope) return;
    for (const { name } of endpointNames(kept)) {
      const list = (scope.names.get(name) ?? []).filter((r) => r.source.kind === 'service' || !sameAttachment(r.source, kept));
      if (list.length) scope.names.set(name, list); else scope.names.delete(name);
    }
  }

  private index(scope: Scope, e: Endpoint): void {
    for (const { name, kind } of endpointNames(e)) {
      const list = scope.names.get(name) ?? [];
      for (const ip of e.ips) {
        const address = canon(ip);
        if (!address) continue;
        list.push({ network: e.network, name, address, family: address.includes(':') ? 6 : 4, source: { kind, node: e.node, containerId: e.containerId, ifName: e.ifName } });
      }
      scope.names.set(name, list);
    }
  }

  private putService(s: Service): void {
    const key = `${s.network}\0${s.name}`;
    const old = this.services.get(key);
    if (old) this.removeService(old);
    this.services.set(key, s);
    const scope = this.scopes.get(s.network);
    if (scope) this.indexService(scope, s);
  }

  private indexService(scope: Scope, s: Service): void {
    if (!isDnsName(s.name)) return;
    const name = normalizeName(s.name);
    const records = s.vips.map(canon).filter((a): a is string => !!a)
      .map((address): DnsRecord => ({ network: s.network, name, address, family: address.includes(':') ? 6 : 4, source: { kind: 'service', service: s.name } }));
    scope.services.set(name, records);
  }

  private removeService(s: Service): void {
    this.services.delete(`${s.network}\0${s.name}`);
    this.scopes.get(s.network)?.services.delete(normalizeName(s.name));
  }

  /** Whether the network is known and its resolver on. */
  serves(network: string): boolean { return this.scopes.has(network); }

  /** The knit networks (resolver on) whose gateway addresses knitd listens on. */
  networks(): Network[] { return [...this.scopes.values()].map((s) => s.net); }

  /**
   * The networks a client at `address` resolves names of, the network it asked on first: every
   * network its container is on (found by its address among the endpoints), else the network
   * whose subnet holds the address (a container not recorded yet); empty: not a knit client.
   */
  scopeOf(address: string, asked?: string): string[] {
    const a = canon(address);
    if (!a) return [];
    const nets = new Set<string>();
    for (const e of this.byAddress.get(a) ?? []) {
      if (!this.scopes.has(e.network)) continue;
      for (const n of this.containers.get(containerKey(e)) ?? []) if (this.scopes.has(n)) nets.add(n);
    }
    if (!nets.size) {
      const ip = parseIP(a)!;
      for (const s of this.scopes.values()) if (s.subnets.some((sn) => contains(sn, ip))) nets.add(s.net.name);
    }
    const order = [...nets].sort();
    if (asked && nets.has(asked)) return [asked, ...order.filter((n) => n !== asked)];
    return order;
  }

  /**
   * A name (normalized) in a scope: the first network of the scope that has it answers (the one
   * the client asked on first); `name.<net>.knit` only in that network. null: the name is unknown.
   */
  resolve(scope: readonly string[], qname: string): Resolution | null {
    const name = normalizeName(qname);
    let nets = scope;
    let short = name;
    if (name.endsWith(`.${ZONE}`)) {
      const net = scope.find((n) => name.endsWith(`.${networkDomain(n)}`));
      if (!net) return null;
      nets = [net];
      short = name.slice(0, -(networkDomain(net).length + 1));
    }
    for (const n of nets) {
      const s = this.scopes.get(n);
      if (!s) continue;
      const svc = s.services.get(short);
      if (svc) return { network: n, records: svc };
      const own = s.names.get(short);
      if (own?.length) return { network: n, records: own };
      if (short.startsWith(TASKS)) {
        const tasks = s.names.get(short.slice(TASKS.length));
        if (tasks?.length && s.services.has(short.slice(TASKS.length))) return { network: n, records: tasks };
      }
    }
    return null;
  }

  /**
   * Whether names outside knit may be forwarded for this scope: not when every network of it is
   * --internal (no egress, as Docker's internal networks resolve no outside names).
   */
  forwards(scope: readonly string[]): boolean {
    return scope.some((n) => { const s = this.scopes.get(n); return !!s && !s.net.internal; });
  }

  /** Whether a name belongs to knit (under .knit, or a single label): never forwarded upstream. */
  static isKnitName(qname: string): boolean {
    const name = normalizeName(qname);
    return !name.includes('.') || name === ZONE || name.endsWith(`.${ZONE}`);
  }

  /** The addresses of a resolution in the family asked, rotated one step per call (round robin). */
  answer(r: Resolution, family: 4 | 6 | 0): DnsRecord[] {
    const list = family ? r.records.filter((x) => x.family === family) : r.records;
    if (list.length < 2) return list;
    const key = `${r.network}\0${list[0]!.name}\0${family}`;
    const turn = this.turns.get(key) ?? 0;
    this.turns.set(key, (turn + 1) % list.length);
    return [...list.slice(turn % list.length), ...list.slice(0, turn % list.length)];
  }

  /** Every record, for `knitctl dns ls`, sorted by network, name, address. */
  records(network?: string): DnsRecord[] {
    const out: DnsRecord[] = [];
    for (const s of this.scopes.values()) {
      if (network && s.net.name !== network) continue;
      for (const list of s.services.values()) out.push(...list);
      for (const list of s.names.values()) out.push(...list);
    }
    return out.sort((a, b) => a.network.localeCompare(b.network) || a.name.localeCompare(b.name) || a.address.localeCompare(b.address));
  }

  /** Counts for metrics. */
  size(): { networks: number; names: number; records: number } {
    let names = 0;
    let records = 0;
    for (const s of this.scopes.values()) {
      names += s.names.size + s.services.size;
      for (const l of s.names.values()) records += l.length;
      for (const l of s.services.values()) records += l.length;
    }
    return { networks: this.scopes.size, names, records };
  }
}
