// Links: create (veth with the peer born inside the pod netns, bridge, vxlan, macvlan,
// vlan), read, change, delete. Creation carries name, MAC, MTU, master and "up" in the
// one RTM_NEWLINK so a pod's interface is ready after a single kernel round trip.
import { closeSync, openSync } from 'node:fs';
import * as C from './constants';
import {
  Attrs, decodeIfInfo, encodeIfInfo, formatMAC, getStr, getU16, getU16be, getU32, getU8, IFINFOMSG_LEN, ipArg,
  ipText, MsgWriter, NlMsg, parseAttrs, parseMAC,
} from './codec';
import { NetlinkError, isNotFound } from './errors';
import { Netlink } from './socket';

/** A link by index (number) or name (string). */
export type LinkRef = number | string;

export type MacvlanMode = 'private' | 'vepa' | 'bridge' | 'passthru';

/** A target namespace: a path (/run/netns/x, /proc/<pid>/ns/net) or an already open fd. */
export type NetnsRef = string | number;

export interface LinkCommon {
  name: string;
  mtu?: number;
  mac?: string;
  /** Bring the link up as part of creation. */
  up?: boolean;
  /** Enslave to this master (bridge) index at creation. */
  master?: number;
  txqlen?: number;
}

export interface VethPeer {
  name: string;
  mtu?: number;
  mac?: string;
  // No "up": veth configures the peer before the pair is joined, so opening it then
  // fails with ENOTCONN. Bring it up afterwards with a handle in its namespace.
  /** Create the peer directly in this namespace (docs/design.md D2: never move links). */
  netns?: NetnsRef;
}

export interface VethSpec extends LinkCommon { kind: 'veth'; peer: VethPeer }
export interface BridgeSpec extends LinkCommon { kind: 'bridge' }
export interface VxlanSpec extends LinkCommon {
  kind: 'vxlan';
  vni: number;
  /** Source address of encapsulated packets. */
  local?: string;
  /** Multicast group (optional; knit programs the FDB instead). */
  group?: string;
  /** UDP destination port; default 4789 (IANA). The kernel's own default is 8472. */
  port?: number;
  /** Underlay link index. */
  dev?: number;
  /** Source-MAC learning; default off (the agent programs the FDB). */
  learning?: boolean;
  /** Answer ARP/ND from the device's neighbour table instead of flooding it to remote VTEPs. */
  proxy?: boolean;
  ttl?: number;
  udpCsum?: boolean;
}
export interface MacvlanSpec extends LinkCommon {
  kind: 'macvlan';
  /** Parent link index (in the handle's namespace). */
  parent: number;
  mode?: MacvlanMode;
  netns?: NetnsRef;
}
export interface VlanSpec extends LinkCommon {
  kind: 'vlan';
  parent: number;
  vlanId: number;
  netns?: NetnsRef;
}
export type LinkSpec = VethSpec | BridgeSpec | VxlanSpec | MacvlanSpec | VlanSpec;

export interface VxlanInfo {
  vni: number; local?: string; group?: string; port?: number; dev?: number;
  learning?: boolean; proxy?: boolean; ttl?: number; udpCsum?: boolean;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND ('veth', 'bridge', ...); undefined for physical/loopback. */
  kind?: string;
  mtu: number;
  mac?: string;
  /** IFF_* bits. */
  flags: number;
  up: boolean;
  /** As ip prints it: 'UP', 'DOWN', 'LOWERLAYERDOWN', 'UNKNOWN', ... */
  operstate: string;
  promisc: boolean;
  master?: number;
  /** IFLA_LINK: a veth's peer index, a macvlan/vlan/vxlan parent index. */
  link?: number;
  /** Set when `link` lives in another namespace (its id as seen from this one). */
  linkNetnsId?: number;
  txqlen?: number;
  minMtu?: number;
  maxMtu?: number;
  /** IFLA_IFALIAS: free text; knit tags the host end of an attachment with it. */
  alias?: string;
  /** IFLA_INFO_SLAVE_KIND, e.g. 'bridge' for a bridge port. */
  slaveKind?: string;
  bridgePort?: { hairpin: boolean; learning: boolean };
  vxlan?: VxlanInfo;
  macvlan?: { mode: MacvlanMode | number };
  vlan?: { id: number };
}

const MACVLAN_MODES: Record<MacvlanMode, number> = {
  private: C.MACVLAN_MODE_PRIVATE, vepa: C.MACVLAN_MODE_VEPA, bridge: C.MACVLAN_MODE_BRIDGE, passthru: C.MACVLAN_MODE_PASSTHRU,
};

// ---- decoding -------------------------------------------------------------------

function decodeVxlan(d: Attrs): VxlanInfo {
  const v: VxlanInfo = { vni: getU32(d, C.IFLA_VXLAN_ID) ?? 0 };
  const local = ipText(d.get(C.IFLA_VXLAN_LOCAL) ?? d.get(C.IFLA_VXLAN_LOCAL6));
  if (local) v.local = local;
  const group = ipText(d.get(C.IFLA_VXLAN_GROUP) ?? d.get(C.IFLA_VXLAN_GROUP6));
  if (group) v.group = group;
  const port = getU16be(d, C.IFLA_VXLAN_PORT);
  if (port !== undefined) v.port = port;
  const dev = getU32(d, C.IFLA_VXLAN_LINK);
  if (dev !== undefined) v.dev = dev;
  const learning = getU8(d, C.IFLA_VXLAN_LEARNING);
  if (learning !== undefined) v.learning = learning !== 0;
  const proxy = getU8(d, C.IFLA_VXLAN_PROXY);
  if (proxy !== undefined) v.proxy = proxy !== 0;
  const ttl = getU8(d, C.IFLA_VXLAN_TTL);
  if (ttl !== undefined) v.ttl = ttl;
  const csum = getU8(d, C.IFLA_VXLAN_UDP_CSUM);
  if (csum !== undefined) v.udpCsum = csum !== 0;
  return v;
}

/** Decodes an RTM_NEWLINK/RTM_DELLINK message (reply, dump entry or event). */
export function decodeLink(msg: NlMsg): Link {
  const hdr = decodeIfInfo(msg.data);
  const a = parseAttrs(msg.data, IFINFOMSG_LEN);
  const addr = a.get(C.IFLA_ADDRESS);
  const l: Link = {
    index: hdr.index,
    name: getStr(a, C.IFLA_IFNAME) ?? '',
    mtu: getU32(a, C.IFLA_MTU) ?? 0,
    flags: hdr.flags,
    up: (hdr.flags & C.IFF_UP) !== 0,
    operstate: (C.OPERSTATES[getU8(a, C.IFLA_OPERSTATE) ?? 0] ?? 'unknown').toUpperCase(),
    promisc: (hdr.flags & C.IFF_PROMISC) !== 0,
  };
  if (addr && addr.length) l.mac = formatMAC(addr);
  const alias = getStr(a, C.IFLA_IFALIAS);
  if (alias) l.alias = alias;
  const opt = (key: 'master' | 'link' | 'linkNetnsId' | 'txqlen' | 'minMtu' | 'maxMtu', t: number): void => {
    const v = getU32(a, t);
    if (v !== undefined) l[key] = v;
  };
  opt('master', C.IFLA_MASTER);
  opt('link', C.IFLA_LINK);
  opt('linkNetnsId', C.IFLA_LINK_NETNSID);
  opt('txqlen', C.IFLA_TXQLEN);
  opt('minMtu', C.IFLA_MIN_MTU);
  opt('maxMtu', C.IFLA_MAX_MTU);
  const info = a.get(C.IFLA_LINKINFO);
  if (info) {
    const li = parseAttrs(info);
    const kind = getStr(li, C.IFLA_INFO_KIND);
    if (kind) l.kind = kind;
    const data = li.get(C.IFLA_INFO_DATA);
    if (data && kind === 'vxlan') l.vxlan = decodeVxlan(parseAttrs(data));
    if (data && (kind === 'macvlan' || kind === 'macvtap')) {
      const m = getU32(parseAttrs(data), C.IFLA_MACVLAN_MODE) ?? 0;
      const name = (Object.keys(MACVLAN_MODES) as MacvlanMode[]).find((k) => MACVLAN_MODES[k] === m);
      l.macvlan = { mode: name ?? m };
    }
    if (data && kind === 'vlan') l.vlan = { id: getU16(parseAttrs(data), C.IFLA_VLAN_ID) ?? 0 };
    const slaveKind = getStr(li, C.IFLA_INFO_SLAVE_KIND);
    if (slaveKind) l.slaveKind = slaveKind;
    const sd = li.get(C.IFLA_INFO_SLAVE_DATA);
    if (sd && slaveKind === 'bridge') {
      const p = parseAttrs(sd);
      l.bridgePort = { hairpin: getU8(p, C.IFLA_BRPORT_MODE) === 1, learning: getU8(p, C.IFLA_BRPORT_LEARNING) === 1 };
    }
  }
  return l;
}

// ---- encoding -------------------------------------------------------------------

/** Opens a netns path for IFLA_NET_NS_FD; numbers are taken as open fds. */
function nsFd(ns: NetnsRef, op: string): { fd: number; owned: boolean } {
  if (typeof ns === 'number') return { fd: ns, owned: false };
  try {
    return { fd: openSync(ns, 'r'), owned: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new NetlinkError(`${op}: open netns ${ns}`, typeof e.errno === 'number' ? -e.errno : 2);
  }
}

function putCommon(w: MsgWriter, s: { name: string; mtu?: number; mac?: string; txqlen?: number }): void {
  w.str(C.IFLA_IFNAME, s.name);
  if (s.mtu !== undefined) w.u32(C.IFLA_MTU, s.mtu);
  if (s.mac !== undefined) w.attr(C.IFLA_ADDRESS, parseMAC(s.mac));
  if (s.txqlen !== undefined) w.u32(C.IFLA_TXQLEN, s.txqlen);
}

const upFlags = (up?: boolean): { flags: number; change: number } => (up ? { flags: C.IFF_UP, change: C.IFF_UP } : { flags: 0, change: 0 });

/**
 * Encodes an RTM_NEWLINK create request. `fds` maps each NetnsRef to an fd (opened by
 * the caller so it can close them after the kernel has answered).
 */
export function encodeLinkAdd(spec: LinkSpec, fds: { peer?: number; self?: number } = {}): MsgWriter {
  const w = new MsgWriter(C.RTM_NEWLINK, C.NLM_F_CREATE | C.NLM_F_EXCL);
  w.bytes(encodeIfInfo({ family: C.AF_UNSPEC, ...upFlags(spec.up) }));
  putCommon(w, spec);
  if (spec.master !== undefined) w.u32(C.IFLA_MASTER, spec.master);
  if ((spec.kind === 'macvlan' || spec.kind === 'vlan')) w.u32(C.IFLA_LINK, spec.parent);
  if (fds.self !== undefined) w.u32(C.IFLA_NET_NS_FD, fds.self);
  w.nest(C.IFLA_LINKINFO, () => {
    w.str(C.IFLA_INFO_KIND, spec.kind);
    switch (spec.kind) {
      case 'veth': {
        const p = spec.peer;
        w.nest(C.IFLA_INFO_DATA, () => w.nest(C.VETH_INFO_PEER, () => {
          // The peer's attributes follow its own ifinfomsg.
          w.bytes(encodeIfInfo({ family: C.AF_UNSPEC }));
          putCommon(w, { ...p, mtu: p.mtu ?? spec.mtu });
          if (fds.peer !== undefined) w.u32(C.IFLA_NET_NS_FD, fds.peer);
        }));
        break;
      }
      case 'bridge':
        break;
      case 'vxlan':
        w.nest(C.IFLA_INFO_DATA, () => {
          w.u32(C.IFLA_VXLAN_ID, spec.vni);
          if (spec.local) {
            const ip = ipArg(spec.local, 'vxlan local');
            w.attr(ip.family === 4 ? C.IFLA_VXLAN_LOCAL : C.IFLA_VXLAN_LOCAL6, ip.bytes);
          }
          if (spec.group) {
            const ip = ipArg(spec.group, 'vxlan group');
            w.attr(ip.family === 4 ? C.IFLA_VXLAN_GROUP : C.IFLA_VXLAN_GROUP6, ip.bytes);
          }
          if (spec.dev !== undefined) w.u32(C.IFLA_VXLAN_LINK, spec.dev);
          if (spec.ttl !== undefined) w.u8(C.IFLA_VXLAN_TTL, spec.ttl);
          w.u8(C.IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0);
          if (spec.proxy) w.u8(C.IFLA_VXLAN_PROXY, 1);
          w.u16be(C.IFLA_VXLAN_PORT, spec.port ?? 4789);
          if (spec.udpCsum !== undefined) w.u8(C.IFLA_VXLAN_UDP_CSUM, spec.udpCsum ? 1 : 0);
        });
        break;
      case 'macvlan':
        w.nest(C.IFLA_INFO_DATA, () => w.u32(C.IFLA_MACVLAN_MODE, MACVLAN_MODES[spec.mode ?? 'bridge']));
        break;
      case 'vlan':
        w.nest(C.IFLA_INFO_DATA, () => w.u16(C.IFLA_VLAN_ID, spec.vlanId));
        break;
    }
  });
  return w;
}

function linkOpName(type: number, ref: LinkRef, extra = ''): string {
  return `${C.RTM_NAMES[type]}${extra ? ' ' + extra : ''} ${ref}`;
}

/** Puts the target of a change: ifi_index for numbers, IFLA_IFNAME for names. */
function refWriter(type: number, ref: LinkRef, hdr: { flags?: number; change?: number; family?: number } = {}, flags = 0): MsgWriter {
  const w = new MsgWriter(type, flags);
  w.bytes(encodeIfInfo({ family: hdr.family ?? C.AF_UNSPEC, index: typeof ref === 'number' ? ref : 0, flags: hdr.flags ?? 0, change: hdr.change ?? 0 }));
  if (typeof ref === 'string') w.str(C.IFLA_IFNAME, ref);
  return w;
}

// ---- operations -----------------------------------------------------------------

/** Creates a link. Errors: EEXIST when the name is taken, EOPNOTSUPP for an unknown kind. */
export function linkAdd(nl: Netlink, spec: LinkSpec): void {
  const op = `RTM_NEWLINK ${spec.kind} ${spec.name}`;
  const opened: number[] = [];
  try {
    const fds: { peer?: number; self?: number } = {};
    if (spec.kind === 'veth' && spec.peer.netns !== undefined) {
      const f = nsFd(spec.peer.netns, op);
      fds.peer = f.fd;
      if (f.owned) opened.push(f.fd);
    }
    if ((spec.kind === 'macvlan' || spec.kind === 'vlan') && spec.netns !== undefined) {
      const f = nsFd(spec.netns, op);
      fds.self = f.fd;
      if (f.owned) opened.push(f.fd);
    }
    nl.exec(encodeLinkAdd(spec, fds), op);
  } finally {
    for (const fd of opened) closeSync(fd);
  }
}

/** The link, or throws NetlinkError ENODEV. */
export function linkGet(nl: Netlink, ref: LinkRef): Link {
  const w = refWriter(C.RTM_GETLINK, ref);
  w.u32(C.IFLA_EXT_MASK, C.RTEXT_FILTER_SKIP_STATS);
  const res = nl.query(w, linkOpName(C.RTM_GETLINK, ref), (m) => (m.type === C.RTM_NEWLINK ? decodeLink(m) : undefined));
  if (!res[0]) throw new NetlinkError(linkOpName(C.RTM_GETLINK, ref), 19 /* ENODEV */);
  return res[0];
}

/** The link, or null when there is none by that name/index. */
export function linkFind(nl: Netlink, ref: LinkRef): Link | null {
  try {
    return linkGet(nl, ref);
  } catch (err) {
    if (err instanceof NetlinkError && err.code === 'ENODEV') return null;
    throw err;
  }
}

export interface LinkFilter {
  kind?: string;
  master?: number;
}

export function linkList(nl: Netlink, filter: LinkFilter = {}): Link[] {
  const w = new MsgWriter(C.RTM_GETLINK, C.NLM_F_DUMP);
  w.bytes(encodeIfInfo({ family: C.AF_UNSPEC }));
  w.u32(C.IFLA_EXT_MASK, C.RTEXT_FILTER_SKIP_STATS);
  const all = nl.dump(w, 'RTM_GETLINK dump', (m) => (m.type === C.RTM_NEWLINK ? decodeLink(m) : undefined));
  return all.filter((l) => (filter.kind === undefined || l.kind === filter.kind) && (filter.master === undefined || l.master === filter.master));
}

export function linkIndex(nl: Netlink, ref: LinkRef): number {
  return typeof ref === 'number' ? ref : linkGet(nl, ref).index;
}

export interface LinkChanges {
  up?: boolean;
  mtu?: number;
  mac?: string;
  /** A master index; 0 or null removes the link from its master. */
  master?: number | null;
  promisc?: boolean;
  /** Rename (the link is addressed by index for this). */
  name?: string;
  txqlen?: number;
  /** IFLA_IFALIAS; '' clears it. */
  alias?: string;
}

/** Applies several changes in one RTM_SETLINK. */
export function linkSet(nl: Netlink, ref: LinkRef, ch: LinkChanges): void {
  let flags = 0, change = 0;
  if (ch.up !== undefined) { change |= C.IFF_UP; if (ch.up) flags |= C.IFF_UP; }
  if (ch.promisc !== undefined) { change |= C.IFF_PROMISC; if (ch.promisc) flags |= C.IFF_PROMISC; }
  const target = ch.name !== undefined && typeof ref === 'string' ? linkIndex(nl, ref) : ref;
  const w = refWriter(C.RTM_SETLINK, target, { flags, change });
  if (ch.name !== undefined) w.str(C.IFLA_IFNAME, ch.name);
  if (ch.mtu !== undefined) w.u32(C.IFLA_MTU, ch.mtu);
  if (ch.mac !== undefined) w.attr(C.IFLA_ADDRESS, parseMAC(ch.mac));
  if (ch.master !== undefined) w.u32(C.IFLA_MASTER, ch.master ?? 0);
  if (ch.txqlen !== undefined) w.u32(C.IFLA_TXQLEN, ch.txqlen);
  if (ch.alias !== undefined) w.str(C.IFLA_IFALIAS, ch.alias);
  const what = Object.entries(ch).map(([k, v]) => `${k} ${v}`).join(' ');
  nl.exec(w, linkOpName(C.RTM_SETLINK, ref) + (what ? ` (${what})` : ''));
}

export const linkSetUp = (nl: Netlink, ref: LinkRef): void => linkSet(nl, ref, { up: true });
export const linkSetDown = (nl: Netlink, ref: LinkRef): void => linkSet(nl, ref, { up: false });
export const linkSetMtu = (nl: Netlink, ref: LinkRef, mtu: number): void => linkSet(nl, ref, { mtu });
export const linkSetMac = (nl: Netlink, ref: LinkRef, mac: string): void => linkSet(nl, ref, { mac });
export const linkSetMaster = (nl: Netlink, ref: LinkRef, master: number): void => linkSet(nl, ref, { master });
export const linkSetNoMaster = (nl: Netlink, ref: LinkRef): void => linkSet(nl, ref, { master: 0 });
export const linkSetPromisc = (nl: Netlink, ref: LinkRef, on: boolean): void => linkSet(nl, ref, { promisc: on });

/** Deletes a link (a veth takes its peer with it). ENODEV when absent. */
export function linkDel(nl: Netlink, ref: LinkRef): void {
  nl.exec(refWriter(C.RTM_DELLINK, ref), linkOpName(C.RTM_DELLINK, ref));
}

/** Deletes a link that may already be gone (a racing DEL, a netns torn down): absent is success. */
export function linkDelIfPresent(nl: Netlink, ref: LinkRef): void {
  try { linkDel(nl, ref); } catch (e) { if (!isNotFound(e)) throw e; }
}

export interface BridgePortChanges {
  /** Reflect frames back out of the port they came in on (needed for pod -> own service IP). */
  hairpin?: boolean;
  learning?: boolean;
}

/** Sets bridge port options with an AF_BRIDGE RTM_SETLINK (what `bridge link set` does). */
export function bridgePortSet(nl: Netlink, port: LinkRef, ch: BridgePortChanges): void {
  const index = linkIndex(nl, port);
  const w = new MsgWriter(C.RTM_SETLINK, 0);
  w.bytes(encodeIfInfo({ family: C.AF_BRIDGE, index }));
  w.nest(C.IFLA_PROTINFO, () => {
    if (ch.hairpin !== undefined) w.u8(C.IFLA_BRPORT_MODE, ch.hairpin ? 1 : 0);
    if (ch.learning !== undefined) w.u8(C.IFLA_BRPORT_LEARNING, ch.learning ? 1 : 0);
  }, true); // br_setlink only parses a protinfo marked NLA_F_NESTED
  nl.exec(w, linkOpName(C.RTM_SETLINK, port, 'bridge port'));
}
