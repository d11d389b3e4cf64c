// knitd's overlay agent on the Kubernetes API (--datastore kubernetes): the test API server
// (test/lab/kube-api.ts) runs in this process, reachable from the lab hosts through a veth from
// this namespace onto the lab switch; two hosts run knitd (built executables) with a kubeconfig
// pointing at it. A node without podCIDR gets no lease file (the plugin answers 11) until the
// podCIDR is assigned; the nodes publish their annotations; pods ping across hosts; a deleted
// Node's routes are removed from the other host.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput, type Switch } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { KubeApiServer, relayToUnix } from '../lab/kube-api';
import { ANNOTATIONS } from '../../pkg/datastore/kubernetes';

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

  function startKnitd(n: Node): void {
    n.log = [];
    const proc = spawn('ip', ['netns', 'exec', n.host.name, knit.bin('knitd'), '--cni-socket-dir', n.sockDir, '--datastore', 'kubernetes',
      '--kubeconfig', kubeconfig, '--net-conf', netConf, '--node-name', n.name, '--iface', 'eth0', '--run-dir', n.runDir,
      '--state-dir', n.stateDir, '--resync-interval', '5', '--log-level', 'debug'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    proc.stderr!.on('data', (d: Buffer) => n.log.push(d.toString()));
    n.knitd = proc;
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

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knitd', 'knit-overlay', 'knit-host-local']);
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
    assert.match(ann[ANNOTATIONS.vtepMac]!, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
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

  it('a deleted Node\'s routes are removed from the other host', async () => {
    const [k1, k2] = nodes as [Node, Node];
    k2.knitd?.kill('SIGTERM');
    api.deleteNode('k2');
    await eventually(async () => !(await knitRoutes(k1)).includes('10.247.2.0/24'), 30_000, `k2's route gone from k1 (log: ${k1.log.join('').slice(-2000)})`);
  });
});
