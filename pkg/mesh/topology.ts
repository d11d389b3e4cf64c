// The mesh's topology when not every pair is connected (docs/mesh.md "Topology", design D2x):
// which members a node dials, the graph every node sees in the members' published connections,
// and from it the tree a record is forwarded along and the next hop of a routed vote. No I/O.
//
// Up to fanout+1 live members the mesh is full (every pair connected, as before). Above, a node
// dials its two ring neighbours (members ordered by a hash of their names: the graph is connected
// whenever the views agree) and the `fanout` members whose pair weight (a hash of both names,
// the same from either end) is smallest: a random graph of degree about fanout..2*fanout, with a
// diameter of a few hops, that every node computes alike and that changes little when a member
// joins or leaves. It keeps a connection it did not choose while the other end chose it, and
// always those to its --peers.
import { fnv1a32 } from '../hash';

/** Members chosen per node above the full-mesh size (a node's degree is about fanout..2*fanout). */
export const DEFAULT_FANOUT = 8;

/** murmur3's finalizer over FNV-1a: FNV alone spreads names that differ in one last character poorly. */
function mix32(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export const nameHash = (s: string): number => mix32(fnv1a32(s));

/** A pair's weight, the same from both ends. */
export const pairWeight = (a: string, b: string): number => nameHash(a < b ? `${a}\0${b}` : `${b}\0${a}`);

/**
 * The members `self` dials: every other one up to fanout+1 members; above, its ring neighbours
 * and its `fanout` lightest pairs. `members` includes `self` (live members: a dead one chosen
 * would leave a hole until it is dropped).
 */
export function chosen(self: string, members: readonly string[], fanout: number): Set<string> {
  const others = members.filter((m) => m !== self);
  if (others.length <= fanout) return new Set(others);
  const ring = [...others, self].map((m) => [m, nameHash(m)] as const).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  const i = ring.findIndex((e) => e[0] === self);
  const out = new Set([ring[(i + 1) % ring.length]![0], ring[(i + ring.length - 1) % ring.length]![0]]);
  const byWeight = others.map((m) => [m, pairWeight(self, m)] as const).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  for (const [m] of byWeight.slice(0, fanout)) out.add(m);
  return out;
}

/** Whether a connection between a and b is one the topology keeps (either end chose it). */
export function wanted(a: string, b: string, members: readonly string[], fanout: number): boolean {
  return chosen(a, members, fanout).has(b) || chosen(b, members, fanout).has(a);
}

/** Adjacency by name. */
export type Graph = Map<string, Set<string>>;

/**
 * The graph `self` sees: its own connections as they are, and between two others an edge only
 * when both publish it (an edge one end dropped, a dead node's last record, is not a path; a new
 * one is missing for a moment, and then records are sent more often, never less).
 */
export function buildGraph(self: string, mine: Iterable<string>, records: Iterable<{ name: string; conns: ReadonlyArray<{ name: string }> }>): Graph {
  const lists = new Map<string, Set<string>>();
  for (const r of records) if (r.name !== self) lists.set(r.name, new Set(r.conns.map((c) => c.name)));
  const g: Graph = new Map();
  const add = (a: string, b: string): void => {
    if (a === b) return;
    let s = g.get(a); if (!s) g.set(a, s = new Set()); s.add(b);
    let t = g.get(b); if (!t) g.set(b, t = new Set()); t.add(a);
  };
  g.set(self, new Set());
  for (const m of mine) add(self, m);
  for (const [a, l] of lists) for (const b of l) if (b !== self && a < b && lists.get(b)?.has(a)) add(a, b);
  return g;
}

/** Hops from `from` to every node it reaches. */
export function bfs(g: Graph, from: string): Map<string, number> {
  const dist = new Map([[from, 0]]);
  let frontier = [from];
  for (let d = 1; frontier.length; d++) {
    const next: string[] = [];
    for (const a of frontier) for (const b of g.get(a) ?? []) if (!dist.has(b)) { dist.set(b, d); next.push(b); }
    frontier = next;
  }
  return dist;
}

/**
 * Whether `self` forwards `owner`'s record to its neighbour `x` (distances from the owner in
 * `dist`): x's parent in the owner's tree is the neighbour of x one hop closer to the owner with
 * the lightest weight (a hash with the owner's name: each owner's tree spreads the work
 * differently). Every node computes the same tree from the same view, so each record crosses
 * each node once; where this node cannot place x or itself in the tree it sends (a duplicate is
 * dropped by its version; a miss would wait for the next version).
 */
export function forwards(g: Graph, dist: ReadonlyMap<string, number>, owner: string, self: string, x: string): boolean {
  if (x === owner) return false;
  const dx = dist.get(x); const ds = dist.get(self);
  if (dx === undefined || ds === undefined) return true;
  if (dx !== ds + 1) return false;
  let best: string | null = null; let bw = 0;
  for (const y of g.get(x) ?? []) {
    if (dist.get(y) !== ds) continue;
    const w = pairWeight(y, owner);
    if (best === null || w < bw || (w === bw && y < best)) { best = y; bw = w; }
  }
  return best === null || best === self;
}

/**
 * The neighbour of `self` (among `neighbours`, its real connections) on a shortest path to `to`
 * (distances from `to` in `dist`), not one of `avoid` (the nodes a routed message came through);
 * ties by weight. Null when none leads there.
 */
export function nextHop(dist: ReadonlyMap<string, number>, neighbours: Iterable<string>, to: string, avoid: ReadonlySet<string>): string | null {
  let best: string | null = null; let bd = Infinity; let bw = 0;
  for (const n of neighbours) {
    if (avoid.has(n)) continue;
    if (n === to) return n;
    const d = dist.get(n);
    if (d === undefined) continue;
    const w = pairWeight(n, to);
    if (d < bd || (d === bd && w < bw)) { best = n; bd = d; bw = w; }
  }
  return best;
}
