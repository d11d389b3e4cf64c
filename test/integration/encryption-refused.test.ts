// Encryption asked on a kernel without ESP/AES-GCM (this host's: docs/encryption.md): the node
// refuses with code 101 naming the missing kernel features and never falls back to plain text.
// The probe runs in a lab namespace; the vxlan backend leaves nothing behind; knitd (etcd in the
// lab) records the refusal: knit-overlay's ADD and STATUS answer 101, knitctl status shows it,
// and no subnet lease is published. The encrypted datapath itself is tested in the kernel lane
// (test/kernel/encryption.test.ts).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { probeEsp } from '../../pkg/agent/backend/esp';
import { newBackend, get as backendFactory } from '../../pkg/agent/backend';
import { CniError } from '../../pkg/cni/errors';

describe('encryption on a kernel without ESP: refused with code 101', function () {
  this.timeout(120_000);
  let lab: Lab;
  let missing: string[];
  let h: Host;

  before(async function () {
    requireRoot(this);
    lab = new Lab();
    const sw = await lab.switch();
    h = await lab.host('h', sw, { address: '192.168.62.1/24' });
    missing = probeEsp(h.path);
    if (!missing.length) {
      console.log('      skipped: this kernel has ESP and rfc4106(gcm(aes)): the refusal cannot be shown here (the kernel lane tests the encrypted datapath)');
      this.skip();
    }
  });

  after(async () => { await lab?.cleanup(); });

  it('the probe names the missing features', () => {
    assert.match(missing.join('; '), /rfc4106\(gcm\(aes\)\)|ESP|xfrm/);
    // The other cipher names its own algorithm and modules.
    const cc = probeEsp(h.path, 'chacha20-poly1305').join('; ');
    assert.ok(cc.length > 0, 'chacha20-poly1305 refused too');
    if (/AEAD/.test(cc)) assert.match(cc, /rfc7539esp\(chacha20,poly1305\) \(CONFIG_CRYPTO_CHACHA20POLY1305.*chacha20poly1305/);
  });

  it('the vxlan backend refuses before creating anything; the plain one works beside it', async () => {
    const cfg = backendFactory('vxlan').parseConfig({ type: 'vxlan', vni: 8, encrypted: true });
    assert.equal(cfg.port, 4799);
    const b = newBackend(cfg, { netns: h.path });
    try {
      assert.throws(() => b.ensureLocal({ nodeName: 'h', subnet: '10.62.1.0/24', underlayIface: 'eth0', underlayAddr: '192.168.62.1' }), (e: unknown) => {
        assert.ok(e instanceof CniError, String(e));
        assert.equal(e.code, 101);
        assert.match(e.message, /encrypted VXLAN \(knit\.8\) needs kernel features this node lacks: .*rfc4106\(gcm\(aes\)\).*refusing to send it in plain text/);
        return true;
      });
    } finally { b.close(); }
    const links = await lab.ipJson(h, ['link', 'show']);
    assert.deepEqual(links.map((l: any) => l.ifname).filter((n: string) => n.startsWith('knit.')), [], 'a VXLAN device was created');
    assert.equal((await lab.ip(h, ['xfrm', 'policy', 'list'])).trim(), '', 'xfrm policies left behind');
    // Plain VXLAN on the same node is unaffected.
    const plain = newBackend(backendFactory('vxlan').parseConfig({ type: 'vxlan', vni: 9 }), { netns: h.path });
    try {
      assert.equal(plain.ensureLocal({ nodeName: 'h', subnet: '10.62.1.0/24', underlayIface: 'eth0', underlayAddr: '192.168.62.1' }).mtu, 1450);
    } finally { plain.close(); }
  });

  it('the config refuses encrypted on port 4789 and with directRouting', () => {
    assert.throws(() => backendFactory('vxlan').parseConfig({ type: 'vxlan', encrypted: true, port: 4789 }), /backend\.port 4789: another port than 4789 when encrypted/);
    assert.throws(() => backendFactory('vxlan').parseConfig({ type: 'vxlan', encrypted: true, directRouting: true }), /backend\.directRouting true: false when encrypted/);
    assert.throws(() => backendFactory('vxlan').parseConfig({ type: 'vxlan', encrypted: 'yes' }), /backend\.encrypted "yes": true or false/);
  });

  describe('knitd with an encrypted pod network', () => {
    let knit: KnitBuild;
    let etcd: EtcdCluster;
    let endpoint: string;
    let tmp: string;
    let knitd: ChildProcess | undefined;
    const log: string[] = [];

    before(async function () {
      requireEtcd(this);
      knit = await buildKnit(['knitd', 'knitctl', 'knit-overlay']);
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-enc-refused-'));
      const sw = await lab.switch('sw2');
      const eh = await lab.host('etcd', sw, { address: '192.168.63.100/24' });
      etcd = await EtcdCluster.start({ netns: eh, host: '192.168.63.100' });
      endpoint = etcd.endpoints[0]!;
      h = await lab.host('n1', sw, { address: '192.168.63.1/24' });
    });

    after(async () => {
      knitd?.kill('SIGKILL');
      await etcd?.stop();
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    const ctl = (args: string[]) => lab.exec(h, knit.bin('knitctl'), ['--etcd-endpoints', endpoint, ...args], { env: { NODE_EXTRA_CA_CERTS: undefined }, allowFail: true });

    it('refuses: knit-overlay ADD and STATUS answer 101 naming the features, knitctl status shows it, no lease', async () => {
      const net = path.join(tmp, 'net.json');
      fs.writeFileSync(net, JSON.stringify({ network: '10.217.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1, encrypted: true } }));
      const set = await ctl(['pod-network', 'set', net]);
      assert.equal(set.code, 0, set.stderr);
      const runDir = path.join(tmp, 'run');
      knitd = spawn('ip', ['netns', 'exec', h.name, knit.bin('knitd'), '--cni-socket-dir', path.join(tmp, 'sock'), '--etcd-endpoints', endpoint,
        '--node-name', 'n1', '--iface', 'eth0', '--run-dir', runDir, '--state-dir', path.join(tmp, 'state')],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
      knitd.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
      await eventually(() => fs.existsSync(path.join(runDir, 'refused.json')), 30_000, `refused.json (knitd log: ${log.join('')})`);
      assert.ok(!fs.existsSync(path.join(runDir, 'lease.json')), 'a lease file was written');
      const pod = await lab.pod('pod1');
      const conf = { cniVersion: '1.1.0', name: 'overlay', type: 'knit-overlay', runDir };
      for (const command of ['ADD', 'STATUS'] as const) {
        const r = await lab.runPlugin(h, knit.bin('knit-overlay'), {
          command, containerId: 'c1', ...(command === 'ADD' ? { netns: pod.path, ifName: 'eth0' } : {}), path: [knit.binDir], conf,
          env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
        });
        assert.notEqual(r.code, 0, `${command} succeeded`);
        assert.equal(r.json?.code, 101, `${command}: ${r.stdout} ${r.stderr}`);
        assert.match(r.json.msg, /rfc4106\(gcm\(aes\)\)/);
      }
      assert.deepEqual((await lab.ipJson(pod, ['link', 'show'])).map((l: any) => l.ifname), ['lo'], 'ADD left a link in the pod');
      const st = await ctl(['status', '--run-dir', runDir]);
      assert.match(st.stdout, /REFUSED \(code 101\): encrypted VXLAN \(knit\.1\) needs kernel features/);
      const peers = JSON.parse((await ctl(['peers', '--json'])).stdout);
      assert.deepEqual(peers, [], 'the refusing node published a lease');
      const links = await lab.ipJson(h, ['link', 'show']);
      assert.ok(!links.some((l: any) => l.ifname === 'knit.1'), 'the VXLAN device exists');
      assert.match(log.join(''), /refusing the pod network on this node/);
    });
  });
});
