// The mesh's topology when not every pair is connected (docs/mesh.md "Topology", design D26):
// which members a node dials, the graph every node sees in the members' published connections,
// and from it the tree a record is forwarded along and the next hop of a routed vote; in a full
// mesh, which of an owner's peers passes on its flooded record to each member. No I/O.
//
// Up to `full` live members (64) the mesh is full (every pair connected, as before). Above, a node
// dials its two ring neighbours (members ordered by a hash of their names: the graph is connected
// whenever the views agree) and the `fanout` members whose pair weight (a hash of both names,
// the same from either end) is smallest: a random graph of degree about fanout..2*fanout, with a
// diameter of a few hops, that every node computes alike and that changes little when a member
// joins or leaves. It keeps a connection it did not choose while the other end chose it, and
// always those to its --peers.
import { fnv1a32 } from '../hash';

/** Members chosen per node above the full-mesh size (a node's degree is about fanout..2*fanout). */
export const DEFAULT_FANOUT = 8;
/**
 * Live members up to which every pair is connected. Measured (bench:mesh, 50 members, one
 * process): full, 729 bytes/s per node at rest and a new node's lease everywhere in 53 ms p50;
 * sparse (fanout 8), 1,963 bytes/s and 250 ms: at 50 the full mesh is cheaper. 64, not 50: a
 * mesh at the bound flips between full and sparse with each member that comes and goes (each
 * flip closes or dials connections on every member; measured at 50+1: claims 3 s p50).
 */
export const DEFAULT_FULL_MESH = 64;

/** murmur3's finalizer over FNV-1a: FNV alone spreads names that differ in one last character poorly. */
function mix32(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export const nameHash = (s: string): number => mix32(fnv1a32(s));

/** Two names' hashes' pair weight, the same from both ends. */
const pairOf = (x: number, y: number): number => (x < y ? mix32(x ^ mix32(y + 0x9e3779b9)) : mix32(y ^ mix32(x + 0x9e3779b9)));

/** A pair's weight, the same from both ends. */
export const pairWeight = (a: string, b: string): number => pairOf(nameHash(a), nameHash(b));

/**
 * The members `self` dials: every other one up to fanout+1 members; above, its ring neighbours
 * and its `fanout` lightest pairs. `members` includes `self` (live members: a dead one chosen
 * would leave a hole until it is dropped).
 */
export function chosen(self: string, members: readonly string[], fanout: number, full = fanout + 1): Set<string> {
  const others = members.filter((m) => m !== self);
  if (others.length <= Math.max(fanout, full - 1)) return new Set(others);
  const hs = nameHash(self);
  const ring = others.map((m) => [m, nameHash(m)] as const);
  // Ring neighbours: the next hash above this node's, and the next below (wrapping around).
  let up: readonly [string, number] | null = null; let down: readonly [string, number] | null = null;
  let lo = ring[0]!; let hi = ring[0]!;
  const before = (a: readonly [string, number], b: readonly [string, number]): boolean => a[1] < b[1] || (a[1] === b[1] && a[0] < b[0]);
  const me = [self, hs] as const;
  for (const e of ring) {
    if (before(e, lo)) lo = e;
    if (before(hi, e)) hi = e;
    if (before(me, e) && (!up || before(e, up))) up = e;
    if (before(e, me) && (!down || before(down, e))) down = e;
  }
  const out = new Set([(up ?? lo)[0], (down ?? hi)[0]]);
  const byWeight = ring.map(([m, h]) => [m, pairOf(hs, h)] as const).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  for (const [m] of byWeight.slice(0, fanout)) out.add(m);
  return out;
}

/** Whether a connection between a and b is one the topology keeps (either end chose it). */
export function wanted(a: string, b: string, members: readonly string[], fanout: number, full = fanout + 1): boolean {
  return chosen(a, members, fanout, full).has(b) || chosen(b, members, fanout, full).has(a);
}

/**
 * Whether `self`, holding a flooded record of `owner` (a first record, a lease: not a delta, which
 * follows the owner's tree), passes it on to its peer `x`, in a full mesh: the owner sent it to
 * each of its peers (`ownerPeers`, as its record lists them), and of those each other member is
 * the peer of, by `xPeers` (x's published connections; undefined: not known), one sends it there,
 * the first by a weight of the pair and the owner (the work spread over owners and members). A
 * member none of them reaches (x lists none) is sent it by everyone holding it. Without this, a
 * joiner's first record (it lists the one peer it synced from) went from each of the 48 other
 * members to 47 others at 50 members, and that burst held up the joiner's handshakes and votes.
 */
export function floodsTo(owner: string, ownerPeers: readonly string[], self: string, x: string, xPeers: ReadonlySet<string> | undefined): boolean {
  const ho = nameHash(owner); const hx = nameHash(x);
  let best: string | null = null; let bw = 0;
  for (const n of ownerPeers) {
    if (n === x || (n !== self && !xPeers?.has(n))) continue;
    const w = mix32(pairOf(nameHash(n), hx) ^ ho);
    if (best === null || w < bw || (w === bw && n < best)) { best = n; bw = w; }
  }
  return best === null || best === self;
}

/** Undirected adjacency, nodes numbered (a mesh of hundreds is rebuilt and searched often while it forms). */
export class Graph {
  readonly names: string[] = [];
  readonly index = new Map<string, number>();
  readonly adj: number[][] = [];
  readonly hash: number[] = [];

  id(name: string): number {
    let i = this.index.get(name);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(name); this.index.set(name, i); this.adj.push([]); this.hash.push(nameHash(name));
    }
    return i;
  }

  link(a: number, b: number): void {
    if (a === b) return;
    this.adj[a]!.push(b); this.adj[b]!.push(a);
  }

  neighbours(name: string): string[] {
    const i = this.index.get(name);
    return i === undefined ? [] : this.adj[i]!.map((j) => this.names[j]!);
  }
}

/** Hops from one node to every other in a graph (undefined: not reached). */
export class Dist {
  constructor(readonly g: Graph, readonly d: Int32Array) {}
  get(name: string): number | undefined { const i = this.g.index.get(name); const x = i === undefined ? undefined : this.d[i]; return x === undefined || x < 0 ? undefined : x; }
  has(name: string): boolean { return this.get(name) !== undefined; }
  /** How many nodes are reached (the source included). */
  get reached(): number { let n = 0; for (const x of this.d) if (x >= 0) n++; return n; }
  /** The farthest reached node's hops. */
  get max(): number { let m = 0; for (const x of this.d) if (x > m) m = x; return m; }
}

/**
 * The graph `self` sees: its own connections as they are, and between two others an edge when
 * both publish it, or when one does in a version heard after the other's last (the other has not
 * published since it connected). An edge one end dropped is gone once that end publishes again,
 * so a dead node's last record stops being a path as soon as its peers re-publish, not after its
 * lease time (a tree through a dead node would starve the nodes below it).
 */
export function buildGraph(self: string, mine: Iterable<string>, records: Iterable<{ name: string; conns: ReadonlyArray<{ name: string }> }>, heard?: ReadonlyMap<string, number>): Graph {
  const g = new Graph();
  const me = g.id(self);
  for (const m of mine) g.link(me, g.id(m));
  const listed = new Set<number>(); // a * 2^20 + b: a publishes a connection to b
  const recs: Array<[number, number[]]> = [];
  const at: number[] = []; // when each record's version was heard (-1: no record)
  for (const r of records) {
    if (r.name === self) continue;
    const a = g.id(r.name);
    const l = r.conns.map((c) => g.id(c.name));
    for (const b of l) listed.add(a * 1048576 + b);
    recs.push([a, l]);
    at[a] = heard?.get(r.name) ?? 0;
  }
  for (const [a, l] of recs) {
    for (const b of l) {
      if (b === me) continue;
      if (listed.has(b * 1048576 + a)) { if (a < b) g.link(a, b); } else if (heard && (at[b] ?? -1) < at[a]!) g.link(a, b);
    }
  }
  return g;
}

/** Hops from `from` to every node it reaches. */
export function bfs(g: Graph, from: string): Dist {
  const d = new Int32Array(g.names.length).fill(-1);
  const s = g.index.get(from);
  if (s === undefined) return new Dist(g, d);
  d[s] = 0;
  const queue = [s];
  for (let qi = 0; qi < queue.length; qi++) {
    const a = queue[qi]!;
    for (const b of g.adj[a]!) if (b < d.length && d[b]! < 0) { d[b] = d[a]! + 1; queue.push(b); }
  }
  return new Dist(g, d);
}

/**
 * Whether `self` forwards `owner`'s record to its neighbour `x` (distances from the owner in
 * `dist`): x's parent in the owner's tree is the neighbour of x one hop closer to the owner with
 * the lightest weight (a hash with the owner's name: each owner's tree spreads the work
 * differently). Every node computes the same tree from the same view, so each record crosses
 * each node once; where this node cannot place x or itself in the tree it sends (a duplicate is
 * dropped by its version; a miss would wait for the next version).
 */
export function forwards(g: Graph, dist: Dist, owner: string, self: string, x: string): boolean {
  if (x === owner) return false;
  const xi = g.index.get(x); const si = g.index.get(self); const oi = g.index.get(owner);
  if (xi === undefined || si === undefined || oi === undefined) return true;
  // Unreached, or numbered after this BFS ran (a node added to the graph since): unplaced.
  const dx = dist.d[xi] ?? -1; const ds = dist.d[si] ?? -1;
  if (dx < 0 || ds < 0) return true;
  if (dx !== ds + 1) return false;
  const ho = g.hash[oi]!;
  let best = -1; let bw = 0;
  for (const y of g.adj[xi]!) {
    if (dist.d[y] !== ds) continue;
    const w = pairOf(g.hash[y]!, ho);
    if (best < 0 || w < bw || (w === bw && g.names[y]! < g.names[best]!)) { best = y; bw = w; }
  }
  return best < 0 || best === si;
}

/**
 * The neighbour of `self` (among `neighbours`, its real connections) on a shortest path to `to`
 * (distances from `to` in `dist`), not one of `avoid` (the nodes a routed message came through);
 * ties by weight. Null when none leads there.
 */
export function nextHop(dist: Dist, neighbours: Iterable<string>, to: string, avoid: ReadonlySet<string>): string | null {
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
