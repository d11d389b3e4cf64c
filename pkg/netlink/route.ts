// Routes. Everything knit installs carries protocol KNIT_RTPROT so the agent can list
// and reconcile exactly its own routes (`ip route show proto 107`) without touching
// routes made by the kernel, DHCP, BGP daemons or the administrator.
import * as C from './constants';
import {
  afToFamily, attrList, decodeRtMsg, encodeRtMsg, familyToAF, getU32, ipArg, ipText, MsgWriter, netArg, NlMsg,
  parseAttrs, RTMSG_LEN,
} from './codec';
import { Family, formatCIDR, IPAddr, IPNet } from '../ip/ip';
import { LinkRef, linkIndex } from './link';
import { Netlink } from './socket';

/**
 * knit's route protocol number (0x6b = 107, "k"). Unused by iproute2's rt_protos
 * (0-4, 8-16, 18, 42, 99, 186-192) and by the kernel's RTPROT_* list, and clear of
 * the values other CNI/routing daemons are known to use (bird 12, calico 80, ...).
 */
export const KNIT_RTPROT = 0x6b;

export type RouteScope = 'universe' | 'link' | 'host' | number;
export type RouteType = 'unicast' | 'local' | 'blackhole' | 'unreachable';

const SCOPES: Record<string, number> = { universe: C.RT_SCOPE_UNIVERSE, link: C.RT_SCOPE_LINK, host: C.RT_SCOPE_HOST };
const TYPES: Record<RouteType, number> = { unicast: C.RTN_UNICAST, local: C.RTN_LOCAL, blackhole: C.RTN_BLACKHOLE, unreachable: C.RTN_UNREACHABLE };

export interface RouteSpec {
  /** Destination prefix; "0.0.0.0/0", "::/0" or "default" (family from gw/dst) for a default route. */
  dst: string | IPNet;
  gw?: string | IPAddr;
  /** Output link (index or name). */
  dev?: LinkRef;
  /** Preferred source address. */
  src?: string | IPAddr;
  /** Pretend the gateway is on-link (RTNH_F_ONLINK), e.g. a /32 pod address with a gateway outside it. */
  onlink?: boolean;
  /** Default: link for a gatewayless unicast IPv4 route, universe otherwise (as iproute2). */
  scope?: RouteScope;
  /** Default main (254). */
  table?: number;
  /** Metric (RTA_PRIORITY). */
  priority?: number;
  mtu?: number;
  advmss?: number;
  /** Default KNIT_RTPROT on add/replace; on delete, 0 matches any protocol. */
  protocol?: number;
  type?: RouteType;
}

export interface Route {
  family: Family;
  /** CIDR text; "0.0.0.0/0" / "::/0" for default routes. */
  dst: string;
  gw?: string;
  dev?: number;
  src?: string;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  priority?: number;
  mtu?: number;
  advmss?: number;
  onlink: boolean;
  /** rtm_flags | first-hop RTNH flags. */
  flags: number;
}

export function decodeRoute(msg: NlMsg): Route | undefined {
  const h = decodeRtMsg(msg.data);
  const family = afToFamily(h.family);
  if (!family) return undefined;
  const a = parseAttrs(msg.data, RTMSG_LEN);
  const dst = ipText(a.get(C.RTA_DST)) ?? (family === 4 ? '0.0.0.0' : '::');
  const r: Route = {
    family, dst: `${dst}/${h.dstLen}`, table: getU32(a, C.RTA_TABLE) ?? h.table, protocol: h.protocol,
    scope: h.scope, type: h.type, onlink: (h.flags & C.RTNH_F_ONLINK) !== 0, flags: h.flags,
  };
  const gw = ipText(a.get(C.RTA_GATEWAY));
  if (gw) r.gw = gw;
  const dev = getU32(a, C.RTA_OIF);
  if (dev !== undefined) r.dev = dev;
  const src = ipText(a.get(C.RTA_PREFSRC));
  if (src) r.src = src;
  const prio = getU32(a, C.RTA_PRIORITY);
  if (prio !== undefined) r.priority = prio;
  const metrics = a.get(C.RTA_METRICS);
  if (metrics) {
    for (const [t, v] of attrList(metrics)) {
      if (v.length < 4) continue;
      if (t === C.RTAX_MTU) r.mtu = v.readUInt32LE(0);
      if (t === C.RTAX_ADVMSS) r.advmss = v.readUInt32LE(0);
    }
  }
  return r;
}

export function encodeRoute(type: number, flags: number, s: RouteSpec, devIndex?: number): MsgWriter {
  const gw = s.gw !== undefined ? ipArg(s.gw, 'gateway') : undefined;
  const dst = netArg(s.dst, 'destination', gw?.family ?? 4);
  const fam = dst.ip.family;
  const isDel = type === C.RTM_DELROUTE;
  // A delete without an explicit type matches any type (rtm_type 0), like iproute2.
  const rtype = s.type ? TYPES[s.type] : isDel ? 0 : C.RTN_UNICAST;
  let scope: number;
  if (s.scope !== undefined) scope = typeof s.scope === 'number' ? s.scope : SCOPES[s.scope]!;
  else if (isDel) scope = C.RT_SCOPE_NOWHERE;
  else if (rtype === C.RTN_LOCAL) scope = C.RT_SCOPE_HOST;
  else scope = rtype === C.RTN_UNICAST && !gw && fam === 4 ? C.RT_SCOPE_LINK : C.RT_SCOPE_UNIVERSE;
  const table = s.table ?? C.RT_TABLE_MAIN;
  const w = new MsgWriter(type, flags);
  w.bytes(encodeRtMsg({
    family: familyToAF(fam), dstLen: dst.prefix, table: table < 256 ? table : 0,
    protocol: s.protocol ?? (isDel ? 0 : KNIT_RTPROT), scope, type: rtype, flags: s.onlink ? C.RTNH_F_ONLINK : 0,
  }));
  if (dst.prefix > 0) w.attr(C.RTA_DST, dst.ip.bytes);
  if (gw) w.attr(C.RTA_GATEWAY, gw.bytes);
  if (devIndex !== undefined) w.u32(C.RTA_OIF, devIndex);
  if (s.src !== undefined) w.attr(C.RTA_PREFSRC, ipArg(s.src, 'source').bytes);
  if (s.priority !== undefined) w.u32(C.RTA_PRIORITY, s.priority);
  if (table >= 256) w.u32(C.RTA_TABLE, table);
  if (s.mtu !== undefined || s.advmss !== undefined) {
    w.nest(C.RTA_METRICS, () => {
      if (s.mtu !== undefined) w.u32(C.RTAX_MTU, s.mtu);
      if (s.advmss !== undefined) w.u32(C.RTAX_ADVMSS, s.advmss);
    });
  }
  return w;
}

function routeOp(nl: Netlink, type: number, flags: number, s: RouteSpec): void {
  const gw = s.gw !== undefined ? ipArg(s.gw, 'gateway') : undefined;
  const dst = netArg(s.dst, 'destination', gw?.family ?? 4);
  const op = `${C.RTM_NAMES[type]} ${formatCIDR(dst)}${s.gw !== undefined ? ` via ${s.gw}` : ''}${s.dev !== undefined ? ` dev ${s.dev}` : ''}`;
  const dev = s.dev === undefined ? undefined : linkIndex(nl, s.dev);
  nl.exec(encodeRoute(type, flags, s, dev), op);
}

/** Adds a route; EEXIST when an equal route exists. */
export const routeAdd = (nl: Netlink, s: RouteSpec): void => routeOp(nl, C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_EXCL, s);
/** Adds or replaces the route to s.dst (same table/metric): idempotent, safe to repeat. */
export const routeReplace = (nl: Netlink, s: RouteSpec): void => routeOp(nl, C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_REPLACE, s);
/** Deletes a route; ESRCH when none matches. */
export const routeDel = (nl: Netlink, s: RouteSpec): void => routeOp(nl, C.RTM_DELROUTE, 0, s);

export interface RouteFilter {
  family?: Family;
  /** Default main; 0 for all tables. */
  table?: number;
  dev?: LinkRef;
  protocol?: number;
}

/** Lists routes (cached/cloned entries excluded). */
export function routeList(nl: Netlink, filter: RouteFilter = {}): Route[] {
  const table = filter.table ?? C.RT_TABLE_MAIN;
  const dev = filter.dev === undefined ? undefined : linkIndex(nl, filter.dev);
  const w = new MsgWriter(C.RTM_GETROUTE, C.NLM_F_DUMP);
  // Strict-checking kernels filter by table, protocol and oif themselves.
  w.bytes(encodeRtMsg({ family: filter.family ? familyToAF(filter.family) : C.AF_UNSPEC, table: table < 256 ? table : 0, protocol: filter.protocol ?? 0 }));
  if (table) w.u32(C.RTA_TABLE, table);
  if (dev !== undefined) w.u32(C.RTA_OIF, dev);
  return nl.dump(w, 'RTM_GETROUTE dump', (m) => (m.type === C.RTM_NEWROUTE ? decodeRoute(m) : undefined)).filter((r) =>
    !(r.flags & C.RTM_F_CLONED) &&
    (!filter.family || r.family === filter.family) &&
    (!table || r.table === table) &&
    (dev === undefined || r.dev === dev) &&
    (filter.protocol === undefined || r.protocol === filter.protocol));
}
