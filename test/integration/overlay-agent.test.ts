// knitd's overlay agent end to end: etcd in its own lab namespace on the underlay, three hosts
// each running knitd (built executables, `ip netns exec`), two pods per host through
// knit-overlay. All pairs ping across hosts with MTU underlay − 50; knitctl shows the network,
// peers and status; a stopped knitd leaves the datapath up, and restarted it keeps its subnet
// and removes a stale route planted meanwhile; `knitctl node rm` and lease expiry (short TTL)
// take a node's routes off the others; host-gw mode pings all pairs too.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput, type Switch } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { EtcdCluster, requireEtcd } from '../lab/etcd';

const TTL = 8;

interface Node {
  name: string;
  host: Host;
  runDir: string;
  stateDir: string;
  sockDir: string;
  dataDir: string;
  knitd?: ChildProcess;
  log: string[];
  pods: Array<{ ns: Netns; ip: string; id: string }>;
}

describe('knitd overlay agent with etcd', function () {
  this.timeout(300_000);
  let knit: KnitBuild;
  let lab: Lab;
  let sw: Switch;
  let etcd: EtcdCluster;
  let etcdHost: Host;
  let tmp: string;
  let endpoint: string;
  const nodes: Node[] = [];

  const lease = (n: Node): any => JSON.parse(fs.readFileSync(path.join(n.runDir, 'lease.json'), 'utf8'));

  function startKnitd(n: Node, prefix = '/knit'): void {
    n.log = [];
    const proc = spawn('ip', ['netns', 'exec', n.host.name, knit.bin('knitd'), '--cni-socket-dir', n.sockDir, '--etcd-endpoints', endpoint,
      '--etcd-prefix', prefix, '--node-name', n.name, '--iface', 'eth0', '--run-dir', n.runDir, '--state-dir', n.stateDir,
      '--lease-ttl', String(TTL), '--resync-interval', '5', '--log-level', 'debug', '--metrics-addr', '127.0.0.1:9101'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    proc.stderr!.on('data', (d: Buffer) => n.log.push(d.toString()));
    n.knitd = proc;
  }

  async function stopKnitd(n: Node, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = n.knitd;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    // ip netns exec execs knitd (same pid), which runs node in the same process.
    p.kill(signal);
    await exited;
    n.knitd = undefined;
  }

  async function ctl(n: Node, args: string[], prefix = '/knit'): Promise<string> {
    const r = await lab.exec(n.host, knit.bin('knitctl'), ['--etcd-endpoints', endpoint, '--etcd-prefix', prefix, ...args], { env: { NODE_EXTRA_CA_CERTS: undefined } });
    return r.stdout;
  }

  function plugin(n: Node, command: 'ADD' | 'DEL', id: string, pod: Netns): Promise<PluginOutput> {
    return lab.runPlugin(n.host, knit.bin('knit-overlay'), {
      command, containerId: id, netns: pod.path, ifName: 'eth0', path: [knit.binDir],
      conf: { cniVersion: '1.1.0', name: 'overlay', type: 'knit-overlay', runDir: n.runDir, ipam: { type: 'knit-host-local', dataDir: n.dataDir } },
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
  }

  async function makeNode(name: string, addr: string): Promise<Node> {
    const host = await lab.host(name, sw, { address: `${addr}/24` });
    const d = fs.mkdtempSync(path.join(tmp, `${name}-`));
    return { name, host, runDir: path.join(d, 'run'), stateDir: path.join(d, 'state'), sockDir: path.join(d, 'cni'), dataDir: path.join(d, 'ipam'), log: [], pods: [] };
  }

  async function addPods(n: Node, count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const id = `${n.name}-p${n.pods.length}`;
      const ns = await lab.pod(id);
      const r = await plugin(n, 'ADD', id, ns);
      assert.equal(r.code, 0, `ADD ${id}: ${r.stdout} ${r.stderr}`);
      n.pods.push({ ns, ip: r.json.ips[0].address.split('/')[0], id });
    }
  }

  async function allPairs(ns: Node[]): Promise<string[]> {
    const pods = ns.flatMap((n) => n.pods);
    const fails: string[] = [];
    for (const a of pods) {
      await Promise.all(pods.filter((b) => b !== a).map(async (b) => { if (!(await lab.ping(a.ns, b.ip, 1))) fails.push(`${a.id}->${b.id}`); }));
    }
    return fails;
  }

  const knitRoutes = async (n: Node): Promise<string[]> => (await lab.ipJson(n.host, ['route', 'show', 'proto', '107'])).map((r: any) => `${r.dst} via ${r.gateway}`).sort();
  const waitLease = (n: Node): Promise<void> => eventually(() => fs.existsSync(path.join(n.runDir, 'lease.json')), 30_000, `${n.name} lease.json (knitd log: ${n.log.join('')})`);

  before(async function () {
    requireRoot(this);
    requireEtcd(this);
    knit = await buildKnit(['knitd', 'knitctl', 'knit-overlay']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-overlay-agent-'));
    sw = await lab.switch();
    etcdHost = await lab.host('etcd', sw, { address: '192.168.60.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.60.100' });
    endpoint = etcd.endpoints[0]!;
    for (let i = 1; i <= 3; i++) nodes.push(await makeNode(`h${i}`, `192.168.60.${i}`));
  });

  after(async () => {
    for (const n of nodes) n.knitd?.kill('SIGKILL');
    await etcd?.stop();
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') for (const n of nodes) console.log(`--- knitd ${n.name} log\n${n.log.join('').split('\n').slice(-30).join('\n')}`);
  });

  it('knitctl pod-network validates and stores the network config', async () => {
    const bad = path.join(tmp, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ network: '10.216.0.0/16', subnetLen: 8 }));
    const r = await lab.exec(nodes[0]!.host, knit.bin('knitctl'), ['--etcd-endpoints', endpoint, 'pod-network', 'set', bad], { allowFail: true });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /subnetLen 8/);
    const file = path.join(tmp, 'network.json');
    fs.writeFileSync(file, JSON.stringify({ network: '10.216.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1 } }));
    await ctl(nodes[0]!, ['pod-network', 'set', file]);
    const got = JSON.parse(await ctl(nodes[0]!, ['pod-network', 'get']));
    assert.deepEqual(got, { network: '10.216.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1, port: 4789 } });
    // The former name still works, with one warning line.
    const old = await lab.exec(nodes[0]!.host, knit.bin('knitctl'), ['--etcd-endpoints', endpoint, 'network', 'get'], { env: { NODE_EXTRA_CA_CERTS: undefined } });
    assert.deepEqual(JSON.parse(old.stdout), got);
    assert.equal(old.stderr, "knitctl: 'knitctl network get' is deprecated: use 'knitctl pod-network get' ('network' is for named networks)\n");
  });

  it('before knitd writes a lease, knit-overlay answers code 11', async () => {
    const pod = await lab.pod('early');
    const r = await plugin(nodes[0]!, 'ADD', 'early', pod);
    assert.equal(r.json?.code, 11, r.stdout);
  });

  it('three knitd lease distinct subnets and publish them', async () => {
    for (const n of nodes) startKnitd(n);
    for (const n of nodes) await waitLease(n);
    const subnets = nodes.map((n) => lease(n).subnet);
    assert.equal(new Set(subnets).size, 3, subnets.join(' '));
    for (const n of nodes) assert.equal(lease(n).mtu, 1450);
    const peers = JSON.parse(await ctl(nodes[0]!, ['peers', '--json']));
    assert.deepEqual(peers.map((p: any) => p.nodeName).sort(), ['h1', 'h2', 'h3']);
    for (const n of nodes) await eventually(async () => (await knitRoutes(n)).length === 2, 15_000, `${n.name} programs 2 peers`);
  });

  it('two pods per host ping all pairs across hosts; MTU 1450 and a 1400-byte DF ping passes', async () => {
    for (const n of nodes) await addPods(n, 2);
    assert.deepEqual(await allPairs(nodes), []);
    const [l] = await lab.ipJson(nodes[0]!.pods[0]!.ns, ['link', 'show', 'eth0']);
    assert.equal(l.mtu, 1450);
    const r = await lab.exec(nodes[0]!.pods[0]!.ns, 'ping', ['-M', 'do', '-s', '1400', '-c', '2', '-W', '2', nodes[2]!.pods[1]!.ip], { allowFail: true });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it('knitctl status shows the lease, the device and every peer programmed', async () => {
    const out = await ctl(nodes[0]!, ['status', '--run-dir', nodes[0]!.runDir]);
    assert.match(out, new RegExp(`node h1: subnet ${lease(nodes[0]!).subnet.replace(/\./g, '\\.')}`));
    assert.match(out, /device knit\.1: up, mtu 1450/);
    assert.match(out, /h2 .* yes/);
    assert.match(out, /h3 .* yes/);
  });

  it('knitctl inspect shows the config, every node and this node', async () => {
    const j = JSON.parse(await ctl(nodes[0]!, ['inspect', '--run-dir', nodes[0]!.runDir]));
    assert.equal(j.config.network, '10.216.0.0/16');
    assert.deepEqual(j.nodes.map((n: any) => n.nodeName).sort(), ['h1', 'h2', 'h3']);
    assert.equal(j.thisNode.subnet, lease(nodes[0]!).subnet);
    assert.ok(j.nodes.every((n: any) => /^02|^[0-9a-f]{2}:/.test(n.backendData?.vtepMac) && n.underlayAddr.startsWith('192.168.60.')));
  });

  it('serves Prometheus metrics and a health endpoint', async () => {
    const get = async (p: string): Promise<{ code: number; body: string }> => {
      const r = await lab.exec(nodes[0]!.host, 'curl', ['-s', '-w', '\n%{http_code}', `http://127.0.0.1:9101${p}`]);
      const i = r.stdout.lastIndexOf('\n');
      return { code: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
    };
    const m = await get('/metrics');
    assert.equal(m.code, 200);
    assert.match(m.body, /^knit_overlay_peers 2$/m);
    assert.match(m.body, /^knit_overlay_peers_programmed 2$/m);
    assert.match(m.body, /^knit_overlay_lease_info\{node="h1",subnet="10\.216\.\d+\.0\/24",backend="vxlan"\} 1$/m);
    assert.match(m.body, /^knit_overlay_reconcile_duration_seconds_count [1-9]\d*$/m);
    assert.match(m.body, /^knit_overlay_errors_total 0$/m);
    const h = await get('/healthz');
    assert.equal(h.code, 200, h.body);
  });

  it('knitd stopped: pods keep connectivity; restarted: same subnet, the planted stale route removed, nothing duplicated', async () => {
    const h1 = nodes[0]!;
    const before = lease(h1).subnet;
    const routesBefore = await knitRoutes(h1);
    await stopKnitd(h1);
    await lab.ip(h1.host, ['route', 'add', '10.216.250.0/24', 'via', '10.216.250.0', 'dev', 'knit.1', 'onlink', 'proto', '107']);
    assert.deepEqual(await allPairs(nodes), []);
    startKnitd(h1);
    await eventually(async () => !(await knitRoutes(h1)).some((r) => r.startsWith('10.216.250.0/24')), 20_000, 'stale route removed');
    assert.equal(lease(h1).subnet, before);
    assert.deepEqual(await knitRoutes(h1), routesBefore);
    const peers = JSON.parse(await ctl(h1, ['peers', '--json']));
    assert.equal(peers.length, 3);
    assert.equal((await lab.ip(h1.host, ['neigh', 'show', 'dev', 'knit.1'])).trim().split('\n').length, 2);
    assert.deepEqual(await allPairs(nodes), []);
  });

  it('a deleted VXLAN device is repaired from netlink events', async () => {
    const h2 = nodes[1]!;
    await lab.ip(h2.host, ['link', 'del', 'knit.1']);
    await eventually(async () => (await knitRoutes(h2)).length === 2, 10_000, 'knit.1 and its routes back on h2');
    assert.deepEqual(await allPairs(nodes), []);
  });

  it('a running node whose lease is deleted under it publishes the same subnet again', async () => {
    const h1 = nodes[0]!;
    const sub = lease(h1).subnet;
    await ctl(h1, ['node', 'rm', 'h1']);
    await eventually(async () => JSON.parse(await ctl(h1, ['peers', '--json'])).some((p: any) => p.nodeName === 'h1' && p.subnet === sub), 10_000, 'h1 re-published');
    for (const n of nodes.slice(1)) await eventually(async () => (await knitRoutes(n)).some((r) => r.startsWith(sub)), 10_000, `${n.name} routes ${sub}`);
    assert.deepEqual(await allPairs(nodes), []);
  });

  it('knitctl node rm: the node\'s routes leave the other hosts', async () => {
    const h3 = nodes[2]!;
    const sub = lease(h3).subnet;
    await stopKnitd(h3);
    await ctl(nodes[0]!, ['node', 'rm', 'h3']);
    for (const n of nodes.slice(0, 2)) await eventually(async () => !(await knitRoutes(n)).some((r) => r.startsWith(sub)), 10_000, `${n.name} drops ${sub}`);
    const peers = JSON.parse(await ctl(nodes[0]!, ['peers', '--json']));
    assert.deepEqual(peers.map((p: any) => p.nodeName).sort(), ['h1', 'h2']);
  });

  it('a node whose knitd dies loses its lease after the TTL, and its routes leave the others', async () => {
    const h2 = nodes[1]!;
    const sub = lease(h2).subnet;
    await stopKnitd(h2, 'SIGKILL');
    const t0 = Date.now();
    await eventually(async () => !(await knitRoutes(nodes[0]!)).some((r) => r.startsWith(sub)), (TTL + 10) * 1000, `h1 drops ${sub}`);
    assert.ok(Date.now() - t0 <= (TTL + 6) * 1000, `took ${Date.now() - t0} ms`);
  });

  it('host-gw mode: all pairs ping over direct routes', async () => {
    const prefix = '/knit-hgw';
    const hg = [await makeNode('g1', '192.168.60.11'), await makeNode('g2', '192.168.60.12'), await makeNode('g3', '192.168.60.13')];
    nodes.push(...hg);
    const file = path.join(tmp, 'hgw.json');
    fs.writeFileSync(file, JSON.stringify({ network: '10.217.0.0/16', subnetLen: 24, backend: { type: 'host-gw' } }));
    await ctl(hg[0]!, ['network', 'set', file], prefix);
    for (const n of hg) startKnitd(n, prefix);
    for (const n of hg) await waitLease(n);
    for (const n of hg) assert.equal(lease(n).mtu, 1500);
    for (const n of hg) await eventually(async () => (await knitRoutes(n)).length === 2, 15_000, `${n.name} programs 2 peers`);
    const r = await knitRoutes(hg[0]!);
    assert.ok(r.every((x) => /via 192\.168\.60\.1[23]$/.test(x)), r.join(', '));
    for (const n of hg) await addPods(n, 1);
    assert.deepEqual(await allPairs(hg), []);
  });
});
