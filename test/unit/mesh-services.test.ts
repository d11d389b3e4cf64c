// Services on the mesh (pkg/mesh/services.ts, grants.ts `vip`), in one process on 127.0.0.1: the
// conflict predicate; a service created by a majority's votes replicates, its VIP reserved in the
// creator's blocks; conflicting creates (same name, same VIP) on both sides of seeded 3/2
// partitions never both win and the minority gets nothing; rm frees the name and the VIP.
import assert from 'node:assert/strict';
import { conflicts, type Claim } from '../../pkg/mesh/grants';
import { MeshIpam } from '../../pkg/mesh/ipam';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { MeshNode, NoQuorumError } from '../../pkg/mesh/node';
import { MeshServices } from '../../pkg/mesh/services';
import { SpecError } from '../../pkg/network/spec';
import { prng } from '../lab/prng';
import { eventually, MeshSplit } from '../lab/mesh-members';

const SECRET = Buffer.from('s3cret');

const vip = (id: string, name: string, ip: string, netId = 'N'): Claim => ({ kind: 'vip', svc: { id, netId, network: 'app', name, vip: ip } });

describe('mesh: services', function () {
  this.timeout(30_000);
  const nodes: MeshNode[] = [];
  afterEach(() => { for (const n of nodes.splice(0)) n.stop(); });

  async function node(name: string, peers: MeshNode[] = [], o: { reachable?: (n: string) => boolean; strandedMs?: number } = {}): Promise<MeshNode> {
    const n = new MeshNode({
      name, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peers.map((p) => `127.0.0.1:${p.listenPort}`),
      stateDir: null, ttlSec: 30, ...(o.reachable ? { reachable: o.reachable } : {}), ...(o.strandedMs ? { strandedMs: o.strandedMs } : {}),
    });
    await n.start();
    nodes.push(n);
    return n;
  }

  it('the vip predicate: same name or same VIP on one network conflict; another network, the same id or other kinds do not', () => {
    assert.match(conflicts(vip('a', 'api', '10.0.0.9'), vip('b', 'api', '10.0.0.10'))!, /service api on network app: same name/);
    assert.match(conflicts(vip('a', 'api', '10.0.0.9'), vip('b', 'web', '10.0.0.9'))!, /service web on network app: same VIP 10.0.0.9/);
    assert.equal(conflicts(vip('a', 'api', '10.0.0.9'), vip('a', 'api', '10.0.0.9')), null);
    assert.equal(conflicts(vip('a', 'api', '10.0.0.9'), vip('b', 'api', '10.0.0.9', 'M')), null);
    assert.equal(conflicts(vip('a', 'api', '10.0.0.9'), { kind: 'block', netId: 'N', block: '10.0.0.0/28' }), null);
  });

  it('create replicates with a VIP from the creator\'s block; name, VIP and network rm refused elsewhere; rm frees name, VIP and reservation', async () => {
    const a = await node('sa');
    const b = await node('sb', [a]);
    const c = await node('sc', [a]);
    await eventually(() => [a, b, c].every((n) => n.connected().length === 2), 10_000, 'mesh of 3');
    await new MeshNetworks(a).create({ name: 'app', driver: 'overlay', subnets: ['10.8.0.0/24'], ipRanges: ['10.8.0.0/25'] });
    await new MeshNetworks(a).create({ name: 'br', driver: 'bridge', subnets: ['10.9.0.0/24'] });
    await eventually(() => [b, c].every((n) => !!n.state.nets.get('app')?.net && !!n.state.nets.get('br')?.net), 5000, 'networks everywhere');
    const [ia, ib, ic] = [a, b, c].map((n) => new MeshIpam(n, null));
    const [sa, sb, sc] = [[a, ia], [b, ib], [c, ic]].map(([n, i]) => new MeshServices(n as MeshNode, i as MeshIpam));
    const api = await sa!.create({ name: 'api', network: 'app', ports: ['tcp:80', 'udp:53'] });
    assert.deepEqual(api.ports, [{ proto: 'tcp', port: 80 }, { proto: 'udp', port: 53 }]);
    assert.ok(ia!.attachments('app').some((x) => x.owner.ifName === 'vip' && x.ips[0] === api.vips[0]), 'the VIP is reserved in sa\'s block');
    await eventually(() => [b, c].every((n) => n.state.services().some((s) => s.id === api.id)), 5000, 'api everywhere');
    // The same messages as on etcd.
    await assert.rejects(sb!.create({ name: 'api', network: 'app' }), (e: Error) => e instanceof SpecError && /^service api already exists on network app: pick another name or remove it first \(knitctl service rm api\)$/.test(e.message));
    await assert.rejects(sc!.create({ name: 'web', network: 'app', vip: api.vips[0]! }), (e: Error) => e instanceof SpecError && /invalid --vip ".*": an address (not in use \(service api holds it\)|no other service has \(service api has it\))/.test(e.message));
    await assert.rejects(sc!.create({ name: 'web', network: 'br' }), /invalid --network "br": an overlay network/);
    await assert.rejects(sc!.create({ name: 'web', network: 'app', vip: '10.8.0.1' }), /invalid --vip "10.8.0.1": an address other than the gateway/);
    // A --vip in a block of another node: refused naming it; outside the ip-range: no reservation needed.
    await assert.rejects(sc!.create({ name: 'web', network: 'app', vip: api.vips[0]!.replace(/\d+$/, (x) => String(Number(x) + 1)) }), /in a block of node sa/);
    const out = await sc!.create({ name: 'web', network: 'app', vip: '10.8.0.200' });
    assert.deepEqual(out.vips, ['10.8.0.200']);
    await assert.rejects(sb!.create({ name: 'db', network: 'app', vip: '10.8.0.200' }), /invalid --vip "10.8.0.200": an address no other service has \(service web has it\)/);
    // A container address is never a VIP: sa's next container skips it.
    const [x] = await ia!.allocate('app', { containerId: 'c1', ifName: 'eth0' }, []);
    assert.notEqual(x!.ip, api.vips[0]);
    // A container's address as --vip: refused naming it (as on etcd), from any node once published.
    await eventually(() => !!c.state.nodes.get('sa')?.ipam?.app?.ips['c1:eth0'], 5000, 'c1 published');
    await assert.rejects(sc!.create({ name: 'db', network: 'app', vip: x!.ip }), new RegExp(`^SpecError: invalid --vip "${x!.ip.replace(/\./g, '\\.')}": an address not in use \\(container c1 on node sa holds it\\)$`));
    await assert.rejects(new MeshNetworks(b).remove('app'), /network app has services api, web: remove them first \(knitctl service rm\)/);
    // rm on another node: tombstone everywhere, sa frees its reservation, name and VIP are free again.
    await sb!.remove('app', 'api');
    await assert.rejects(sb!.remove('app', 'api'), /no service named api on network app \(knitctl service ls lists them\)/);
    await eventually(() => [a, c].every((n) => !n.state.services().some((s) => s.name === 'api')), 5000, 'tombstone everywhere');
    await eventually(() => !ia!.attachments('app').some((x) => x.owner.ifName === 'vip'), 5000, 'sa freed the VIP');
    assert.equal(a.grants.claims('vip').length, 1, 'only web\'s claim is left');
    await sc!.remove('app', 'web');
    await eventually(() => !b.state.services().length, 5000, 'web\'s tombstone on sb');
    const again = await sb!.create({ name: 'api', network: 'app', vip: '10.8.0.200' });
    await eventually(() => a.state.services().some((s) => s.id === again.id), 5000, 'new api on sa');
  });

  it('a created service\'s VIP grants are never taken for stranded (D23): old, asked about, kept', async () => {
    const a = await node('ka', [], { strandedMs: 300 });
    const b = await node('kb', [a], { strandedMs: 300 });
    const c = await node('kc', [a], { strandedMs: 300 });
    await eventually(() => [a, b, c].every((n) => n.connected().length === 2), 10_000, 'mesh of 3');
    await new MeshNetworks(a).create({ name: 'app', driver: 'overlay', subnets: ['10.8.0.0/24'] });
    await eventually(() => [b, c].every((n) => !!n.state.nets.get('app')?.net), 5000, 'app everywhere');
    const api = await new MeshServices(a, new MeshIpam(a, null)).create({ name: 'api', network: 'app' });
    const held = (n: MeshNode): boolean => n.grants.claims('vip').some((x) => x.key.endsWith(`/${api.id}`));
    await eventually(() => [b, c].every(held), 5000, 'voters hold the vip grant');
    await new Promise((r) => setTimeout(r, 600));
    for (let i = 0; i < 5; i++) { for (const n of [b, c]) n.checkStranded(); await new Promise((r) => setTimeout(r, 100)); }
    assert.ok([b, c].every(held), 'the grants of a service that exists stay');
    await assert.rejects(new MeshServices(c, new MeshIpam(c, null)).create({ name: 'api', network: 'app' }), /already exists/);
  });

  it('seeded 3/2 partitions with creates colliding by name and VIP on both sides: the minority creates nothing, no two services share a name or VIP', async function () {
    this.timeout(120_000);
    const rounds = Number(process.env.KNIT_MESH_ROUNDS ?? 10);
    const seed = Number(process.env.KNIT_MESH_SEED ?? 1515);
    const rnd = prng(seed); // the rounds replay exactly from the seed
    const names = ['v0', 'v1', 'v2', 'v3', 'v4'];
    const mesh = await MeshSplit.open(names, node);
    const ns = mesh.ns;
    await new MeshNetworks(ns[0]!).create({ name: 'app', driver: 'overlay', subnets: ['10.20.0.0/16'], ipRanges: ['10.20.0.0/24'] });
    await eventually(() => ns.every((n) => !!n.state.nets.get('app')?.net), 5000, 'app everywhere');
    const ss = ns.map((n) => new MeshServices(n, new MeshIpam(n, null), 0));
    let created = 0;
    let minorityRefused = 0;
    let conflictRefused = 0;
    let removed = 0;
    for (let r = 0; r < rounds; r++) {
      await mesh.split(rnd, `round ${r}`);
      // Every node creates a service colliding with another's by name, by VIP (outside the ip-range: no block decides it), or both.
      const reqs = ss.map((_, i) => {
        const k = Math.floor(rnd() * 3);
        return { name: k === 0 || k === 2 ? `s${r}` : `s${r}-${i}`, network: 'app', vip: k >= 1 ? `10.20.${1 + r}.1` : `10.20.${1 + r}.${10 + i}` };
      });
      const results = await Promise.all(ss.map(async (m, i) => {
        try { return { i, svc: await m.create(reqs[i]!) }; } catch (e) { return { i, e: e as Error }; }
      }));
      for (const x of results) {
        if (mesh.minority(names[x.i]!)) { assert.ok(x.e instanceof NoQuorumError, `round ${r}: minority ${names[x.i]} created ${x.svc?.name ?? ''}: ${x.e?.message}`); minorityRefused++; }
        else if (x.svc) created++;
        else { assert.ok(x.e instanceof SpecError || x.e instanceof NoQuorumError, String(x.e)); conflictRefused++; }
      }
      await mesh.heal();
      for (const x of results) {
        if (x.svc || !(x.e instanceof NoQuorumError)) continue;
        try { await ss[x.i]!.create(reqs[x.i]!); created++; } catch (e) { assert.ok(e instanceof SpecError, String(e)); conflictRefused++; }
      }
      await eventually(() => ns.every((n) => JSON.stringify(n.state.services()) === JSON.stringify(ns[0]!.state.services())), 5000, `round ${r}: same services everywhere`);
      const svcs = ns[0]!.state.services();
      for (const p of svcs) for (const q of svcs) {
        if (p === q) continue;
        assert.notEqual(p.name, q.name, `round ${r} (seed ${seed}): two services ${p.name}`);
        assert.notEqual(p.vips[0], q.vips[0], `round ${r} (seed ${seed}): ${p.name} and ${q.name} share VIP ${p.vips[0]}`);
      }
      // rm frees the VIP: every service of the round goes, and the round's contested VIP can be taken again.
      for (const s of svcs.filter((x) => x.name.startsWith(`s${r}`))) { await ss[Math.floor(rnd() * 5)]!.remove('app', s.name); removed++; }
      await eventually(() => ns.every((n) => n.state.services().length === 0), 5000, `round ${r}: removed everywhere`);
      const back = await ss[Math.floor(rnd() * 5)]!.create({ name: `again${r}`, network: 'app', vip: `10.20.${1 + r}.1` });
      await eventually(() => ns[0]!.state.services().some((x) => x.id === back.id), 5000, `round ${r}: again on v0`);
      await ss[0]!.remove('app', back.name);
      await eventually(() => ns.every((n) => n.state.services().length === 0 && n.grants.claims('vip').length === 0), 5000, `round ${r}: claims gone`);
    }
    assert.ok(created > 0 && minorityRefused > 0 && conflictRefused > 0 && removed > 0, `exercised every outcome (${created} created, ${minorityRefused} minority refusals, ${conflictRefused} conflicts, ${removed} removed)`);
  });
});
