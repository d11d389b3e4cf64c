// The host-gw backend: no encapsulation; each peer's subnet is routed via the peer's underlay
// address (`<peer subnet> via <peer addr> dev <underlay> proto 107`). Peers must share this
// node's L2 subnet; others are reported as skipped.
import { Netlink } from '../../netlink';
import { parseCIDR, type IPNet } from '../../ip/ip';
import type { Logger } from '../../cni/log';
import { configError, emptyReport, type Backend, type BackendData, type BackendOptions, type LocalNode, type LocalState, type Peer, type SyncReport } from './backend';
import { canonSubnet, ensureForwarding, reconcileRoutes, sameL2, underlayOf, type Underlay, type WantRoute } from './reconcile';
import { register, removeOtherBackends } from './registry';

export class HostGwBackend implements Backend {
  readonly type = 'host-gw' as const;
  private readonly nl: Netlink;
  private readonly log?: Logger;
  private local?: LocalNode;
  private underlay?: Underlay;

  constructor(private readonly opts: BackendOptions = {}) {
    this.nl = Netlink.open(opts.netns ?? null);
    if (opts.log) this.log = opts.log;
  }

  /** Peers need only the underlay address, which every lease has. */
  leaseData(): BackendData {
    return {};
  }

  ensureLocal(local: LocalNode): LocalState {
    this.local = local;
    const u = (this.underlay = underlayOf(this.nl, local.underlayIface, local.underlayAddr));
    removeOtherBackends(this.nl, this.type, this.log);
    ensureForwarding(this.opts.netns);
    return { mtu: local.mtu ?? u.mtu, device: u.name };
  }

  sync(peers: Peer[]): SyncReport {
    const local = this.local;
    if (!local) throw new Error('host-gw backend: sync before ensureLocal');
    const u = this.underlay!;
    const rep = emptyReport();
    const mine = canonSubnet(local.subnet);
    const routes = new Map<string, WantRoute>();
    for (const p of peers) {
      if (p.nodeName === local.nodeName) continue;
      let subnet: string;
      try { subnet = canonSubnet(p.subnet); } catch { rep.skipped.push({ nodeName: p.nodeName, reason: `invalid subnet ${p.subnet}` }); continue; }
      if (subnet === mine) { rep.skipped.push({ nodeName: p.nodeName, reason: `claims this node's subnet ${subnet}` }); continue; }
      if (!sameL2(u, p.underlayAddr)) {
        rep.skipped.push({ nodeName: p.nodeName, reason: `underlay address ${p.underlayAddr} is not on ${u.name}'s subnet (host-gw needs one L2)` });
        continue;
      }
      routes.set(subnet, { dst: subnet, gw: p.underlayAddr, dev: u.index, onlink: false });
      rep.programmed.push(p.nodeName);
    }
    const network: IPNet | undefined = local.network ? parseCIDR(local.network) ?? undefined : undefined;
    reconcileRoutes(this.nl, routes, [u.index], network, rep, this.log);
    return rep;
  }

  watched(): { devices: string[] } {
    return { devices: [this.underlay?.name ?? ''] };
  }

  close(): void {
    this.nl.close();
  }
}

register('host-gw', {
  parseConfig: (b) => {
    for (const k of Object.keys(b)) if (k !== 'type') throw configError(`backend.${k}`, b[k], 'unknown key for host-gw (only type)');
    return { type: 'host-gw' };
  },
  create: (_cfg, opts) => new HostGwBackend(opts),
});
