// The encrypted pod network end to end in the kernel lane: etcd on the underlay, knitd on two
// hosts with `encrypted: true`, a pod on each through knit-overlay. The leases carry the public
// keys, pods ping across at MTU 1410, and `knitctl key rotate` during a TCP stream moves both
// nodes to the new generation (knitd follows the datastore's record, installs, publishes,
// switches, retires) without breaking the stream. No secret reaches etcd.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type Switch } from '../lab/lab';
import { eventually } from '../lab/cni';
import { EtcdCluster, requireEtcd, ETCDCTL_BIN } from '../lab/etcd';
import { probeEsp } from '../../pkg/agent/backend/esp';
import { knitBinDir, requireExecutable } from './lane';
import { iperf, startCapture, UPLINK } from './encryption-lab';

interface Node { name: string; host: Host; runDir: string; stateDir: string; knitd?: ChildProcess; log: string[]; pod?: Netns; ip?: string }

describe('knitd with an encrypted pod network (kernel lane)', function () {
  this.timeout(240_000);
  let lab: Lab;
  let tmp: string;
  let sw: Switch;
  let etcd: EtcdCluster;
  let endpoint: string;
  const nodes: Node[] = [];
  let bin: (n: string) => string;

  before(async function () {
    requireRoot(this);
    requireEtcd(this);
    if (probeEsp(null).length) { console.log('      skipped: this kernel lacks ESP/AES-GCM; run it in the kernel lane'); this.skip(); }
    for (const e of ['knitd', 'knitctl', 'knit-overlay']) requireExecutable(this, e);
    bin = (n) => path.join(knitBinDir(), n);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-kernel-esp-knitd-'));
    sw = await lab.switch('swk');
    const eh = await lab.host('etcdk', sw, { address: '192.168.65.100/24', ifName: UPLINK });
    etcd = await EtcdCluster.start({ netns: eh, host: '192.168.65.100' });
    endpoint = etcd.endpoints[0]!;
    for (let i = 1; i <= 2; i++) {
      const host = await lab.host(`k${i}`, sw, { address: `192.168.65.${i}/24`, ifName: UPLINK });
      const d = fs.mkdtempSync(path.join(tmp, `k${i}-`));
      nodes.push({ name: `k${i}`, host, runDir: path.join(d, 'run'), stateDir: path.join(d, 'state'), log: [] });
    }
  });

  after(async () => {
    for (const n of nodes) n.knitd?.kill('SIGKILL');
    await etcd?.stop();
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') for (const n of nodes) console.log(`--- knitd ${n.name}\n${n.log.join('').split('\n').slice(-25).join('\n')}`);
  });

  // knitctl starts slowly under UML on a loaded host: more than lab.exec's default 30 s was seen.
  const ctl = (args: string[]) => lab.exec(nodes[0]!.host, bin('knitctl'), ['--etcd-endpoints', endpoint, ...args], { env: { NODE_EXTRA_CA_CERTS: undefined }, timeoutMs: 120_000 });
  const status = (n: Node): any => { try { return JSON.parse(fs.readFileSync(path.join(n.runDir, 'status.json'), 'utf8')); } catch { return null; } };

  it('two knitd nodes publish their keys, program ESP, and their pods ping across at MTU 1410', async () => {
    const net = path.join(tmp, 'net.json');
    fs.writeFileSync(net, JSON.stringify({ network: '10.218.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1, encrypted: true } }));
    await ctl(['pod-network', 'set', net]);
    for (const n of nodes) {
      const p = spawn('ip', ['netns', 'exec', n.host.name, bin('knitd'), '--cni-socket-dir', path.join(tmp, `${n.name}-sock`), '--etcd-endpoints', endpoint,
        '--node-name', n.name, '--iface', UPLINK, '--run-dir', n.runDir, '--state-dir', n.stateDir, '--resync-interval', '10'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
      p.stderr!.on('data', (d: Buffer) => n.log.push(d.toString()));
      n.knitd = p;
    }
    for (const n of nodes) {
      await eventually(() => (status(n)?.encryption?.peers?.length ?? 0) === 1, 60_000, `${n.name} keyed its peer (log: ${n.log.join('').slice(-800)})`);
      const pod = (n.pod = await lab.pod(`${n.name}-pod`));
      const r = await lab.runPlugin(n.host, bin('knit-overlay'), {
        command: 'ADD', containerId: `${n.name}-c`, netns: pod.path, ifName: 'eth0', path: [knitBinDir()],
        // isolation off: the lane's nftables cannot load the isolation table (docs/kernel-lane.md).
        conf: { cniVersion: '1.1.0', name: 'pods', type: 'knit-overlay', runDir: n.runDir, isolation: false, ipam: { type: 'knit-host-local', dataDir: path.join(tmp, `${n.name}-ipam`) } },
        env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
      });
      assert.equal(r.code, 0, `ADD on ${n.name}: ${r.stdout} ${r.stderr}`);
      n.ip = r.json.ips[0].address.split('/')[0];
      assert.equal(JSON.parse(fs.readFileSync(path.join(n.runDir, 'lease.json'), 'utf8')).mtu, 1410);
    }
    const [a, b] = nodes as [Node, Node];
    const cap = startCapture(sw, [4789, 4799]);
    assert.ok(await lab.ping(a.pod!, b.ip!, 3), 'pod a -> pod b');
    const c = cap.stop();
    assert.ok(c.esp > 0 && c.clearVxlan === 0, JSON.stringify(c));
    // The leases carry public keys and generations, nothing else of the keys.
    const dump = await lab.exec(nodes[0]!.host, ETCDCTL_BIN, ['--endpoints', endpoint, 'get', '--prefix', '/knit/'], { allowFail: true, env: { ETCDCTL_API: '3' } });
    assert.match(dump.stdout, /"encKey":"[A-Za-z0-9_-]{43}"/);
    for (const n of nodes) {
      const pem = fs.readFileSync(path.join(n.stateDir, 'esp-x25519.pem'), 'utf8').split('\n').filter((l) => l && !l.startsWith('-----')).join('');
      assert.ok(!dump.stdout.includes(pem) && !n.log.join('').includes(pem), `${n.name}'s private key left its state file`);
    }
  });

  it('knitctl key rotate during a TCP stream: both nodes switch to generation 1 while it runs, it keeps going', async () => {
    const [a, b] = nodes as [Node, Node];
    const seconds = 50;
    const switched = (n: Node): boolean => status(n)?.encryption?.generation === 1 && status(n)?.encryption?.peers?.[0]?.txGeneration === 1;
    let t0 = 0;
    let switchedAfter = -1;
    let rotatedAfter = -1;
    // knitctl and knitd's 5 s poll are slow under UML: the stream is long enough to contain the
    // whole switch, which must complete before it ends.
    const rotate = async (): Promise<void> => {
      t0 = Date.now();
      await new Promise((r) => setTimeout(r, 1000));
      const r = await ctl(['key', 'rotate']);
      rotatedAfter = (Date.now() - t0) / 1000;
      assert.match(r.stdout, /key generation 1 \(was 0\)/);
      await eventually(() => nodes.every(switched), 45_000, 'both nodes sending with generation 1');
      switchedAfter = (Date.now() - t0) / 1000;
    };
    const x = await iperf(lab, b.pod!, a.pod!, b.ip!, seconds, rotate);
    console.log(`      ${seconds} s stream, knitctl key rotate done after ${rotatedAfter.toFixed(1)} s, both nodes switched to generation 1 after ${switchedAfter.toFixed(1)} s: ${(x.gbps * 1000).toFixed(0)} Mbit/s, per second: ${x.intervals.map((v) => (v / 1e6).toFixed(0)).join(' ')}`);
    assert.ok(x.ok, `iperf3: ${x.error}`);
    assert.ok(switchedAfter > 0 && switchedAfter < seconds - 2, `the switch was not inside the stream: ${switchedAfter} s`);
    assert.ok(x.intervals.every((v) => v > 0), `a second without traffic: ${x.intervals.join(', ')}`);
    for (const n of nodes) {
      // The new inbound SAs carried the stream: the old ones go at the next retire check.
      await eventually(() => switched(n) && status(n)?.encryption?.retiring === 0, 30_000, `${n.name} retired generation 0`).catch(async (e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(status(n)?.encryption)}\n${await lab.ip(n.host, ['-s', 'xfrm', 'state', 'list'])}`);
      });
      const sa = await lab.ip(n.host, ['xfrm', 'state', 'list']);
      const gens = [...sa.matchAll(/reqid (\d+)/g)].map((m) => Number(m[1]) & 0xffff);
      assert.deepEqual([...new Set(gens)], [1], `${n.name}: SAs of generations ${gens}`);
    }
    const st = await ctl(['status', '--run-dir', a.runDir]);
    assert.match(st.stdout, /encryption: esp rfc4106\(gcm\(aes\)\) 128, key generation 1, 1 peer\(s\) keyed, 0 blocked/);
    assert.ok(await lab.ping(a.pod!, b.ip!, 2));
  });
});
