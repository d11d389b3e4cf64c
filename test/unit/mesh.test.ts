// The mesh (pkg/mesh) in one process on 127.0.0.1: frames under random bytes (fast-check),
// authentication (a wrong secret is refused and nothing it sent is applied), discovery (a chain
// becomes a full mesh), replication (a late joiner catches up), claims by quorum (never one
// subnet to two nodes; the minority side gets an error), node rm, and lease expiry.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { encodeFrame, FrameError, FrameReader, MAX_HANDSHAKE_FRAME } from '../../pkg/mesh/frame';
import { MeshNode, NoQuorumError, parseHostPort } from '../../pkg/mesh/node';
import { MeshDatastore } from '../../pkg/datastore/mesh';
import { applyDelta, checkDelta, checkRecord, deltaOf, RecordError, type NodeRecord } from '../../pkg/mesh/state';
import type { LeaseEvent } from '../../pkg/datastore/datastore';
import { overlayFlags } from '../../cmd/knitd/overlay';
import { prng } from '../lab/prng';
import { eventually, MeshSplit } from '../lab/mesh-members';

const SECRET = Buffer.from('s3cret');

describe('mesh', function () {
  this.timeout(30_000);
  const nodes: MeshNode[] = [];
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-mesh-')); });
  afterEach(() => { for (const n of nodes.splice(0)) n.stop(); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function node(name: string, peers: MeshNode[] = [], o: { secret?: Buffer; ttl?: number; state?: boolean; reachable?: (n: string) => boolean } = {}): Promise<MeshNode> {
    const n = new MeshNode({
      name, secret: o.secret ?? SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peers.map((p) => `127.0.0.1:${p.listenPort}`),
      stateDir: o.state ? path.join(tmp, name) : null, ttlSec: o.ttl ?? 30, ...(o.reachable ? { reachable: o.reachable } : {}),
    });
    await n.start();
    nodes.push(n);
    return n;
  }

  it('knitd --datastore mesh: flags checked, every error naming its flag', () => {
    const f = overlayFlags({ datastore: 'mesh', 'node-name': 'n1', peers: '10.0.0.1, 10.0.0.2:7000,[fd00::1]', 'mesh-password': 'pw' }, {})!;
    assert.deepEqual(f.mesh, { peers: ['10.0.0.1:6788', '10.0.0.2:7000', '[fd00::1]:6788'], listen: { host: '0.0.0.0', port: 6788 }, secret: Buffer.from('pw') });
    assert.equal(overlayFlags({ datastore: 'mesh', 'node-name': 'n1' }, { KNIT_MESH_PASSWORD: 'e' })!.mesh!.secret.toString(), 'e');
    const pwFile = path.join(tmp, 'pw');
    fs.writeFileSync(pwFile, 'from-file\n');
    assert.equal(overlayFlags({ datastore: 'mesh', 'node-name': 'n1', 'mesh-password-file': pwFile, 'mesh-listen': '127.0.0.1:9' }, {})!.mesh!.secret.toString(), 'from-file');
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{}, /--datastore mesh needs --mesh-password SECRET or --mesh-password-file FILE/],
      [{ 'mesh-password': '' }, /invalid --mesh-password "": an empty secret/],
      [{ 'mesh-password': 'a', 'mesh-password-file': pwFile }, /--mesh-password and --mesh-password-file: give one/],
      [{ 'mesh-password-file': path.join(tmp, 'none') }, /invalid --mesh-password-file .*none: ENOENT/],
      [{ 'mesh-password': 'a', peers: 'a:b:c' }, /invalid --peers "a:b:c"/],
      [{ 'mesh-password': 'a', 'mesh-listen': '0.0.0.0:99999' }, /invalid --mesh-listen "0.0.0.0:99999": port 99999 out of range/],
      [{ 'mesh-password': 'a', 'etcd-endpoints': 'http://x:1' }, /--etcd-endpoints and --datastore mesh do not go together/],
    ];
    for (const [v, re] of bad) assert.throws(() => overlayFlags({ datastore: 'mesh', 'node-name': 'n1', ...v }, {}), re);
    assert.throws(() => overlayFlags({ 'etcd-endpoints': 'http://x:1', peers: 'h' }, {}), /--peers is for --datastore mesh/);
  });

  describe('frames', () => {
    it('cuts any split of valid frames back into the same payloads', () => {
      fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (payloads, cuts) => {
        const wire = Buffer.concat(payloads.map((p) => encodeFrame(Buffer.from(p))));
        const r = new FrameReader(1000);
        const got: Buffer[] = [];
        for (let i = 0, k = 0; i < wire.length; k++) { const n = cuts[k % cuts.length]!; got.push(...r.push(wire.subarray(i, i + n))); i += n; }
        assert.deepEqual(got.map((b) => b.toString('hex')), payloads.map((p) => Buffer.from(p).toString('hex')));
        assert.equal(r.pending, 0);
      }), { seed: 15, numRuns: 300 });
    });

    it('random bytes give frames or a FrameError, never another error, and never hold more than a frame', () => {
      fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 2000 }), { maxLength: 10 }), (chunks) => {
        const r = new FrameReader();
        try {
          for (const c of chunks) { r.push(Buffer.from(c)); assert.ok(r.pending <= MAX_HANDSHAKE_FRAME + 4 + 2000); }
        } catch (e) { assert.ok(e instanceof FrameError, String(e)); }
      }), { seed: 15, numRuns: 500 });
      assert.throws(() => new FrameReader().push(Buffer.from([0xff, 0xff, 0xff, 0xff])), /frame length 4294967295/);
      assert.throws(() => new FrameReader().push(Buffer.from([0, 0, 0, 0])), /frame length 0/);
    });

    it('parses HOST[:PORT]', () => {
      assert.deepEqual(parseHostPort('10.0.0.1'), { host: '10.0.0.1', port: 6788 });
      assert.deepEqual(parseHostPort('[fd00::1]:99'), { host: 'fd00::1', port: 99 });
      assert.throws(() => parseHostPort('a:b:c'), /HOST, HOST:PORT/);
      assert.throws(() => parseHostPort('h:70000'), /out of range/);
    });
  });

  describe('deltas', () => {
    const rec = (v: number, conns: Array<[string, string]>, lease: NodeRecord['lease'] = null): NodeRecord =>
      ({ k: 'node', name: 'o', inc: '0123456789abcdef', v, ttl: 30, lease, conns: conns.map(([name, addr]) => ({ name, addr, dir: 'out' as const })) });

    it('a connection change or a heartbeat is a delta that rebuilds the record; a lease change is not', () => {
      const a = rec(1, [['p1', '10.0.0.1:6788'], ['p2', '10.0.0.2:6788']]);
      const b = rec(2, [['p2', '10.0.0.9:6788'], ['p3', '10.0.0.3:6788']]);
      const d = deltaOf(a, b)!;
      assert.deepEqual({ add: d.add.map((c) => c.name), del: d.del, base: d.base, v: d.v }, { add: ['p2', 'p3'], del: ['p1'], base: 1, v: 2 });
      const back = applyDelta(a, checkDelta(JSON.parse(JSON.stringify(d)), 0).d)!;
      assert.deepEqual([...back.conns].sort((x, y) => x.name.localeCompare(y.name)), b.conns);
      assert.deepEqual(deltaOf(b, rec(3, [['p2', '10.0.0.9:6788'], ['p3', '10.0.0.3:6788']]))!.add, []); // a heartbeat
      assert.equal(applyDelta(rec(5, []), d), null, 'not on another base');
      assert.equal(applyDelta(undefined, d), null);
      assert.equal(deltaOf(a, rec(2, [], { subnet: '10.1.0.0/24', underlayAddr: '192.0.2.1' })), null);
    });

    it('a bad delta is a RecordError, whatever its bytes', () => {
      fc.assert(fc.property(fc.anything(), fc.anything(), (x, age) => {
        try { checkDelta(x, age); } catch (e) { assert.ok(e instanceof RecordError, String(e)); }
      }), { seed: 15, numRuns: 500 });
      const good = { name: 'o', inc: 'ab', base: 1, v: 2, ttl: 30, add: [], del: [] };
      assert.doesNotThrow(() => checkDelta(good, 0));
      for (const bad of [{ ...good, v: 1 }, { ...good, add: [{ name: 'x', addr: 'nope', dir: 'in' }] }, { ...good, del: ['../x'] }, { ...good, ttl: 0 }]) {
        assert.throws(() => checkDelta(bad, 0), RecordError);
      }
    });

    it('a node that missed a delta\'s base asks for the whole record; a node cut off from the owner gets it through one relay', async () => {
      const cut = (x: string, y: string): boolean => (x === 'da' && y === 'dc') || (x === 'dc' && y === 'da');
      const a = await node('da', [], { reachable: (n) => !cut('da', n) });
      const b = await node('db', [a], { reachable: () => true });
      const c = await node('dc', [b], { reachable: (n) => !cut('dc', n) });
      await eventually(() => b.connected().length === 2 && a.state.nodes.has('dc') && c.state.nodes.has('da'), 10_000, 'da-db-dc');
      b.state.nodes.delete('da'); // as if db had missed da's last version
      a.publishSelf();
      const v = a.state.nodes.get('da')!.v;
      await eventually(() => b.state.nodes.get('da')?.v === v, 5000, 'db asked for da\'s record');
      await eventually(() => c.state.nodes.get('da')?.v === v, 5000, 'dc got it through db');
      const before = a.bytesOut();
      a.publishSelf();
      await eventually(() => c.state.nodes.get('da')!.v > v, 5000, 'the heartbeat reaches dc');
      assert.ok(a.bytesOut() - before < 400, `a heartbeat is a small delta (${a.bytesOut() - before} bytes)`);
    });

    it('a node\'s key for encrypted named networks (enc) is checked, never a delta, and reaches its peers; cleared, it goes', async () => {
      const key = 'A'.repeat(43);
      const base = rec(1, []);
      assert.equal(deltaOf(base, { ...rec(2, []), enc: { key, gen: 1 } }), null, 'enc changed: the whole record');
      const wire = (enc: unknown): unknown => ({ rec: { ...rec(2, []), enc }, age: 0 });
      assert.deepEqual((checkRecord(wire({ key, gen: 3 })).rec as NodeRecord).enc, { key, gen: 3 });
      for (const bad of [null, 'x', { key }, { key, gen: -1 }, { key: 'k'.repeat(65), gen: 1 }]) assert.throws(() => checkRecord(wire(bad)), RecordError, JSON.stringify(bad));
      const a = await node('ea');
      const b = await node('eb', [a]);
      await eventually(() => a.state.nodes.has('eb') && b.state.nodes.has('ea'), 10_000, 'ea-eb');
      a.setEnc({ key, gen: 2 });
      await eventually(() => b.state.nodes.get('ea')?.enc?.gen === 2, 5000, 'eb learns ea\'s key and generation');
      a.setEnc(undefined);
      await eventually(() => b.state.nodes.get('ea')?.enc === undefined, 5000, 'eb sees ea stop encrypting');
    });
  });

  it('a peer with the wrong secret is refused, counted, and nothing it sent is applied', async () => {
    const a = await node('a');
    a.setConfig('{"x":1}');
    const bad = await node('evil', [a], { secret: Buffer.from('wrong') });
    bad.setConfig('{"x":2}');
    await eventually(() => a.counters.authFailed >= 1 && bad.counters.authFailed >= 1, 5000, 'both ends refuse');
    assert.deepEqual(a.connected(), []);
    assert.equal(a.state.nodes.has('evil'), false);
    assert.equal(a.state.config!.json, '{"x":1}');
  });

  it('garbage, truncated frames and huge lengths close the connection and count; the node keeps serving', async () => {
    const a = await node('a');
    const send = (bytes: Buffer, end = true): Promise<void> => new Promise((resolve) => {
      const s = net.connect(a.listenPort, '127.0.0.1', () => { s.write(bytes); if (end) s.end(); });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
    });
    await send(Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    await send(encodeFrame(Buffer.from('not json')));
    await send(encodeFrame(Buffer.from('{"t":"sync","records":[]}'))); // before authentication
    await send(Buffer.from([0, 0, 0, 50, 1, 2]));
    await eventually(() => a.counters.badFrames >= 3 && a.counters.truncated >= 1, 5000, `bad frames counted (${JSON.stringify(a.counters)})`);
    const b = await node('b', [a]);
    await eventually(() => a.connected().includes('b') && b.connected().includes('a'), 5000, 'a still accepts good peers');
  });

  it('a chain topology becomes a full mesh, and a late joiner catches up with the state', async () => {
    const chain: MeshNode[] = [];
    for (let i = 0; i < 5; i++) chain.push(await node(`n${i}`, i ? [chain[i - 1]!] : []));
    chain[0]!.setConfig('{"network":"10.1.0.0/16"}');
    await eventually(() => chain.every((n) => n.connected().length === 4), 10_000, `full mesh: ${chain.map((n) => `${n.state.self}:${n.connected().join('+')}`).join(' ')}`);
    for (const n of chain) assert.deepEqual(n.state.members(), ['n0', 'n1', 'n2', 'n3', 'n4']);
    const late = await node('late', [chain[4]!]);
    await late.ready(5000);
    assert.equal(late.state.config?.json, '{"network":"10.1.0.0/16"}');
    await eventually(() => late.connected().length === 5, 10_000, 'late joiner connects to all');
  });

  it('claims need a majority: one holder per subnet, the minority side gets NoQuorumError', async () => {
    const ns: MeshNode[] = [];
    for (let i = 0; i < 5; i++) ns.push(await node(`q${i}`, i ? [ns[0]!] : []));
    await eventually(() => ns.every((n) => n.connected().length === 4), 10_000, 'full mesh');
    const lease = (s: string): { subnet: string; underlayAddr: string } => ({ subnet: s, underlayAddr: '192.0.2.1' });
    assert.deepEqual(await ns[0]!.claim(lease('10.1.1.0/24')), { ok: true });
    assert.deepEqual(await ns[1]!.claim(lease('10.1.1.0/24')), { ok: false, holder: 'q0' });
    // Two nodes racing for one subnet: at most one wins.
    const race = await Promise.allSettled([ns[2]!.claim(lease('10.1.2.0/24')), ns[3]!.claim(lease('10.1.2.0/24'))]);
    assert.ok(race.filter((r) => r.status === 'fulfilled' && r.value.ok).length <= 1, JSON.stringify(race));
    // Partition: q3, q4 alone (3 members gone) cannot claim anything.
    for (const n of ns.slice(0, 3)) n.stop();
    await eventually(() => ns[3]!.connected().length === 1, 5000, 'q3 sees only q4');
    await assert.rejects(ns[3]!.claim(lease('10.1.9.0/24')), (e: Error) => e instanceof NoQuorumError && /1 of 5 known member\(s\) granted it, 3 needed|2 of 5/.test(e.message));
  });

  it('seeded partitions 3/2 while nodes claim from a small pool: the minority gets nothing, no subnet ever has two holders', async function () {
    this.timeout(120_000);
    const rounds = Number(process.env.KNIT_MESH_ROUNDS ?? 20);
    const seed = Number(process.env.KNIT_MESH_SEED ?? 1515);
    const rnd = prng(seed); // the rounds replay exactly from the seed
    const names = ['p0', 'p1', 'p2', 'p3', 'p4'];
    const mesh = await MeshSplit.open(names, node);
    const ns = mesh.ns;
    const pool = Array.from({ length: 6 }, (_, i) => `10.9.${i}.0/24`);
    const holders = new Map<string, Set<string>>();
    let minorityRefused = 0;
    let granted = 0;
    for (let r = 0; r < rounds; r++) {
      await mesh.split(rnd, `round ${r}`);
      // Claims on both sides at once, colliding on purpose.
      const results = await Promise.all(ns.map(async (n) => {
        if (rnd() < 0.3) return null;
        const subnet = pool[Math.floor(rnd() * pool.length)]!;
        try { return { n, subnet, r: await n.claim({ subnet, underlayAddr: '192.0.2.1' }) }; } catch (e) { return { n, subnet, e: e as Error }; }
      }));
      for (const x of results) {
        if (!x) continue;
        const minority = mesh.minority(x.n.state.self);
        if (minority) {
          assert.ok(x.e instanceof NoQuorumError || (x.r && !x.r.ok), `round ${r}: minority ${x.n.state.self} got ${x.subnet}`);
          minorityRefused++;
        } else if (x.r?.ok) {
          granted++;
          const h = holders.get(x.subnet) ?? new Set();
          h.add(x.n.state.self);
          holders.set(x.subnet, h);
        }
        // A node holds one subnet: the one it claimed last.
        if (x.r?.ok) for (const [s, h] of holders) if (s !== x.subnet) h.delete(x.n.state.self);
      }
      for (const [s, h] of holders) assert.ok(h.size <= 1, `round ${r}: ${s} held by ${[...h].join(' and ')} (seed ${seed})`);
      await mesh.heal();
      // After healing, every node's view: no subnet published by two nodes.
      await eventually(() => ns.every((n) => {
        const pub = [...n.state.nodes.values()].filter((x) => x.lease).map((x) => x.lease!.subnet);
        return pub.length === new Set(pub).size;
      }), 5000, `round ${r}: no duplicate after healing`);
    }
    assert.ok(minorityRefused > 0 && granted > 0, `exercised both sides (${minorityRefused} refused, ${granted} granted)`);
  });

  it('members and grants survive a restart: a lone restarted node knows it is a minority', async () => {
    const a = await node('ra', [], { state: true });
    const b = await node('rb', [a], { state: true });
    const c = await node('rc', [a], { state: true });
    await eventually(() => [a, b, c].every((n) => n.connected().length === 2), 10_000, 'mesh of 3');
    assert.deepEqual(await a.claim({ subnet: '10.2.0.0/24', underlayAddr: '192.0.2.1' }), { ok: true });
    for (const n of [a, b, c]) n.stop();
    nodes.length = 0;
    const a2 = await node('ra', [], { state: true });
    assert.deepEqual(a2.quorum().members, ['ra', 'rb', 'rc']);
    await assert.rejects(a2.claim({ subnet: '10.2.9.0/24', underlayAddr: '192.0.2.1' }), NoQuorumError);
    const b2 = await node('rb', [a2], { state: true });
    // Both ends: the acceptor counts the connection up a moment before the dialer does.
    await eventually(() => a2.connected().includes('rb') && b2.connected().includes('ra'), 5000, 'ra-rb');
    // rb remembers its vote for ra: rb cannot take ra's subnet.
    assert.deepEqual(await b2.claim({ subnet: '10.2.0.0/24', underlayAddr: '192.0.2.2' }), { ok: false, holder: 'ra' });
    assert.deepEqual(await a2.claim({ subnet: '10.2.0.0/24', underlayAddr: '192.0.2.1' }), { ok: true });
  });

  it('the datastore: leases replicate, expire when a node is gone, and node rm frees the subnet (twice is harmless)', async () => {
    const a = await node('da', [], { ttl: 2 });
    const b = await node('db', [a], { ttl: 2 });
    const c = await node('dc', [a], { ttl: 2 });
    await eventually(() => [a, b, c].every((n) => n.connected().length === 2), 10_000, 'mesh of 3');
    const [sa, sb, sc] = [a, b, c].map((n) => new MeshDatastore(n));
    const events: LeaseEvent[] = [];
    sa!.watchLeases(0, (e) => events.push(e), () => undefined);
    assert.deepEqual(await sb!.claim({ nodeName: 'db', subnet: '10.3.1.0/24', underlayAddr: '192.0.2.2', backend: 'vxlan', backendData: { vtepMac: '02:00:00:00:00:02' } }, 2), { ok: true });
    assert.deepEqual(await sc!.claim({ nodeName: 'dc', subnet: '10.3.1.0/24', underlayAddr: '192.0.2.3' }, 2), { ok: false, holder: 'db' });
    await eventually(() => events.some((e) => e.type === 'put' && e.lease.nodeName === 'db'), 5000, 'put event on da');
    const { leases } = await sa!.listLeases();
    assert.deepEqual(leases, [{ nodeName: 'db', subnet: '10.3.1.0/24', underlayAddr: '192.0.2.2', backend: 'vxlan', backendData: { vtepMac: '02:00:00:00:00:02' } }]);
    b.stop();
    await eventually(() => events.some((e) => e.type === 'del' && e.subnet === '10.3.1.0/24'), 6000, 'db expires on da');
    // Expired, but still held: nobody else gets the subnet until node rm.
    assert.deepEqual(await sc!.claim({ nodeName: 'dc', subnet: '10.3.1.0/24', underlayAddr: '192.0.2.3' }, 2), { ok: false, holder: 'db' });
    assert.equal(await sa!.releaseNode('db'), 1);
    assert.equal(await sa!.releaseNode('db'), 0);
    await eventually(() => !c.state.nodes.has('db'), 5000, 'rm reaches dc');
    assert.deepEqual(await sc!.claim({ nodeName: 'dc', subnet: '10.3.1.0/24', underlayAddr: '192.0.2.3' }, 2), { ok: true });
    for (const s of [sa, sb, sc]) s!.close();
  });
});
