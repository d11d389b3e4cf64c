// The mesh above a full mesh's size (pkg/mesh/topology.ts, design D26): which members a node
// connects to (connected, few hops, degrees bounded), records along each owner's tree, and votes
// routed to members that are not neighbours: 30 real pkg/mesh members in one process on
// 127.0.0.1 with fanout 4, each told one peer.
import assert from 'node:assert/strict';
import { encodeFrame, FrameReader, MAX_FRAME } from '../../pkg/mesh/frame';
import { MeshNode } from '../../pkg/mesh/node';
import { bfs, buildGraph, chosen, floodsTo, forwards, nextHop, wanted, type Graph } from '../../pkg/mesh/topology';
import { prng } from '../lab/prng';

const SECRET = Buffer.from('s3cret');

async function eventually(fn: () => boolean, ms: number, what: () => string): Promise<void> {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The graph of who connects to whom when every node computes `chosen` from the same members, as a member sees it from their records. */
function topologyOf(members: string[], fanout: number): Graph {
  const nb = new Map(members.map((m) => [m, new Set<string>()]));
  for (const a of members) for (const b of chosen(a, members, fanout)) { nb.get(a)!.add(b); nb.get(b)!.add(a); }
  return buildGraph(members[0]!, nb.get(members[0]!)!, members.map((m) => ({ name: m, conns: [...nb.get(m)!].map((name) => ({ name })) })));
}

describe('mesh topology', () => {
  it('up to fanout+1 members every pair; above, connected, a few hops across, degrees about fanout..2*fanout', () => {
    const five = ['a', 'b', 'c', 'd', 'e'];
    for (const m of five) assert.deepEqual([...chosen(m, five, 8)].sort(), five.filter((x) => x !== m));
    for (const [n, fanout] of [[30, 4], [200, 8], [201, 8]] as const) {
      const members = Array.from({ length: n }, (_, i) => `m${i}`);
      const g = topologyOf(members, fanout);
      const degrees = members.map((m) => g.neighbours(m).length);
      const far = Math.max(...members.map((m) => bfs(g, m).max));
      assert.equal(bfs(g, 'm0').reached, n, `${n} members, fanout ${fanout}: connected`);
      assert.ok(far <= 4, `${n} members, fanout ${fanout}: diameter ${far}`);
      assert.ok(Math.min(...degrees) >= fanout && Math.max(...degrees) <= 3 * fanout, `${n}/${fanout}: degrees ${Math.min(...degrees)}..${Math.max(...degrees)}`);
      // Both ends agree on what a connection is for: a dialer never closes what the other chose.
      for (const a of members.slice(0, 20)) for (const b of g.neighbours(a)) assert.ok(wanted(a, b, members, fanout) && wanted(b, a, members, fanout));
    }
    // A join moves few connections: most of each node's choices stay.
    const members = Array.from({ length: 200 }, (_, i) => `m${i}`);
    let moved = 0;
    for (const m of members) { const before = chosen(m, members, 8); const after = chosen(m, [...members, 'new'], 8); moved += [...before].filter((x) => !after.has(x)).length; }
    assert.ok(moved <= 30, `a join changed ${moved} choices among 200 members`);
  });

  it('a record crosses each node once along its owner\'s tree; a route avoids where it has been', () => {
    const members = Array.from({ length: 60 }, (_, i) => `m${i}`);
    const g = topologyOf(members, 4);
    for (const owner of ['m0', 'm17', 'm59']) {
      const dist = bfs(g, owner);
      // Each member but the owner has exactly one parent sending it the record.
      const got = new Map(members.map((m) => [m, 0]));
      for (const s of members) for (const x of g.neighbours(s)) if (s === owner || forwards(g, dist, owner, s, x)) got.set(x, got.get(x)! + 1);
      for (const [m, k] of got) assert.equal(k, m === owner ? 0 : 1, `owner ${owner}: ${m} gets the record ${k} time(s)`);
    }
    const d = bfs(g, 'm5');
    const hop = nextHop(d, g.neighbours('m40'), 'm5', new Set(['m40']))!;
    assert.equal(d.get(hop), d.get('m40')! - 1, 'the next hop is one closer');
    assert.equal(nextHop(d, [hop], 'm5', new Set([hop])), null, 'never back through a node it came through');
    // Views built from published connections: an edge counts once both ends publish it.
    const view = buildGraph('x', ['y'], [{ name: 'y', conns: [{ name: 'x' }, { name: 'z' }] }, { name: 'z', conns: [] }, { name: 'w', conns: [{ name: 'z' }] }]);
    assert.deepEqual(view.neighbours('x'), ['y']);
    assert.deepEqual(view.neighbours('z'), [], 'y-z and w-z are published by one end only');
  });

  it('in a full mesh a flooded record is passed on to each member by one of its owner\'s peers, never by the others', () => {
    // 50 members all connected, and a joiner whose first record lists the one peer it synced
    // from, later three: every member gets the record once (from the owner or one relay).
    const members = Array.from({ length: 50 }, (_, i) => `m${i}`);
    const peersOf = (m: string): Set<string> => new Set(members.filter((x) => x !== m));
    for (const ownerPeers of [['m7'], ['m7', 'm20', 'm33']]) {
      const got = new Map(members.map((m) => [m, ownerPeers.includes(m) ? 1 : 0])); // the owner sends to its peers
      for (const s of members) {
        for (const x of members) {
          if (x === s || ownerPeers.includes(x)) continue; // the owner's peers have it from the owner
          if (floodsTo('new', ownerPeers, s, x, peersOf(x))) got.set(x, got.get(x)! + 1);
        }
      }
      for (const [m, k] of got) assert.equal(k, 1, `owner's peers ${ownerPeers.join(',')}: ${m} gets the record ${k} time(s)`);
      // Relaying is spread over the owner's peers, not all on one.
      if (ownerPeers.length === 3) for (const p of ownerPeers) assert.ok(members.filter((x) => x !== p && floodsTo('new', ownerPeers, p, x, peersOf(x))).length >= 5, `${p} relays to some`);
    }
    // A member whose record lists none of the owner's peers (another joiner), or that has no
    // record yet, is sent it by every member holding it: a duplicate is dropped, a miss would wait.
    assert.ok(floodsTo('new', ['m7'], 'm3', 'new2', new Set(['m9'])));
    assert.ok(floodsTo('new', ['m7'], 'm3', 'new2', undefined));
    assert.ok(!floodsTo('new', ['m7'], 'm3', 'm4', new Set(['m7'])));
  });

  it('a frame over the handshake bound right after the proof, in the same read, is cut once the bound is raised', () => {
    // At about 190 members a peer's digest passes 4 KiB and often arrives with its proof.
    const r = new FrameReader();
    r.add(Buffer.concat([encodeFrame(Buffer.from('{"t":"auth"}')), encodeFrame(Buffer.alloc(6000, 0x20))]));
    assert.equal(r.next()!.toString(), '{"t":"auth"}');
    r.max = MAX_FRAME; // what authentication does
    assert.equal(r.next()!.length, 6000);
    assert.equal(r.next(), null);
    // Without the raise it is refused, as before authentication.
    const r2 = new FrameReader();
    assert.throws(() => r2.push(encodeFrame(Buffer.alloc(6000, 0x20))), /frame length 6000/);
  });

  it('a member that missed an owner\'s versions for half its lease time asks a peer for them', async () => {
    const cut = (x: string, y: string): boolean => [x, y].sort().join() === 'pa,pc';
    const mk = async (name: string, peer: MeshNode | null): Promise<MeshNode> => {
      const n = new MeshNode({ name, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peer ? [`127.0.0.1:${peer.listenPort}`] : [], stateDir: null, ttlSec: 30, reachable: (p) => !cut(name, p) });
      await n.start();
      return n;
    };
    const a = await mk('pa', null); const b = await mk('pb', a); const c = await mk('pc', b);
    try {
      await eventually(() => c.state.nodes.has('pa') && b.connected().length === 2, 10_000, () => 'pa-pb-pc');
      const rec = c.state.nodes.get('pa')!;
      // As if pc had missed pa's last versions, and heard nothing for 20 s (lease time 30 s).
      c.state.nodes.set('pa', { ...rec, v: rec.v - 1 });
      c.state.heard.set('pa', Date.now() - 20_000);
      (c as unknown as { pullStale(): void }).pullStale();
      await eventually(() => c.state.nodes.get('pa')!.v === rec.v && Date.now() - c.state.heard.get('pa')! < 15_000, 5000, () => 'pc pulled pa\'s record from pb');
    } finally { for (const n of [a, b, c]) n.stop(); }
  });

  describe('30 members, fanout 4, each told one peer', function () {
    this.timeout(120_000);
    const nodes: MeshNode[] = [];
    after(() => { for (const n of nodes.splice(0)) n.stop(); });

    it('form a sparse mesh where every member sees every member; a claim wins with votes routed past its neighbours, a conflicting one loses', async () => {
      const rnd = prng(1530);
      for (let i = 0; i < 30; i++) {
        const peer = i ? nodes[Math.floor(rnd() * i)]! : null; // one earlier member, seeded
        const n = new MeshNode({ name: `t${String(i).padStart(2, '0')}`, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peer ? [`127.0.0.1:${peer.listenPort}`] : [], stateDir: null, ttlSec: 30, fanout: 4, fullMesh: 5 });
        await n.start();
        nodes.push(n);
      }
      const names = nodes.map((n) => n.state.self);
      await eventually(() => nodes.every((n) => n.state.members().length === 30 && names.every((m) => n.state.live(m, Date.now())) && n.formed()), 60_000,
        () => nodes.filter((n) => n.state.members().length < 30 || !n.formed()).map((n) => `${n.state.self}: ${n.state.members().length} members, connected to ${n.connected().join('+')}`).join('; '));
      const degrees = nodes.map((n) => n.connected().length);
      // Sparse: nobody connected to all 29 others, half of that on average (connections neither end
      // chose any more are closed only after their first 5 s).
      assert.ok(Math.max(...degrees) < 29 && degrees.reduce((a, b) => a + b, 0) / degrees.length < 15, `sparse: degrees ${degrees.join(',')}`);
      // A claimer connected to fewer members than a majority (16 of 30): most of its votes are routed.
      const claimer = nodes.reduce((a, b) => (a.connected().length <= b.connected().length ? a : b));
      assert.ok(claimer.connected().length < 15, `${claimer.state.self} has ${claimer.connected().length} neighbours`);
      const lease = { subnet: '10.30.0.0/24', underlayAddr: '192.0.2.1' };
      assert.deepEqual(await claimer.claim(lease), { ok: true });
      // Its lease reaches every member along the trees.
      await eventually(() => nodes.every((n) => n.state.nodes.get(claimer.state.self)?.lease?.subnet === lease.subnet), 10_000, () => 'the lease everywhere');
      // The conflicting claim from a member far from the claimer loses, named with its holder.
      const far = nodes.find((n) => !n.connected().includes(claimer.state.self) && n !== claimer)!;
      assert.deepEqual(await far.claim({ ...lease, underlayAddr: '192.0.2.2' }), { ok: false, holder: claimer.state.self });
      // Two non-neighbours racing for one subnet: at most one wins, and a loser's votes are given back.
      const [x, y] = nodes.filter((n) => n !== claimer && n !== far && !n.connected().includes(claimer.state.self)).slice(0, 2) as [MeshNode, MeshNode];
      const race = await Promise.allSettled([x.claim({ subnet: '10.30.1.0/24', underlayAddr: '192.0.2.3' }), y.claim({ subnet: '10.30.1.0/24', underlayAddr: '192.0.2.4' })]);
      const won = race.filter((r) => r.status === 'fulfilled' && r.value.ok).length;
      assert.ok(won <= 1, JSON.stringify(race));
      // Whoever lost (or both, on split votes) can be outvoted no more: the subnet has one holder at most everywhere.
      await eventually(() => nodes.every((n) => [...n.state.nodes.values()].filter((r) => r.lease?.subnet === '10.30.1.0/24').length === won), 10_000, () => 'the race\'s result everywhere');
    });
  });
});
