// Who owns each FDB entry (a MAC) and neighbour entry (an address) of an overlay network on this
// node, when several endpoint records claim the same one. With MACs derived from addresses
// (design.md, D28), an address reused on another node comes with the same MAC, and the record
// of the new container and the removal of the old one's reach a node in either order (a watch
// replay, a partition healing): removing "the old endpoint's entries" would remove the new one's.
// So entries are never removed per endpoint: each one is resolved from the records that still
// claim it.
//
// The rule, the same for the incremental and the full pass:
//   - a local endpoint wins: no remote entry shadows a container on this node (its bridge port
//     answers for it);
//   - among remote ones, the newest record (`created`), then the greater record key: the newer
//     container took the address or MAC over from the older one.
import type { Endpoint } from './store';

/** Per entry, its one claiming record (the usual case: no Map per entry), or all of them by record key. */
type Claim = { key: string; e: Endpoint } | Map<string, Endpoint>;
type Claims = Map<string, Claim>;

export class EntryOwners {
  private readonly byMac: Claims = new Map();
  private readonly byIp: Claims = new Map();

  constructor(private readonly localNode: string) {}

  clear(): void {
    this.byMac.clear();
    this.byIp.clear();
  }

  /** Record `key` changed from `before` to `after` (either absent). */
  set(key: string, before: Endpoint | undefined, after: Endpoint | undefined): void {
    if (before) {
      drop(this.byMac, macKey(before.network, before.mac), key);
      for (const ip of addrs(before)) drop(this.byIp, ipKey(before.network, ip), key);
    }
    if (after) {
      claim(this.byMac, macKey(after.network, after.mac), key, after);
      for (const ip of addrs(after)) claim(this.byIp, ipKey(after.network, ip), key, after);
    }
  }

  /** Where frames to `mac` go on `network`: the owning remote endpoint's node address; undefined: no entry (nobody, or a local container). */
  fdb(network: string, mac: string): string | undefined {
    const o = this.owner(this.byMac.get(macKey(network, mac)));
    return o && o.node !== this.localNode ? o.nodeIp : undefined;
  }

  /** The MAC proxy ARP/ND answers for `ip` (no prefix) on `network`; undefined: no entry. */
  neigh(network: string, ip: string): string | undefined {
    const o = this.owner(this.byIp.get(ipKey(network, ip)));
    return o && o.node !== this.localNode ? o.mac.toLowerCase() : undefined;
  }

  private owner(claims: Claim | undefined): Endpoint | undefined {
    if (!claims || !(claims instanceof Map)) return claims?.e;
    let best: [string, Endpoint] | undefined;
    for (const c of claims) if (!best || this.beats(c, best)) best = c;
    return best?.[1];
  }

  private beats([ka, a]: [string, Endpoint], [kb, b]: [string, Endpoint]): boolean {
    const la = a.node === this.localNode;
    if (la !== (b.node === this.localNode)) return la;
    if (a.created !== b.created) return (a.created ?? '') > (b.created ?? '');
    return ka > kb;
  }
}

/** An endpoint's addresses without their prefix. */
export const addrs = (e: Endpoint): string[] => e.ips.map((c) => c.split('/')[0]!);
const macKey = (network: string, mac: string): string => `${network}\0${mac.toLowerCase()}`;
const ipKey = (network: string, ip: string): string => `${network}\0${ip}`;

function claim(m: Claims, k: string, key: string, e: Endpoint): void {
  const c = m.get(k);
  if (!c || (!(c instanceof Map) && c.key === key)) m.set(k, { key, e });
  else if (c instanceof Map) c.set(key, e);
  else m.set(k, new Map([[c.key, c.e], [key, e]]));
}

function drop(m: Claims, k: string, key: string): void {
  const c = m.get(k);
  if (!c) return;
  if (!(c instanceof Map)) {
    if (c.key === key) m.delete(k);
    return;
  }
  c.delete(key);
  if (c.size === 1) { const [[only, e]] = c; m.set(k, { key: only, e }); } else if (!c.size) m.delete(k);
}
