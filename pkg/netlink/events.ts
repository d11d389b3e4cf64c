// Event subscription: a second socket bound to rtnetlink multicast groups, polled on
// libuv's loop by the addon. When readable, every queued datagram is drained with
// non-blocking receives and decoded into the same shapes the list functions return.
import * as C from './constants';
import { NlMsg, parseMessages } from './codec';
import { decodeAddr, Addr } from './addr';
import { fromNative, NetlinkError } from './errors';
import { decodeLink, Link } from './link';
import { native } from './native';
import { decodeFdb, decodeNeigh, Fdb, Neigh } from './neigh';
import { decodeRoute, Route } from './route';

export type EventType = 'new' | 'del';

export type NetlinkEvent =
  | { kind: 'link'; type: EventType; link: Link }
  | { kind: 'addr'; type: EventType; addr: Addr }
  | { kind: 'route'; type: EventType; route: Route }
  | { kind: 'neigh'; type: EventType; neigh: Neigh }
  | { kind: 'fdb'; type: EventType; fdb: Fdb }
  /** The kernel dropped events (socket buffer full): resynchronise with a full list. */
  | { kind: 'overrun' }
  | { kind: 'error'; error: Error };

export interface SubscribeOptions {
  links?: boolean;
  addresses?: boolean;
  routes?: boolean;
  /** ARP/NDP and bridge FDB changes. */
  neighbours?: boolean;
  /** Watch this namespace instead of the current one. */
  netnsPath?: string | null;
  /** Keep the process alive while subscribed (default true). */
  ref?: boolean;
}

export function decodeEvent(m: NlMsg): NetlinkEvent | undefined {
  switch (m.type) {
    case C.RTM_NEWLINK: case C.RTM_DELLINK:
      return { kind: 'link', type: m.type === C.RTM_NEWLINK ? 'new' : 'del', link: decodeLink(m) };
    case C.RTM_NEWADDR: case C.RTM_DELADDR: {
      const addr = decodeAddr(m);
      return addr && { kind: 'addr', type: m.type === C.RTM_NEWADDR ? 'new' : 'del', addr };
    }
    case C.RTM_NEWROUTE: case C.RTM_DELROUTE: {
      const route = decodeRoute(m);
      return route && { kind: 'route', type: m.type === C.RTM_NEWROUTE ? 'new' : 'del', route };
    }
    case C.RTM_NEWNEIGH: case C.RTM_DELNEIGH: {
      const type: EventType = m.type === C.RTM_NEWNEIGH ? 'new' : 'del';
      if (m.data[0] === C.AF_BRIDGE) {
        const fdb = decodeFdb(m);
        return fdb && { kind: 'fdb', type, fdb };
      }
      const neigh = decodeNeigh(m);
      return neigh && { kind: 'neigh', type, neigh };
    }
  }
  return undefined;
}

// Live watch handles: the addon stops a watch whose handle is garbage collected, so keep
// them reachable until unsubscribed even if the caller drops the returned function.
const live = new Set<object>();

/** Subscribes to rtnetlink changes; returns the function that unsubscribes (idempotent). */
export function subscribe(opts: SubscribeOptions, onEvent: (ev: NetlinkEvent) => void): () => void {
  let groups = 0;
  if (opts.links) groups |= C.RTMGRP_LINK;
  if (opts.addresses) groups |= C.RTMGRP_IPV4_IFADDR | C.RTMGRP_IPV6_IFADDR;
  if (opts.routes) groups |= C.RTMGRP_IPV4_ROUTE | C.RTMGRP_IPV6_ROUTE;
  if (opts.neighbours) groups |= C.RTMGRP_NEIGH;
  if (!groups) throw new Error('netlink subscribe: choose at least one of links, addresses, routes, neighbours');
  const N = native();
  let fd: number;
  try {
    fd = N.openSocket(opts.netnsPath || null, C.NETLINK_ROUTE, groups);
  } catch (err) {
    fromNative(err);
  }
  // Own buffer: the callback may run sync requests that use the shared one.
  const buf = Buffer.allocUnsafe(256 * 1024);
  let closed = false;

  const drain = (): void => {
    while (!closed) {
      let n: number;
      try {
        n = N.recv(fd, buf, true);
      } catch (err) {
        const e = err as { errno?: number };
        if (e.errno === 105 /* ENOBUFS */) { onEvent({ kind: 'overrun' }); continue; }
        try { fromNative(err, 'netlink event recv'); } catch (wrapped) { onEvent({ kind: 'error', error: wrapped as NetlinkError }); }
        return;
      }
      if (n < 0) return; // EAGAIN: drained
      // Decode the whole datagram before calling back: decoders copy, views die on the next recv.
      const events: NetlinkEvent[] = [];
      for (const m of parseMessages(buf, n)) {
        const ev = decodeEvent(m);
        if (ev) events.push(ev);
      }
      for (const ev of events) {
        if (closed) return;
        onEvent(ev);
      }
    }
  };

  const handle = N.watch(fd, (status) => {
    if (status < 0) onEvent({ kind: 'error', error: new NetlinkError('netlink event poll', -status) });
    else drain();
  });
  live.add(handle);
  if (opts.ref === false) N.setWatchRef(handle, false);
  return () => {
    if (closed) return;
    closed = true;
    live.delete(handle);
    N.unwatch(handle);
    N.close(fd);
  };
}
