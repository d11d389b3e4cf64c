// What the unit tests of in-process mesh members (real MeshNodes over loopback TCP) share: waiting
// on a member's state, and seeded 3/2 splits of a five-member mesh, where a member reaches a peer
// only on its own side (the members' `reachable` option).
import type { MeshNode } from '../../pkg/mesh/node';

/** Polls `fn` every 20 ms until it holds, or throws after `ms` naming `what`. */
export async function eventually(fn: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts a member: `name`, told `peers`, reaching only the peers `reachable` allows. */
export type StartMember = (name: string, peers: MeshNode[], o: { reachable: (peer: string) => boolean }) => Promise<MeshNode>;

export class MeshSplit {
  readonly ns: MeshNode[] = [];
  private side: Map<string, number>;

  private constructor(readonly names: readonly string[]) {
    this.side = new Map(names.map((n) => [n, 0]));
  }

  /** The members `names`, each after the first told only the first, until every pair is connected. */
  static async open(names: readonly string[], start: StartMember): Promise<MeshSplit> {
    const s = new MeshSplit(names);
    for (const [i, name] of names.entries()) s.ns.push(await start(name, i ? [s.ns[0]!] : [], { reachable: (peer) => s.side.get(peer) === s.side.get(name) }));
    await s.full();
    return s;
  }

  /** Until every member is connected to every other. */
  full(): Promise<void> {
    return eventually(() => this.ns.every((n) => n.connected().length === this.names.length - 1), 15_000, 'full mesh');
  }

  /** Whether `name` is on the minority side of the current split. */
  minority(name: string): boolean {
    return this.side.get(name) === 1;
  }

  /** A split drawn from `rnd` (the first 3 of a shuffle are the majority), until the members see only their side. */
  async split(rnd: () => number, label: string): Promise<void> {
    const order = [...this.names].sort(() => rnd() - 0.5);
    this.side = new Map(order.map((n, i) => [n, i < 3 ? 0 : 1]));
    for (const n of this.ns) n.recheck();
    await eventually(() => this.ns.every((n) => n.connected().length === (this.side.get(n.state.self) === 0 ? 2 : 1)), 10_000, `${label}: partitioned`);
  }

  /** One side again, until every pair is connected. */
  async heal(): Promise<void> {
    this.side = new Map(this.names.map((n) => [n, 0]));
    for (const n of this.ns) n.recheck();
    await this.full();
  }
}
