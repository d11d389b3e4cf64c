// The node's datapath of overlay networks, Docker-style L2: per network a bridge knb<vni> with a
// VXLAN port knv<vni> (learning off, proxy on: ARP and ND are answered on the node from the
// neighbour entries below, never flooded to other hosts). Per remote endpoint two entries:
//   fdb   <mac> dev knv<vni> dst <remote node ip> self permanent    (where its frames go)
//   neigh <ip> lladdr <mac> dev knv<vni> nud permanent              (what proxy ARP answers)
// Everything is reconciled against a desired state (stale entries removed, missing ones added),
// so a restart, a missed event or a node gone for good converges the same way.
import {
  NUD_PERMANENT, Netlink, fdbDel, fdbList, fdbReplace, isExist, isNotFound, linkAdd, linkDelIfPresent, linkFind, linkGet, linkList,
  linkSet, neighDel, neighList, neighReplace, setSysctl, type Link,
} from '../netlink';
import { overlayBridgeName, vxlanName } from './conflist';

export const VXLAN_PORT = 4789;
/**
 * Encrypted named networks' VXLAN port: the ESP policies select it, so plain named networks (4789)
 * and the encrypted pod network (4799) coexist on a node (docs/encryption.md).
 */
export const ENCRYPTED_VXLAN_PORT = 4798;
/** The same for those created with -o cipher=chacha20-poly1305: their own xfrm domain selects this port. */
export const CHACHA_VXLAN_PORT = 4797;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
const OURS = /^kn[bv](\d+)$/;

export interface Underlay { index: number; name: string; mtu: number; addr: string }

/**
 * A remote endpoint's entries: the FDB entry of its MAC unless `fdb` is false, a neighbour entry
 * (ip -> mac) for each of `ips`. When records share a MAC or address (pkg/network/owners.ts), the
 * caller gives each entry to its owner only.
 */
export interface RemoteEndpoint { mac: string; ips: string[]; nodeIp: string; fdb?: boolean }

/**
 * The bridge and VXLAN device of network vni, created or corrected; returns the bridge. Encrypted
 * (`espOverhead` > 0): the device uses `espPort` (its cipher's, ENCRYPTED_VXLAN_PORT for AES-GCM) and
 * the MTU shrinks by the overhead.
 */
export function ensureOverlay(nl: Netlink, vni: number, underlay: Underlay, mtuOption = 0, espOverhead = 0, espPort = ENCRYPTED_VXLAN_PORT): Link {
  const mtu = mtuOption || underlay.mtu - VXLAN_OVERHEAD - espOverhead;
  const port = espOverhead ? espPort : VXLAN_PORT;
  const brName = overlayBridgeName(vni);
  const vxName = vxlanName(vni);
  let vx = linkFind(nl, vxName);
  if (vx && (vx.kind !== 'vxlan' || vx.vxlan?.vni !== vni || vx.vxlan?.local !== underlay.addr || vx.vxlan?.dev !== underlay.index || !vx.vxlan?.proxy || (vx.vxlan?.port ?? VXLAN_PORT) !== port)) {
    linkDelIfPresent(nl, vx.index); // another underlay (renumbered), port (encrypted or not) or someone else's device: rebuild
    vx = null;
  }
  if (!vx) {
    try {
      linkAdd(nl, { kind: 'vxlan', name: vxName, vni, port, local: underlay.addr, dev: underlay.index, learning: false, proxy: true, mtu });
    } catch (e) { if (!isExist(e)) throw e; }
    vx = linkGet(nl, vxName);
  }
  let br = linkFind(nl, brName);
  if (!br) {
    try {
      linkAdd(nl, { kind: 'bridge', name: brName, mtu });
      const made = linkGet(nl, brName);
      // A fixed MAC: the bridge's address must not follow its ports as they come and go.
      if (made.mac) linkSet(nl, made.index, { mac: made.mac });
      try { setSysctl(nl.netnsPath, `net/ipv6/conf/${brName}/accept_ra`, '0'); } catch { /* IPv6 off */ }
    } catch (e) { if (!isExist(e)) throw e; }
    br = linkGet(nl, brName);
  }
  if (vx.master !== br.index || vx.mtu !== mtu || !vx.up) linkSet(nl, vx.index, { master: br.index, mtu, up: true });
  if (br.mtu !== mtu || !br.up) linkSet(nl, br.index, { mtu, up: true });
  return linkGet(nl, brName);
}

/** The VNIs whose devices exist on the node. */
export function overlayVnis(nl: Netlink): number[] {
  const out = new Set<number>();
  for (const l of linkList(nl)) {
    const m = OURS.exec(l.name);
    if (m && (l.kind === 'bridge' || l.kind === 'vxlan')) out.add(Number(m[1]));
  }
  return [...out];
}

/** Removes the devices of network vni (its containers' veths go with the bridge's ports). */
export function removeOverlay(nl: Netlink, vni: number): void {
  for (const name of [vxlanName(vni), overlayBridgeName(vni)]) {
    const l = linkFind(nl, name);
    if (l) linkDelIfPresent(nl, l.index);
  }
}

export interface SyncReport { fdbAdded: number; fdbRemoved: number; neighAdded: number; neighRemoved: number }

/** Makes the FDB and neighbour entries of knv<vni> exactly those of `remotes`. */
export function syncRemotes(nl: Netlink, vni: number, remotes: RemoteEndpoint[]): SyncReport {
  const report: SyncReport = { fdbAdded: 0, fdbRemoved: 0, neighAdded: 0, neighRemoved: 0 };
  const vx = linkFind(nl, vxlanName(vni));
  if (!vx) return report;
  const wantFdb = new Map(remotes.filter((r) => r.fdb !== false).map((r) => [r.mac.toLowerCase(), r.nodeIp]));
  const wantNeigh = new Map<string, string>();
  for (const r of remotes) for (const cidr of r.ips) wantNeigh.set(cidr.split('/')[0]!, r.mac.toLowerCase());

  for (const f of fdbList(nl, { link: vx.index })) {
    if (!f.mac || f.mac === '00:00:00:00:00:00') continue;
    const want = wantFdb.get(f.mac);
    if (want === undefined || (f.dst && f.dst !== want)) {
      try { fdbDel(nl, { link: vx.index, mac: f.mac, ...(f.dst ? { dst: f.dst } : {}) }); report.fdbRemoved++; } catch { /* gone meanwhile */ }
    } else if (f.dst === want) wantFdb.delete(f.mac);
  }
  // What is missing is added one endpoint at a time, FDB then neighbour entries, so every endpoint
  // is usable as soon as it is written (not after all FDB entries of a large network).
  for (const n of neighList(nl, { link: vx.index })) {
    if (!n.ip) continue;
    const want = wantNeigh.get(n.ip);
    if (want === undefined) {
      try { neighDel(nl, { link: vx.index, ip: n.ip }); report.neighRemoved++; } catch { /* gone meanwhile */ }
    } else if (n.mac === want && n.state === NUD_PERMANENT) wantNeigh.delete(n.ip); // else replaced below
  }
  for (const r of remotes) {
    const mac = r.mac.toLowerCase();
    const dst = wantFdb.get(mac);
    if (dst !== undefined) { fdbReplace(nl, { link: vx.index, mac, dst }); report.fdbAdded++; wantFdb.delete(mac); }
    for (const cidr of r.ips) {
      const ip = cidr.split('/')[0]!;
      if (wantNeigh.get(ip) !== mac) continue;
      neighReplace(nl, { link: vx.index, ip, mac, state: NUD_PERMANENT });
      wantNeigh.delete(ip);
      report.neighAdded++;
    }
  }
  return report;
}

/** The VXLAN device of network vni (null: none on this node, nothing to program). */
export function vxlanOf(nl: Netlink, vni: number): Link | null {
  return linkFind(nl, vxlanName(vni));
}

/** The FDB entry of `mac` on the VXLAN device: towards `dst`, or (dst undefined) none. */
export function setFdb(nl: Netlink, vx: Link, mac: string, dst: string | undefined): void {
  if (dst !== undefined) { fdbReplace(nl, { link: vx.index, mac, dst }); return; }
  try { fdbDel(nl, { link: vx.index, mac }); } catch (e) { if (!isNotFound(e)) throw e; }
}

/** The neighbour entry of `ip` on the VXLAN device (what proxy ARP/ND answers): `mac`, or (undefined) none. */
export function setNeigh(nl: Netlink, vx: Link, ip: string, mac: string | undefined): void {
  if (mac !== undefined) { neighReplace(nl, { link: vx.index, ip, mac, state: NUD_PERMANENT }); return; }
  try { neighDel(nl, { link: vx.index, ip }); } catch (e) { if (!isNotFound(e)) throw e; }
}
