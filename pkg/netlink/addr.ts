// Interface addresses (IPv4/IPv6). IPv6 addresses default to IFA_F_NODAD: a pod's
// address is allocated, not autoconfigured, and DAD would hold it "tentative" for
// about a second (a common complaint about pod start times).
import * as C from './constants';
import {
  afToFamily, decodeIfAddr, encodeIfAddr, familyToAF, getStr, getU32, IFADDRMSG_LEN, ipArg, ipText, MsgWriter, netArg,
  NlMsg, parseAttrs,
} from './codec';
import { Family, formatCIDR, IPAddr, IPNet, lastOf } from '../ip/ip';
import { LinkRef, linkIndex } from './link';
import { Netlink } from './socket';

export interface AddrSpec {
  /** The link (index or name). */
  link: LinkRef;
  /** The local address with its prefix, e.g. "10.22.0.5/24". */
  address: string | IPNet;
  /** Point-to-point peer (IFA_ADDRESS) instead of the local address. */
  peer?: string | IPNet;
  /** IPv4 broadcast: an address, true to compute it (default for prefixes < 31), false for none. */
  broadcast?: string | IPAddr | boolean;
  /** Skip duplicate address detection; default true for IPv6. */
  nodad?: boolean;
  /** Do not install the prefix route for the subnet. */
  noprefixroute?: boolean;
  scope?: number;
  label?: string;
}

export interface Addr {
  index: number;
  family: Family;
  prefix: number;
  /** The interface's own address (IFA_LOCAL, or IFA_ADDRESS when there is no local). */
  local: string;
  /** local/prefix, e.g. "10.22.0.5/24". */
  cidr: string;
  /** IFA_ADDRESS: the peer on point-to-point links, else the same as local. */
  address?: string;
  broadcast?: string;
  label?: string;
  scope: number;
  /** IFA_FLAGS (32-bit) when present, else the header's 8 bits. */
  flags: number;
}

export function decodeAddr(msg: NlMsg): Addr | undefined {
  const h = decodeIfAddr(msg.data);
  const family = afToFamily(h.family);
  if (!family) return undefined;
  const a = parseAttrs(msg.data, IFADDRMSG_LEN);
  const address = ipText(a.get(C.IFA_ADDRESS));
  const local = ipText(a.get(C.IFA_LOCAL)) ?? address;
  if (!local) return undefined;
  const out: Addr = {
    index: h.index, family, prefix: h.prefix, local, cidr: `${local}/${h.prefix}`,
    scope: h.scope, flags: getU32(a, C.IFA_FLAGS) ?? h.flags,
  };
  if (address) out.address = address;
  const brd = ipText(a.get(C.IFA_BROADCAST));
  if (brd) out.broadcast = brd;
  const label = getStr(a, C.IFA_LABEL);
  if (label) out.label = label;
  return out;
}

export function encodeAddr(type: number, flags: number, index: number, s: Omit<AddrSpec, 'link'>): MsgWriter {
  const net = netArg(s.address, 'address');
  const fam = net.ip.family;
  let ifaFlags = 0;
  if (type === C.RTM_NEWADDR && (s.nodad ?? fam === 6) && fam === 6) ifaFlags |= C.IFA_F_NODAD;
  if (s.noprefixroute) ifaFlags |= C.IFA_F_NOPREFIXROUTE;
  const w = new MsgWriter(type, flags);
  w.bytes(encodeIfAddr({ family: familyToAF(fam), prefix: net.prefix, flags: ifaFlags & 0xff, scope: s.scope ?? 0, index }));
  w.attr(C.IFA_LOCAL, net.ip.bytes);
  w.attr(C.IFA_ADDRESS, s.peer ? netArg(s.peer, 'peer').ip.bytes : net.ip.bytes);
  if (fam === 4 && type === C.RTM_NEWADDR) {
    const b = s.broadcast ?? net.prefix < 31;
    if (b === true) w.attr(C.IFA_BROADCAST, lastOf(net).bytes);
    else if (b !== false) w.attr(C.IFA_BROADCAST, ipArg(b, 'broadcast').bytes);
  }
  if (s.label) w.str(C.IFA_LABEL, s.label);
  if (ifaFlags) w.u32(C.IFA_FLAGS, ifaFlags);
  return w;
}

function addrOp(nl: Netlink, type: number, flags: number, s: AddrSpec): void {
  const net = netArg(s.address, 'address');
  const op = `${C.RTM_NAMES[type]} ${formatCIDR(net)} dev ${s.link}`;
  nl.exec(encodeAddr(type, flags, linkIndex(nl, s.link), s), op);
}

/** Adds an address; EEXIST when the link already has it. */
export const addrAdd = (nl: Netlink, s: AddrSpec): void => addrOp(nl, C.RTM_NEWADDR, C.NLM_F_CREATE | C.NLM_F_EXCL, s);
/** Adds or updates an address (idempotent). */
export const addrReplace = (nl: Netlink, s: AddrSpec): void => addrOp(nl, C.RTM_NEWADDR, C.NLM_F_CREATE | C.NLM_F_REPLACE, s);
/** Removes an address; EADDRNOTAVAIL when absent. */
export const addrDel = (nl: Netlink, s: Pick<AddrSpec, 'link' | 'address'>): void => addrOp(nl, C.RTM_DELADDR, 0, s);

export interface AddrFilter {
  link?: LinkRef;
  family?: Family;
}

export function addrList(nl: Netlink, filter: AddrFilter = {}): Addr[] {
  const index = filter.link === undefined ? 0 : linkIndex(nl, filter.link);
  const w = new MsgWriter(C.RTM_GETADDR, C.NLM_F_DUMP);
  // With strict checking the kernel filters by ifa_index; the JS filter covers older kernels.
  w.bytes(encodeIfAddr({ family: filter.family ? familyToAF(filter.family) : C.AF_UNSPEC, index }));
  return nl.dump(w, 'RTM_GETADDR dump', (m) => (m.type === C.RTM_NEWADDR ? decodeAddr(m) : undefined))
    .filter((a) => (!index || a.index === index) && (!filter.family || a.family === filter.family));
}
