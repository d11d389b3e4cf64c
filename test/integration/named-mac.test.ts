// MACs derived from addresses on a named overlay network (design.md D28), knitd on two lab hosts
// on etcd. An address freed and handed to a new container on another host comes with the MAC the
// old container had, so a peer whose neighbour cache still maps the address reaches the new one
// at once (with a random MAC it sends to a MAC nobody has). And knitd keeps its FDB/neighbour
// entries right when two endpoint records carry the same MAC and address, whatever order their
// put and delete arrive in, on the incremental and the full pass, and never shadows a local
// container with a remote entry.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requireRoot, type Lab, type Netns, type PluginOutput } from '../lab/lab';
import { eventually, type KnitBuild } from '../lab/cni';
import { KnitdHosts, type KnitdHost } from '../lab/knitd-hosts';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { conflistFile } from '../../pkg/network/conflist';
import { macFromAddress } from '../../pkg/ip/mac';
import type { Endpoint } from '../../pkg/network/store';

type Node = KnitdHost;

const PREFIX = '/knm';
const NET = 'macnet';

describe('named overlay network: MACs derived from addresses, duplicate MACs in knitd', function () {
  this.timeout(300_000);
  let knit: KnitBuild;
  let lab: Lab;
  let hosts: KnitdHosts;
  let etcd: EtcdCluster;
  let tmp: string;
  let endpoint: string;
  let vni: number;
  let nodes: Node[] = [];

  const h1 = (): Node => nodes[0]!;
  const h2 = (): Node => nodes[1]!;

  function plugin(n: Node, command: 'ADD' | 'DEL' | 'CHECK', id: string, pod: Netns, extra: object = {}, args = ''): Promise<PluginOutput> {
    const cl = JSON.parse(fs.readFileSync(path.join(n.confDir, conflistFile(NET)), 'utf8'));
    const conf = { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0], ...extra };
    return lab.runPlugin(n.host, knit.bin(conf.type), {
      command, containerId: id, netns: pod.path, ifName: 'eth0', path: [knit.binDir], conf, args: `IgnoreUnknown=1;K8S_POD_NAME=${id}${args}`,
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
  }

  async function add(n: Node, id: string, pod: Netns, ip?: string): Promise<{ ip: string; mac: string; result: any }> {
    const r = await plugin(n, 'ADD', id, pod, {}, ip ? `;IP=${ip}` : '');
    assert.equal(r.code, 0, `ADD ${id}: ${r.stdout} ${r.stderr}`);
    const mac = (r.json.interfaces as any[]).find((i) => i.sandbox).mac as string;
    return { ip: String(r.json.ips[0].address).split('/')[0]!, mac, result: r.json };
  }

  async function del(n: Node, id: string, pod: Netns): Promise<void> {
    const r = await plugin(n, 'DEL', id, pod);
    assert.equal(r.code, 0, `DEL ${id}: ${r.stdout} ${r.stderr}`);
  }

  /** h's FDB entries on the network's VXLAN device: MAC -> destination. */
  async function fdb(n: Node): Promise<Map<string, string>> {
    const r = await lab.exec(n.host, 'bridge', ['-j', 'fdb', 'show', 'dev', `knv${vni}`]);
    return new Map((JSON.parse(r.stdout) as any[]).filter((f) => f.dst).map((f) => [f.mac as string, f.dst as string]));
  }

  /** h's neighbour entries on the VXLAN device (what proxy ARP answers): address -> MAC. */
  async function neigh(n: Node): Promise<Map<string, string>> {
    return new Map((await lab.ipJson(n.host, ['neigh', 'show', 'dev', `knv${vni}`])).filter((x: any) => x.lladdr).map((x: any) => [x.dst as string, x.lladdr as string]));
  }

  // ---- endpoint records of hosts that are not in the lab, written straight into etcd ----
  const recordKey = (e: Endpoint): string => `${PREFIX}/endpoints/${e.network}/${e.node}/${e.containerId}/${e.ifName}`;
  const record = (node: string, id: string, mac: string, ip: string, created: string): Endpoint => ({
    network: NET, node, nodeIp: node === 'ghost1' ? '192.168.70.11' : '192.168.70.12', containerId: id, ifName: 'eth0', mac, ips: [`${ip}/24`], created,
  });
  const put = (e: Endpoint): void => { etcd.ctl(['put', recordKey(e), JSON.stringify(e)]); };
  const remove = (e: Endpoint): void => { etcd.ctl(['del', recordKey(e)]); };
  let sentinels = 0;
  /**
   * Waits until h1's knitd has applied every record change made so far: the watch delivers them
   * in order, so once a record put after them has its FDB entry, they are applied too.
   */
  async function applied(): Promise<void> {
    const i = ++sentinels;
    const s = record('ghost2', `sentinel${i}`, `02:00:00:00:ee:${i.toString(16).padStart(2, '0')}`, `10.241.0.${200 + i}`, new Date().toISOString());
    put(s);
    await eventually(async () => (await fdb(h1())).has(s.mac), 10_000, `h1 applies sentinel ${i}`);
    remove(s);
  }

  before(async function () {
    requireRoot(this);
    requireEtcd(this);
    hosts = await KnitdHosts.open(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge', 'knit-etcd-ipam'], '192.168.70', 'knit-mac-');
    ({ knit, lab, tmp } = hosts);
    const etcdHost = await lab.host('etcd', hosts.sw, { address: '192.168.70.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.70.100' });
    endpoint = etcd.endpoints[0]!;
    nodes = await hosts.add(2);
    for (const n of nodes) hosts.startOnEtcd(n, endpoint, PREFIX, { ttlSec: 10 });
    for (const n of nodes) await eventually(() => fs.existsSync(path.join(n.runDir, 'networks', 'node.json')), 30_000, `${n.name} node.json (log: ${n.log.join('')})`);
    const r = await lab.exec(h1().host, knit.bin('knitctl'), ['--etcd-endpoints', endpoint, '--etcd-prefix', PREFIX, 'network', 'create', '-d', 'overlay', '--subnet', '10.241.0.0/24', NET],
      { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
    assert.equal(r.code, 0, `network create: ${r.stderr}`);
    for (const n of nodes) await eventually(() => fs.existsSync(path.join(n.confDir, conflistFile(NET))), 10_000, `${n.name} conflist`);
    vni = JSON.parse(fs.readFileSync(path.join(h1().confDir, conflistFile(NET)), 'utf8')).plugins[0].vni;
    for (const n of nodes) await eventually(async () => (await lab.ipJson(n.host, ['-d', 'link', 'show', `knv${vni}`]).catch(() => []))[0]?.master === `knb${vni}`, 10_000, `${n.name} knv${vni}`);
  });

  after(async () => {
    hosts?.killAll();
    await etcd?.stop();
    await hosts?.cleanup();
  });

  afterEach(function () {
    hosts.printLogsIfFailed(this.currentTest?.state, 40);
  });

  it('the rendered conflist asks for it; the MAC is 02:6b + the address in the result, the interface and the record; CHECK agrees', async () => {
    assert.equal(JSON.parse(fs.readFileSync(path.join(h1().confDir, conflistFile(NET)), 'utf8')).plugins[0].macFromAddress, true);
    const p = await lab.pod('m1');
    const a = await add(h1(), 'm1', p);
    assert.equal(a.mac, macFromAddress([a.ip]), `result MAC of ${a.ip}`);
    assert.equal((await lab.ipJson(p, ['link', 'show', 'eth0']))[0].address, a.mac, 'the interface has it');
    const rec = JSON.parse(etcd.dump(`${PREFIX}/endpoints/${NET}/h1/m1/`).values().next().value as string) as Endpoint;
    assert.equal(rec.mac, a.mac, 'the endpoint record has it');
    assert.equal((await plugin(h1(), 'CHECK', 'm1', p, { prevResult: a.result })).code, 0, 'CHECK');
    // An explicit MAC wins (CNI_ARGS MAC=, what podman passes for --mac-address).
    const q = await lab.pod('m2');
    const r = await plugin(h1(), 'ADD', 'm2', q, {}, ';MAC=0a:58:00:00:00:42');
    assert.equal(r.code, 0, r.stdout);
    assert.equal((r.json.interfaces as any[]).find((i) => i.sandbox).mac, '0a:58:00:00:00:42');
    await del(h1(), 'm2', q);
    await del(h1(), 'm1', p);
  });

  it('an address reused on another host: a peer with the old neighbour entry reaches the new container at once', async () => {
    const px = await lab.pod('x');
    const py = await lab.pod('y');
    await add(h1(), 'x', px);
    const y = await add(h2(), 'y', py);
    await eventually(async () => (await fdb(h1())).get(y.mac) === '192.168.70.2', 10_000, 'h1 learns y');
    assert.ok(await lab.ping(px, y.ip, 2), 'x (h1) -> y (h2)');
    // x's own neighbour cache now maps y's address to y's MAC; pinned, so it cannot age out
    // during the test (on a loaded machine) and x keeps using exactly that MAC.
    const cached = (await lab.ipJson(px, ['neigh', 'show', y.ip, 'dev', 'eth0']))[0];
    assert.equal(cached?.lladdr, y.mac, `x caches ${y.ip} -> ${y.mac}`);
    await lab.ip(px, ['neigh', 'change', y.ip, 'lladdr', y.mac, 'dev', 'eth0', 'nud', 'permanent']);
    await del(h2(), 'y', py);
    await eventually(async () => !(await fdb(h1())).has(y.mac), 10_000, 'h1 forgets y');
    assert.ok(!(await lab.ping(px, y.ip, 1)), 'y is gone');
    // z gets y's address on h2 (forced as a runtime would with a static IP).
    const pz = await lab.pod('z');
    const z = await add(h2(), 'z', pz, y.ip);
    assert.equal(z.ip, y.ip);
    assert.equal(z.mac, y.mac, 'the same address, the same MAC');
    await eventually(async () => (await fdb(h1())).get(z.mac) === '192.168.70.2', 10_000, 'h1 learns z');
    assert.equal((await lab.ipJson(px, ['neigh', 'show', y.ip, 'dev', 'eth0']))[0]?.lladdr, y.mac, 'x still holds the old entry');
    assert.ok(await lab.ping(px, z.ip, 1), 'x reaches z through its old neighbour entry');
    // And again on x's own host: h1's bridge had learnt the MAC on its VXLAN port (from z's
    // replies). w has IPv6 off, so it sends nothing by itself that would teach the bridge its port
    // (DAD, MLD): only the plugin's removal of the learnt entry lets x's frame reach it.
    await del(h2(), 'z', pz);
    const pw = await lab.pod('w');
    await lab.exec(pw, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    const w = await add(h1(), 'w', pw, y.ip);
    assert.equal(w.mac, y.mac);
    assert.ok(await lab.ping(px, w.ip, 1), 'x reaches w (same host) through its old neighbour entry');
    await eventually(async () => !(await fdb(h1())).has(w.mac), 10_000, 'no remote FDB entry for a local container');
    await del(h1(), 'w', pw);
    await del(h1(), 'x', px);
  });

  it('knitd: a MAC and address moved from node 1 to node 2 end at node 2, whichever order the put and delete arrive in', async () => {
    const mac = '02:6b:0a:f1:00:63';
    const t0 = '2026-01-01T00:00:00.000Z';
    const t1 = '2026-01-01T00:01:00.000Z';
    const A = record('ghost1', 'a', mac, '10.241.0.99', t0);
    const B = record('ghost2', 'b', mac, '10.241.0.99', t1);
    const expect = async (dst: string | undefined, what: string): Promise<void> => {
      await applied();
      assert.equal((await fdb(h1())).get(mac), dst, `${what}: FDB entry`);
      assert.equal((await neigh(h1())).get('10.241.0.99'), dst ? mac : undefined, `${what}: neighbour entry`);
    };

    // Put of B, then delete of A.
    put(A);
    await expect('192.168.70.11', 'A alone');
    put(B);
    await expect('192.168.70.12', 'B put while A is still recorded');
    remove(A);
    await expect('192.168.70.12', 'put B, then delete A');
    // The full pass (every 5 s here) agrees: it repairs a wrong entry to B's, not A's.
    await lab.exec(h1().host, 'bridge', ['fdb', 'replace', mac, 'dev', `knv${vni}`, 'dst', '192.168.70.11', 'self', 'permanent']);
    await eventually(async () => (await fdb(h1())).get(mac) === '192.168.70.12', 20_000, 'the full pass puts B\'s entry back');
    remove(B);
    await expect(undefined, 'B deleted too');

    // Delete of A, then put of B.
    put(A);
    await expect('192.168.70.11', 'A alone');
    remove(A);
    put(B);
    await expect('192.168.70.12', 'delete A, then put B');

    // A's put arriving after B's (a replay of the older record): B keeps it; A takes over only when B goes.
    put(A);
    await expect('192.168.70.12', 'the older record put after the newer');
    remove(B);
    await expect('192.168.70.11', 'B deleted, A still recorded');
    remove(A);
    await expect(undefined, 'both deleted');
  });

  it('knitd: a remote record never shadows a local container with the same MAC and address', async () => {
    const pl = await lab.pod('l');
    const px = await lab.pod('x2');
    const l = await add(h1(), 'l', pl, '10.241.0.97');
    await add(h1(), 'x2', px);
    const stale = record('ghost1', 'old', l.mac, '10.241.0.97', new Date(Date.now() + 60_000).toISOString());
    put(stale);
    await applied();
    assert.ok(!(await fdb(h1())).has(l.mac), 'no FDB entry sends the local container\'s MAC to ghost1');
    assert.ok(!(await neigh(h1())).has('10.241.0.97'), 'no proxy ARP entry for its address');
    assert.ok(await lab.ping(px, '10.241.0.97', 1), 'x2 reaches l on the same host');
    await del(h1(), 'l', pl);
    await applied();
    assert.equal((await fdb(h1())).get(l.mac), '192.168.70.11', 'the local container gone, the remote record owns its entries');
    remove(stale);
    await applied();
    assert.ok(!(await fdb(h1())).has(l.mac));
    await del(h1(), 'x2', px);
  });
});
