// This node's votes in claims (the acceptor's side of the quorum, docs/mesh.md, design D21): a
// voter grants a claim only if it conflicts with no claim it has already granted, and writes the
// grant to disk before the vote is sent, so a restarted knitd never grants two conflicting claims.
// Two majorities share a voter: two conflicting claims can never both collect one. Each kind of
// claim has its conflict predicate (conflicts() below):
//   subnet  a node's pod-network subnet: the same subnet held by another node
//   net     a named network: the same name, an overlapping subnet or the same VNI (another id)
//   block   a node's address block of a named network: the same block held by another node
//   vip     a service (docs/services.md): another service of the same network with the same name
//           or the same VIP
// A subnet grant never expires with time, only when its holder moves to another subnet (a newer
// version of its own record says so) or gives it back, or when `knitctl node rm` removes the
// holder: so a partitioned or dead node keeps its subnet and nobody can be granted it meanwhile.
// A network's grant (and its blocks' and services') goes when the network's tombstone arrives; a
// service's when the service's tombstone does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { overlaps, parseCIDR } from '../ip/ip';

/** What a network claim is judged on. */
export interface NetClaim { id: string; name: string; subnets: string[]; vni?: number }
/** What a service claim is judged on: its name and VIP on one network (netId: that network's id). */
export interface VipClaim { id: string; netId: string; network: string; name: string; vip: string }

export type Claim =
  | { kind: 'subnet'; subnet: string }
  | { kind: 'net'; net: NetClaim }
  | { kind: 'block'; netId: string; block: string }
  | { kind: 'vip'; svc: VipClaim };

export interface Grant {
  holder: string;
  /** The holder's version reserved for the claim: its records newer than this may move it (subnets). */
  v: number;
  /** Absent: a subnet grant (the key is the subnet; the format before D21). */
  claim?: Claim;
  /** The holder's incarnation when it asked, and when (this voter's clock, ms): to find stranded grants (D23). */
  inc?: string;
  at?: number;
}

/** A claimer's answer about one of its claims: still being voted, completed (its record or block exists), or neither. */
export type Pursuit = 'yes' | 'done' | 'no';

export type Vote = { ok: true } | { ok: false; holder: string; conflict?: string };

/** The grant map's key: one entry per claimed thing (a re-claim by its holder replaces it). */
export function claimKey(c: Claim): string {
  switch (c.kind) {
    case 'subnet': return c.subnet;
    case 'net': return `net/${c.net.id}`;
    case 'block': return `block/${c.netId}/${c.block}`;
    case 'vip': return `vip/${c.svc.netId}/${c.svc.id}`;
  }
}

/** A short text naming the claim, for logs and errors. */
export function claimText(c: Claim): string {
  switch (c.kind) {
    case 'subnet': return c.subnet;
    case 'net': return `network ${c.net.name} (${c.net.subnets.join(', ')}${c.net.vni !== undefined ? `, VNI ${c.net.vni}` : ''})`;
    case 'block': return `block ${c.block}`;
    case 'vip': return `service ${c.svc.name} (VIP ${c.svc.vip} on network ${c.svc.network})`;
  }
}

const netsOverlap = (a: string[], b: string[]): string | null => {
  for (const x of a) for (const y of b) {
    const p = parseCIDR(x);
    const q = parseCIDR(y);
    if (p && q && p.ip.family === q.ip.family && overlaps(p, q)) return `${y} overlaps ${x}`;
  }
  return null;
};

/** Why claim `a` cannot be granted beside the granted claim `b`, or null when both can stand. */
export function conflicts(a: Claim, b: Claim): string | null {
  if (a.kind === 'subnet' && b.kind === 'subnet') return a.subnet === b.subnet ? `subnet ${a.subnet}` : null;
  if (a.kind === 'block' && b.kind === 'block') return a.netId === b.netId && a.block === b.block ? `block ${a.block}` : null;
  if (a.kind === 'vip' && b.kind === 'vip') {
    if (a.svc.id === b.svc.id || a.svc.netId !== b.svc.netId) return null;
    if (a.svc.name === b.svc.name) return `service ${b.svc.name} on network ${b.svc.network}: same name`;
    if (a.svc.vip === b.svc.vip) return `service ${b.svc.name} on network ${b.svc.network}: same VIP ${a.svc.vip}`;
    return null;
  }
  if (a.kind === 'net' && b.kind === 'net') {
    if (a.net.id === b.net.id) return null;
    if (a.net.name === b.net.name) return `network ${b.net.name}: same name`;
    const o = netsOverlap(a.net.subnets, b.net.subnets);
    if (o) return `network ${b.net.name}: ${o}`;
    if (a.net.vni !== undefined && a.net.vni === b.net.vni) return `network ${b.net.name}: same VNI ${a.net.vni}`;
  }
  return null;
}

const claimOf = (key: string, g: Grant): Claim => g.claim ?? { kind: 'subnet', subnet: key };

export class Grants {
  readonly map = new Map<string, Grant>();

  constructor(private readonly file: string | null) {
    if (!file) return;
    try {
      const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Grant>;
      for (const [s, g] of Object.entries(raw)) if (g && typeof g.holder === 'string' && typeof g.v === 'number') this.map.set(s, g);
    } catch { /* none yet */ }
  }

  /**
   * Votes for `holder`'s claim (subnet: a string, the format before D21). `removed(name, v)`:
   * whether node rm covers a grant; `known(c)`: a conflict with what this node knows from the
   * replicated state besides its grants (a network created before it joined), or null.
   */
  request(c: Claim | string, holder: string, v: number, removed: (name: string, v: number) => boolean, known?: (c: Claim) => string | null, inc?: string, now = Date.now()): Vote {
    const claim: Claim = typeof c === 'string' ? { kind: 'subnet', subnet: c } : c;
    const key = claimKey(claim);
    const g = this.map.get(key);
    const nodeBound = claim.kind !== 'net' && claim.kind !== 'vip'; // a network (a service) is nobody's: node rm of its creator leaves it
    if (g && g.holder !== holder && !(nodeBound && removed(g.holder, g.v))) return { ok: false, holder: g.holder, conflict: claimText(claim) };
    if (claim.kind === 'net' || claim.kind === 'vip') {
      for (const [k, o] of this.map) {
        if (k === key || !o.claim || o.claim.kind !== claim.kind) continue;
        const why = conflicts(claim, o.claim);
        if (why) return { ok: false, holder: o.holder, conflict: why };
      }
      const why = known?.(claim);
      if (why) return { ok: false, holder: '', conflict: why };
    }
    if (!g || g.holder !== holder || g.v < v) {
      this.map.set(key, { holder, v: Math.max(v, g?.holder === holder ? g.v : 0), ...(claim.kind !== 'subnet' ? { claim } : {}), ...(inc ? { inc, at: now } : {}) });
      this.save();
    }
    return { ok: true };
  }

  /** The holder gives a grant back (its claim failed): only its own. */
  release(c: Claim | string, holder: string, v: number): void {
    const key = typeof c === 'string' ? c : claimKey(c);
    const g = this.map.get(key);
    if (g && g.holder === holder && g.v <= v) { this.map.delete(key); this.save(); }
  }

  /** A newer record of `holder` says it holds `subnet` (or none): its subnet grants for others go. */
  holderMoved(holder: string, v: number, subnet: string | null): void {
    this.drop((k, g) => claimOf(k, g).kind === 'subnet' && g.holder === holder && g.v < v && k !== subnet);
  }

  /** node rm: every grant of the node up to that version goes (subnets and blocks; networks and services are nobody's). */
  removed(holder: string, upTo: number): void {
    this.drop((k, g) => { const kind = claimOf(k, g).kind; return kind !== 'net' && kind !== 'vip' && g.holder === holder && g.v <= upTo; });
  }

  /**
   * node rm of a dead claimer: its network and service grants whose claim never completed (`done`
   * false: no record of that id here) go as well; a network or service that exists is nobody's and stays.
   */
  removedUnfinished(holder: string, done: (c: Claim) => boolean): void {
    this.drop((_k, g) => g.holder === holder && !!g.claim && (g.claim.kind === 'net' || g.claim.kind === 'vip') && !done(g.claim));
  }

  /**
   * Grants that may be stranded (D23): a network or block claim of another incarnation of its
   * holder than the one connected now (the claimer restarted: whatever it was voting on died with
   * it), or older than `olderMs` (an ungrant lost on the way), not known to be completed here.
   * Subnet grants need none of this: a newer record of their holder moves them (holderMoved).
   * `incOf(holder)`: the holder's incarnation now, undefined when not heard from (not asked).
   */
  suspects(now: number, olderMs: number, minMs: number, incOf: (holder: string) => string | undefined, done: (c: Claim, holder: string) => boolean): Array<{ key: string; grant: Grant & { claim: Claim } }> {
    const out: Array<{ key: string; grant: Grant & { claim: Claim } }> = [];
    for (const [key, g] of this.map) {
      if (!g.claim || g.claim.kind === 'subnet') continue;
      const cur = incOf(g.holder);
      if (cur === undefined) continue;
      const age = now - (g.at ?? 0);
      if (!((cur !== g.inc && age >= minMs) || age >= olderMs)) continue;
      if (done(g.claim, g.holder)) continue;
      out.push({ key, grant: g as Grant & { claim: Claim } });
    }
    return out;
  }

  /** The claimer answered that a grant's claim is neither being voted nor completed: it goes (only that version of it). */
  abandoned(key: string, holder: string, v: number): boolean {
    const g = this.map.get(key);
    if (!g || g.holder !== holder || g.v > v) return false;
    this.map.delete(key);
    this.save();
    return true;
  }

  /** A network's tombstone: its grant and its blocks' and services' go. */
  networkRemoved(id: string): void {
    this.drop((k) => k === `net/${id}` || k.startsWith(`block/${id}/`) || k.startsWith(`vip/${id}/`));
  }

  /** A service's tombstone: its claim goes (its name and VIP are free again). */
  serviceRemoved(id: string): void {
    this.drop((k) => k.startsWith('vip/') && k.endsWith(`/${id}`));
  }

  /** The granted claims of one kind (status, tests). */
  claims(kind: Claim['kind']): Array<{ key: string; grant: Grant }> {
    return [...this.map].filter(([k, g]) => claimOf(k, g).kind === kind).map(([key, grant]) => ({ key, grant }));
  }

  private drop(pred: (key: string, g: Grant) => boolean): void {
    let changed = false;
    for (const [k, g] of this.map) if (pred(k, g)) { this.map.delete(k); changed = true; }
    if (changed) this.save();
  }

  private save(): void {
    if (!this.file) return;
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.map)));
    fs.renameSync(tmp, this.file);
  }
}

/** A claim from a peer, checked (a bad one cuts the peer off). */
export function checkClaim(x: unknown): Claim | null {
  const c = x as Record<string, unknown>;
  const str = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
  if (!c || typeof c !== 'object') return null;
  if (c.kind === 'subnet' && str(c.subnet, 64)) return { kind: 'subnet', subnet: c.subnet };
  if (c.kind === 'block' && str(c.netId, 64) && str(c.block, 64)) return { kind: 'block', netId: c.netId, block: c.block };
  if (c.kind === 'vip') {
    const v = c.svc as Record<string, unknown>;
    if (!v || typeof v !== 'object' || !str(v.id, 64) || !str(v.netId, 64) || !str(v.network, 64) || !str(v.name, 64) || !str(v.vip, 64)) return null;
    return { kind: 'vip', svc: { id: v.id, netId: v.netId, network: v.network, name: v.name, vip: v.vip } };
  }
  if (c.kind === 'net') {
    const n = c.net as Record<string, unknown>;
    if (!n || typeof n !== 'object' || !str(n.id, 64) || !str(n.name, 64) || !Array.isArray(n.subnets) || n.subnets.length > 64 || !n.subnets.every((s) => str(s, 64))) return null;
    if (n.vni !== undefined && !(Number.isInteger(n.vni) && (n.vni as number) >= 0)) return null;
    return { kind: 'net', net: { id: n.id, name: n.name, subnets: n.subnets as string[], ...(n.vni !== undefined ? { vni: n.vni as number } : {}) } };
  }
  return null;
}
