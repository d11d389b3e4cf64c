// Neighbours: permanent ARP/NDP entries (the agent pins each peer's VTEP MAC so the
// overlay never floods ARP) and bridge FDB entries (AF_BRIDGE, e.g. vxlan MAC -> remote
// VTEP IP, or the all-zero MAC "append" list for BUM traffic).
import * as C from './constants';
import {
  afToFamily, decodeNdMsg, encodeNdMsg, familyToAF, formatMAC, getU16, getU16be, getU32, ipArg, ipText, MsgWriter,
  NDMSG_LEN, NlMsg, parseAttrs, parseMAC,
} from './codec';
import { Family, formatIP, IPAddr } from '../ip/ip';
import { LinkRef, linkIndex } from './link';
import { Netlink } from './socket';

export interface NeighSpec {
  link: LinkRef;
  ip: string | IPAddr;
  /** Required for add/replace. */
  mac?: string;
  /** NUD_* state; default NUD_PERMANENT. */
  state?: number;
  flags?: number;
}

export interface Neigh {
  index: number;
  family: Family;
  ip: string;
  mac?: string;
  state: number;
  flags: number;
  permanent: boolean;
}

export function decodeNeigh(msg: NlMsg): Neigh | undefined {
  const h = decodeNdMsg(msg.data);
  const family = afToFamily(h.family);
  if (!family) return undefined;
  const a = parseAttrs(msg.data, NDMSG_LEN);
  const ip = ipText(a.get(C.NDA_DST));
  if (!ip) return undefined;
  const n: Neigh = { index: h.index, family, ip, state: h.state, flags: h.flags, permanent: (h.state & C.NUD_PERMANENT) !== 0 };
  const ll = a.get(C.NDA_LLADDR);
  if (ll && ll.length) n.mac = formatMAC(ll);
  return n;
}

function neighOp(nl: Netlink, type: number, flags: number, s: NeighSpec): void {
  const ip = ipArg(s.ip, 'neighbour address');
  const op = `${C.RTM_NAMES[type]} ${formatIP(ip)}${s.mac ? ` lladdr ${s.mac}` : ''} dev ${s.link}`;
  const w = new MsgWriter(type, flags);
  w.bytes(encodeNdMsg({ family: familyToAF(ip.family), index: linkIndex(nl, s.link), state: s.state ?? C.NUD_PERMANENT, flags: s.flags ?? 0 }));
  w.attr(C.NDA_DST, ip.bytes);
  if (s.mac) w.attr(C.NDA_LLADDR, parseMAC(s.mac));
  nl.exec(w, op);
}

export const neighAdd = (nl: Netlink, s: NeighSpec): void => neighOp(nl, C.RTM_NEWNEIGH, C.NLM_F_CREATE | C.NLM_F_EXCL, s);
export const neighReplace = (nl: Netlink, s: NeighSpec): void => neighOp(nl, C.RTM_NEWNEIGH, C.NLM_F_CREATE | C.NLM_F_REPLACE, s);
/** ENOENT when absent. */
export const neighDel = (nl: Netlink, s: NeighSpec): void => neighOp(nl, C.RTM_DELNEIGH, 0, { ...s, state: s.state ?? 0 });

export interface NeighFilter {
  link?: LinkRef;
  family?: Family;
}

export function neighList(nl: Netlink, filter: NeighFilter = {}): Neigh[] {
  const index = filter.link === undefined ? 0 : linkIndex(nl, filter.link);
  const w = new MsgWriter(C.RTM_GETNEIGH, C.NLM_F_DUMP);
  w.bytes(encodeNdMsg({ family: filter.family ? familyToAF(filter.family) : C.AF_UNSPEC }));
  if (index) w.u32(C.NDA_IFINDEX, index);
  return nl.dump(w, 'RTM_GETNEIGH dump', (m) => (m.type === C.RTM_NEWNEIGH ? decodeNeigh(m) : undefined))
    .filter((n) => (!index || n.index === index) && (!filter.family || n.family === filter.family));
}

// ---- bridge FDB ---------------------------------------------------------------

export interface FdbSpec {
  /** The port or vxlan device. */
  link: LinkRef;
  mac: string;
  /** Remote VTEP (vxlan). */
  dst?: string | IPAddr;
  vni?: number;
  /** UDP port of the remote VTEP. */
  port?: number;
  vlan?: number;
  /** NTF_SELF (the device's own table, e.g. vxlan); default true unless master is set. */
  self?: boolean;
  /** NTF_MASTER (the bridge's table). */
  master?: boolean;
  /** NUD_* state; default NUD_PERMANENT. */
  state?: number;
}

export interface Fdb {
  index: number;
  mac: string;
  dst?: string;
  vni?: number;
  port?: number;
  vlan?: number;
  /** IFLA index of the bridge when the entry is in a bridge's table. */
  masterIndex?: number;
  state: number;
  flags: number;
  self: boolean;
  permanent: boolean;
}

export function decodeFdb(msg: NlMsg): Fdb | undefined {
  const h = decodeNdMsg(msg.data);
  if (h.family !== C.AF_BRIDGE) return undefined;
  const a = parseAttrs(msg.data, NDMSG_LEN);
  const ll = a.get(C.NDA_LLADDR);
  if (!ll) return undefined;
  const f: Fdb = {
    index: h.index, mac: formatMAC(ll), state: h.state, flags: h.flags,
    self: (h.flags & C.NTF_SELF) !== 0, permanent: (h.state & C.NUD_PERMANENT) !== 0,
  };
  const dst = ipText(a.get(C.NDA_DST));
  if (dst) f.dst = dst;
  const vni = getU32(a, C.NDA_VNI);
  if (vni !== undefined) f.vni = vni;
  const port = getU16be(a, C.NDA_PORT);
  if (port !== undefined) f.port = port;
  const vlan = getU16(a, C.NDA_VLAN);
  if (vlan !== undefined) f.vlan = vlan;
  const master = getU32(a, C.NDA_MASTER);
  if (master !== undefined) f.masterIndex = master;
  return f;
}

function fdbOp(nl: Netlink, type: number, flags: number, s: FdbSpec, verb: string): void {
  const dst = s.dst !== undefined ? ipArg(s.dst, 'fdb dst') : undefined;
  const op = `${C.RTM_NAMES[type]} fdb ${verb}${verb ? ' ' : ''}${s.mac}${dst ? ` dst ${formatIP(dst)}` : ''} dev ${s.link}`;
  let ntf = 0;
  if (s.self ?? !s.master) ntf |= C.NTF_SELF;
  if (s.master) ntf |= C.NTF_MASTER;
  const w = new MsgWriter(type, flags);
  w.bytes(encodeNdMsg({ family: C.AF_BRIDGE, index: linkIndex(nl, s.link), state: s.state ?? C.NUD_PERMANENT, flags: ntf }));
  w.attr(C.NDA_LLADDR, parseMAC(s.mac));
  if (dst) w.attr(C.NDA_DST, dst.bytes);
  if (s.vni !== undefined) w.u32(C.NDA_VNI, s.vni);
  if (s.port !== undefined) w.u16be(C.NDA_PORT, s.port);
  if (s.vlan !== undefined) w.u16(C.NDA_VLAN, s.vlan);
  nl.exec(w, op);
}

export const fdbAdd = (nl: Netlink, s: FdbSpec): void => fdbOp(nl, C.RTM_NEWNEIGH, C.NLM_F_CREATE | C.NLM_F_EXCL, s, 'add');
/** Adds another destination for the same MAC (vxlan flood list with 00:00:00:00:00:00). */
export const fdbAppend = (nl: Netlink, s: FdbSpec): void => fdbOp(nl, C.RTM_NEWNEIGH, C.NLM_F_CREATE | C.NLM_F_APPEND, s, 'append');
export const fdbReplace = (nl: Netlink, s: FdbSpec): void => fdbOp(nl, C.RTM_NEWNEIGH, C.NLM_F_CREATE | C.NLM_F_REPLACE, s, 'replace');
/** Deletes an entry (with dst: only that destination of an appended list). ENOENT when absent. */
export const fdbDel = (nl: Netlink, s: FdbSpec): void => fdbOp(nl, C.RTM_DELNEIGH, 0, s, 'del');

export interface FdbFilter {
  /** Entries of this port/device. */
  link?: LinkRef;
}

export function fdbList(nl: Netlink, filter: FdbFilter = {}): Fdb[] {
  const index = filter.link === undefined ? 0 : linkIndex(nl, filter.link);
  const w = new MsgWriter(C.RTM_GETNEIGH, C.NLM_F_DUMP);
  // ndm_ifindex selects the port on strict-checking kernels.
  w.bytes(encodeNdMsg({ family: C.AF_BRIDGE, index }));
  return nl.dump(w, 'RTM_GETNEIGH fdb dump', (m) => (m.type === C.RTM_NEWNEIGH ? decodeFdb(m) : undefined))
    .filter((f) => !index || f.index === index);
}
