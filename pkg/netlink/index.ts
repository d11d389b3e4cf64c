// pkg/netlink: knit's view of the kernel. Open one Netlink handle per namespace,
// reuse it for every operation there, close it when done. Nothing happens at import
// time; the native addon loads on the first call that needs it.
export { Netlink, withNetlink } from './socket';
export { NetlinkError, isExist, isNotFound, isNotNetns, isNetlinkError, errnoName } from './errors';
export {
  linkAdd, linkGet, linkFind, linkList, linkIndex, linkSet, linkSetUp, linkSetDown, linkSetMtu, linkSetMac,
  linkSetMaster, linkSetNoMaster, linkSetPromisc, linkDel, linkDelIfPresent, bridgePortSet,
} from './link';
export type {
  Link, LinkRef, LinkSpec, LinkChanges, LinkFilter, VethSpec, VethPeer, BridgeSpec, VxlanSpec, MacvlanSpec, VlanSpec,
  MacvlanMode, NetnsRef, BridgePortChanges, VxlanInfo,
} from './link';
export { addrAdd, addrReplace, addrDel, addrList } from './addr';
export type { Addr, AddrSpec, AddrFilter } from './addr';
export { KNIT_RTPROT, routeAdd, routeReplace, routeDel, routeList } from './route';
export type { Route, RouteSpec, RouteFilter, RouteScope, RouteType } from './route';
export { neighAdd, neighReplace, neighDel, neighList, fdbAdd, fdbAppend, fdbReplace, fdbDel, fdbList } from './neigh';
export type { Neigh, NeighSpec, NeighFilter, Fdb, FdbSpec, FdbFilter } from './neigh';
export { subscribe } from './events';
export type { NetlinkEvent, SubscribeOptions, EventType } from './events';
export { setSysctl, getSysctl } from './sysctl';
export {
  NUD_PERMANENT, NUD_NOARP, NUD_REACHABLE, NUD_STALE, NTF_SELF, NTF_MASTER, RT_TABLE_MAIN, RT_TABLE_LOCAL,
  RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RTPROT_KERNEL, RTPROT_BOOT, RTPROT_STATIC,
  IFA_F_NODAD, IFA_F_PERMANENT, IFF_UP, IFF_PROMISC, IFF_LOWER_UP,
} from './constants';
export {
  NETLINK_XFRM, openXfrm, xfrmStateAdd, xfrmStateDel, xfrmStateList, xfrmPolicyUpdate, xfrmPolicyDel, xfrmPolicyList,
  XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_POLICY_ALLOW, XFRM_POLICY_BLOCK, IPPROTO_UDP, IPPROTO_ESP,
} from './xfrm';
export type { XfrmSelector, XfrmStateSpec, XfrmState, XfrmPolicySpec, XfrmPolicy } from './xfrm';
