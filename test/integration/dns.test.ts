// knitd's resolver across hosts (docs/dns.md): etcd on the underlay, knitd on two lab hosts, the
// named networks' containers added by knit-l2overlay from the rendered conflists (as a runtime
// would, with K8S_POD_NAME and runtimeConfig.aliases), and every query sent from inside a pod's
// netns to its gateway, by a small dns-packet client (test/lab/dns-client.cjs). A fake upstream
// resolver in its own lab netns (test/lab/fake-dns.cjs) stands for the node's resolv.conf.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput, type Switch } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { conflistFile } from '../../pkg/network/conflist';

interface Node { name: string; host: Host; runDir: string; stateDir: string; confDir: string; knitd?: ChildProcess; log: string[] }
interface Answer { rcode?: string; aa?: boolean; tc?: boolean; answers?: Array<{ type: string; ttl: number; data: string }>; error?: string }

const PREFIX = '/kdns';
const CLIENT = path.join(__dirname, '..', 'lab', 'dns-client.cjs');
const FAKE = path.join(__dirname, '..', 'lab', 'fake-dns.cjs');
const UPSTREAM = '192.168.74.53';
const METRICS = '127.0.0.1:9253';
const GW = { app: '10.240.0.1', db: '10.241.0.1' } as const;

describe('knitd resolver: names across hosts, round robin, scopes, upstream, refusals', function () {
  this.timeout(300_000);
  let knit: KnitBuild;
  let lab: Lab;
  let sw: Switch;
  let etcd: EtcdCluster;
  let tmp: string;
  let endpoint: string;
  let upstream: ChildProcess | undefined;
  let upstreamLog = '';
  let outside: Host;
  const nodes: Node[] = [];
  const pods: Record<string, { ns: Netns; ip: string; node: Node; net: string }> = {};

  async function makeNode(name: string, addr: string): Promise<Node> {
    const host = await lab.host(name, sw, { address: `${addr}/24` });
    const d = fs.mkdtempSync(path.join(tmp, `${name}-`));
    fs.writeFileSync(path.join(d, 'resolv.conf'), `# the node's resolvers\nnameserver ${UPSTREAM}\n`);
    return { name, host, runDir: path.join(d, 'run'), stateDir: path.join(d, 'state'), confDir: path.join(d, 'net.d'), log: [] };
  }

  function startKnitd(n: Node): void {
    const proc = spawn('ip', ['netns', 'exec', n.host.name, knit.bin('knitd'), '--cni-socket-dir', path.join(n.runDir, 'cni'), '--etcd-endpoints', endpoint,
      '--etcd-prefix', PREFIX, '--node-name', n.name, '--iface', 'eth0', '--run-dir', n.runDir, '--state-dir', n.stateDir, '--cni-conf-dir', n.confDir,
      '--lease-ttl', '10', '--resync-interval', '5', '--log-level', 'debug', '--metrics-addr', METRICS,
      '--dns-resolv-conf', path.join(path.dirname(n.runDir), 'resolv.conf')], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    proc.stderr!.on('data', (d: Buffer) => n.log.push(d.toString()));
    n.knitd = proc;
  }

  const knitctl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    lab.exec(nodes[0]!.host, knit.bin('knitctl'), ['--etcd-endpoints', endpoint, '--etcd-prefix', PREFIX, ...args], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });

  const conflistPath = (n: Node, net: string): string => path.join(n.confDir, conflistFile(net));

  function plugin(n: Node, net: string, command: 'ADD' | 'DEL', id: string, pod: Netns, o: { ifName?: string; name?: string; aliases?: unknown } = {}): Promise<PluginOutput> {
    const cl = JSON.parse(fs.readFileSync(conflistPath(n, net), 'utf8'));
    const conf = { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0], ...(o.aliases !== undefined ? { runtimeConfig: { aliases: { [net]: o.aliases } } } : {}) };
    return lab.runPlugin(n.host, knit.bin(conf.type), {
      command, containerId: id, netns: pod.path, ifName: o.ifName ?? 'eth0', path: [knit.binDir], conf, args: `IgnoreUnknown=1;K8S_POD_NAME=${o.name ?? id}`,
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
  }

  async function add(n: Node, net: string, id: string, o: { ifName?: string; name?: string; aliases?: string[]; ns?: Netns } = {}): Promise<PluginOutput> {
    const ns = o.ns ?? await lab.pod(id);
    const r = await plugin(n, net, 'ADD', id, ns, o);
    assert.equal(r.code, 0, `ADD ${id} on ${net}: ${r.stdout} ${r.stderr}`);
    pods[o.ifName && o.ifName !== 'eth0' ? `${id}/${o.ifName}` : id] = { ns, ip: String(r.json.ips[0].address).split('/')[0]!, node: n, net };
    return r;
  }

  /** One query from inside `from` to `server` (the pod's gateway). */
  async function dig(from: Netns, server: string, name: string, type = 'A', transport: 'udp' | 'tcp' = 'udp'): Promise<Answer> {
    const r = await lab.exec(from, process.execPath, [CLIENT, 'query', server, name, type, transport], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
    try { return JSON.parse(r.stdout) as Answer; } catch { return { error: `${r.stdout} ${r.stderr}` }; }
  }
  const addrs = (a: Answer): string[] => (a.answers ?? []).filter((x) => x.type === 'A' || x.type === 'AAAA').map((x) => x.data);

  async function metrics(n: Node): Promise<Record<string, number>> {
    const r = await lab.exec(n.host, process.execPath, ['-e', `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`], { env: { NODE_EXTRA_CA_CERTS: undefined } });
    const out: Record<string, number> = {};
    for (const l of r.stdout.split('\n')) { const m = /^(knit_dns_\S+?)\s+(\d+)$/.exec(l); if (m) out[m[1]!] = Number(m[2]); }
    return out;
  }

  before(async function () {
    requireRoot(this);
    requireEtcd(this);
    knit = await buildKnit(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge', 'knit-etcd-ipam']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-dns-'));
    sw = await lab.switch();
    const etcdHost = await lab.host('etcd', sw, { address: '192.168.74.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.74.100' });
    endpoint = etcd.endpoints[0]!;
    // The node's upstream resolver: its own lab host on the underlay.
    const up = await lab.host('upstream', sw, { address: `${UPSTREAM}/24` });
    upstream = spawn('ip', ['netns', 'exec', up.name, process.execPath, FAKE, UPSTREAM, JSON.stringify({ 'example.test': '203.0.113.7' })], { stdio: ['ignore', 'pipe', 'pipe'] });
    upstream.stderr!.on('data', (d: Buffer) => { upstreamLog += d.toString(); });
    await new Promise<void>((resolve, reject) => { upstream!.stdout!.once('data', () => resolve()); upstream!.once('exit', (c) => reject(new Error(`fake upstream exited ${c}: ${upstreamLog}`))); });
    outside = await lab.host('outside', sw, { address: '192.168.74.99/24' });
    nodes.push(await makeNode('h1', '192.168.74.1'), await makeNode('h2', '192.168.74.2'));
    for (const n of nodes) startKnitd(n);
    for (const n of nodes) await eventually(() => fs.existsSync(path.join(n.runDir, 'networks', 'node.json')), 30_000, `${n.name} node.json (log: ${n.log.join('')})`);
    for (const [net, subnet] of [['app', '10.240.0.0/24'], ['db', '10.241.0.0/24']]) {
      const r = await knitctl('network', 'create', '-d', 'overlay', '--subnet', subnet!, net!);
      assert.equal(r.code, 0, r.stderr);
    }
    const q = await knitctl('network', 'create', '-d', 'overlay', '--subnet', '10.242.0.0/24', '-o', 'dns=false', 'quiet');
    assert.equal(q.code, 0, q.stderr);
    for (const n of nodes) for (const net of ['app', 'db', 'quiet']) await eventually(() => fs.existsSync(conflistPath(n, net)), 5000, `${n.name} conflist ${net}`);
  });

  after(async () => {
    for (const n of nodes) n.knitd?.kill('SIGKILL');
    upstream?.kill('SIGKILL');
    await etcd?.stop();
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') for (const n of nodes) console.log(`--- knitd ${n.name} log\n${n.log.join('').split('\n').slice(-30).join('\n')}`);
  });

  it('the ADD result carries the resolver (gateway, the network\'s domain); aliases are recorded; bad aliases fail with code 7 and leave nothing', async () => {
    const r = await add(nodes[0]!, 'app', 'web1', { name: 'web', aliases: ['www', 'Front'] });
    assert.deepEqual(r.json.dns, { nameservers: [GW.app], search: ['app.knit'] });
    const rec = [...etcd.dump(`${PREFIX}/endpoints/app/h1/`).values()].map((v) => JSON.parse(v)).find((e) => e.containerId === 'web1');
    assert.equal(rec.name, 'web');
    assert.deepEqual(rec.aliases, ['www', 'front']);
    const bad = await lab.pod('bad');
    const b = await plugin(nodes[0]!, 'app', 'ADD', 'bad1', bad, { aliases: ['ok', 'no spaces'] });
    assert.equal(b.code, 1);
    assert.equal(b.json.code, 7, b.stdout);
    assert.match(b.json.msg, /invalid runtimeConfig\.aliases\.app\[1\] "no spaces": a DNS name/);
    assert.deepEqual((await lab.ipJson(bad, ['link', 'show'])).map((l: any) => l.ifname), ['lo'], 'nothing left in the pod');
    // A network created with -o dns=false: no dns in its conflist, none in the result.
    assert.equal(JSON.parse(fs.readFileSync(conflistPath(nodes[0]!, 'quiet'), 'utf8')).plugins[0].dns, undefined);
    const qr = await add(nodes[0]!, 'quiet', 'q1');
    assert.equal(qr.json.dns, undefined);
  });

  it('a container on host 1 resolves from a pod on host 2 (UDP and TCP, short and qualified), authoritative, TTL 5', async () => {
    await add(nodes[1]!, 'app', 'c2');
    const c2 = pods.c2!.ns;
    await eventually(async () => addrs(await dig(c2, GW.app, 'web')).length === 1, 10_000, 'h2 answers web');
    const a = await dig(c2, GW.app, 'web');
    assert.deepEqual(addrs(a), [pods.web1!.ip]);
    assert.equal(a.rcode, 'NOERROR');
    assert.equal(a.aa, true);
    assert.equal(a.answers![0]!.ttl, 5);
    assert.deepEqual(addrs(await dig(c2, GW.app, 'web', 'A', 'tcp')), [pods.web1!.ip], 'over TCP');
    assert.deepEqual(addrs(await dig(c2, GW.app, 'www.app.knit')), [pods.web1!.ip], 'an alias, qualified');
    assert.deepEqual(addrs(await dig(c2, GW.app, 'FRONT')), [pods.web1!.ip], 'case-insensitive');
    const aaaa = await dig(c2, GW.app, 'web', 'AAAA');
    assert.equal(aaaa.rcode, 'NOERROR', 'NODATA for AAAA of a v4-only name');
    assert.equal(addrs(aaaa).length, 0);
    // And the other way: h1's pod finds c2 (on h2) through h1's own knitd.
    await eventually(async () => addrs(await dig(pods.web1!.ns, GW.app, 'c2'))[0] === pods.c2!.ip, 10_000, 'h1 answers c2');
  });

  it('round robin: two containers (one per host) sharing alias api answer both addresses, rotated', async () => {
    await add(nodes[0]!, 'app', 'api1', { aliases: ['api'] });
    await add(nodes[1]!, 'app', 'api2', { aliases: ['api'] });
    const want = [pods.api1!.ip, pods.api2!.ip].sort();
    await eventually(async () => addrs(await dig(pods.c2!.ns, GW.app, 'api')).length === 2, 10_000, 'both api records');
    const firsts = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const got = addrs(await dig(pods.c2!.ns, GW.app, 'api'));
      assert.deepEqual([...got].sort(), want);
      firsts.add(got[0]!);
    }
    assert.equal(firsts.size, 2, 'each address comes first in turn');
  });

  it('scopes: the same name on two networks answers each its own; a container on both resolves both networks', async () => {
    await add(nodes[1]!, 'db', 'dbweb', { name: 'web' });
    await add(nodes[0]!, 'db', 'store');
    await add(nodes[1]!, 'db', 'd2');
    await eventually(async () => addrs(await dig(pods.d2!.ns, GW.db, 'web'))[0] === pods.dbweb!.ip, 10_000, 'db\'s web on db');
    assert.deepEqual(addrs(await dig(pods.c2!.ns, GW.app, 'web')), [pods.web1!.ip], 'app\'s web on app');
    assert.equal((await dig(pods.d2!.ns, GW.db, 'api')).rcode, 'NXDOMAIN', 'app\'s names are not db\'s');
    assert.equal((await dig(pods.c2!.ns, GW.app, 'store')).rcode, 'NXDOMAIN');
    // "both" is on app (eth0) and db (eth1), on h2; its resolv.conf names app's gateway.
    const both = await lab.pod('both');
    await add(nodes[1]!, 'app', 'both', { ns: both });
    await add(nodes[1]!, 'db', 'both', { ns: both, ifName: 'eth1' });
    await eventually(async () => addrs(await dig(both, GW.app, 'store'))[0] === pods.store!.ip, 10_000, 'db\'s store asked on app');
    assert.deepEqual(addrs(await dig(both, GW.app, 'web')), [pods.web1!.ip], 'the network asked on comes first');
    assert.deepEqual(addrs(await dig(both, GW.app, 'web.db.knit')), [pods.dbweb!.ip], 'qualified: db\'s');
    assert.deepEqual(addrs(await dig(both, GW.db, 'web')), [pods.dbweb!.ip], 'asked on db\'s gateway');
  });

  it('other names go to the node\'s upstream (UDP and TCP); knit\'s names never do', async () => {
    const c2 = pods.c2!.ns;
    assert.deepEqual(addrs(await dig(c2, GW.app, 'example.test')), ['203.0.113.7']);
    assert.deepEqual(addrs(await dig(c2, GW.app, 'example.test', 'A', 'tcp')), ['203.0.113.7'], 'over TCP');
    const nx = await dig(c2, GW.app, 'nowhere.test');
    assert.equal(nx.rcode, 'NXDOMAIN', 'the upstream\'s own answer');
    assert.equal(nx.aa, false);
    assert.equal((await dig(c2, GW.app, 'nosuchcontainer')).rcode, 'NXDOMAIN');
    assert.ok(upstreamLog.includes('example.test'), upstreamLog);
    for (const n of ['web', 'api', 'nosuchcontainer', 'www.app.knit']) assert.ok(!upstreamLog.split('\n').includes(n), `${n} never reaches the upstream`);
  });

  it('a service record (knitctl service create writes it): the name answers its VIP, tasks.<name> the containers; knitctl dns ls shows all', async () => {
    const key = `${PREFIX}/services/app/api`;
    etcd.ctl(['put', key, JSON.stringify({ name: 'api', network: 'app', vips: ['10.240.0.200'], ports: [], id: 's1', created: new Date().toISOString() })]);
    await eventually(async () => addrs(await dig(pods.c2!.ns, GW.app, 'api'))[0] === '10.240.0.200', 5000, 'api answers its VIP on h2');
    assert.deepEqual(addrs(await dig(pods.web1!.ns, GW.app, 'api')), ['10.240.0.200'], 'and on h1');
    assert.deepEqual(addrs(await dig(pods.c2!.ns, GW.app, 'tasks.api')).sort(), [pods.api1!.ip, pods.api2!.ip].sort());
    const ls = await knitctl('dns', 'ls', '--network', 'app');
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^NETWORK\s+NAME\s+ADDRESS\s+SOURCE$/m);
    assert.match(ls.stdout, /^app\s+api\s+10\.240\.0\.200\s+service api \(VIP\)$/m);
    assert.match(ls.stdout, new RegExp(`^app\\s+api\\s+${pods.api1!.ip.replace(/\./g, '\\.')}\\s+alias of api1/eth0 on node h1$`, 'm'));
    assert.match(ls.stdout, new RegExp(`^app\\s+web\\s+${pods.web1!.ip.replace(/\./g, '\\.')}\\s+container web1/eth0 on node h1$`, 'm'));
    assert.ok(!/^db\s/m.test(ls.stdout), '--network app only');
    const bad = await knitctl('dns', 'ls', '--network', 'nosuch');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no network named nosuch/);
    etcd.ctl(['del', key]);
    await eventually(async () => addrs(await dig(pods.c2!.ns, GW.app, 'api')).length === 2, 5000, 'api answers its containers again');
  });

  it('clients outside knit networks are REFUSED; the resolver listens on gateway addresses only, never the underlay', async () => {
    await lab.ip(outside, ['route', 'add', '10.240.0.0/24', 'via', '192.168.74.2']);
    for (const name of ['example.test', 'web']) {
      const r = await dig(outside, GW.app, name);
      assert.equal(r.rcode, 'REFUSED', `${name} from outside: ${JSON.stringify(r)}`);
      assert.equal(addrs(r).length, 0);
    }
    assert.ok((await dig(outside, '192.168.74.2', 'example.test')).error, 'nothing answers on the underlay address');
    for (const n of nodes) {
      const ss = await lab.exec(n.host, 'ss', ['-Hlntu', 'sport', '=', ':53']);
      const local = ss.stdout.trim().split('\n').map((l) => l.split(/\s+/)[4]!).sort();
      assert.deepEqual([...new Set(local)], [`${GW.app}:53`, `${GW.db}:53`].sort(), `${n.name}: ${ss.stdout}`);
    }
  });

  it('malformed packets are dropped and counted; knitd keeps answering', async () => {
    const n = nodes[1]!;
    const before = await metrics(n);
    const r = await lab.exec(pods.c2!.ns, process.execPath, [CLIENT, 'junk', GW.app, '600', '7'], { env: { NODE_EXTRA_CA_CERTS: undefined } });
    assert.match(r.stdout, /"sent":600/);
    await eventually(async () => ((await metrics(n)).knit_dns_malformed_dropped_total ?? 0) - (before.knit_dns_malformed_dropped_total ?? 0) >= 600, 5000, 'dropped counter');
    assert.equal(n.knitd!.exitCode, null, 'knitd alive');
    assert.deepEqual(addrs(await dig(pods.c2!.ns, GW.app, 'web')), [pods.web1!.ip]);
    const m = await metrics(n);
    assert.ok((m.knit_dns_queries_total ?? 0) > 600 && (m.knit_dns_forwarded_total ?? 0) >= 2 && m.knit_dns_listeners === 2, JSON.stringify(m));
  });

  it('DEL: the name is NXDOMAIN on every host; the alias keeps its other holder', async () => {
    assert.equal((await plugin(nodes[0]!, 'app', 'DEL', 'web1', pods.web1!.ns)).code, 0);
    assert.equal((await plugin(nodes[0]!, 'app', 'DEL', 'api1', pods.api1!.ns)).code, 0);
    await eventually(async () => (await dig(pods.c2!.ns, GW.app, 'web')).rcode === 'NXDOMAIN', 5000, 'web gone on h2');
    assert.equal((await dig(pods.c2!.ns, GW.app, 'www')).rcode, 'NXDOMAIN', 'its aliases too');
    assert.deepEqual(addrs(await dig(pods.c2!.ns, GW.app, 'api')), [pods.api2!.ip]);
    assert.equal((await dig(pods.api2!.ns, GW.app, 'web')).rcode, 'NXDOMAIN');
    const ls = JSON.parse((await knitctl('dns', 'ls', '--json')).stdout) as any[];
    assert.ok(!ls.some((r) => r.name === 'web' && r.network === 'app'));
  });
});

// Without a datastore: plain knit-bridge networks on one host, `"resolver": true` in the conflist,
// knitd without --etcd-endpoints reading the records the plugin writes under --run-dir.
describe('knitd resolver without a datastore: knit-bridge networks on one host', function () {
  this.timeout(120_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let host: Netns;
  let knitd: ChildProcess | undefined;
  const log: string[] = [];
  const runDir = (): string => path.join(tmp, 'run');
  const conf = (name: string, subnet: string, extra: object = {}): Record<string, unknown> => ({
    cniVersion: '1.0.0', name, type: 'knit-bridge', bridge: `kb${name}`.slice(0, 15), isGateway: true, ipMasq: false, resolver: true, runDir: runDir(),
    ipam: { type: 'knit-host-local', dataDir: path.join(tmp, `ipam-${name}`), ranges: [[{ subnet }]] }, ...extra,
  });
  const call = (command: 'ADD' | 'DEL' | 'GC', c: Record<string, unknown>, id: string, pod: Netns, name = id): Promise<PluginOutput> =>
    lab.runPlugin(host, knit.bin('knit-bridge'), { command, containerId: id, netns: pod.path, ifName: 'eth0', path: [knit.binDir], conf: c, args: `K8S_POD_NAME=${name}`, env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') } });
  const dig = async (from: Netns, server: string, name: string): Promise<Answer> => {
    const r = await lab.exec(from, process.execPath, [CLIENT, 'query', server, name, 'A'], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
    try { return JSON.parse(r.stdout) as Answer; } catch { return { error: r.stdout + r.stderr }; }
  };
  const addrs = (a: Answer): string[] => (a.answers ?? []).map((x) => x.data);

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knitd', 'knit-bridge', 'knit-host-local']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-dns-local-'));
    host = await lab.netns('single');
    fs.writeFileSync(path.join(tmp, 'resolv.conf'), '');
    knitd = spawn('ip', ['netns', 'exec', host.name, knit.bin('knitd'), '--cni-socket-dir', path.join(tmp, 'cni'), '--run-dir', runDir(), '--dns-resolv-conf', path.join(tmp, 'resolv.conf'), '--log-level', 'debug'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    knitd.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  });

  after(async () => {
    knitd?.kill('SIGKILL');
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(`--- knitd log\n${log.join('').split('\n').slice(-30).join('\n')}`);
  });

  it('names of one network answered on its gateway, scoped, with the dns in the result; DEL and GC remove them', async () => {
    const web = await lab.pod('lweb');
    const cli = await lab.pod('lcli');
    const other = await lab.pod('lother');
    const c = conf('front', '10.243.0.0/24', { runtimeConfig: { aliases: { front: ['www'] } } });
    const a = await call('ADD', c, 'lweb', web, 'web');
    assert.equal(a.code, 0, a.stdout);
    assert.deepEqual(a.json.dns, { nameservers: ['10.243.0.1'], search: ['front.knit'] });
    const ipWeb = String(a.json.ips[0].address).split('/')[0]!;
    assert.equal((await call('ADD', conf('front', '10.243.0.0/24'), 'lcli', cli)).code, 0);
    assert.equal((await call('ADD', conf('back', '10.244.0.0/24'), 'lother', other, 'web')).code, 0, 'the same name on another network');
    await eventually(async () => addrs(await dig(cli, '10.243.0.1', 'web'))[0] === ipWeb, 10_000, 'web answered');
    assert.deepEqual(addrs(await dig(cli, '10.243.0.1', 'www')), [ipWeb], 'the alias');
    const otherIp = addrs(await dig(other, '10.244.0.1', 'web'));
    assert.equal(otherIp.length, 1);
    assert.notEqual(otherIp[0], ipWeb, 'back\'s web is its own');
    assert.equal((await dig(other, '10.244.0.1', 'lcli')).rcode, 'NXDOMAIN', 'front\'s names are not back\'s');
    // DEL: the record goes first; GC removes the record of an attachment the runtime no longer has.
    assert.equal((await call('DEL', c, 'lweb', web)).code, 0);
    await eventually(async () => (await dig(cli, '10.243.0.1', 'web')).rcode === 'NXDOMAIN', 5000, 'web gone');
    const gc = await lab.runPlugin(host, knit.bin('knit-bridge'), { command: 'GC', containerId: '', netns: '', ifName: '', path: [knit.binDir],
      conf: { ...conf('back', '10.244.0.0/24'), cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] }, env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') } });
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    await eventually(async () => (await dig(cli, '10.243.0.1', 'lcli')).rcode === 'NOERROR', 5000, 'front untouched');
    assert.deepEqual(fs.readdirSync(path.join(runDir(), 'dns', 'back')), [], 'back\'s stale record removed by GC');
  });
});
