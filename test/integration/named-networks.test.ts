// Named overlay networks across hosts, Docker's model: etcd on the underlay, knitd on two lab
// hosts. A network created once appears on both hosts as a conflist and a bridge + VXLAN device;
// containers on it (knit-l2overlay, run from the rendered conflist) get addresses from its
// ip-range only, reach each other across hosts, and the FDB/neighbour entries follow their ADD and
// DEL; a container on two networks reaches both; networks are separate L2 segments; rm removes
// everything on every node, also on a node that was down meanwhile.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireRoot, type Lab, type Netns, type PluginOutput } from '../lab/lab';
import { eventually, REF_CNI_DIR, type KnitBuild } from '../lab/cni';
import { KnitdHosts, type KnitdHost } from '../lab/knitd-hosts';
import { buildCnitool } from '../e2e/libcni';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import type { CreateRequest, Network } from '../../pkg/network/spec';
import { conflistFile } from '../../pkg/network/conflist';
import { macFromAddress } from '../../pkg/ip/mac';

type Node = KnitdHost;

const PREFIX = '/knn';

describe('named networks across hosts (knitd on etcd, knit-l2overlay)', function () {
  this.timeout(300_000);
  let knit: KnitBuild;
  let lab: Lab;
  let hosts: KnitdHosts;
  let etcd: EtcdCluster;
  let tmp: string;
  let endpoint: string;
  let nodes: Node[] = [];
  const created: Network[] = [];

  const startKnitd = (n: Node): void => hosts.startOnEtcd(n, endpoint, PREFIX, { ttlSec: 10 });
  const stopKnitd = (n: Node): Promise<void> => hosts.stop(n);

  async function knitctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return lab.exec(nodes[0]!.host, knit.bin('knitctl'), ['--etcd-endpoints', endpoint, '--etcd-prefix', PREFIX, ...args], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
  }

  /** knitctl network create with Docker's flags, run on h1; the networks as knitctl lists them after. */
  async function createNetwork(req: CreateRequest): Promise<Network> {
    const flags = [
      ...(req.driver ? ['-d', req.driver] : []), ...(req.subnets ?? []).flatMap((x) => ['--subnet', x]), ...(req.gateways ?? []).flatMap((x) => ['--gateway', x]),
      ...(req.ipRanges ?? []).flatMap((x) => ['--ip-range', x]), ...(req.auxAddresses ?? []).flatMap((x) => ['--aux-address', x]), ...(req.opts ?? []).flatMap((x) => ['-o', x]),
    ];
    const r = await knitctl('network', 'create', ...flags, req.name);
    assert.equal(r.code, 0, `knitctl network create ${req.name}: ${r.stderr}`);
    const ls = await knitctl('network', 'ls', '--json');
    created.splice(0, created.length, ...(JSON.parse(ls.stdout) as Network[]));
    const net = created.find((n) => n.name === req.name)!;
    assert.equal(r.stdout.trim(), net.id, 'create prints the network ID');
    return net;
  }

  async function removeNetwork(name: string): Promise<void> {
    const r = await knitctl('network', 'rm', name);
    assert.equal(r.code, 0, `knitctl network rm ${name}: ${r.stderr}`);
    created.splice(created.findIndex((n) => n.name === name), 1);
  }

  const conflistPath = (n: Node, net: string): string => path.join(n.confDir, conflistFile(net));
  const conflist = (n: Node, net: string): any => JSON.parse(fs.readFileSync(conflistPath(n, net), 'utf8'));

  /** Runs the network's main plugin as a runtime would from the rendered conflist. */
  function plugin(n: Node, net: string, command: 'ADD' | 'DEL' | 'CHECK', id: string, pod: Netns, ifName = 'eth0', extra: object = {}): Promise<PluginOutput> {
    const cl = conflist(n, net);
    const conf = { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0], ...extra };
    return lab.runPlugin(n.host, knit.bin(conf.type), {
      command, containerId: id, netns: pod.path, ifName, path: [knit.binDir], conf, args: `IgnoreUnknown=1;K8S_POD_NAME=${id}`,
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
  }

  async function add(n: Node, net: string, id: string, pod: Netns, ifName = 'eth0'): Promise<string> {
    const r = await plugin(n, net, 'ADD', id, pod, ifName);
    assert.equal(r.code, 0, `ADD ${id} on ${net}: ${r.stdout} ${r.stderr}`);
    return String(r.json.ips[0].address).split('/')[0]!;
  }

  const fdbOf = async (n: Node, dev: string): Promise<string[]> => {
    const r = await lab.exec(n.host, 'bridge', ['-j', 'fdb', 'show', 'dev', dev], { allowFail: true });
    return r.code === 0 ? (JSON.parse(r.stdout) as any[]).filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`).sort() : [];
  };

  /** Waits until node n's VXLAN device of the network has an FDB entry for the pod's interface. */
  async function learns(n: Node, vni: number, pod: Netns, ifName: string): Promise<void> {
    const mac = (await lab.ipJson(pod, ['link', 'show', ifName]))[0].address as string;
    await eventually(async () => (await fdbOf(n, `knv${vni}`)).some((f) => f.startsWith(mac)), 5000, `${n.name} learns ${mac}`);
  }

  before(async function () {
    requireRoot(this);
    requireEtcd(this);
    hosts = await KnitdHosts.open(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge', 'knit-macvlan', 'knit-etcd-ipam'], '192.168.70', 'knit-named-');
    ({ knit, lab, tmp } = hosts);
    const etcdHost = await lab.host('etcd', hosts.sw, { address: '192.168.70.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.70.100' });
    endpoint = etcd.endpoints[0]!;
    nodes = await hosts.add(2);
    for (const n of nodes) await lab.ip(n.host, ['route', 'add', 'default', 'via', '192.168.70.254']);
    for (const n of nodes) startKnitd(n);
    for (const n of nodes) await eventually(() => fs.existsSync(path.join(n.runDir, 'networks', 'node.json')), 30_000, `${n.name} node.json (log: ${n.log.join('')})`);
  });

  after(async () => {
    hosts?.killAll();
    await etcd?.stop();
    await hosts?.cleanup();
  });

  afterEach(function () {
    hosts.printLogsIfFailed(this.currentTest?.state, 40);
  });

  const pods: Record<string, { ns: Netns; ip: string }> = {};

  it('a network created once appears on every node: conflist named after it, bridge and VXLAN device', async () => {
    const net = await createNetwork({
      name: 'app', driver: 'overlay', subnets: ['10.231.0.0/16', '10.232.0.0/16'], gateways: ['10.231.0.100', '10.232.0.100'],
      ipRanges: ['10.231.1.0/24'], auxAddresses: ['my-router=10.231.1.5', 'my-switch=10.231.1.16'],
    });
    // Within a second is the goal (npm run bench measures it); the test allows for a loaded machine.
    for (const n of nodes) await eventually(() => fs.existsSync(conflistPath(n, 'app')), 5000, `${n.name} conflist`);
    for (const n of nodes) {
      const cl = conflist(n, 'app');
      assert.equal(cl.name, 'app');
      assert.deepEqual(cl.plugins.map((p: any) => p.type), ['knit-l2overlay', 'portmap']);
      assert.equal(cl.plugins[0].vni, net.options.vni);
      assert.equal(cl.plugins[0].ipam.nodeName, n.name);
      assert.deepEqual(cl.plugins[0].ipam.exclude, ['10.231.1.5', '10.231.1.16']);
      // Made, then enslaved to its bridge: wait for the whole step.
      await eventually(async () => (await lab.ipJson(n.host, ['-d', 'link', 'show', `knv${net.options.vni}`]).catch(() => []))[0]?.master === `knb${net.options.vni}`, 5000, `${n.name} knv device on its bridge`);
      const [vx] = await lab.ipJson(n.host, ['-d', 'link', 'show', `knv${net.options.vni}`]);
      assert.equal(vx.linkinfo.info_data.id, net.options.vni);
      assert.equal(vx.linkinfo.info_data.local, n.host.address);
      assert.equal(vx.linkinfo.info_data.learning, false);
      assert.equal(vx.linkinfo.info_data.proxy, true);
      assert.equal(vx.mtu, 1450, 'underlay − 50');
      assert.equal(vx.master, `knb${net.options.vni}`);
    }
  });

  it('containers on two hosts get addresses from the ip-range only (never the aux addresses) and ping each other', async () => {
    for (const [n, id] of [[nodes[0]!, 'a1'], [nodes[1]!, 'a2'], [nodes[0]!, 'a3']] as const) {
      const ns = await lab.pod(id);
      pods[id] = { ns, ip: await add(n, 'app', id, ns) };
    }
    for (const p of Object.values(pods)) {
      assert.match(p.ip, /^10\.231\.1\.\d+$/, `${p.ip} in the ip-range 10.231.1.0/24`);
      assert.ok(!['10.231.1.5', '10.231.1.16', '10.231.0.100'].includes(p.ip));
    }
    assert.equal(new Set(Object.values(pods).map((p) => p.ip)).size, 3);
    const vni = created.find((n) => n.name === 'app')!.options.vni!;
    // h1 learns a2 (on h2) from etcd: an FDB entry towards h2 and a neighbour entry for proxy ARP.
    await eventually(async () => (await fdbOf(nodes[0]!, `knv${vni}`)).length === 1, 5000, 'h1 fdb entry for a2');
    await eventually(async () => (await fdbOf(nodes[1]!, `knv${vni}`)).length === 2, 5000, 'h2 fdb entries for a1 and a3');
    assert.ok(await lab.ping(pods.a1!.ns, pods.a2!.ip, 2), 'a1 (h1) -> a2 (h2)');
    assert.ok(await lab.ping(pods.a2!.ns, pods.a3!.ip, 2), 'a2 (h2) -> a3 (h1)');
    assert.ok(await lab.ping(pods.a1!.ns, pods.a3!.ip, 1), 'a1 -> a3 on the same host');
    assert.ok(await lab.ping(pods.a2!.ns, '10.231.0.100', 1), 'the gateway answers on every node');
    const [l] = await lab.ipJson(pods.a1!.ns, ['link', 'show', 'eth0']);
    assert.equal(l.mtu, 1450);
    // libcni, the runtimes' client library, runs the rendered conflist as it is (knit-l2overlay, then portmap).
    const cnitool = await buildCnitool();
    const lc = await lab.pod('lc1');
    const tool = (verb: string): Promise<{ code: number; stdout: string; stderr: string }> => lab.exec(nodes[1]!.host, cnitool, [verb, conflistPath(nodes[1]!, 'app'), lc.path, 'eth0', 'lc1'], {
      env: { CNI_PATH: `${knit.binDir}:${REF_CNI_DIR}`, CNI_CACHE_DIR: path.join(tmp, 'cni-cache'), KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent'), NODE_EXTRA_CA_CERTS: undefined }, allowFail: true,
    });
    const lcAdd = await tool('add');
    assert.equal(lcAdd.code, 0, `libcni add: ${lcAdd.stdout} ${lcAdd.stderr}`);
    const lcIp = String(JSON.parse(lcAdd.stdout).ips[0].address).split('/')[0]!;
    assert.match(lcIp, /^10\.231\.1\./);
    await learns(nodes[0]!, vni, lc, 'eth0');
    assert.ok(await lab.ping(lc, pods.a1!.ip, 2), 'the libcni container (h2) reaches a1 (h1)');
    assert.equal((await tool('check')).code, 0, 'libcni check');
    assert.equal((await tool('del')).code, 0, 'libcni del');
    // inspect shows every container on every node, Docker's shape; rm is refused while they are attached.
    const ins = JSON.parse((await knitctl('network', 'inspect', 'app')).stdout)[0];
    assert.deepEqual(Object.values(ins.Containers).map((c: any) => `${c.Name}@${c.Host} ${c.IPv4Address.split('/')[0]}`).sort(),
      [`a1@h1 ${pods.a1!.ip}`, `a2@h2 ${pods.a2!.ip}`, `a3@h1 ${pods.a3!.ip}`].sort());
    assert.deepEqual(ins.Peers.map((p: any) => p.Name), ['h1', 'h2']);
    const rm = await knitctl('network', 'rm', 'app');
    assert.equal(rm.code, 1);
    assert.match(rm.stderr, /network app has 3 containers attached \(/);
  });

  it('a second network is its own L2 segment; a container on both reaches the members of each', async () => {
    const b = await createNetwork({ name: 'db', driver: 'overlay', subnets: ['10.233.0.0/24'] });
    for (const n of nodes) await eventually(() => fs.existsSync(conflistPath(n, 'db')), 5000, `${n.name} conflist db`);
    await eventually(async () => (await lab.ipJson(nodes[1]!.host, ['link', 'show', `knb${b.options.vni}`]).catch(() => [])).length === 1, 5000, 'db bridge');
    const b1 = await lab.pod('b1');
    pods.b1 = { ns: b1, ip: await add(nodes[1]!, 'db', 'b1', b1) };
    const c = await lab.pod('c');
    const cA = await add(nodes[1]!, 'app', 'c', c, 'eth0');
    const cB = await add(nodes[1]!, 'db', 'c', c, 'eth1');
    assert.match(cA, /^10\.231\.1\./);
    assert.match(cB, /^10\.233\.0\./);
    // a1's reply needs h1 to have learnt c from etcd (its FDB and proxy-ARP entries): wait for that
    // rather than racing the watch on a loaded machine.
    const vniA = created.find((n) => n.name === 'app')!.options.vni!;
    await learns(nodes[0]!, vniA, c, 'eth0');
    assert.ok(await lab.ping(c, pods.a1!.ip, 2), 'c reaches a1 (app, other host)');
    assert.ok(await lab.ping(c, pods.b1!.ip, 2), 'c reaches b1 (db)');
    // The VXLAN segments are separate: b1's frames never reach app's bridge on the other host.
    const fdbA = await fdbOf(nodes[0]!, `knv${vniA}`);
    const macB1 = (await lab.ipJson(b1, ['link', 'show', 'eth0']))[0].address;
    assert.ok(!fdbA.some((f) => f.startsWith(macB1)), 'app knows nothing of db\'s container');
    // On one host, the node does not route between the two networks (isolation, on by default).
    const b2 = await lab.pod('b2');
    const ipB2 = await add(nodes[0]!, 'db', 'b2', b2);
    assert.ok(!(await lab.ping(b2, pods.a1!.ip, 1)), 'b2 (db) must not reach a1 (app) through h1');
    assert.ok(!(await lab.ping(pods.a1!.ns, ipB2, 1)), 'a1 (app) must not reach b2 (db) through h1');
    await learns(nodes[1]!, b.options.vni!, b2, 'eth0');
    assert.ok(await lab.ping(b2, pods.b1!.ip, 2), 'b2 reaches b1 (db, other host)');
    assert.equal((await plugin(nodes[0]!, 'db', 'DEL', 'b2', b2)).code, 0);
    // DEL of one network's interface leaves the other intact.
    const del = await plugin(nodes[1]!, 'db', 'DEL', 'c', c, 'eth1');
    assert.equal(del.code, 0, del.stdout);
    assert.ok(await lab.ping(c, pods.a1!.ip, 1), 'c still on app');
    assert.deepEqual((await lab.ipJson(c, ['link', 'show'])).map((x: any) => x.ifname).sort(), ['eth0', 'lo']);
  });

  it('the bridge and macvlan drivers render conflists that work: knit-bridge and knit-macvlan with cluster-wide addresses', async () => {
    await createNetwork({ name: 'local', driver: 'bridge', subnets: ['10.236.0.0/24'] });
    // A macvlan network on the underlay itself: its containers sit beside the hosts on the switch.
    await createNetwork({ name: 'pub', driver: 'macvlan', subnets: ['192.168.70.0/24'], gateways: ['192.168.70.254'], ipRanges: ['192.168.70.128/26'], opts: ['parent=eth0'] });
    for (const n of nodes) for (const net of ['local', 'pub']) await eventually(() => fs.existsSync(conflistPath(n, net)), 5000, `${n.name} conflist ${net}`);
    const cl = conflist(nodes[0]!, 'local');
    assert.equal(cl.plugins[0].type, 'knit-bridge');
    assert.equal(cl.plugins[0].ipam.type, 'knit-etcd-ipam');
    assert.deepEqual(conflist(nodes[0]!, 'pub').plugins[0].master, 'eth0');
    const l1 = await lab.pod('l1');
    const l2 = await lab.pod('l2');
    const ipL1 = await add(nodes[0]!, 'local', 'l1', l1);
    const ipL2 = await add(nodes[0]!, 'local', 'l2', l2);
    assert.ok(await lab.ping(l1, ipL2, 1), 'bridge network: l1 -> l2');
    assert.equal((await lab.ipJson(l1, ['link', 'show', 'eth0']))[0].address, macFromAddress([ipL1]), 'bridge network: the MAC derived from the address (D28)');
    const m1 = await lab.pod('m1');
    const ipM1 = await add(nodes[1]!, 'pub', 'm1', m1);
    assert.match(ipM1, /^192\.168\.70\.(1[2-8]\d|19[01])$/, `${ipM1} in 192.168.70.128/26`);
    assert.ok(await lab.ping(m1, '192.168.70.100', 2), 'macvlan network: m1 reaches the etcd host on the underlay');
    for (const [n, net, id, ns] of [[nodes[0]!, 'local', 'l1', l1], [nodes[0]!, 'local', 'l2', l2], [nodes[1]!, 'pub', 'm1', m1]] as const) {
      const del = await plugin(n, net, 'DEL', id, ns);
      assert.equal(del.code, 0, `DEL ${id}: ${del.stdout}`);
    }
    assert.notEqual(ipL1, ipL2);
    await removeNetwork('local');
    await removeNetwork('pub');
  });

  it('DEL removes the endpoint: the other node drops its FDB and neighbour entries; DEL again is fine', async () => {
    const vni = created.find((n) => n.name === 'app')!.options.vni!;
    const before = await fdbOf(nodes[0]!, `knv${vni}`);
    assert.equal(before.length, 2, `h1 knows a2 and c: ${before.join(', ')}`);
    for (let i = 0; i < 2; i++) assert.equal((await plugin(nodes[1]!, 'app', 'DEL', 'a2', pods.a2!.ns)).code, 0);
    await eventually(async () => (await fdbOf(nodes[0]!, `knv${vni}`)).length === 1, 5000, 'h1 forgets a2');
    const neigh = await lab.ipJson(nodes[0]!.host, ['neigh', 'show', 'dev', `knv${vni}`]);
    assert.ok(!neigh.some((x: any) => x.dst === pods.a2!.ip), 'no neighbour entry for a2');
    assert.equal((await plugin(nodes[1]!, 'app', 'DEL', 'c', (await lab.pod('c-gone')))).code, 0);
  });

  it('knitd restarted mid-way: pings keep flowing, entries removed while it was down are gone, missing ones come back', async () => {
    const vni = created.find((n) => n.name === 'app')!.options.vni!;
    const a4 = await lab.pod('a4');
    const ipA4 = await add(nodes[1]!, 'app', 'a4', a4);
    await eventually(async () => (await fdbOf(nodes[0]!, `knv${vni}`)).length === 1, 5000, 'h1 learns a4');
    // 30 pings at 0.1 s across the restart of h1's knitd: the kernel keeps the datapath meanwhile.
    const flow = lab.exec(pods.a1!.ns, 'ping', ['-c', '30', '-i', '0.1', '-W', '1', ipA4], { allowFail: true, timeoutMs: 30_000 });
    await stopKnitd(nodes[0]!);
    await lab.exec(nodes[0]!.host, 'bridge', ['fdb', 'add', '02:00:00:00:00:99', 'dev', `knv${vni}`, 'dst', '192.168.70.99', 'self', 'permanent']);
    startKnitd(nodes[0]!);
    const r = await flow;
    assert.match(r.stdout, / 0% packet loss/, `pings across the restart: ${r.stdout.split('\n').slice(-3).join(' ')}`);
    await eventually(async () => !(await fdbOf(nodes[0]!, `knv${vni}`)).some((f) => f.startsWith('02:00:00:00:00:99')), 10_000, 'stale entry removed');
    assert.equal((await fdbOf(nodes[0]!, `knv${vni}`)).length, 1, 'a4\'s entry kept');
    assert.ok(await lab.ping(pods.a1!.ns, ipA4, 1));
    assert.equal((await plugin(nodes[1]!, 'app', 'DEL', 'a4', a4)).code, 0);
  });

  it('a failed ADD (its endpoint cannot be recorded) leaves no record, link or address', async () => {
    // A node file naming a lease etcd does not have: the record's put fails after the attachment was made.
    const runDir = path.join(tmp, 'bad-run');
    const good = JSON.parse(fs.readFileSync(path.join(nodes[0]!.runDir, 'networks', 'node.json'), 'utf8'));
    fs.mkdirSync(path.join(runDir, 'networks'), { recursive: true });
    fs.writeFileSync(path.join(runDir, 'networks', 'node.json'), JSON.stringify({ ...good, lease: '7777777' }));
    const pod = await lab.pod('failed');
    const r = await plugin(nodes[0]!, 'app', 'ADD', 'failed1', pod, 'eth0', { runDir });
    assert.equal(r.code, 1, r.stdout);
    assert.equal(r.json?.code, 11, r.stdout);
    assert.match(r.json.msg, /endpoint records/);
    const ins = JSON.parse((await knitctl('network', 'inspect', 'app')).stdout)[0];
    assert.ok(!Object.values(ins.Containers).some((c: any) => c.Name === 'failed1'), 'no endpoint record');
    assert.deepEqual((await lab.ipJson(pod, ['link', 'show'])).map((l: any) => l.ifname), ['lo'], 'no interface in the pod');
    assert.deepEqual([...etcd.dump(`${PREFIX}/ipam/app/attach/`).keys()].filter((k) => k.includes('failed1')), [], 'no address held by failed1');
    assert.ok(etcd.dump(`${PREFIX}/ipam/app/attach/`).size > 0, 'the oracle sees the other containers\' addresses');
  });

  it('an ADD failing after its record was written (the nft step) takes the record back: no record, link or address', async () => {
    const pod = await lab.pod('failed2');
    const cl = conflist(nodes[0]!, 'app');
    const r = await lab.runPlugin(nodes[0]!.host, knit.bin('knit-l2overlay'), {
      command: 'ADD', containerId: 'failed2', netns: pod.path, ifName: 'eth0', path: [knit.binDir], conf: { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0] },
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent'), KNIT_FAILPOINT: 'isolation' },
    });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout + r.stderr, /failpoint "isolation"/);
    assert.deepEqual([...etcd.dump(`${PREFIX}/endpoints/app/`).keys()].filter((k) => k.includes('failed2')), [], 'no endpoint record');
    assert.deepEqual((await lab.ipJson(pod, ['link', 'show'])).map((l: any) => l.ifname), ['lo'], 'no interface in the pod');
    assert.deepEqual([...etcd.dump(`${PREFIX}/ipam/app/attach/`).keys()].filter((k) => k.includes('failed2')), [], 'no address held by failed2');
  });

  it('a network removed while a node is down disappears from it when it comes back; rm leaves nothing on any node', async () => {
    const db = created.find((n) => n.name === 'db')!;
    assert.equal((await plugin(nodes[1]!, 'db', 'DEL', 'b1', pods.b1!.ns)).code, 0);
    await stopKnitd(nodes[0]!);
    await removeNetwork('db');
    await eventually(() => !fs.existsSync(conflistPath(nodes[1]!, 'db')), 5000, 'h2 removes db');
    assert.ok(fs.existsSync(conflistPath(nodes[0]!, 'db')), 'h1 was down');
    startKnitd(nodes[0]!);
    await eventually(() => !fs.existsSync(conflistPath(nodes[0]!, 'db')), 10_000, 'h1 removes db after its restart');
    for (const n of nodes) {
      await eventually(async () => (await lab.ipJson(n.host, ['link', 'show']).catch(() => [])).every((l: any) => l.ifname !== `knv${db.options.vni}` && l.ifname !== `knb${db.options.vni}`), 5000, `${n.name} db devices gone`);
    }
    assert.ok(fs.existsSync(conflistPath(nodes[0]!, 'app')), 'app is untouched');
  });
});
