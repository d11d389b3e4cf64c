// knitd on the mesh (--datastore mesh, docs/mesh.md), no etcd anywhere: five lab hosts, each
// knitd told only its predecessor (a chain), converge to a full mesh; distinct subnets; a pod per
// host pings every other; `knitctl status peers|connections` through the local knitd. A knitd
// with the wrong secret is refused and logged; random bytes, truncated frames and huge lengths
// on the mesh port (fast-check, seeded) never crash knitd; kill -9 and restart keeps addresses
// and connectivity; a 3/2 partition: a node joining the minority side gets no subnet until the
// partition heals, one joining the majority side gets one, and no subnet is ever held twice.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { Lab, requireRoot, type Netns, type PluginOutput, type Switch } from '../lab/lab';
import { eventually, type KnitBuild } from '../lab/cni';
import { KnitdHosts, type KnitdHost } from '../lab/knitd-hosts';
import { wanted } from '../../pkg/mesh/topology';

const TTL = 8;
const NET = '192.168.61';
const SEED = Number(process.env.KNIT_MESH_SEED ?? 1515);

type Node = KnitdHost & { pods: Array<{ ns: Netns; ip: string; id: string }> };

describe('knitd on the mesh (no etcd)', function () {
  this.timeout(300_000);
  let knit: KnitBuild;
  let lab: Lab;
  let sw: Switch;
  let tmp: string;
  let mesh: KnitdHosts;
  let nodes: Node[] = [];

  const lease = (n: Node): any => JSON.parse(fs.readFileSync(path.join(n.runDir, 'lease.json'), 'utf8'));
  const hasLease = (n: Node): boolean => fs.existsSync(path.join(n.runDir, 'lease.json'));

  const startKnitd = (n: Node, peers: Node[], passwordFile?: string): void => mesh.start(n, peers, { ttlSec: TTL, ...(passwordFile ? { passwordFile } : {}) });
  const stopKnitd = (n: Node, signal?: NodeJS.Signals): Promise<void> => mesh.stop(n, signal);

  async function ctl(n: Node, args: string[], allowFail = false): Promise<{ stdout: string; stderr: string; code: number }> {
    return lab.exec(n.host, knit.bin('knitctl'), args, { env: { NODE_EXTRA_CA_CERTS: undefined, KNIT_ETCD_ENDPOINTS: undefined }, allowFail });
  }

  const statusPeers = async (n: Node): Promise<any> => JSON.parse((await ctl(n, ['status', 'peers', '--json', '--run-dir', n.runDir])).stdout);
  const statusConns = async (n: Node): Promise<any> => JSON.parse((await ctl(n, ['status', 'connections', '--json', '--run-dir', n.runDir])).stdout);

  function plugin(n: Node, command: 'ADD' | 'DEL', id: string, pod: Netns): Promise<PluginOutput> {
    return lab.runPlugin(n.host, knit.bin('knit-overlay'), {
      command, containerId: id, netns: pod.path, ifName: 'eth0', path: [knit.binDir],
      conf: { cniVersion: '1.1.0', name: 'overlay', type: 'knit-overlay', runDir: n.runDir, ipam: { type: 'knit-host-local', dataDir: n.dataDir } },
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
  }

  const makeNode = (name: string, i: number): Promise<Node> => mesh.make(name, i, { pods: [] as Node['pods'] });

  async function addPod(n: Node): Promise<void> {
    const id = `${n.name}-p${n.pods.length}`;
    const ns = await lab.pod(id);
    const r = await plugin(n, 'ADD', id, ns);
    assert.equal(r.code, 0, `ADD ${id}: ${r.stdout} ${r.stderr}`);
    n.pods.push({ ns, ip: r.json.ips[0].address.split('/')[0], id });
  }

  async function allPairs(ns: Node[]): Promise<string[]> {
    const pods = ns.flatMap((n) => n.pods);
    const fails: string[] = [];
    for (const a of pods) {
      await Promise.all(pods.filter((b) => b !== a).map(async (b) => { if (!(await lab.ping(a.ns, b.ip, 1))) fails.push(`${a.id}->${b.id}`); }));
    }
    return fails;
  }

  const knitRoutes = async (n: Node): Promise<string[]> => (await lab.ipJson(n.host, ['route', 'show', 'proto', '107'])).map((r: any) => r.dst).sort();
  const waitLease = (n: Node, ms = 40_000): Promise<void> => eventually(() => hasLease(n), ms, `${n.name} lease.json (knitd log: ${n.log.join('').split('\n').slice(-15).join('\n')})`);
  const alive = (n: Node): boolean => mesh.alive(n);

  before(async function () {
    requireRoot(this);
    mesh = await KnitdHosts.open(['knitd', 'knitctl', 'knit-overlay'], NET, 'knit-mesh-');
    ({ knit, lab, tmp, sw } = mesh);
    nodes = await mesh.add(5, () => ({ pods: [] as Node['pods'] }));
  });

  after(async () => {
    await mesh?.cleanup();
  });

  afterEach(function () {
    mesh.printLogsIfFailed(this.currentTest?.state);
  });

  it('knitd refuses --datastore mesh without a password, naming the flag', async () => {
    const r = await lab.exec(nodes[0]!.host, knit.bin('knitd'), ['--datastore', 'mesh', '--node-name', 'x', '--run-dir', path.join(tmp, 'x')], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined, KNIT_MESH_PASSWORD: undefined } });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--datastore mesh needs --mesh-password SECRET or --mesh-password-file FILE/);
  });

  it('a chain (each knitd told only its predecessor) converges to a full mesh with five distinct subnets', async () => {
    for (const [i, n] of nodes.entries()) startKnitd(n, i ? [nodes[i - 1]!] : []);
    const cfg = path.join(tmp, 'network.json');
    fs.writeFileSync(cfg, JSON.stringify({ network: '10.218.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1 } }));
    await eventually(() => fs.existsSync(path.join(nodes[2]!.runDir, 'mesh.sock')), 20_000, 'h3 control socket');
    const set = await ctl(nodes[2]!, ['pod-network', 'set', cfg, '--run-dir', nodes[2]!.runDir]);
    assert.match(set.stdout, /stored on the mesh/);
    for (const n of nodes) await waitLease(n);
    const subnets = nodes.map((n) => lease(n).subnet);
    assert.equal(new Set(subnets).size, 5, subnets.join(' '));
    assert.deepEqual(JSON.parse((await ctl(nodes[4]!, ['pod-network', 'get', '--run-dir', nodes[4]!.runDir])).stdout).network, '10.218.0.0/16');
    for (const n of nodes) {
      await eventually(async () => (await statusConns(n)).connections.filter((c: any) => c.state === 'established').length === 4, 20_000, `${n.name}: 4 established connections`);
    }
    for (const n of nodes) {
      const s = await statusPeers(n);
      assert.deepEqual(s.peers.map((p: any) => p.name), ['h1', 'h2', 'h3', 'h4', 'h5'], n.name);
      assert.equal(s.need, 3);
      assert.ok(s.peers.every((p: any) => p.live && p.conns.length === 4), JSON.stringify(s.peers));
    }
    const text = (await ctl(nodes[0]!, ['status', 'peers', '--run-dir', nodes[0]!.runDir])).stdout;
    for (const n of nodes) assert.match(text, new RegExp(`^${n.name} \\(`, 'm'));
    const conns = (await ctl(nodes[0]!, ['status', 'connections', '--run-dir', nodes[0]!.runDir])).stdout;
    assert.match(conns, /^(-> +192\.168\.61\.\d:6788|<- +192\.168\.61\.\d:\d+) +established +h\d \([0-9a-f]{16}\)$/m);
    for (const n of nodes) await eventually(async () => (await knitRoutes(n)).length === 4, 15_000, `${n.name} routes 4 peers`);
    const peers = JSON.parse((await ctl(nodes[3]!, ['peers', '--json', '--run-dir', nodes[3]!.runDir])).stdout);
    assert.deepEqual(peers.map((p: any) => p.nodeName).sort(), ['h1', 'h2', 'h3', 'h4', 'h5']);
  });

  it('a pod per host pings every other', async () => {
    for (const n of nodes) await addPod(n);
    assert.deepEqual(await allPairs(nodes), []);
  });

  it('a knitd with the wrong secret is refused and logged; nothing it sent is applied', async () => {
    const evil = await makeNode('x6', 6);
    nodes.push(evil);
    const wrong = path.join(tmp, 'wrong');
    fs.writeFileSync(wrong, 'not the password\n');
    startKnitd(evil, [nodes[0]!], wrong);
    await eventually(() => nodes[0]!.log.join('').includes('authentication failed'), 20_000, 'h1 logs the refusal');
    assert.match(nodes[0]!.log.join(''), /refused 192\.168\.61\.6:\d+ \(says it is node x6\): authentication failed, wrong or missing --mesh-password/);
    const s = await statusPeers(nodes[0]!);
    assert.ok(!s.peers.some((p: any) => p.name === 'x6'));
    assert.ok((await statusConns(nodes[0]!)).counters.authFailed >= 1);
    await stopKnitd(evil);
    nodes.pop();
  });

  it('garbage on the mesh port (random bytes, truncated frames, huge lengths) never crashes knitd', async () => {
    const h1 = nodes[0]!;
    // Cases generated here (seeded), sent from h2's namespace, one connection each.
    const cases = fc.sample(fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 3000 }).map((b) => ({ hex: Buffer.from(b).toString('hex'), hold: false })),
      fc.tuple(fc.integer({ min: 5, max: 0xffffffff }), fc.uint8Array({ maxLength: 64 })).map(([n, b]) => {
        const h = Buffer.alloc(4); h.writeUInt32BE(n >>> 0);
        return { hex: Buffer.concat([h, Buffer.from(b)]).toString('hex'), hold: true };
      }),
      fc.string({ maxLength: 200 }).map((s) => { const p = Buffer.from(JSON.stringify({ t: 'hello', proto: 1, name: s, inc: s, nonce: s, port: 1 })); const h = Buffer.alloc(4); h.writeUInt32BE(p.length); return { hex: Buffer.concat([h, p]).toString('hex'), hold: false }; }),
    ), { seed: SEED, numRuns: 60 });
    const casesFile = path.join(tmp, 'cases.json');
    fs.writeFileSync(casesFile, JSON.stringify(cases));
    const sender = path.join(tmp, 'sender.js');
    fs.writeFileSync(sender, `
      const net = require('net'); const cases = require(${JSON.stringify(casesFile)});
      (async () => { for (const c of cases) await new Promise((done) => {
        const s = net.connect(6788, ${JSON.stringify(h1.addr)}, () => { s.write(Buffer.from(c.hex, 'hex')); if (c.hold) setTimeout(() => s.destroy(), 50); else s.end(); });
        s.on('error', () => done()); s.on('close', () => done()); s.resume(); setTimeout(() => { s.destroy(); done(); }, 6000);
      }); })();`);
    await lab.exec(nodes[1]!.host, process.execPath, [sender], { env: { NODE_EXTRA_CA_CERTS: undefined }, timeoutMs: 120_000 });
    assert.ok(alive(h1), `knitd h1 exited: ${h1.log.join('').slice(-2000)}`);
    const c = await statusConns(h1);
    assert.ok(c.counters.badFrames + c.counters.truncated + c.counters.handshakeTimeouts >= 10, JSON.stringify(c.counters));
    assert.equal(c.connections.filter((x: any) => x.state === 'established').length, 4);
    assert.deepEqual(await allPairs(nodes), []);
  });

  it('kill -9 a knitd and restart it: same subnet, pods keep addresses and connectivity', async () => {
    const h3 = nodes[2]!;
    const before = lease(h3).subnet;
    await stopKnitd(h3, 'SIGKILL');
    assert.deepEqual(await allPairs(nodes), []);
    startKnitd(h3, [nodes[1]!]);
    await eventually(async () => {
      try { return (await statusConns(h3)).connections.filter((c: any) => c.state === 'established').length === 4; } catch { return false; }
    }, 20_000, 'h3 back in the mesh');
    assert.equal(lease(h3).subnet, before);
    await eventually(() => h3.log.join('').includes(`holding subnet ${before}`), 20_000, 'h3 re-claimed its subnet');
    for (const n of nodes) await eventually(async () => (await knitRoutes(n)).length === 4, 15_000, `${n.name} routes 4 peers`);
    assert.deepEqual(await allPairs(nodes), []);
    const s = await statusPeers(nodes[0]!);
    assert.equal(new Set(s.peers.map((p: any) => p.subnet)).size, 5);
  });

  it('partition 3/2: a node joining the minority gets no subnet, one joining the majority does; after healing both, never a duplicate', async () => {
    const minority = nodes.slice(3);
    for (const n of minority) await lab.ip(sw, ['link', 'set', `p-${n.name}`, 'down']);
    try {
      const maj = await makeNode('h6', 6);
      const min = await makeNode('h7', 7);
      nodes.push(maj, min);
      // Only h4/h5 can be reached from h7 and the switch still carries h6-h1.
      await lab.ip(sw, ['link', 'set', `p-h7`, 'nomaster']);
      await lab.ip(sw, ['link', 'add', 'br1', 'type', 'bridge']);
      await lab.ip(sw, ['link', 'set', 'br1', 'up']);
      for (const n of [...minority, min]) { await lab.ip(sw, ['link', 'set', `p-${n.name}`, 'master', 'br1']); await lab.ip(sw, ['link', 'set', `p-${n.name}`, 'up']); }
      startKnitd(maj, [nodes[0]!]);
      startKnitd(min, [nodes[3]!]);
      await waitLease(maj);
      await eventually(() => min.log.join('').includes('no quorum'), 30_000, 'h7 reports no quorum');
      assert.equal(hasLease(min), false, 'the minority side gets no subnet');
      // The majority drops the minority's leases after the lease time; the minority keeps its own subnets.
      await eventually(async () => (await knitRoutes(nodes[0]!)).length === 3, (TTL + 10) * 1000, 'h1 drops h4, h5 after the TTL');
    } finally {
      for (const n of minority) { await lab.ip(sw, ['link', 'set', `p-${n.name}`, 'nomaster']).catch(() => undefined); await lab.ip(sw, ['link', 'set', `p-${n.name}`, 'master', 'br0']).catch(() => undefined); await lab.ip(sw, ['link', 'set', `p-${n.name}`, 'up']).catch(() => undefined); }
      await lab.ip(sw, ['link', 'set', 'p-h7', 'nomaster']).catch(() => undefined);
      await lab.ip(sw, ['link', 'set', 'p-h7', 'master', 'br0']).catch(() => undefined);
    }
    const min = nodes[6]!;
    await waitLease(min, 60_000);
    const subnets = nodes.map((n) => lease(n).subnet);
    assert.equal(new Set(subnets).size, 7, `duplicates: ${subnets.join(' ')}`);
    for (const n of nodes) await eventually(async () => (await knitRoutes(n)).length === 6, 30_000, `${n.name} routes 6 peers`);
    for (const n of nodes.slice(5)) await addPod(n);
    assert.deepEqual(await allPairs(nodes), []);
  });

  it('knitctl node rm on the mesh: refused for a live node; for a dead one its routes leave every host; twice is harmless', async () => {
    const h7 = nodes[6]!;
    const sub = lease(h7).subnet;
    const live = await ctl(nodes[0]!, ['node', 'rm', 'h7', '--run-dir', nodes[0]!.runDir], true);
    assert.equal(live.code, 1);
    assert.match(live.stderr, /node h7 is alive .*stop its knitd first/);
    await stopKnitd(h7);
    for (const p of h7.pods) await plugin(h7, 'DEL', p.id, p.ns);
    h7.pods = [];
    await eventually(async () => !(await statusPeers(nodes[0]!)).peers.find((p: any) => p.name === 'h7')?.live, (TTL + 5) * 1000, 'h7 gone');
    const r = await ctl(nodes[1]!, ['node', 'rm', 'h7', '--run-dir', nodes[1]!.runDir]);
    assert.match(r.stdout, /released 1 lease\(s\) of node h7/);
    const again = await ctl(nodes[4]!, ['node', 'rm', 'h7', '--run-dir', nodes[4]!.runDir], true);
    assert.match(again.stdout + again.stderr, /already released|no node h7/);
    for (const n of nodes.slice(0, 6)) await eventually(async () => !(await knitRoutes(n)).includes(sub), 10_000, `${n.name} drops ${sub}`);
    for (const n of nodes.slice(0, 6)) await eventually(async () => !(await statusPeers(n)).peers.some((p: any) => p.name === 'h7'), 10_000, `${n.name} forgets h7`);
    assert.equal((await statusPeers(nodes[0]!)).need, 4);
  });
});

// knitd's topology flags reach the mesh node (docs/mesh.md "Topology"): five members with
// --mesh-full-size 2 --mesh-fanout 1 form a sparse mesh, exactly the connections the topology
// gives those values (either end's choice, plus each member's --peers), fewer than the 10 of a
// full mesh (what the defaults give 5 members, first suite); every member still in `status peers`.
describe('knitd on the mesh with --mesh-full-size 2 --mesh-fanout 1: a sparse mesh', function () {
  this.timeout(180_000);
  let mesh: KnitdHosts;

  before(async function () {
    requireRoot(this);
    mesh = await KnitdHosts.open(['knitd', 'knitctl'], '192.168.67', 'knit-mesh-sparse-');
    await mesh.add(5);
  });

  after(async () => {
    await mesh?.cleanup();
  });

  afterEach(function () {
    mesh.printLogsIfFailed(this.currentTest?.state);
  });

  it('each member keeps only the connections the topology gives it; all five in status peers', async () => {
    const { nodes } = mesh;
    mesh.startAll(nodes, { extra: ['--mesh-full-size', '2', '--mesh-fanout', '1'] });
    await mesh.sockets();
    const names = nodes.map((n) => n.name);
    // startAll tells each member h1 (--peers): those connections are kept whatever the topology says.
    const expected = (a: string): string[] => names.filter((b) => b !== a && (wanted(a, b, names, 1, 2) || a === 'h1' || b === 'h1')).sort();
    const edges = new Set(names.flatMap((a) => expected(a).map((b) => [a, b].sort().join('-'))));
    assert.ok(edges.size < 10, `the topology of 5 with these values is a full mesh: ${[...edges].join(' ')}`);
    const established = async (n: KnitdHost): Promise<string[]> => {
      const r = await mesh.ctl(n, ['status', 'connections', '--json']);
      return r.code ? [] : (JSON.parse(r.stdout).connections as Array<{ state: string; name?: string }>).filter((c) => c.state === 'established').map((c) => c.name!).sort();
    };
    for (const n of nodes) {
      // Connections dialed while the members were still being learnt close after their first 5 s.
      await eventually(async () => JSON.stringify(await established(n)) === JSON.stringify(expected(n.name)), 60_000, `${n.name}: connections ${expected(n.name).join(', ')}`)
        .catch(async (e: Error) => { throw new Error(`${e.message}; has ${(await established(n)).join(', ')}`); });
    }
    for (const n of nodes) {
      const s = JSON.parse((await mesh.ctl(n, ['status', 'peers', '--json'])).stdout);
      assert.deepEqual(s.peers.map((p: { name: string }) => p.name), names, n.name);
      assert.ok(s.peers.every((p: { live: boolean }) => p.live), `${n.name}: ${JSON.stringify(s.peers)}`);
    }
    console.log(`      ${edges.size} connections among 5 members (a full mesh: 10): ${[...edges].sort().join(' ')}`);
  });
});
