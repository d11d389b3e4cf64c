// Named networks on the mesh (pkg/mesh/networks.ts, grants.ts; design D21), in one process on
// 127.0.0.1: the conflict predicate; a network created by a majority's votes replicates and its
// tombstone too; conflicting creates on both sides of seeded 3/2 partitions: at most one wins and
// the minority gets nothing; endpoints replicate in their owner's record and expire with it.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { conflicts, Grants, type Claim } from '../../pkg/mesh/grants';
import { CniError } from '../../pkg/cni/errors';
import { MeshIpam } from '../../pkg/mesh/ipam';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { MeshNode, NoQuorumError } from '../../pkg/mesh/node';
import { SpecError } from '../../pkg/network/spec';
import type { Endpoint } from '../../pkg/network/store';
import { prng } from '../lab/prng';
import { eventually, MeshSplit } from '../lab/mesh-members';

const SECRET = Buffer.from('s3cret');

const net = (id: string, name: string, subnets: string[], vni?: number): Claim => ({ kind: 'net', net: { id, name, subnets, ...(vni !== undefined ? { vni } : {}) } });

describe('mesh: named networks', function () {
  this.timeout(30_000);
  const nodes: MeshNode[] = [];
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-meshnet-')); });
  afterEach(() => { for (const n of nodes.splice(0)) n.stop(); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function node(name: string, peers: MeshNode[] = [], o: { ttl?: number; reachable?: (n: string) => boolean } = {}): Promise<MeshNode> {
    const n = new MeshNode({
      name, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peers.map((p) => `127.0.0.1:${p.listenPort}`),
      stateDir: null, ttlSec: o.ttl ?? 30, ...(o.reachable ? { reachable: o.reachable } : {}),
    });
    await n.start();
    nodes.push(n);
    return n;
  }

  it('the conflict predicate: same name, overlapping subnet, same VNI conflict; the same id and other kinds do not', () => {
    assert.match(conflicts(net('a', 'x', ['10.0.0.0/24']), net('b', 'x', ['10.1.0.0/24']))!, /same name/);
    assert.match(conflicts(net('a', 'x', ['10.0.0.0/16']), net('b', 'y', ['10.0.5.0/24']))!, /10.0.5.0\/24 overlaps 10.0.0.0\/16/);
    assert.match(conflicts(net('a', 'x', ['10.0.0.0/24'], 7), net('b', 'y', ['10.1.0.0/24'], 7))!, /same VNI 7/);
    assert.equal(conflicts(net('a', 'x', ['10.0.0.0/24'], 7), net('a', 'x', ['10.0.0.0/24'], 7)), null);
    assert.equal(conflicts(net('a', 'x', ['10.0.0.0/24'], 7), net('b', 'y', ['10.1.0.0/24', 'fd00::/64'], 8)), null);
    assert.equal(conflicts({ kind: 'subnet', subnet: '10.0.0.0/24' }, net('b', 'y', ['10.0.0.0/24'])), null);
    assert.match(conflicts({ kind: 'block', netId: 'n', block: '10.0.0.0/28' }, { kind: 'block', netId: 'n', block: '10.0.0.0/28' })!, /block/);
    assert.equal(conflicts({ kind: 'block', netId: 'n', block: '10.0.0.0/28' }, { kind: 'block', netId: 'm', block: '10.0.0.0/28' }), null);
  });

  it('grants on disk: the format before D21 still reads, a network grant is refused to a conflicting claim after a restart, a tombstone frees it', () => {
    const f = path.join(tmp, 'grants.json');
    fs.writeFileSync(f, JSON.stringify({ '10.5.0.0/24': { holder: 'h1', v: 3 } }));
    const none = (): boolean => false;
    const g = new Grants(f);
    assert.deepEqual(g.request('10.5.0.0/24', 'h2', 9, none), { ok: false, holder: 'h1', conflict: '10.5.0.0/24' });
    assert.deepEqual(g.request(net('id1', 'app', ['10.6.0.0/24'], 4096), 'h2', 10, none), { ok: true });
    const g2 = new Grants(f);
    assert.equal(g2.request(net('id2', 'web', ['10.6.0.128/25']), 'h3', 11, none).ok, false);
    // node rm of the creator leaves the network's grant: a network is nobody's.
    g2.removed('h2', 100);
    assert.equal(g2.request(net('id2', 'web', ['10.6.0.128/25']), 'h3', 11, none).ok, false);
    g2.networkRemoved('id1');
    assert.deepEqual(g2.request(net('id2', 'web', ['10.6.0.128/25']), 'h3', 11, none), { ok: true });
    // A subnet grant moves with its holder; a network grant does not.
    g2.holderMoved('h3', 50, null);
    assert.equal(g2.claims('net').length, 1);
  });

  it('a voter that only ever gets a network\'s tombstone (it missed the record) drops its grant and the network\'s blocks', async () => {
    const a = await node('ta');
    const none = (): boolean => false;
    assert.deepEqual(a.grants.request(net('X', 'gone', ['10.9.9.0/24']), 'zz', 1, none), { ok: true });
    assert.deepEqual(a.grants.request({ kind: 'block', netId: 'X', block: '10.9.9.0/28' }, 'zz', 1, none), { ok: true });
    assert.equal(a.grants.request(net('Y', 'other', ['10.9.9.0/25']), 'zy', 2, none).ok, false);
    a.putNetworkRecord({ k: 'net', name: 'gone', id: 'X', v: 5, by: 'zz', net: null });
    assert.deepEqual(a.grants.claims('net'), []);
    assert.deepEqual(a.grants.claims('block'), []);
    assert.deepEqual(a.grants.request(net('Y', 'other', ['10.9.9.0/25']), 'zy', 2, none), { ok: true });
  });

  it('create replicates everywhere (same validation messages as etcd); rm is a tombstone; a conflicting create elsewhere is refused', async () => {
    const a = await node('na');
    const b = await node('nb', [a]);
    const c = await node('nc', [a]);
    await eventually(() => [a, b, c].every((n) => n.connected().length === 2), 10_000, 'mesh of 3');
    const [ma, mb, mc] = [a, b, c].map((n) => new MeshNetworks(n));
    const app = await ma!.create({ name: 'app', driver: 'overlay', subnets: ['10.7.0.0/24'] });
    assert.equal(app.options.vni, 4096);
    await eventually(() => [b, c].every((n) => n.state.nets.get('app')?.net?.id === app.id), 5000, 'app everywhere');
    await assert.rejects(mb!.create({ name: 'app', driver: 'overlay', subnets: ['10.8.0.0/24'] }), (e: Error) => e instanceof SpecError && /network app already exists/.test(e.message));
    await assert.rejects(mc!.create({ name: 'web', subnets: ['10.7.0.0/25'] }), (e: Error) => e instanceof SpecError && /invalid --subnet "10.7.0.0\/25": a subnet that does not overlap 10.7.0.0\/24 of network app/.test(e.message));
    // Auto VNI: the next free one, also when two nodes create at once.
    const [x, y] = await Promise.all([mb!.create({ name: 'x', driver: 'overlay', subnets: ['10.9.0.0/24'] }), mc!.create({ name: 'y', driver: 'overlay', subnets: ['10.9.1.0/24'] })]);
    assert.notEqual(x.options.vni, y.options.vni);
    await ma!.remove('app');
    await assert.rejects(ma!.remove('app'), /no network named app \(knitctl network ls lists them\)/);
    await eventually(() => [b, c].every((n) => n.state.nets.get('app')?.net === null), 5000, 'tombstone everywhere');
    // The name, subnet and VNI are free again.
    const again = await mc!.create({ name: 'app', driver: 'overlay', subnets: ['10.7.0.0/24'], opts: ['vni=4096'] });
    await eventually(() => a.state.nets.get('app')?.net?.id === again.id, 5000, 'new app on na');
  });

  it('seeded 3/2 partitions with conflicting creates on both sides: the minority creates nothing, no two conflicting networks ever exist', async function () {
    this.timeout(120_000);
    const rounds = Number(process.env.KNIT_MESH_ROUNDS ?? 12);
    const seed = Number(process.env.KNIT_MESH_SEED ?? 2121);
    const rnd = prng(seed); // the rounds replay exactly from the seed
    const names = ['w0', 'w1', 'w2', 'w3', 'w4'];
    const mesh = await MeshSplit.open(names, node);
    const ns = mesh.ns;
    const ms = ns.map((n) => new MeshNetworks(n, 0));
    let created = 0;
    let minorityRefused = 0;
    let conflictRefused = 0;
    for (let r = 0; r < rounds; r++) {
      await mesh.split(rnd, `round ${r}`);
      // Every node tries a network that collides with the others' by name, subnet or VNI.
      const reqs = ms.map((_, i) => {
        const k = Math.floor(rnd() * 3);
        return { name: `n${r}-${k === 0 ? 'same' : i}`, driver: 'overlay', subnets: [k === 1 ? `10.${100 + r}.0.0/24` : `10.${100 + r}.${1 + i}.0/24`], opts: [`vni=${k === 2 ? 9000 + r : 9100 + r * 10 + i}`] };
      });
      const results = await Promise.all(ms.map(async (m, i) => {
        try { return { i, net: await m.create(reqs[i]!) }; } catch (e) { return { i, e: e as Error }; }
      }));
      for (const x of results) {
        const minority = mesh.minority(names[x.i]!);
        if (minority) { assert.ok(x.e instanceof NoQuorumError, `round ${r}: minority ${names[x.i]} created ${x.net?.name ?? ''}: ${x.e?.message}`); minorityRefused++; }
        else if (x.net) created++;
        else { assert.ok(x.e instanceof SpecError || x.e instanceof NoQuorumError, String(x.e)); conflictRefused++; }
      }
      await mesh.heal();
      // Healed: the former minority tries again; it gets its network only if nothing conflicts.
      await eventually(() => ns.every((n) => n.state.networks().length === ns[0]!.state.networks().length), 5000, `round ${r}: synced`);
      for (const x of results) {
        if (x.net || !(x.e instanceof NoQuorumError)) continue;
        try { await ms[x.i]!.create(reqs[x.i]!); created++; } catch (e) { assert.ok(e instanceof SpecError, String(e)); conflictRefused++; }
      }
      // Every node, once healed, holds the same networks and no two of them conflict.
      await eventually(() => ns.every((n) => n.state.networks().length === ns[0]!.state.networks().length), 5000, `round ${r}: same networks everywhere`);
      const nets = ns[0]!.state.networks();
      for (const p of nets) for (const q of nets) {
        if (p === q) continue;
        const why = conflicts(net(p.id, p.name, p.subnets.map((s) => s.subnet), p.options.vni), net(q.id, q.name, q.subnets.map((s) => s.subnet), q.options.vni));
        assert.equal(why, null, `round ${r} (seed ${seed}): ${p.name} and ${q.name} both exist: ${why}`);
      }
    }
    assert.ok(created > 0 && minorityRefused > 0 && conflictRefused > 0, `exercised every outcome (${created} created, ${minorityRefused} minority refusals, ${conflictRefused} conflicts)`);
  });

  it('endpoints replicate in their owner\'s record, block rm while attached, and leave every view when the owner is gone', async () => {
    const a = await node('ea', [], { ttl: 2 });
    const b = await node('eb', [a], { ttl: 2 });
    const c = await node('ec', [a], { ttl: 2 });
    await eventually(() => [a, b, c].every((n) => n.connected().length === 2), 10_000, 'mesh of 3');
    const [ma, mb] = [a, b].map((n) => new MeshNetworks(n));
    await ma!.create({ name: 'app', driver: 'overlay', subnets: ['10.4.0.0/24'] });
    await eventually(() => !!b.state.nets.get('app')?.net, 5000, 'app on eb');
    const ep: Endpoint = { network: 'app', containerId: 'c0ffee'.repeat(4), ifName: 'eth0', node: 'eb', nodeIp: '192.0.2.2', mac: '02:00:00:00:00:09', ips: ['10.4.0.9/24'], name: 'web', created: new Date().toISOString() };
    assert.throws(() => mb!.putEndpoint({ ...ep, node: 'ea' }), /an endpoint is written by its own node/);
    mb!.putEndpoint(ep);
    await eventually(() => [a, c].every((n) => n.state.endpoints(Date.now()).some((e) => e.mac === ep.mac)), 5000, 'endpoint everywhere');
    await assert.rejects(ma!.remove('app'), /network app has 1 container attached \(web on eb\): remove or disconnect them first/);
    mb!.deleteEndpoint(ep);
    mb!.deleteEndpoint(ep); // idempotent
    await eventually(() => a.state.endpoints(Date.now()).length === 0, 5000, 'endpoint gone on ea');
    mb!.putEndpoint(ep);
    await eventually(() => c.state.endpoints(Date.now()).length === 1, 5000, 'endpoint back on ec');
    b.stop();
    await eventually(() => [a, c].every((n) => n.state.endpoints(Date.now()).length === 0), 6000, 'endpoints of eb expire');
    await ma!.remove('app');
  });

  it('addresses: per-node blocks by votes, never one address twice across nodes, ip-range and aux honoured, kept on disk; no quorum for a new block: code 11', async () => {
    const a = await node('ia');
    const b = await node('ib', [a]);
    const c = await node('ic', [a]);
    await eventually(() => [a, b, c].every((n) => n.connected().length === 2), 10_000, 'mesh of 3');
    await new MeshNetworks(a).create({ name: 'app', driver: 'overlay', subnets: ['10.6.0.0/24'], ipRanges: ['10.6.0.0/26'], auxAddresses: ['r=10.6.0.5'] });
    await eventually(() => !!b.state.nets.get('app')?.net, 5000, 'app on ib');
    const dir = path.join(tmp, 'ipam-ia');
    const ia = new MeshIpam(a, dir);
    const ib = new MeshIpam(b, null);
    const got = new Set<string>();
    const take = async (m: MeshIpam, id: string): Promise<string> => {
      const [x] = await m.allocate('app', { containerId: id, ifName: 'eth0' }, []);
      assert.ok(!got.has(x!.ip), `${x!.ip} given twice`);
      got.add(x!.ip);
      return x!.ip;
    };
    // Concurrent ADDs on both nodes: 20 each, across several blocks.
    const ips = await Promise.all(Array.from({ length: 20 }, (_, i) => [take(ia, `a${i}`), take(ib, `b${i}`)]).flat());
    for (const ip of ips) {
      const last = Number(ip.split('.')[3]);
      assert.ok(last < 64 && !['10.6.0.0', '10.6.0.1', '10.6.0.5'].includes(ip), `${ip}: inside the ip-range, not the network, gateway or aux address`);
    }
    const [sa, sb] = [ia.summary()[0]!.blocks, ib.summary()[0]!.blocks];
    assert.ok(!sa.some((x) => sb.includes(x)), `blocks ${sa} / ${sb}`);
    // A repeated ADD returns what the attachment holds; kept on disk for a restarted knitd.
    const again = await new MeshIpam(a, dir).allocate('app', { containerId: 'a0', ifName: 'eth0' }, []);
    assert.equal(again[0]!.ip, ips[0]);
    await assert.rejects(ib.allocate('app', { containerId: 'x', ifName: 'eth0' }, [ips[0]!]), (e: Error) => e instanceof CniError && e.code === 102 && /held by node ia|in use/.test(e.message));
    // network rm waits for addresses held (every driver; bridge and macvlan networks record no endpoint).
    await eventually(() => a.state.nodes.get('ib')?.held?.app?.length === 20, 5000, 'ib\'s attachments known on ia');
    await assert.rejects(new MeshNetworks(a).remove('app'), (e: Error) => e instanceof SpecError && /^network app has 40 containers attached \(a0 on ia, .*\): remove or disconnect them first$/.test(e.message));
    assert.deepEqual(await ib.release('app', { containerId: 'b0', ifName: 'eth0' }), [ips[1]]);
    assert.deepEqual(await ib.release('app', { containerId: 'b0', ifName: 'eth0' }), []);
    // Alone (ib and ic gone), ia gives from its own blocks but cannot claim a new one.
    b.stop(); c.stop();
    await eventually(() => a.connected().length === 0, 5000, 'ia alone');
    let err: unknown;
    for (let i = 0; i < 64 && !err; i++) {
      try { await ia.allocate('app', { containerId: `z${i}`, ifName: 'eth0' }, []); } catch (e) { err = e; }
    }
    assert.ok(err instanceof CniError && err.code === 11 && /no quorum to claim block/.test(err.message), String(err));
  });
});
