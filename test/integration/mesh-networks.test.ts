// Named networks on the mesh (knitd --datastore mesh, docs/mesh.md), no etcd anywhere: three lab
// hosts; `knitctl network create -d overlay` on h1 goes to its knitd over mesh.sock and is put to
// the mesh's vote; the conflist and the network's bridge and VXLAN device appear on every host;
// a conflicting create on h3 is refused with etcd's message; an endpoint recorded through h2's
// knitd becomes FDB and neighbour entries on h1 and h3 (the same NetworksAgent code as on etcd);
// `network rm` is refused while it exists and works after it is deleted; every host then drops
// the conflist and devices. knit-l2overlay pods on h1 and h2 (exec'd with the rendered conflist,
// addresses from knitd's per-node blocks through knit-mesh-ipam): distinct addresses from the
// ip-range only, ping across hosts, names answered on the gateway and listed by `knitctl dns ls`,
// one ADD served in-process by knitd, rm refused until DEL. A bridge-driver network: knit-bridge's
// address from knit-mesh-ipam holds `network rm` back (no endpoint records there).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, requireRoot, type Netns, type PluginOutput } from '../lab/lab';
import { eventually, type KnitBuild } from '../lab/cni';
import { KnitdHosts, type KnitdHost } from '../lab/knitd-hosts';
import { controlCall } from '../../pkg/mesh/control';
import { conflistFile } from '../../pkg/network/conflist';
import type { Endpoint } from '../../pkg/network/store';

const NET = '192.168.63';
const CLIENT = path.join(__dirname, '..', 'lab', 'dns-client.cjs');
const DIST = path.join(__dirname, '..', '..', 'dist', 'bin');

type Node = KnitdHost;

describe('named networks on the mesh (no etcd)', function () {
  this.timeout(120_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let mesh: KnitdHosts;
  let nodes: Node[] = [];

  const ctl = (n: Node, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> => mesh.ctl(n, args);
  const conflist = (n: Node, name: string): string => path.join(n.confDir, conflistFile(name));
  const fdbOf = async (n: Node, dev: string): Promise<string[]> => {
    const r = await lab.exec(n.host, 'bridge', ['-j', 'fdb', 'show', 'dev', dev], { allowFail: true });
    return r.code ? [] : (JSON.parse(r.stdout || '[]') as Array<{ mac: string; dst?: string }>).filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`);
  };
  const hasLink = async (n: Node, dev: string): Promise<boolean> => (await lab.exec(n.host, 'ip', ['link', 'show', dev], { allowFail: true })).code === 0;

  before(async function () {
    requireRoot(this);
    mesh = await KnitdHosts.open(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge'], NET, 'knit-meshnet-');
    ({ knit, lab, tmp } = mesh);
    nodes = await mesh.add(3);
  });

  after(async () => {
    await mesh?.cleanup();
  });

  afterEach(function () {
    mesh.printLogsIfFailed(this.currentTest?.state);
  });

  it('create on h1 reaches every host (conflist, bridge, VXLAN); ls and inspect anywhere; a conflicting create is refused with etcd\'s message', async () => {
    mesh.startAll();
    await mesh.sockets();
    await eventually(async () => {
      const s = JSON.parse((await ctl(nodes[0]!, ['status', 'peers', '--json'])).stdout);
      return s.members.length === 3;
    }, 20_000, 'h1 knows 3 members');
    const r = await ctl(nodes[0]!, ['network', 'create', '-d', 'overlay', '--subnet', '10.77.0.0/24', 'app']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^[0-9a-f]{64}$/);
    await eventually(() => nodes.every((n) => fs.existsSync(conflist(n, 'app'))), 10_000, 'conflist on every host');
    const c = JSON.parse(fs.readFileSync(conflist(nodes[2]!, 'app'), 'utf8'));
    assert.equal(c.plugins[0].type, 'knit-l2overlay');
    assert.equal(c.plugins[0].datastore, 'mesh');
    assert.equal(c.plugins[0].ipam.nodeName, 'h3');
    assert.equal(c.plugins[0].ipam.etcd, undefined, 'no etcd on the mesh');
    const vni = c.plugins[0].vni as number;
    for (const n of nodes) await eventually(async () => (await hasLink(n, `knb${vni}`)) && (await hasLink(n, `knv${vni}`)), 10_000, `${n.name} devices`);
    const ls = await ctl(nodes[1]!, ['network', 'ls', '--json']);
    assert.deepEqual(JSON.parse(ls.stdout).map((n: { name: string }) => n.name), ['app']);
    const ins = await ctl(nodes[2]!, ['network', 'inspect', 'app']);
    assert.equal(ins.code, 0, ins.stderr);
    assert.equal(JSON.parse(ins.stdout)[0].Name, 'app');
    const dup = await ctl(nodes[2]!, ['network', 'create', '-d', 'overlay', '--subnet', '10.77.0.128/25', 'web']);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /invalid --subnet "10.77.0.128\/25": a subnet that does not overlap 10.77.0.0\/24 of network app/);
  });

  it('an endpoint recorded through h2\'s knitd is programmed on h1 and h3 (FDB, neighbour); rm refused while it exists, works after', async () => {
    const vni = JSON.parse(fs.readFileSync(conflist(nodes[0]!, 'app'), 'utf8')).plugins[0].vni as number;
    const ep: Endpoint = { network: 'app', containerId: 'feed'.repeat(8), ifName: 'eth0', node: 'h2', nodeIp: nodes[1]!.addr, mac: '02:42:0a:4d:00:05', ips: ['10.77.0.5/24'], name: 'web1', created: new Date().toISOString() };
    await assert.rejects(controlCall(nodes[0]!.runDir, { op: 'ep-put', ep }), /an endpoint is written by its own node/);
    await controlCall(nodes[1]!.runDir, { op: 'ep-put', ep });
    for (const n of [nodes[0]!, nodes[2]!]) {
      await eventually(async () => (await fdbOf(n, `knv${vni}`)).includes(`${ep.mac} ${nodes[1]!.addr}`), 10_000, `${n.name} FDB entry for web1`);
      const neigh = await lab.ipJson(n.host, ['neigh', 'show', 'dev', `knv${vni}`]);
      assert.ok(neigh.some((x: { dst: string; lladdr?: string }) => x.dst === '10.77.0.5' && x.lladdr === ep.mac), `${n.name} neighbour entry`);
    }
    assert.deepEqual(await fdbOf(nodes[1]!, `knv${vni}`), [], 'the owner programs no remote entry for its own endpoint');
    const rm = await ctl(nodes[2]!, ['network', 'rm', 'app']);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /network app has 1 container attached \(web1 on h2\): remove or disconnect them first/);
    await controlCall(nodes[1]!.runDir, { op: 'ep-del', id: ep });
    await controlCall(nodes[1]!.runDir, { op: 'ep-del', id: ep }); // DEL is idempotent
    await eventually(async () => (await fdbOf(nodes[0]!, `knv${vni}`)).length === 0, 10_000, 'h1 forgets web1');
    await eventually(async () => (await ctl(nodes[2]!, ['network', 'rm', 'app'])).code === 0, 5000, 'rm once detached');
    for (const n of nodes) {
      await eventually(async () => !fs.existsSync(conflist(n, 'app')) && !(await hasLink(n, `knv${vni}`)) && !(await hasLink(n, `knb${vni}`)), 10_000, `${n.name} drops app`);
    }
    const again = await ctl(nodes[1]!, ['network', 'rm', 'app']);
    assert.match(again.stderr, /no network named app \(knitctl network ls lists them\)/);
  });

  /**
   * Exec'd on its own, or (viaKnitd) served in-process by the host's knitd: the built executable
   * (dist/bin, launcher and knit-client) with KNIT_NODE=/bin/false, so only knitd can answer.
   */
  function plugin(n: Node, net: string, command: 'ADD' | 'DEL', id: string, pod: Netns, viaKnitd = false): Promise<PluginOutput> {
    const cl = JSON.parse(fs.readFileSync(conflist(n, net), 'utf8'));
    const conf = { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0] };
    return lab.runPlugin(n.host, viaKnitd ? path.join(DIST, conf.type) : knit.bin(conf.type), {
      command, containerId: id, netns: pod.path, ifName: 'eth0', path: [knit.binDir], conf, args: `IgnoreUnknown=1;K8S_POD_NAME=${id}`,
      env: viaKnitd ? { KNIT_CNI_SOCKET_DIR: n.sockDir, KNIT_NODE: '/bin/false' } : { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
  }

  it('knit-l2overlay pods on h1 and h2: distinct addresses from the ip-range (never aux), ping across hosts, names on the gateway; rm refused until DEL', async () => {
    const r = await ctl(nodes[0]!, ['network', 'create', '-d', 'overlay', '--subnet', '10.78.0.0/24', '--ip-range', '10.78.0.32/27', '--aux-address', 'router=10.78.0.33', 'app2']);
    assert.equal(r.code, 0, r.stderr);
    await eventually(() => nodes.every((n) => fs.existsSync(conflist(n, 'app2'))), 10_000, 'conflist on every host');
    const vni = JSON.parse(fs.readFileSync(conflist(nodes[0]!, 'app2'), 'utf8')).plugins[0].vni as number;
    for (const n of nodes) await eventually(() => hasLink(n, `knb${vni}`), 10_000, `${n.name} bridge`);
    const pods: Array<{ n: Node; id: string; ns: Netns; ip: string }> = [];
    // web3 through h2's knitd: the plugin in-process there, its endpoint and address by the same socket.
    for (const [n, id, via] of [[nodes[0]!, 'web1', false], [nodes[1]!, 'web2', false], [nodes[1]!, 'web3', true]] as const) {
      const ns = await lab.pod(id);
      const out = await plugin(n, 'app2', 'ADD', id, ns, via);
      assert.equal(out.code, 0, `ADD ${id} on ${n.name}: ${out.stdout} ${out.stderr}`);
      pods.push({ n, id, ns, ip: String(out.json.ips[0].address).split('/')[0]! });
    }
    const ips = pods.map((p) => p.ip);
    assert.equal(new Set(ips).size, ips.length, `distinct: ${ips}`);
    for (const ip of ips) {
      const last = Number(ip.split('.')[3]);
      assert.ok(last >= 32 && last <= 63 && ip !== '10.78.0.33', `${ip} in the ip-range, not the aux address`);
    }
    // h1's and h2's blocks differ: h1's first block and h2's are claimed by votes.
    const blocks = await Promise.all([nodes[0]!, nodes[1]!].map((n) => controlCall<Array<{ network: string; blocks: string[] }>>(n.runDir, { op: 'ipam-ls' })));
    const b1 = blocks[0]!.find((b) => b.network === 'app2')!.blocks;
    const b2 = blocks[1]!.find((b) => b.network === 'app2')!.blocks;
    assert.ok(b1.length >= 1 && b2.length >= 1 && !b1.some((b) => b2.includes(b)), `blocks ${b1} and ${b2}`);
    await eventually(async () => (await fdbOf(nodes[0]!, `knv${vni}`)).length === 2, 10_000, 'h1 learns web2 and web3');
    assert.ok(await lab.ping(pods[0]!.ns, pods[1]!.ip, 3), 'web1 (h1) -> web2 (h2)');
    assert.ok(await lab.ping(pods[2]!.ns, pods[0]!.ip, 3), 'web3 (h2) -> web1 (h1)');
    // Names: knitd on h1 answers on the gateway from the endpoints on the mesh.
    const dig = async (): Promise<string[]> => {
      const q = await lab.exec(pods[0]!.ns, process.execPath, [CLIENT, 'query', '10.78.0.1', 'web2', 'A', 'udp'], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
      try { return ((JSON.parse(q.stdout) as { answers?: Array<{ type: string; data: string }> }).answers ?? []).filter((x) => x.type === 'A').map((x) => x.data); } catch { return []; }
    };
    await eventually(async () => (await dig()).includes(pods[1]!.ip), 10_000, 'web2 resolves on h1\'s gateway');
    // knitctl dns ls on h3 (no container there): the records every node answers from.
    const ls = await ctl(nodes[2]!, ['dns', 'ls', '--network', 'app2', '--json']);
    assert.equal(ls.code, 0, ls.stderr);
    const recs = JSON.parse(ls.stdout) as Array<{ name: string; address: string }>;
    for (const p of pods) assert.ok(recs.some((r) => r.name === p.id && r.address === p.ip), `dns ls has ${p.id} ${p.ip}: ${ls.stdout}`);
    const rm = await ctl(nodes[2]!, ['network', 'rm', 'app2']);
    assert.match(rm.stderr, /network app2 has 3 containers attached/);
    for (const p of pods) {
      const d = await plugin(p.n, 'app2', 'DEL', p.id, p.ns, p.id === 'web3');
      assert.equal(d.code, 0, `DEL ${p.id}: ${d.stderr}`);
      assert.equal((await plugin(p.n, 'app2', 'DEL', p.id, p.ns)).code, 0, 'DEL again');
    }
    await eventually(async () => (await ctl(nodes[2]!, ['network', 'rm', 'app2'])).code === 0, 10_000, 'rm after DEL');
  });

  it('a bridge-driver network on the mesh: knit-bridge gets its address from knit-mesh-ipam; rm refused while it holds one (no endpoint records), works after DEL', async () => {
    const r = await ctl(nodes[1]!, ['network', 'create', '--subnet', '10.79.0.0/24', 'br1']);
    assert.equal(r.code, 0, r.stderr);
    await eventually(() => fs.existsSync(conflist(nodes[2]!, 'br1')), 10_000, 'conflist on h3');
    const cl = JSON.parse(fs.readFileSync(conflist(nodes[2]!, 'br1'), 'utf8'));
    assert.equal(cl.plugins[0].type, 'knit-bridge');
    assert.equal(cl.plugins[0].ipam.type, 'knit-mesh-ipam');
    const ns = await lab.pod('b1');
    const add = await plugin(nodes[2]!, 'br1', 'ADD', 'b1', ns);
    assert.equal(add.code, 0, `${add.stdout} ${add.stderr}`);
    assert.match(String(add.json.ips[0].address), /^10\.79\.0\.\d+\/24$/);
    await eventually(async () => /network br1 has 1 container attached \(b1 on h3\)/.test((await ctl(nodes[0]!, ['network', 'rm', 'br1'])).stderr), 5000, 'rm refused on h1 while b1 holds an address');
    assert.equal((await plugin(nodes[2]!, 'br1', 'DEL', 'b1', ns)).code, 0);
    await eventually(async () => (await ctl(nodes[0]!, ['network', 'rm', 'br1'])).code === 0, 5000, 'rm after DEL');
    await eventually(() => !fs.existsSync(conflist(nodes[2]!, 'br1')), 10_000, 'conflist gone on h3');
  });
});
