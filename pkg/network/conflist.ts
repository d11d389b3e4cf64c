// A named network as the conflist knitd writes on every node (<confDir>/knit-<name>.conflist), so
// that `podman run --network NAME` and any CNI runtime find it by its name with no step on the
// node. Every driver takes its addresses from knit-etcd-ipam (cluster-wide, no duplicates):
// IPv4 subnets are alternatives of one range set (a container gets one IPv4 address, from the
// first subnet with room, as Docker does), IPv6 subnets another; --ip-range bounds the dynamic
// range, --aux-address entries are excluded. portmap is chained for `-p`. Containers on overlay and
// bridge networks get a MAC derived from their IPv4 address (`macFromAddress`, design.md D28).
import { addToIP, formatIP, lastOf, networkOf, parseCIDR, parseIP, compareIP, type IPAddr } from '../ip/ip';
import type { EtcdConnConfig } from '../ipam/etcd-config';
import { networkDomain, resolverOn, splitParent, type Network, type SubnetSpec } from './spec';

export interface NodeContext {
  nodeName: string;
  /** Where addresses and endpoints live: etcd, or (absent) the mesh through knitd (`datastore: "mesh"`). */
  etcd?: EtcdConnConfig;
  /** knitd's run directory (the plugins read <runDir>/networks/node.json). */
  runDir: string;
}

export const CONFLIST_PREFIX = 'knit-';
export const conflistFile = (name: string): string => `${CONFLIST_PREFIX}${name}.conflist`;
/** The per-node bridge of an overlay network, and its VXLAN device. */
export const overlayBridgeName = (vni: number): string => `knb${vni}`;
export const vxlanName = (vni: number): string => `knv${vni}`;
/** A bridge-driver network's bridge (Docker: br-<id12>). */
export const bridgeDriverName = (id: string): string => `knbr-${id.slice(0, 10)}`;
export const OVERLAY_PLUGIN = 'knit-l2overlay';
/** The IPAM type a conflist names on the mesh (knitd's per-node address blocks, pkg/mesh/ipam.ts). */
export const MESH_IPAM = 'knit-mesh-ipam';

function ipamRange(s: SubnetSpec): Record<string, unknown> {
  const sub = parseCIDR(s.subnet)!;
  const out: Record<string, unknown> = { subnet: s.subnet, gateway: s.gateway };
  if (s.ipRange) {
    const r = networkOf(parseCIDR(s.ipRange)!);
    const first = addToIP(sub.ip, 1n);
    const lastHost = sub.ip.family === 4 ? addToIP(lastOf(sub), -1n) : lastOf(sub);
    const max = (a: IPAddr, b: IPAddr): IPAddr => (compareIP(a, b) >= 0 ? a : b);
    const min = (a: IPAddr, b: IPAddr): IPAddr => (compareIP(a, b) <= 0 ? a : b);
    out.rangeStart = formatIP(max(r.ip, first));
    out.rangeEnd = formatIP(min(lastOf(r), lastHost));
  }
  return out;
}

export function ipamOf(net: Network, node: NodeContext): Record<string, unknown> {
  const fam = (s: SubnetSpec): number => parseCIDR(s.subnet)!.ip.family;
  const v4 = net.subnets.filter((s) => fam(s) === 4);
  const v6 = net.subnets.filter((s) => fam(s) === 6);
  const exclude = net.subnets.flatMap((s) => Object.values(s.auxAddresses)).filter((ip) => parseIP(ip));
  const routes = net.internal ? [] : [...(v4.length ? [{ dst: '0.0.0.0/0' }] : []), ...(v6.length ? [{ dst: '::/0' }] : [])];
  return {
    // On the mesh (no etcd) the addresses come from knitd's per-node blocks, asked over mesh.sock (docs/mesh.md).
    ...(node.etcd ? { type: 'knit-etcd-ipam', etcd: node.etcd } : { type: MESH_IPAM, runDir: node.runDir }), nodeName: node.nodeName,
    ranges: [v4, v6].filter((set) => set.length).map((set) => set.map(ipamRange)),
    ...(exclude.length ? { exclude } : {}),
    ...(net.driver === 'macvlan' ? { routes: routes.map((r) => ({ ...r, gw: (r.dst === '::/0' ? v6 : v4)[0]!.gateway })) } : {}),
  };
}

/** The main plugin's entry of the conflist. */
export function mainPluginOf(net: Network, node: NodeContext): Record<string, unknown> {
  const ipam = ipamOf(net, node);
  const common = { ...(net.options.mtu ? { mtu: net.options.mtu } : {}), ipam };
  switch (net.driver) {
    case 'overlay':
      return {
        type: OVERLAY_PLUGIN, vni: net.options.vni, runDir: node.runDir, ...(node.etcd ? {} : { datastore: 'mesh' }), internal: net.internal,
        isolation: net.options.isolation, ...(net.options.encrypted ? { encrypted: true, ...(net.options.cipher ? { cipher: net.options.cipher } : {}) } : {}), macFromAddress: true, ...common,
      };
    case 'bridge':
      return {
        type: 'knit-bridge', bridge: bridgeDriverName(net.id), isGateway: true, isDefaultGateway: !net.internal,
        ipMasq: !net.internal, isolation: net.options.isolation, macFromAddress: true, ...common,
      };
    case 'macvlan': {
      const p = splitParent(net.options.parent!);
      return { type: 'knit-macvlan', master: p.master, ...(p.vlan ? { vlan: p.vlan } : {}), mode: net.options.macvlanMode ?? 'bridge', ...common };
    }
  }
}

/**
 * The CNI `dns` of the network's containers: knitd's resolver on the gateway(s), the network's
 * domain to search (docs/dns.md). The main plugin returns it in its ADD result, and the runtime
 * writes the container's resolv.conf from it.
 */
export function dnsOf(net: Network): { nameservers: string[]; search: string[] } | undefined {
  if (!resolverOn(net)) return undefined;
  const gws = [...net.subnets].sort((a, b) => Number(a.subnet.includes(':')) - Number(b.subnet.includes(':'))).map((s) => s.gateway);
  return { nameservers: gws, search: [networkDomain(net.name)] };
}

export function renderConflist(net: Network, node: NodeContext): Record<string, unknown> {
  const dns = dnsOf(net);
  return {
    cniVersion: '1.0.0',
    name: net.name,
    plugins: [
      { ...mainPluginOf(net, node), ...(dns ? { dns } : {}), capabilities: { ips: true, mac: true, aliases: true } },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
}
