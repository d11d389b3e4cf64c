// Named macvlan networks on 802.1Q VLANs (issue 12's `docker network create -d macvlan -o
// parent=ens33.120`), end to end under a kernel with 8021q (the kernel lane): etcd on the underlay,
// knitd on two hosts rendering the networks' conflists, knitctl creating and removing them, and
// the rendered plugin chain (knit-macvlan with knit-etcd-ipam) run as a runtime would. The VLAN
// parent is created by knit-macvlan on each host on first use; addresses come from the network's
// subnet cluster-wide.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, type Host, type Netns, type Switch } from '../lab/lab';
import { eventually } from '../lab/cni';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { conflistFile } from '../../pkg/network/conflist';
import { knitBinDir, outcome, requireExecutable, requireVlanKernel } from './lane';

const UPLINK = 'ens33';
const PREFIX = '/knv';

interface Node { name: string; host: Host; dir: string; knitd?: ChildProcess; log: string[] }

describe('named macvlan networks on VLAN parents (knitctl, knitd, kernel lane)', function () {
  this.timeout(240_000);
  let lab: Lab;
  let sw: Switch;
  let etcd: EtcdCluster;
  let endpoint: string;
  let tmp: string;
  const nodes: Node[] = [];
  const bin = (name: string): string => path.join(knitBinDir(), name);

  async function knitctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return lab.exec(nodes[0]!.host, bin('knitctl'), ['--etcd-endpoints', endpoint, '--etcd-prefix', PREFIX, ...args], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
  }

  const confPath = (n: Node, net: string): string => path.join(n.dir, 'net.d', conflistFile(net));

  /**
   * Runs the network's main plugin (plugins[0] of the rendered conflist) on the node as a runtime
   * would; the launcher hands it to the node's knitd (a Node start costs ~1 s in the lane).
   */
  async function plugin(n: Node, net: string, command: 'ADD' | 'DEL', id: string, pod: Netns): Promise<{ code: number; json: any; stdout: string; stderr: string }> {
    const cl = JSON.parse(fs.readFileSync(confPath(n, net), 'utf8'));
    const conf = { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0] };
    return lab.runPlugin(n.host, bin(conf.type), {
      command, conf, containerId: id, netns: pod.path, ifName: 'eth0', path: [knitBinDir()],
      env: { KNIT_CNI_SOCKET_DIR: path.join(n.dir, 'cni'), KNIT_LOG_LEVEL: 'warn' },
    });
  }

  async function vlanOf(h: Host, dev: string): Promise<number | undefined> {
    const r = await lab.exec(null, 'ip', ['-n', h.name, '-d', '-json', 'link', 'show', 'dev', dev], { allowFail: true });
    return r.code === 0 ? (JSON.parse(r.stdout) as any[])[0]?.linkinfo?.info_data?.id : undefined;
  }

  before(async function () {
    requireVlanKernel(this);
    requireEtcd(this);
    for (const exe of ['knitd', 'knitctl', 'knit-macvlan', 'knit-etcd-ipam']) requireExecutable(this, exe);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-kernel-named-'));
    sw = await lab.switch();
    const eh = await lab.host('etcd', sw, { address: '192.168.81.100/24' });
    etcd = await EtcdCluster.start({ netns: eh, host: '192.168.81.100', readyTimeoutMs: 120_000 });
    endpoint = etcd.endpoints[0]!;
    for (const [i, name] of ['a', 'b'].entries()) {
      const host = await lab.host(name, sw, { ifName: UPLINK, address: `192.168.81.${i + 1}/24` });
      const dir = fs.mkdtempSync(path.join(tmp, `${name}-`));
      const n: Node = { name, host, dir, log: [] };
      n.knitd = spawn('ip', ['netns', 'exec', host.name, bin('knitd'), '--cni-socket-dir', path.join(dir, 'cni'), '--etcd-endpoints', endpoint,
        '--etcd-prefix', PREFIX, '--node-name', name, '--iface', UPLINK, '--run-dir', path.join(dir, 'run'), '--state-dir', path.join(dir, 'state'),
        '--cni-conf-dir', path.join(dir, 'net.d'), '--lease-ttl', '10', '--resync-interval', '5', '--log-level', 'info'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
      n.knitd.stderr!.on('data', (d: Buffer) => n.log.push(d.toString()));
      nodes.push(n);
    }
    for (const n of nodes) await eventually(() => fs.existsSync(path.join(n.dir, 'run', 'networks', 'node.json')), 60_000, `knitd on ${n.name} up (log: ${n.log.join('')})`);
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

  it('-d macvlan -o parent=ens33.120 on two hosts: VLAN parents made, addresses cluster-wide, pods reach each other across hosts; rm removes the conflists', async () => {
    for (const [vlan, subnet] of [[120, '10.120.0.0/24'], [121, '10.121.0.0/24']] as const) {
      const r = await knitctl('network', 'create', '-d', 'macvlan', '--subnet', subnet, '-o', `parent=${UPLINK}.${vlan}`, `vlan${vlan}`);
      assert.equal(r.code, 0, `knitctl network create vlan${vlan}: ${r.stderr}`);
    }
    for (const n of nodes) for (const net of ['vlan120', 'vlan121']) await eventually(() => fs.existsSync(confPath(n, net)), 30_000, `${net}'s conflist on ${n.name}`);
    const main = JSON.parse(fs.readFileSync(confPath(nodes[0]!, 'vlan120'), 'utf8')).plugins[0];
    assert.equal(main.type, 'knit-macvlan');
    assert.equal(main.master, UPLINK);
    assert.equal(main.vlan, 120);
    assert.equal(main.ipam.type, 'knit-etcd-ipam');

    const pods: Record<string, { ns: Netns; ip: string }> = {};
    for (const [n, net] of [[nodes[0]!, 'vlan120'], [nodes[1]!, 'vlan120'], [nodes[0]!, 'vlan121'], [nodes[1]!, 'vlan121']] as const) {
      const id = `${n.name}-${net}`;
      const ns = await lab.pod(id);
      const o = await plugin(n, net, 'ADD', id, ns);
      assert.equal(o.code, 0, `ADD ${id}: ${outcome(o)}`);
      pods[id] = { ns, ip: String(o.json.ips[0].address).split('/')[0]! };
    }
    for (const n of nodes) for (const vlan of [120, 121]) assert.equal(await vlanOf(n.host, `${UPLINK}.${vlan}`), vlan, `${UPLINK}.${vlan} on ${n.name}`);
    assert.notEqual(pods['a-vlan120']!.ip, pods['b-vlan120']!.ip, 'cluster-wide addresses are distinct across hosts');
    for (const [from, to] of [['a-vlan120', 'b-vlan120'], ['b-vlan121', 'a-vlan121']]) {
      const p = await lab.exec(pods[from]!.ns, 'ping', ['-c', '1', '-W', '2', pods[to]!.ip], { allowFail: true });
      assert.equal(p.code, 0, `${from} -> ${to} (${pods[to]!.ip}) across hosts on its VLAN: ${p.stdout}${p.stderr}`);
    }

    const busy = await knitctl('network', 'rm', 'vlan120');
    assert.notEqual(busy.code, 0, 'rm is refused while containers are attached');
    for (const [id, { ns }] of Object.entries(pods)) {
      const [name, net] = [id.slice(0, 1), id.slice(2)];
      const o = await plugin(nodes.find((n) => n.name === name)!, net, 'DEL', id, ns);
      assert.equal(o.code, 0, `DEL ${id}: ${outcome(o)}`);
    }
    for (const net of ['vlan120', 'vlan121']) {
      const r = await knitctl('network', 'rm', net);
      assert.equal(r.code, 0, `knitctl network rm ${net}: ${r.stderr}`);
    }
    for (const n of nodes) for (const net of ['vlan120', 'vlan121']) await eventually(() => !fs.existsSync(confPath(n, net)), 30_000, `${net}'s conflist gone from ${n.name}`);
  });
});
