// The service load balancer's datapath on a node (docs/services.md): nftables NAT, one map per
// service filled with its backends' addresses and indexed by `numgen inc mod N` (round robin per
// new connection; the kernel here has no IPVS), plus two local routes per network.
//
//   table inet knit-services
//     map vip4   { VIP : jump s_<svc> }                 dispatch, one element per service
//     map snat4  { VIP : LB }                          the node's load-balancer address on the VIP's network
//     set local4 { VIPs, LBs }                         what the node answers itself (ping; everything else refused)
//     map b_<svc> { 0 : backend0, 1 : backend1, ... }  ONE MAP PER SERVICE
//     chain prerouting (nat, dstnat) { ip daddr vmap @vip4 }
//     chain s_<svc> { tcp dport { 80 } dnat ip to numgen inc mod N map @b_<svc> }
//     chain postrouting (nat, srcnat) { ct status dnat snat ip to ct original ip daddr map @snat4 }
//     chain input (filter) { ip daddr @local4: echo-request accepted, tcp reset, others port-unreachable }
//
// Why the SNAT: the VIP lies in the network's own L2 subnet, so a backend would answer the
// client directly (source: its own address, not the VIP) and the client would drop it. Every
// node holds, per network with services, a load-balancer address (reserved from the network's
// IPAM, published as an endpoint record with the bridge's MAC so every other node programs FDB
// and neighbour entries for it, as Docker swarm's lb-<net> endpoint); connections to a VIP leave
// DNAT'd to the backend and SNAT'd to that address, so replies come back to the node that holds
// the conntrack entry, wherever the backend runs. The VIP and the LB address are local routes
// (table local, type local) on the network's bridge knb<vni>, not interface addresses: the node
// answers ARP for them to its own containers only (the VXLAN device answers remote ARP from its
// neighbour entries, which never hold a VIP), and knit-bridge's gateway check never sees them.
//
// The table is rendered whole from the desired state (a pure function) and replaced in one nft
// transaction when knitd starts (the same state gives the same table after any restart; stale maps
// go with it); after that each change touches only the services that changed (renderChanges).
import { fnv1a32 } from '../hash';
import { parseIP } from '../ip/ip';
import { nft, nftComment } from '../nat/nft';
import {
  KNIT_RTPROT, Netlink, isExist, isNotFound, linkFind, linkList, routeAdd, routeDel, routeList,
} from '../netlink';
import type { Endpoint } from '../network/store';
import type { Service, ServicePort } from './spec';

export const SERVICES_TABLE = 'knit-services';
const RT_TABLE_LOCAL = 255;

/** One service as this node balances it. */
export interface LbService {
  network: string;
  name: string;
  vip: string;
  ports: ServicePort[];
  /** IPv4 addresses, sorted (the map's order, so the same backends give the same table). */
  backends: string[];
  /** This node's load-balancer address on the service's network. */
  lb: string;
}

/** nft identifier of a service: readable part plus a hash (names may hold '-', '_' and '.'). */
export function serviceId(network: string, name: string): string {
  const readable = `${network}_${name}`.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 40);
  return `${readable}_${fnv1a32(`${network}/${name}`).toString(16).padStart(8, '0')}`;
}

const ip4 = (cidr: string): string | null => {
  const a = cidr.split('/')[0]!;
  return parseIP(a)?.family === 4 ? a : null;
};

const cmpIp = (a: string, b: string): number => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < 4; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
};

/** A service's backends: IPv4 addresses of its network's endpoints whose name or aliases hold the service's name. */
export function backendsOf(svc: Pick<Service, 'network' | 'name'>, endpoints: Iterable<Endpoint>): string[] {
  const out = new Set<string>();
  for (const e of endpoints) {
    if (e.network !== svc.network) continue;
    if (e.name !== svc.name && !(e.aliases ?? []).includes(svc.name)) continue;
    for (const c of e.ips) { const a = ip4(c); if (a) out.add(a); }
  }
  return [...out].sort(cmpIp);
}

function portRules(svc: LbService, map: string): string[] {
  const n = svc.backends.length;
  const to = `dnat ip to numgen inc mod ${n} map @${map}`;
  if (!svc.ports.length) return [`meta l4proto { tcp, udp } ${to}`];
  const out: string[] = [];
  for (const proto of ['tcp', 'udp'] as const) {
    const ports = svc.ports.filter((p) => p.proto === proto).map((p) => p.port);
    if (ports.length) out.push(`${proto} dport { ${ports.join(', ')} } ${to}`);
  }
  return out;
}

/**
 * The whole table for `services` as one nft script: created if missing, deleted and written
 * again in the same transaction (no moment without it). No service: the table is removed.
 */
export function renderTable(services: readonly LbService[]): string {
  const t = SERVICES_TABLE;
  const lines = [`table inet ${t} {}`, `delete table inet ${t}`];
  if (!services.length) return lines.join('\n') + '\n';
  const sorted = [...services].sort((a, b) => a.network.localeCompare(b.network) || a.name.localeCompare(b.name));
  const elems = (xs: string[]): string => (xs.length ? ` elements = { ${xs.join(', ')} };` : '');
  const locals = [...new Set(sorted.flatMap((s) => [s.vip, s.lb]))].sort(cmpIp);
  lines.push(`table inet ${t} {`);
  lines.push(`  map vip4 { type ipv4_addr : verdict;${elems(sorted.map((s) => `${s.vip} : jump s_${serviceId(s.network, s.name)}`))} }`);
  lines.push(`  map snat4 { type ipv4_addr : ipv4_addr;${elems(sorted.map((s) => `${s.vip} : ${s.lb}`))} }`);
  lines.push(`  set local4 { type ipv4_addr;${elems(locals)} }`);
  for (const s of sorted) {
    const id = serviceId(s.network, s.name);
    lines.push(`  map b_${id} { typeof numgen inc mod 1 : ip daddr; comment ${nftComment(`knit service ${s.network}/${s.name}`)};${elems(s.backends.map((b, i) => `${i} : ${b}`))} }`);
  }
  lines.push('  chain prerouting { type nat hook prerouting priority dstnat; policy accept; ip daddr vmap @vip4; }');
  for (const s of sorted) {
    const id = serviceId(s.network, s.name);
    // No backend: no rule; the VIP is then a local address that refuses (input chain).
    const rules = s.backends.length ? portRules(s, `b_${id}`) : [];
    lines.push(`  chain s_${id} {${rules.map((r) => ` ${r};`).join('')} }`);
  }
  lines.push('  chain postrouting { type nat hook postrouting priority srcnat; policy accept; ct status dnat snat ip to ct original ip daddr map @snat4; }');
  lines.push('  chain input { type filter hook input priority filter; policy accept; '
    + 'ip daddr @local4 icmp type echo-request accept; ip daddr @local4 meta l4proto tcp reject with tcp reset; ip daddr @local4 reject; }');
  lines.push('}');
  return lines.join('\n') + '\n';
}

const sameService = (a: LbService, b: LbService): boolean =>
  a.vip === b.vip && a.lb === b.lb && JSON.stringify(a.ports) === JSON.stringify(b.ports) && a.backends.join() === b.backends.join();

/**
 * What turns the table written for `before` into `after`, as one nft script: only the services
 * that changed are touched (a backend's ADD or DEL flushes and refills that service's map and
 * rewrites its chain's rules, whatever the number of other services). `before` null (nothing
 * written yet, or the last write failed), or an empty side: the whole table (renderTable).
 * Applying renderChanges(A, B) to the table of A gives the same table as renderTable(B).
 */
export function renderChanges(before: readonly LbService[] | null, after: readonly LbService[]): string {
  if (before && !before.length && !after.length) return ''; // no table, none wanted: no nft at all
  if (!before || !before.length || !after.length) return renderTable(after);
  const t = `inet ${SERVICES_TABLE}`;
  const key = (x: LbService): string => serviceId(x.network, x.name);
  const old = new Map(before.map((x) => [key(x), x]));
  const now = new Map(after.map((x) => [key(x), x]));
  const gone = [...old].filter(([k]) => !now.has(k)).map(([, v]) => v);
  const added = [...now].filter(([k]) => !old.has(k)).map(([, v]) => v);
  const changed = [...now].filter(([k, v]) => old.has(k) && !sameService(old.get(k)!, v)).map(([k, v]) => ({ from: old.get(k)!, to: v, id: k }));
  const lines: string[] = [];
  // Order matters within the transaction: nothing is deleted while something still refers to it.
  for (const x of [...gone, ...changed.map((c) => c.from)]) {
    lines.push(`delete element ${t} vip4 { ${x.vip} }`, `delete element ${t} snat4 { ${x.vip} }`);
  }
  for (const x of gone) lines.push(`delete chain ${t} s_${key(x)}`, `delete map ${t} b_${key(x)}`);
  for (const c of changed) lines.push(`flush chain ${t} s_${c.id}`, `flush map ${t} b_${c.id}`);
  for (const x of added) {
    lines.push(`add map ${t} b_${key(x)} { typeof numgen inc mod 1 : ip daddr; comment ${nftComment(`knit service ${x.network}/${x.name}`)}; }`, `add chain ${t} s_${key(x)}`);
  }
  for (const x of [...added, ...changed.map((c) => c.to)]) {
    const id = key(x);
    if (x.backends.length) lines.push(`add element ${t} b_${id} { ${x.backends.map((b, i) => `${i} : ${b}`).join(', ')} }`);
    if (x.backends.length) for (const r of portRules(x, `b_${id}`)) lines.push(`add rule ${t} s_${id} ${r}`);
    lines.push(`add element ${t} vip4 { ${x.vip} : jump s_${id} }`, `add element ${t} snat4 { ${x.vip} : ${x.lb} }`);
  }
  const locals = (xs: readonly LbService[]): Set<string> => new Set(xs.flatMap((x) => [x.vip, x.lb]));
  const [was, will] = [locals(before), locals(after)];
  const del = [...was].filter((a) => !will.has(a)).sort(cmpIp);
  const add = [...will].filter((a) => !was.has(a)).sort(cmpIp);
  if (del.length) lines.push(`delete element ${t} local4 { ${del.join(', ')} }`);
  if (add.length) lines.push(`add element ${t} local4 { ${add.join(', ')} }`);
  return lines.length ? lines.join('\n') + '\n' : '';
}

/** Runs `script` (renderTable's or renderChanges') as one nft transaction. */
export function applyTable(script: string): void {
  nft(['-f', '-'], script, 'service VIPs');
}

/**
 * The local routes of VIPs and load-balancer addresses: `want` maps each knb<vni> bridge to the
 * addresses it must answer for; knit's other local routes on knb* bridges are removed.
 */
export function syncLocalRoutes(nl: Netlink, want: ReadonlyMap<string, readonly string[]>): { added: number; removed: number } {
  const out = { added: 0, removed: 0 };
  const byIndex = new Map<number, string>();
  for (const l of linkList(nl)) if (/^knb\d+$/.test(l.name)) byIndex.set(l.index, l.name);
  const have = new Set<string>();
  for (const r of routeList(nl, { table: RT_TABLE_LOCAL, family: 4, protocol: KNIT_RTPROT })) {
    const dev = r.dev !== undefined ? byIndex.get(r.dev) : undefined;
    if (!dev || r.type !== 2 /* RTN_LOCAL */) continue;
    const addr = r.dst.split('/')[0]!;
    if (r.dst.endsWith('/32') && want.get(dev)?.includes(addr)) { have.add(`${dev} ${addr}`); continue; }
    try { routeDel(nl, { dst: r.dst, dev: r.dev!, table: RT_TABLE_LOCAL, type: 'local' }); out.removed++; } catch (e) { if (!isNotFound(e)) throw e; }
  }
  for (const [dev, addrs] of want) {
    if (!linkFind(nl, dev)) continue;
    for (const a of addrs) {
      if (have.has(`${dev} ${a}`)) continue;
      try { routeAdd(nl, { dst: `${a}/32`, dev, table: RT_TABLE_LOCAL, type: 'local' }); out.added++; } catch (e) { if (!isExist(e)) throw e; }
    }
  }
  return out;
}
