// knitd's overlay agent on the Kubernetes API (--datastore kubernetes): the test API server
// (test/lab/kube-api.ts) runs in this process on a unix socket, relayed onto the lab switch from
// a lab namespace (no link in the root namespace); two hosts run knitd (built executables) with a kubeconfig
// pointing at it. A node without podCIDR gets no lease file (the plugin answers 11) until the
// podCIDR is assigned; the nodes publish their annotations; pods ping across hosts; a restarted
// knitd keeps its subnet and annotations without writing to the API and rebuilds a deleted VTEP
// with the same MAC; a deleted Node's routes are removed from the other host. Then a host-gw
// cluster on the same API server: each podCIDR routed via the peer's underlay address, and the
// VTEP a former vxlan node left behind removed; then knitd's IPAM GC as a process, with etcd on k3.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput, type Switch } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { KubeApiServer, relayToUnix } from '../lab/kube-api';
import { EtcdCluster, haveEtcd } from '../lab/etcd';
import { ANNOTATIONS, KNIT_ANNOTATION_PREFIX } from '../../pkg/datastore/kubernetes';

/** The vxlan backend's VTEP MAC as a Node annotation (its backend data key vtepMac). */
const VTEP_MAC = 'knit.dev/vtep-mac';

const NET = '10.247.0.0/16';
const API_ADDR = '192.168.247.254';

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

describe('knitd overlay agent with the kubernetes datastore', function () {
  this.timeout(300_000);
  let knit: KnitBuild;
  let lab: Lab;
  let sw: Switch;
  let api: KubeApiServer;
  let tmp: string;
  let kubeconfig: string;
  let netConf: string;
  const nodes: Node[] = [];

  /** `gc`: the IPAM GC's flags; without them it is off (it would read the machine's /etc/cni/net.d). */
  function startKnitd(n: Node, conf = netConf, gc: string[] = ['--ipam-gc-interval', '0']): void {
    n.log = [];
    const proc = spawn('ip', ['netns', 'exec', n.host.name, knit.bin('knitd'), '--cni-socket-dir', n.sockDir, '--datastore', 'kubernetes', ...gc,
      '--kubeconfig', kubeconfig, '--net-conf', conf, '--node-name', n.name, '--iface', 'eth0', '--run-dir', n.runDir,
      '--state-dir', n.stateDir, '--resync-interval', '5', '--log-level', 'debug'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    proc.stderr!.on('data', (d: Buffer) => n.log.push(d.toString()));
    n.knitd = proc;
  }

  /** SIGTERM, then the exit status (SIGKILL and a failure when knitd has not exited in 10 s). */
  async function stopKnitd(n: Node): Promise<number | null> {
    const proc = n.knitd!;
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), 10_000); })]);
    clearTimeout(timer);
    if (code === 'timeout') {
      proc.kill('SIGKILL');
      throw new Error(`knitd on ${n.name} did not exit 10 s after SIGTERM (log: ${n.log.join('').slice(-2000)})`);
    }
    return code;
  }

  function plugin(n: Node, command: 'ADD' | 'DEL', id: string, pod: Netns): Promise<PluginOutput> {
    return lab.runPlugin(n.host, knit.bin('knit-overlay'), {
      command, containerId: id, netns: pod.path, ifName: 'eth0', path: [knit.binDir],
      conf: { cniVersion: '1.1.0', name: 'overlay', type: 'knit-overlay', runDir: n.runDir, ipam: { type: 'knit-host-local', dataDir: n.dataDir } },
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
  }

  async function addPod(n: Node): Promise<void> {
    const id = `${n.name}-p${n.pods.length}`;
    const ns = await lab.pod(id);
    const r = await plugin(n, 'ADD', id, ns);
    assert.equal(r.code, 0, `ADD ${id}: ${r.stdout} ${r.stderr}`);
    n.pods.push({ ns, ip: r.json.ips[0].address.split('/')[0], id });
  }

  const knitRoutes = async (n: Node): Promise<string[]> => (await lab.ipJson(n.host, ['route', 'show', 'proto', '107'])).map((r: any) => r.dst).sort();
  const leaseFile = (n: Node): string => path.join(n.runDir, 'lease.json');
  const readLease = (n: Node): { subnet: string; mtu: number; backend: string; updated: string } => JSON.parse(fs.readFileSync(leaseFile(n), 'utf8'));
  const knitAnnotations = (name: string): Record<string, string> =>
    Object.fromEntries(Object.entries(api.node(name)?.metadata.annotations ?? {}).filter(([k]) => k.startsWith(KNIT_ANNOTATION_PREFIX)));

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knitd', 'knit-overlay', 'knit-host-local', 'knit-etcd-ipam']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-overlay-kube-'));
    sw = await lab.switch();
    // The API server runs in this process on a unix socket; an "api" lab host relays TCP to it,
    // so the hosts reach it over the underlay and the root namespace gets no link.
    const apiHost = await lab.host('kapi', sw, { address: `${API_ADDR}/24` });
    api = new KubeApiServer();
    await api.startUnix(path.join(tmp, 'kube-api.sock'), `http://${API_ADDR}:6443`);
    const relay = relayToUnix(apiHost.name, API_ADDR, 6443, path.join(tmp, 'kube-api.sock'));
    await new Promise<void>((resolve, reject) => {
      relay.stdout!.once('data', () => resolve());
      relay.once('exit', (c) => reject(new Error(`api relay exited ${c}`)));
    });
    kubeconfig = path.join(tmp, 'kubeconfig');
    fs.writeFileSync(kubeconfig, api.kubeconfig());
    netConf = path.join(tmp, 'net-conf.json');
    fs.writeFileSync(netConf, JSON.stringify({ network: NET, subnetLen: 24, backend: { type: 'vxlan', vni: 47 } }));
    for (let i = 1; i <= 2; i++) {
      const host = await lab.host(`k${i}`, sw, { address: `192.168.247.${i}/24` });
      const d = fs.mkdtempSync(path.join(tmp, `k${i}-`));
      nodes.push({ name: `k${i}`, host, runDir: path.join(d, 'run'), stateDir: path.join(d, 'state'), sockDir: path.join(d, 'cni'), dataDir: path.join(d, 'ipam'), log: [], pods: [] });
    }
  });

  after(async () => {
    for (const n of nodes) n.knitd?.kill('SIGKILL');
    await api?.close();
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('no lease while the podCIDR is unassigned (the plugin answers 11); then the assigned one', async () => {
    const [k1, k2] = nodes as [Node, Node];
    api.addNode('k1', { podCIDR: '10.247.1.0/24' });
    api.addNode('k2');
    startKnitd(k1);
    startKnitd(k2);
    await eventually(() => fs.existsSync(leaseFile(k1)), 30_000, `k1 lease.json (knitd log: ${k1.log.join('')})`);
    assert.equal(JSON.parse(fs.readFileSync(leaseFile(k1), 'utf8')).subnet, '10.247.1.0/24');
    await eventually(() => k2.log.join('').includes('no podCIDR assigned yet'), 30_000, `k2's podCIDR error (log: ${k2.log.join('')})`);
    assert.ok(!fs.existsSync(leaseFile(k2)), 'no lease.json on k2');
    const early = await lab.pod('k2-early');
    const r = await plugin(k2, 'ADD', 'k2-early', early);
    assert.notEqual(r.code, 0);
    assert.equal(r.json?.code, 11, r.stdout);
    api.setPodCIDR('k2', '10.247.2.0/24');
    await eventually(() => fs.existsSync(leaseFile(k2)), 60_000, `k2 lease.json (knitd log: ${k2.log.join('')})`);
    assert.equal(JSON.parse(fs.readFileSync(leaseFile(k2), 'utf8')).subnet, '10.247.2.0/24');
    const ann = api.node('k1')!.metadata.annotations!;
    assert.equal(ann[ANNOTATIONS.publicIp], '192.168.247.1');
    assert.match(ann[VTEP_MAC]!, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    assert.equal(ann[ANNOTATIONS.backend], 'vxlan');
  });

  it('pods ping across the two hosts', async () => {
    const [k1, k2] = nodes as [Node, Node];
    await eventually(async () => (await knitRoutes(k1)).includes('10.247.2.0/24') && (await knitRoutes(k2)).includes('10.247.1.0/24'), 30_000, 'routes to the peer');
    await addPod(k1);
    await addPod(k2);
    assert.ok(await lab.ping(k1.pods[0]!.ns, k2.pods[0]!.ip, 2), `k1 pod -> k2 pod (k1 log: ${k1.log.join('').slice(-2000)})`);
    assert.ok(await lab.ping(k2.pods[0]!.ns, k1.pods[0]!.ip, 2), 'k2 pod -> k1 pod');
  });

  it('knitd restart keeps the node\'s podCIDR subnet and annotations, and pods keep connectivity', async () => {
    const [k1, k2] = nodes as [Node, Node];
    const vxlanLink = async (): Promise<any> => (await lab.ipJson(k1.host, ['-d', 'link', 'show', 'type', 'vxlan']))[0];
    await eventually(() => k1.log.join('').includes('overlay agent up'), 30_000, `k1 agent up (log: ${k1.log.join('').slice(-2000)})`);
    const lease0 = readLease(k1);
    const ann0 = knitAnnotations('k1');
    const rv0 = api.node('k1')!.metadata.resourceVersion;
    const dev0 = await vxlanLink();
    assert.equal(dev0?.ifname, 'knit.47');
    assert.equal(dev0.address, ann0[VTEP_MAC], 'the VTEP MAC is the published one');
    const mark = api.requests.length;

    // Stopped, knitd leaves the datapath up: the device, the route to the peer, the pods' traffic.
    assert.equal(await stopKnitd(k1), 0, `knitd exit status after SIGTERM (log: ${k1.log.join('').slice(-2000)})`);
    const dev1 = await vxlanLink();
    assert.equal(dev1?.ifindex, dev0.ifindex, 'knit.47 kept (same ifindex) while knitd is down');
    assert.ok((await knitRoutes(k1)).includes('10.247.2.0/24'), 'route to k2 kept while knitd is down');
    assert.ok(await lab.ping(k1.pods[0]!.ns, k2.pods[0]!.ip, 2), 'k1 pod -> k2 pod while knitd is down');
    assert.deepEqual(readLease(k1), lease0, 'lease.json kept while knitd is down');

    // What the restart must restore: the device (and with it the route, neighbour and FDB) gone.
    await lab.ip(k1.host, ['link', 'del', 'knit.47']);
    assert.equal(await vxlanLink(), undefined);
    assert.ok(!(await lab.ping(k1.pods[0]!.ns, k2.pods[0]!.ip, 1)), 'no path to k2 without knit.47');

    startKnitd(k1);
    await eventually(() => fs.existsSync(leaseFile(k1)) && readLease(k1).updated !== lease0.updated, 30_000, `k1 lease.json rewritten (log: ${k1.log.join('')})`);
    const lease1 = readLease(k1);
    assert.equal(lease1.subnet, lease0.subnet);
    assert.equal(lease1.subnet, '10.247.1.0/24');
    assert.equal(lease1.mtu, lease0.mtu);
    await eventually(async () => (await knitRoutes(k1)).includes('10.247.2.0/24'), 30_000, `route to k2 restored (log: ${k1.log.join('').slice(-2000)})`);
    const dev2 = await vxlanLink();
    assert.notEqual(dev2.ifindex, dev0.ifindex, 'knit.47 was recreated');
    assert.equal(dev2.address, dev0.address, 'the recreated VTEP has the same MAC');
    // Nothing changed, so nothing was written to the Node: same annotations, no PATCH at all.
    assert.deepEqual(knitAnnotations('k1'), ann0);
    assert.equal(api.node('k1')!.metadata.resourceVersion, rv0, 'Node k1 not modified by the restart');
    assert.deepEqual(api.requests.slice(mark).filter((r) => !r.startsWith('GET ')), [], 'no write request to the API');
    assert.ok(await lab.ping(k1.pods[0]!.ns, k2.pods[0]!.ip, 2), `k1 pod -> k2 pod after the restart (log: ${k1.log.join('').slice(-2000)})`);
    assert.ok(await lab.ping(k2.pods[0]!.ns, k1.pods[0]!.ip, 2), 'k2 pod -> k1 pod after the restart');
  });

  it('a changed underlay address is published (knit.dev/public-ip), the VTEP follows it, and pods keep talking', async () => {
    const [k1, k2] = nodes as [Node, Node];
    // Renumbered (the old address goes first: deleting a primary address also deletes secondaries).
    await lab.ip(k1.host, ['addr', 'del', '192.168.247.1/24', 'dev', 'eth0']);
    await lab.ip(k1.host, ['addr', 'add', '192.168.247.11/24', 'dev', 'eth0']);
    await eventually(() => knitAnnotations('k1')[ANNOTATIONS.publicIp] === '192.168.247.11', 15_000, `k1 publishes its new address (log: ${k1.log.join('').slice(-2000)})`);
    await eventually(async () => {
      const [dev] = await lab.ipJson(k1.host, ['-d', 'link', 'show', 'type', 'vxlan']); // none for a moment while it is rebuilt
      return dev?.ifname === 'knit.47' && dev.linkinfo?.info_data?.local === '192.168.247.11';
    }, 15_000, `k1's VTEP uses the new local address (log: ${k1.log.join('').slice(-2000)})`);
    const vtep1 = knitAnnotations('k1')[VTEP_MAC]!;
    const fdb = async (): Promise<any[]> => JSON.parse((await lab.exec(k2.host, 'bridge', ['-json', 'fdb', 'show', 'dev', 'knit.47'])).stdout || '[]');
    await eventually(async () => (await fdb()).some((f) => f.mac === vtep1 && f.dst === '192.168.247.11'),
      15_000, `k2's FDB sends k1's VTEP to the new address (k2 log: ${k2.log.join('').slice(-2000)})`);
    assert.ok(!(await fdb()).some((f) => f.dst === '192.168.247.1'), 'no FDB entry to the old address');
    assert.ok(await lab.ping(k1.pods[0]!.ns, k2.pods[0]!.ip, 2), 'k1 pod -> k2 pod over the new underlay address');
    assert.ok(await lab.ping(k2.pods[0]!.ns, k1.pods[0]!.ip, 2), 'k2 pod -> k1 pod');
  });

  it('a deleted Node\'s routes are removed from the other host', async () => {
    const [k1, k2] = nodes as [Node, Node];
    // Only a running agent can remove it: the route is there before, k1's knitd is up throughout.
    await eventually(async () => (await knitRoutes(k1)).includes('10.247.2.0/24'), 30_000, `k1 routes k2's podCIDR first (log: ${k1.log.join('').slice(-2000)})`);
    k2.knitd?.kill('SIGTERM');
    api.deleteNode('k2');
    await eventually(async () => !(await knitRoutes(k1)).includes('10.247.2.0/24'), 30_000, `k2's route gone from k1 (log: ${k1.log.join('').slice(-2000)})`);
    assert.equal(k1.knitd?.exitCode, null, "k1's knitd is still running");
  });

  // A cluster of its own on the same API server and underlay, after the vxlan one is gone.
  describe('host-gw backend on the kubernetes datastore', () => {
    const hg: Node[] = [];

    before(async () => {
      for (const n of nodes) if (n.knitd) await stopKnitd(n);
      for (const n of api.list()) api.deleteNode(n.metadata.name);
      const conf = path.join(tmp, 'net-conf-host-gw.json');
      fs.writeFileSync(conf, JSON.stringify({ network: NET, subnetLen: 24, backend: { type: 'host-gw' } }));
      for (const i of [3, 4]) {
        const host = await lab.host(`k${i}`, sw, { address: `192.168.247.${i}/24` });
        const d = fs.mkdtempSync(path.join(tmp, `k${i}-`));
        hg.push({ name: `k${i}`, host, runDir: path.join(d, 'run'), stateDir: path.join(d, 'state'), sockDir: path.join(d, 'cni'), dataDir: path.join(d, 'ipam'), log: [], pods: [] });
        api.addNode(`k${i}`, { podCIDR: `10.247.${i}.0/24` });
      }
      // k3 was a vxlan node before (its VTEP and a route on it left behind): host-gw removes them.
      await lab.ip(hg[0]!.host, ['link', 'add', 'knit.47', 'type', 'vxlan', 'id', '47', 'dstport', '4789', 'local', '192.168.247.3', 'dev', 'eth0', 'nolearning']);
      await lab.ip(hg[0]!.host, ['link', 'set', 'knit.47', 'up']);
      await lab.ip(hg[0]!.host, ['route', 'add', '10.247.9.0/24', 'via', '10.247.9.0', 'dev', 'knit.47', 'onlink', 'proto', '107']);
      // Not knit's (another name): left alone.
      await lab.ip(hg[0]!.host, ['link', 'add', 'vx-other', 'type', 'vxlan', 'id', '48', 'dstport', '4789', 'dev', 'eth0']);
      for (const n of hg) startKnitd(n, conf);
    });

    after(() => {
      for (const n of hg) n.knitd?.kill('SIGKILL');
    });

    it('each host routes the other\'s podCIDR via the other\'s underlay address (proto 107); the Nodes say host-gw', async () => {
      const [k3, k4] = hg as [Node, Node];
      for (const [n, peer, i] of [[k3, k4, 3], [k4, k3, 4]] as const) {
        await eventually(() => fs.existsSync(leaseFile(n)), 30_000, `${n.name} lease.json (knitd log: ${n.log.join('')})`);
        const lease = readLease(n);
        assert.equal(lease.subnet, `10.247.${i}.0/24`);
        assert.equal(lease.backend, 'host-gw');
        const [eth0] = await lab.ipJson(n.host, ['link', 'show', 'eth0']);
        assert.equal(lease.mtu, eth0.mtu, 'host-gw: pods get the underlay MTU, no VXLAN overhead');
        const peerSubnet = `10.247.${7 - i}.0/24`;
        await eventually(async () => (await knitRoutes(n)).includes(peerSubnet), 30_000, `${n.name}'s route to ${peer.name} (log: ${n.log.join('').slice(-2000)})`);
        assert.deepEqual(await knitRoutes(n), [peerSubnet], `${n.name}: knit's routes`);
        const routes = (await lab.ipJson(n.host, ['route', 'show', peerSubnet])).map((r: any) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev, protocol: r.protocol, flags: r.flags }));
        assert.deepEqual(routes, [{ dst: peerSubnet, gateway: peer.host.address, dev: 'eth0', protocol: '107', flags: [] }]);
        assert.deepEqual((await lab.ipJson(n.host, ['link', 'show', 'type', 'vxlan'])).map((l: any) => l.ifname), n === k3 ? ['vx-other'] : [],
          `${n.name}: no knit vxlan device (k3's old knit.47 removed, another vxlan kept)`);
        assert.deepEqual(knitAnnotations(n.name), { [ANNOTATIONS.publicIp]: n.host.address, [ANNOTATIONS.backend]: 'host-gw' }, `${n.name}'s knit.dev/ annotations (no vtep-mac)`);
      }
    });

    it('pods ping across the two hosts', async () => {
      const [k3, k4] = hg as [Node, Node];
      await addPod(k3);
      await addPod(k4);
      assert.ok(await lab.ping(k3.pods[0]!.ns, k4.pods[0]!.ip, 2), `k3 pod -> k4 pod (k3 log: ${k3.log.join('').slice(-2000)})`);
      assert.ok(await lab.ping(k4.pods[0]!.ns, k3.pods[0]!.ip, 2), 'k4 pod -> k3 pod');
    });

    it('knitd frees the knit-etcd-ipam addresses of pods gone from its node (--cni-conf-dir, --ipam-gc-*)', async function () {
      if (!haveEtcd()) { console.log('      (skipped: no /usr/bin/etcd; scripts/bootstrap installs etcd-server)'); this.skip(); }
      const k3 = hg[0]!;
      const etcd = await EtcdCluster.start({ netns: k3.host }); // on k3's own loopback
      try {
        const confDir = fs.mkdtempSync(path.join(tmp, 'k3-net.d-'));
        const ipam = { type: 'knit-etcd-ipam', nodeName: 'k3', etcd: { endpoints: etcd.endpoints }, ranges: [[{ subnet: '10.250.0.0/24' }]] };
        const conflist = { cniVersion: '1.1.0', name: 'gcnet', plugins: [{ type: 'bridge', bridge: 'gc0', ipam }] };
        fs.writeFileSync(path.join(confDir, '50-gcnet.conflist'), JSON.stringify(conflist));
        const addFor = async (cid: string, name: string): Promise<void> => {
          const uid = api.pod('default', name)!.metadata.uid;
          const r = await lab.runPlugin(k3.host, knit.bin('knit-etcd-ipam'), {
            command: 'ADD', containerId: cid, netns: '/run/netns/none', ifName: 'eth0', path: [knit.binDir],
            args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_UID=${uid}`, conf: { ...conflist.plugins[0], name: conflist.name, cniVersion: conflist.cniVersion },
          });
          assert.equal(r.code, 0, `ADD ${cid}: ${r.stdout} ${r.stderr}`);
        };
        api.addPod('default', 'alive', { nodeName: 'k3' });
        api.addPod('default', 'doomed', { nodeName: 'k3' });
        await addFor('c-alive', 'alive');
        await addFor('c-doomed', 'doomed');
        api.deletePod('default', 'doomed');
        const holders = (): string[] => [...etcd.dump('/knit/ipam/gcnet/attach/').keys()].map((k) => k.split('/').pop()!).sort();
        assert.deepEqual(holders(), ['c-alive:eth0', 'c-doomed:eth0']);
        await stopKnitd(k3);
        const t0 = Date.now();
        startKnitd(k3, path.join(tmp, 'net-conf-host-gw.json'), ['--cni-conf-dir', confDir, '--ipam-gc-interval', '1', '--ipam-gc-grace', '1']);
        await eventually(() => holders().length === 1, 20_000, `c-doomed released (knitd log: ${k3.log.join('').slice(-3000)})`);
        assert.deepEqual(holders(), ['c-alive:eth0'], 'the pod that exists keeps its address');
        assert.ok(Date.now() - t0 >= 2000, 'not before the second pass, a grace period after the first');
        // The release is in etcd before its log line reaches us through knitd's stderr pipe.
        const said = /ipam gc: network gcnet: released 10\.250\.0\.\d+ of c-doomed \(eth0\): pod default\/doomed no longer exists on node k3/;
        await eventually(() => said.test(k3.log.join('')), 5000, `knitd logs the release (log: ${k3.log.join('').slice(-2000)})`);
        assert.ok(api.requests.some((r) => r.startsWith('GET /api/v1/pods?') && r.includes('fieldSelector=spec.nodeName%3Dk3')), 'lists its node\'s pods only');
      } finally {
        await etcd.stop();
      }
    });
  });
});
