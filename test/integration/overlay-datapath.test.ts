// The overlay datapath (pkg/agent/backend) with static peer lists: three lab hosts on an underlay
// switch, a bridge per host holding its subnet's gateway and a pod behind it. vxlan: all pairs of
// pods ping across hosts, pod MTU is underlay − 50 and a 1400-byte don't-fragment ping passes, the
// VTEP MAC survives a restart, a peer leaving the list takes its route/neighbour/FDB entry with it,
// stale knit-tagged routes go and others stay, a deleted device is rebuilt; directRouting and
// host-gw route straight to the peer's underlay address.
import assert from 'node:assert/strict';
import { Lab, requireRoot, type Host, type Netns } from '../lab/lab';
import { newBackend, type Backend, type BackendConfig, type Peer } from '../../pkg/agent/backend';
import { vtepMacFor } from '../../pkg/agent/backend/vxlan';

const NETWORK = '10.216.0.0/16';

interface Node { host: Host; pod: Netns; subnet: string; podIp: string; backend?: Backend; peer?: Peer }

async function topology(lab: Lab, n: number, prefix: number): Promise<Node[]> {
  const sw = await lab.switch();
  const nodes: Node[] = [];
  for (let i = 1; i <= n; i++) {
    const host = await lab.host(`h${i}`, sw, { address: `192.168.${prefix}.${i}/24` });
    const pod = await lab.pod(`p${i}`);
    const subnet = `10.216.${prefix + i}.0/24`;
    const podIp = `10.216.${prefix + i}.2`;
    await lab.ip(host, ['link', 'add', 'knit-ov0', 'type', 'bridge']);
    await lab.ip(host, ['addr', 'add', `10.216.${prefix + i}.1/24`, 'dev', 'knit-ov0']);
    await lab.ip(host, ['link', 'set', 'knit-ov0', 'up']);
    await lab.ip(host, ['link', 'add', 'vpod', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
    await lab.ip(host, ['link', 'set', 'vpod', 'master', 'knit-ov0', 'up']);
    await lab.ip(pod, ['addr', 'add', `${podIp}/24`, 'dev', 'eth0']);
    await lab.ip(pod, ['link', 'set', 'eth0', 'up']);
    await lab.ip(pod, ['route', 'add', 'default', 'via', `10.216.${prefix + i}.1`]);
    nodes.push({ host, pod, subnet, podIp });
  }
  return nodes;
}

async function setMtu(lab: Lab, node: Node, mtu: number): Promise<void> {
  await lab.ip(node.host, ['link', 'set', 'vpod', 'mtu', String(mtu)]);
  await lab.ip(node.host, ['link', 'set', 'knit-ov0', 'mtu', String(mtu)]);
  await lab.ip(node.pod, ['link', 'set', 'eth0', 'mtu', String(mtu)]);
}

function start(nodes: Node[], cfg: BackendConfig): void {
  for (const [i, node] of nodes.entries()) {
    node.backend?.close();
    node.backend = newBackend(cfg, { netns: node.host.path });
    const st = node.backend.ensureLocal({ nodeName: `h${i + 1}`, subnet: node.subnet, underlayIface: 'eth0', underlayAddr: node.host.address!, network: NETWORK });
    node.peer = { nodeName: `h${i + 1}`, subnet: node.subnet, underlayAddr: node.host.address!, backendData: node.backend.leaseData(`h${i + 1}`) };
    (node as Node & { mtu?: number }).mtu = st.mtu;
  }
}

function syncAll(nodes: Node[], peers: Peer[] = nodes.map((n) => n.peer!)): void {
  for (const n of nodes) n.backend!.sync(peers);
}

async function allPairsPing(lab: Lab, nodes: Node[]): Promise<void> {
  const fails: string[] = [];
  await Promise.all(nodes.flatMap((a) => nodes.filter((b) => b !== a).map(async (b) => {
    if (!(await lab.ping(a.pod, b.podIp, 2))) fails.push(`${a.pod.name} -> ${b.podIp}`);
  })));
  assert.deepEqual(fails, [], `pings failed: ${fails.join(', ')}`);
}

const knitRoutes = async (lab: Lab, h: Netns): Promise<any[]> => lab.ipJson(h, ['route', 'show', 'proto', '107']);

describe('overlay datapath: vxlan backend with static peers', function () {
  this.timeout(180_000);
  let lab: Lab;
  let nodes: Node[];

  before(async function () {
    requireRoot(this);
    lab = new Lab();
    nodes = await topology(lab, 3, 20);
    start(nodes, { type: 'vxlan', vni: 1 });
    for (const n of nodes) await setMtu(lab, n, (n as Node & { mtu: number }).mtu);
    syncAll(nodes);
  });

  after(async () => {
    for (const n of nodes ?? []) n.backend?.close();
    await lab?.cleanup();
  });

  it('creates knit.1 with the configuration, MTU underlay − 50 and the derived MAC', async () => {
    const [l] = await lab.ipJson(nodes[0]!.host, ['-d', 'link', 'show', 'knit.1']);
    assert.equal(l.mtu, 1450);
    assert.equal(l.address, vtepMacFor('h1', 1));
    const info = l.linkinfo.info_data;
    assert.equal(info.id, 1);
    assert.equal(info.port, 4789);
    assert.equal(info.local, '192.168.20.1');
    assert.equal(info.link, 'eth0');
    assert.equal(info.learning, false);
    const addrs = await lab.ipJson(nodes[0]!.host, ['addr', 'show', 'dev', 'knit.1']);
    assert.deepEqual(addrs[0].addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`), ['10.216.21.0/32']);
  });

  it('programs a route, a permanent neighbour and an FDB entry per peer', async () => {
    const h1 = nodes[0]!.host;
    const routes = await knitRoutes(lab, h1);
    assert.deepEqual(routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev} ${r.flags.join(',')}`).sort(),
      ['10.216.22.0/24 via 10.216.22.0 dev knit.1 onlink', '10.216.23.0/24 via 10.216.23.0 dev knit.1 onlink']);
    const neigh = await lab.ipJson(h1, ['neigh', 'show', 'dev', 'knit.1']);
    assert.deepEqual(neigh.map((n: any) => `${n.dst} ${n.lladdr} ${n.state.join(',')}`).sort(),
      [`10.216.22.0 ${vtepMacFor('h2', 1)} PERMANENT`, `10.216.23.0 ${vtepMacFor('h3', 1)} PERMANENT`]);
    const fdb = await lab.ipJson(h1, ['-d', 'link', 'show', 'knit.1']).then(() => lab.exec(h1, 'bridge', ['-j', 'fdb', 'show', 'dev', 'knit.1'])).then((r) => JSON.parse(r.stdout));
    assert.deepEqual(fdb.filter((f: any) => f.dst).map((f: any) => `${f.mac} ${f.dst}`).sort(),
      [`${vtepMacFor('h2', 1)} 192.168.20.2`, `${vtepMacFor('h3', 1)} 192.168.20.3`].sort());
  });

  it('all pairs of pods ping across hosts', async () => {
    await allPairsPing(lab, nodes);
  });

  it('pod MTU is 1450 and a 1400-byte don\'t-fragment ping passes', async () => {
    const [l] = await lab.ipJson(nodes[0]!.pod, ['link', 'show', 'eth0']);
    assert.equal(l.mtu, 1450);
    const r = await lab.exec(nodes[0]!.pod, 'ping', ['-M', 'do', '-s', '1400', '-c', '2', '-W', '2', nodes[2]!.podIp], { allowFail: true });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const big = await lab.exec(nodes[0]!.pod, 'ping', ['-M', 'do', '-s', '1450', '-c', '1', '-W', '1', nodes[2]!.podIp], { allowFail: true });
    assert.notEqual(big.code, 0, 'a 1450-byte DF ping cannot fit a 1450 MTU');
  });

  it('a restart keeps the device and its MAC, and re-syncing changes nothing', async () => {
    start(nodes, { type: 'vxlan', vni: 1 });
    const [l] = await lab.ipJson(nodes[1]!.host, ['link', 'show', 'knit.1']);
    assert.equal(l.address, vtepMacFor('h2', 1));
    for (const n of nodes) {
      const rep = n.backend!.sync(nodes.map((x) => x.peer!));
      assert.deepEqual([rep.added, rep.updated, rep.removed], [0, 0, 0]);
    }
    await allPairsPing(lab, nodes);
  });

  it('removes a planted stale knit route and leaves routes of others alone', async () => {
    const h1 = nodes[0]!.host;
    await lab.ip(h1, ['route', 'add', '10.216.99.0/24', 'via', '10.216.99.0', 'dev', 'knit.1', 'onlink', 'proto', '107']);
    await lab.ip(h1, ['route', 'add', '10.216.98.0/24', 'via', '10.216.98.0', 'dev', 'knit.1', 'onlink', 'proto', 'static']);
    await lab.ip(h1, ['neigh', 'add', '10.216.99.0', 'lladdr', '02:00:00:00:00:99', 'dev', 'knit.1', 'nud', 'permanent']);
    await lab.exec(h1, 'bridge', ['fdb', 'add', '02:00:00:00:00:99', 'dev', 'knit.1', 'dst', '192.168.20.99', 'self', 'permanent']);
    const rep = nodes[0]!.backend!.sync(nodes.map((x) => x.peer!));
    assert.equal(rep.removed, 3);
    const routes = (await knitRoutes(lab, h1)).map((r) => r.dst).sort();
    assert.deepEqual(routes, ['10.216.22.0/24', '10.216.23.0/24']);
    assert.match(await lab.ip(h1, ['route', 'show', '10.216.98.0/24']), /10\.216\.98\.0\/24/);
    assert.doesNotMatch(await lab.ip(h1, ['neigh', 'show', 'dev', 'knit.1']), /10\.216\.99\.0/);
    assert.doesNotMatch((await lab.exec(h1, 'bridge', ['fdb', 'show', 'dev', 'knit.1'])).stdout, /02:00:00:00:00:99/);
    await lab.ip(h1, ['route', 'del', '10.216.98.0/24']);
  });

  it('repairs a changed route and a deleted device', async () => {
    const h2 = nodes[1]!.host;
    await lab.ip(h2, ['route', 'replace', '10.216.21.0/24', 'via', '10.216.23.0', 'dev', 'knit.1', 'onlink', 'proto', '107']);
    let rep = nodes[1]!.backend!.sync(nodes.map((x) => x.peer!));
    assert.equal(rep.updated, 1);
    await lab.ip(h2, ['link', 'del', 'knit.1']);
    rep = nodes[1]!.backend!.sync(nodes.map((x) => x.peer!));
    assert.ok(rep.added >= 4, JSON.stringify(rep));
    await allPairsPing(lab, nodes);
  });

  it('a peer removed from the list loses its route, neighbour and FDB entry on the others', async () => {
    const peers = nodes.slice(0, 2).map((n) => n.peer!);
    for (const n of nodes.slice(0, 2)) n.backend!.sync(peers);
    for (const n of nodes.slice(0, 2)) {
      const routes = (await knitRoutes(lab, n.host)).map((r) => r.dst);
      assert.ok(!routes.includes('10.216.23.0/24'), routes.join(' '));
      assert.doesNotMatch(await lab.ip(n.host, ['neigh', 'show', 'dev', 'knit.1']), /10\.216\.23\.0/);
      assert.doesNotMatch((await lab.exec(n.host, 'bridge', ['fdb', 'show', 'dev', 'knit.1'])).stdout, /192\.168\.20\.3/);
    }
    assert.equal(await lab.ping(nodes[0]!.pod, nodes[1]!.podIp), true);
    assert.equal(await lab.ping(nodes[0]!.pod, nodes[2]!.podIp), false);
    syncAll(nodes);
    await allPairsPing(lab, nodes);
  });

  it('directRouting routes same-L2 peers via their underlay address', async () => {
    start(nodes, { type: 'vxlan', vni: 1, directRouting: true });
    syncAll(nodes);
    const routes = await knitRoutes(lab, nodes[0]!.host);
    assert.deepEqual(routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`).sort(),
      ['10.216.22.0/24 via 192.168.20.2 dev eth0', '10.216.23.0/24 via 192.168.20.3 dev eth0']);
    assert.equal((await lab.ip(nodes[0]!.host, ['neigh', 'show', 'dev', 'knit.1'])).trim(), '');
    await allPairsPing(lab, nodes);
  });
});

describe('overlay datapath: host-gw backend with static peers', function () {
  this.timeout(120_000);
  let lab: Lab;
  let nodes: Node[];

  before(async function () {
    requireRoot(this);
    lab = new Lab();
    nodes = await topology(lab, 3, 30);
    start(nodes, { type: 'host-gw' });
    syncAll(nodes);
  });

  after(async () => {
    for (const n of nodes ?? []) n.backend?.close();
    await lab?.cleanup();
  });

  it('routes each peer subnet via the peer underlay address and all pairs ping', async () => {
    const routes = await knitRoutes(lab, nodes[0]!.host);
    assert.deepEqual(routes.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`).sort(),
      ['10.216.32.0/24 via 192.168.30.2 dev eth0', '10.216.33.0/24 via 192.168.30.3 dev eth0']);
    await allPairsPing(lab, nodes);
  });

  it('a removed peer loses its route; a stale route is removed', async () => {
    await lab.ip(nodes[0]!.host, ['route', 'add', '10.216.99.0/24', 'via', '192.168.30.99', 'dev', 'eth0', 'proto', '107']);
    nodes[0]!.backend!.sync(nodes.slice(0, 2).map((n) => n.peer!));
    assert.deepEqual((await knitRoutes(lab, nodes[0]!.host)).map((r) => r.dst), ['10.216.32.0/24']);
  });
});
