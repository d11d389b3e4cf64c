// knitd serving CNI requests: the built executables (dist/bin, through the launcher and
// knit-client) run "on" a lab host where knitd listens, and on one where it does not. Results
// equal the Node path's, pods ping, 50 concurrent ADDs get distinct addresses; a missing, stopped
// or killed knitd means the Node path; garbage on the socket is refused; a knitd that dies
// mid-ADD makes the client answer code 11 and the retry succeed.
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Netns, type PluginOutput } from '../lab/lab';
import { attachmentLinks, eventually, reservations } from '../lab/cni';
import { Status, decodeResponse, encodeRequest, type CniResponse } from '../../pkg/agent/cni-protocol';
import { EtcdCluster, haveEtcd } from '../lab/etcd';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'dist/bin');

interface Knitd {
  proc: ChildProcess;
  /** Everything knitd wrote to stderr so far. */
  log(): string;
  /** How many requests knitd logged as served for this verb and container. */
  served(verb: string, containerId: string): number;
  exited: Promise<number | null>;
}

describe('knitd: CNI requests served by the node agent', function () {
  this.timeout(120_000);
  let lab: Lab;
  let tmp: string;
  let sockDir: string;
  let host: Netns;
  let other: Netns;
  const agents: Knitd[] = [];

  before(async function () {
    requireRoot(this);
    execFileSync(process.execPath, ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'ignore' });
    assert.ok(fs.existsSync(path.join(ROOT, 'dist/lib/knit-client')), 'dist/lib/knit-client (npm install builds it)');
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knitd-test-'));
    sockDir = path.join(tmp, 'cni');
    host = await lab.netns('kd-host');
    other = await lab.netns('kd-other');
  });

  after(async () => {
    for (const a of agents) a.proc.kill('SIGKILL');
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const inode = (ns: Netns): number => fs.statSync(ns.path).ino;
  const socketOf = (ns: Netns): string => path.join(sockDir, `${inode(ns)}.sock`);

  async function startKnitd(ns: Netns, extra: string[] = []): Promise<Knitd> {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_OPTIONS;
    const proc = spawn('ip', ['netns', 'exec', ns.name, path.join(BIN, 'knitd'), '--cni-socket-dir', sockDir, '--log-level', 'debug', ...extra],
      { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let text = '';
    proc.stderr!.on('data', (d: Buffer) => { text += d; });
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const k: Knitd = {
      proc, exited, log: () => text,
      served: (verb, cid) => text.split('\n').filter((l) => l.includes('served') && l.includes(`"verb":"${verb}"`) && l.includes(`"containerId":"${cid}"`)).length,
    };
    agents.push(k);
    await eventually(() => text.includes('serving ') || proc.exitCode !== null, 10_000, 'knitd to listen');
    return k;
  }

  async function stopKnitd(k: Knitd): Promise<number | null> {
    k.proc.kill('SIGTERM');
    return k.exited;
  }

  function conf(name: string, dataDir: string, subnet: string, extra: object = {}): Record<string, unknown> {
    return {
      cniVersion: '1.1.0', name, type: 'knit-bridge', bridge: 'kdbr0', isGateway: true, isDefaultGateway: true, ipMasq: false,
      ipam: { type: 'knit-host-local', dataDir, ranges: [[{ subnet }]] }, ...extra,
    };
  }

  function call(on: Netns, command: 'ADD' | 'DEL' | 'CHECK', c: object, containerId: string, pod: Netns, env: Record<string, string> = {}, file = path.join(BIN, 'knit-bridge')): Promise<PluginOutput> {
    return lab.runPlugin(on, file, {
      command, conf: c, containerId, netns: pod.path, ifName: 'eth0', path: [BIN],
      env: { KNIT_CNI_SOCKET_DIR: sockDir, ...env },
    });
  }

  function ok(o: PluginOutput, what: string): any {
    assert.equal(o.code, 0, `${what} exited ${o.code}: ${o.stdout} ${o.stderr}`);
    return o.json;
  }

  /** A result with its MACs blanked: they are random per veth. */
  const shape = (r: any): any => JSON.parse(JSON.stringify(r).replace(/"mac":"[0-9a-f:]*"/g, '"mac":"-"').replace(new RegExp(`${host.name}|${other.name}`, 'g'), 'NS'));

  /** Sends raw bytes to a socket and returns what comes back before the close. */
  function rawExchange(file: string, data: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const c = net.connect(file);
      const got: Buffer[] = [];
      c.on('data', (d) => got.push(d));
      c.on('error', reject);
      c.on('close', () => resolve(Buffer.concat(got)));
      c.end(data);
    });
  }

  describe('with knitd on the host', () => {
    let k: Knitd;
    let dir: string;
    before(async () => {
      k = await startKnitd(host);
      dir = fs.mkdtempSync(path.join(tmp, 'ipam-'));
    });
    after(async () => { if (k.proc.exitCode === null) await stopKnitd(k); });

    it('listens on <dir>/<netns inode>.sock, 0600 in a 0700 directory', () => {
      const st = fs.statSync(socketOf(host));
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal(fs.statSync(sockDir).mode & 0o777, 0o700);
    });

    it('serves knit-macvlan in-process too', async () => {
      // A parent link for the macvlan children inside the lab host.
      await lab.ip(host, ['link', 'add', 'kd-up', 'type', 'veth', 'peer', 'name', 'kd-up2']);
      await lab.ip(host, ['link', 'set', 'kd-up', 'up']);
      await lab.ip(host, ['link', 'set', 'kd-up2', 'up']);
      const pod = await lab.pod('kd-mv');
      const mv = {
        cniVersion: '1.1.0', name: 'kdmv', type: 'knit-macvlan', master: 'kd-up', mode: 'bridge', runDir: path.join(tmp, 'run'),
        ipam: { type: 'knit-host-local', dataDir: dir, ranges: [[{ subnet: '10.62.0.0/24' }]] },
      };
      const file = path.join(BIN, 'knit-macvlan');
      const r = ok(await call(host, 'ADD', mv, 'cmv', pod, {}, file), 'macvlan ADD');
      assert.equal(k.served('ADD', 'cmv'), 1, k.log());
      assert.match(r.ips[0].address, /^10\.62\.0\.\d+\/24$/);
      const [l] = await lab.ipJson<Array<{ linkinfo?: { info_kind?: string } }>>(pod, ['-d', 'link', 'show', 'eth0']);
      assert.equal(l?.linkinfo?.info_kind, 'macvlan', 'the pod has a macvlan eth0');
      ok(await call(host, 'DEL', mv, 'cmv', pod, {}, file), 'macvlan DEL');
      assert.equal(k.served('DEL', 'cmv'), 1, k.log());
      assert.deepEqual(await lab.ipJson(pod, ['link', 'show', 'eth0']).catch(() => []), [], 'eth0 gone from the pod');
      assert.deepEqual(reservations(dir, 'kdmv'), [], 'address released');
    });

    it('ADD, CHECK and DEL answer as the Node path does (another netns, no knitd), and the pods ping', async () => {
      const [pa, pb, pc] = [await lab.pod('kd-a'), await lab.pod('kd-b'), await lab.pod('kd-c')];
      const c = conf('kdnet', dir, '10.61.0.0/24');
      const ra = ok(await call(host, 'ADD', c, 'ca', pa, { KNIT_LOG_LEVEL: 'debug' }), 'ADD ca');
      assert.equal(k.served('ADD', 'ca'), 1, k.log());
      const rb = ok(await call(host, 'ADD', c, 'cb', pb), 'ADD cb');
      assert.ok(await lab.ping(pa, rb.ips[0].address.split('/')[0]), 'pod a pings pod b');

      // The same ADD on a host without knitd runs the Node path: same result but the MACs.
      const otherDir = fs.mkdtempSync(path.join(tmp, 'ipam-'));
      const rc = ok(await call(other, 'ADD', conf('kdnet', otherDir, '10.61.0.0/24'), 'ca', pc), 'ADD on the other host');
      assert.deepEqual(shape({ ...rc, interfaces: rc.interfaces.map((i: any) => ({ ...i, sandbox: i.sandbox && 'POD' })) }),
        shape({ ...ra, interfaces: ra.interfaces.map((i: any) => ({ ...i, sandbox: i.sandbox && 'POD' })) }));
      assert.equal(k.served('ADD', 'ca'), 1, 'the other host was not served by this knitd');

      ok(await call(host, 'CHECK', { ...c, prevResult: ra }, 'ca', pa), 'CHECK');
      assert.equal(k.served('CHECK', 'ca'), 1);
      // A failing CHECK: the same error document from both paths.
      const bad = (r: any): object => ({ ...r, ips: [{ address: '10.61.0.200/24', interface: 2 }] });
      const drift = await call(host, 'CHECK', { ...c, prevResult: bad(ra) }, 'ca', pa);
      const driftNode = await call(other, 'CHECK', { ...conf('kdnet', otherDir, '10.61.0.0/24'), prevResult: bad(rc) }, 'ca', pc);
      assert.equal(drift.code, 1);
      assert.deepEqual({ code: drift.code, out: drift.stdout }, { code: driftNode.code, out: driftNode.stdout });
      assert.equal(k.served('CHECK', 'ca'), 2);

      for (const [cid, pod] of [['ca', pa], ['cb', pb]] as const) ok(await call(host, 'DEL', c, cid, pod), `DEL ${cid}`);
      ok(await call(other, 'DEL', conf('kdnet', otherDir, '10.61.0.0/24'), 'ca', pc), 'DEL on the other host');
      assert.equal(k.served('DEL', 'ca'), 1);
      assert.deepEqual(await attachmentLinks(lab, host, 'kdnet'), []);
      assert.deepEqual(reservations(dir, 'kdnet'), []);
    });

    it('returns the plugin\'s own stderr logging to the caller', async () => {
      const pod = await lab.pod('kd-log');
      const c = conf('kdlog', dir, '10.62.0.0/24');
      const r = await call(host, 'ADD', c, 'clog', pod, { KNIT_LOG_LEVEL: 'debug' });
      ok(r, 'ADD');
      assert.match(r.stderr, /knit debug: request .*"containerId":"clog"/);
      assert.equal(k.served('ADD', 'clog'), 1);
      ok(await call(host, 'DEL', c, 'clog', pod), 'DEL');
    });

    it('serves a launcher reached through a symlink, as the plugin the link points to', async () => {
      const pod = await lab.pod('kd-sym');
      const link = path.join(tmp, 'my-bridge');
      fs.symlinkSync(path.join(BIN, 'knit-bridge'), link);
      const c = conf('kdsym', dir, '10.63.0.0/24');
      ok(await call(host, 'ADD', c, 'csym', pod, {}, link), 'ADD through a symlink');
      assert.equal(k.served('ADD', 'csym'), 1, k.log());
      ok(await call(host, 'DEL', c, 'csym', pod, {}, link), 'DEL');
    });

    it('50 concurrent ADDs get distinct addresses, and all DELs leave nothing', async () => {
      const pods: Netns[] = [];
      for (let i = 0; i < 50; i++) pods.push(await lab.pod(`kd-p${i}`));
      const c = conf('kdpar', dir, '10.64.0.0/24');
      const results = await Promise.all(pods.map((p, i) => call(host, 'ADD', c, `cp${i}`, p)));
      const addrs = results.map((r, i) => ok(r, `ADD cp${i}`).ips[0].address);
      assert.equal(new Set(addrs).size, 50, addrs.join(' '));
      for (let i = 0; i < 50; i++) assert.equal(k.served('ADD', `cp${i}`), 1);
      assert.equal((await attachmentLinks(lab, host, 'kdpar')).length, 50);
      const dels = await Promise.all(pods.map((p, i) => call(host, 'DEL', c, `cp${i}`, p)));
      dels.forEach((r, i) => ok(r, `DEL cp${i}`));
      assert.deepEqual(await attachmentLinks(lab, host, 'kdpar'), []);
      assert.deepEqual(reservations(dir, 'kdpar'), []);
    });

    it('knit-etcd-ipam under knitd: one allocator per network for all requests, concurrent ADDs batched into fewer etcd writes', async function () {
      if (!haveEtcd()) { console.log('      (skipped: no /usr/bin/etcd; scripts/bootstrap installs etcd-server)'); this.skip(); }
      const etcd = await EtcdCluster.start({ netns: host }); // on the host's own loopback
      try {
        const N = 30;
        const pods: Netns[] = [];
        for (let i = 0; i < N; i++) pods.push(await lab.pod(`kd-e${i}`));
        const c = { ...conf('kdetcd', dir, '10.65.0.0/24'), ipam: { type: 'knit-etcd-ipam', nodeName: 'kd-host', etcd: { endpoints: etcd.endpoints }, ranges: [[{ subnet: '10.65.0.0/24' }]] } };
        const revision = (): number => Number(JSON.parse(etcd.ctl(['endpoint', 'status', '-w', 'json']))[0].Status.header.revision);
        const r0 = revision();
        const results = await Promise.all(pods.map((p, i) => call(host, 'ADD', c, `ce${i}`, p)));
        const addrs = results.map((r, i) => ok(r, `ADD ce${i}`).ips[0].address);
        assert.equal(new Set(addrs).size, N, addrs.join(' '));
        for (let i = 0; i < N; i++) assert.equal(k.served('ADD', `ce${i}`), 1, `ce${i} served by knitd`);
        // Each etcd request is one revision: fewer revisions than ADDs means ADDs shared requests.
        const writes = revision() - r0;
        assert.ok(writes < N, `${N} ADDs took ${writes} etcd write requests`);
        console.log(`      ${N} concurrent ADDs through knitd: ${writes} etcd write requests`);
        assert.equal(etcd.dump('/knit/ipam/kdetcd/attach/').size, N);
        const dels = await Promise.all(pods.map((p, i) => call(host, 'DEL', c, `ce${i}`, p)));
        dels.forEach((r, i) => ok(r, `DEL ce${i}`));
        assert.equal(etcd.dump('/knit/ipam/kdetcd/ips/').size, 0, 'every address released');
        assert.equal(etcd.dump('/knit/ipam/kdetcd/attach/').size, 0);
        assert.deepEqual(await attachmentLinks(lab, host, 'kdetcd'), []);
      } finally {
        await etcd.stop();
      }
    });

    it('serves an exec\'d knit-etcd-ipam (under the reference bridge) in-process: no Node is started', async function () {
      if (!haveEtcd()) { console.log('      (skipped: no /usr/bin/etcd; scripts/bootstrap installs etcd-server)'); this.skip(); }
      const etcd = await EtcdCluster.start({ netns: host });
      try {
        const pod = await lab.pod('kd-refe');
        const c = {
          cniVersion: '1.0.0', name: 'kdrefe', type: 'bridge', bridge: 'kdrbr0', isGateway: true,
          ipam: { type: 'knit-etcd-ipam', nodeName: 'kd-host', etcd: { endpoints: etcd.endpoints }, ranges: [[{ subnet: '10.66.0.0/24' }]] },
        };
        // KNIT_NODE=/bin/false: had the launcher or knit-client fallen back to a Node start, the IPAM would fail.
        const refCall = (command: 'ADD' | 'DEL'): Promise<PluginOutput> => lab.runPlugin(host, '/usr/lib/cni/bridge', {
          command, conf: c, containerId: 'crefe', netns: pod.path, ifName: 'eth0', path: [BIN, '/usr/lib/cni'],
          env: { KNIT_CNI_SOCKET_DIR: sockDir, KNIT_NODE: '/bin/false' },
        });
        const r = ok(await refCall('ADD'), 'reference bridge ADD with knit-etcd-ipam');
        assert.match(r.ips[0].address, /^10\.66\.0\.\d+\/24$/);
        assert.equal(k.served('ADD', 'crefe'), 1, k.log());
        assert.equal(etcd.dump('/knit/ipam/kdrefe/attach/').size, 1);
        ok(await refCall('DEL'), 'reference bridge DEL');
        assert.equal(k.served('DEL', 'crefe'), 1, k.log());
        assert.equal(etcd.dump('/knit/ipam/kdrefe/ips/').size, 0, 'address released');
        await lab.ip(host, ['link', 'del', 'kdrbr0']).catch(() => undefined);
      } finally {
        await etcd.stop();
      }
    });

    it('refuses garbage on the socket without falling over, and declines unknown plugins', async () => {
      const sock = socketOf(host);
      const declined = (b: Buffer): CniResponse => decodeResponse(b);
      assert.equal(declined(await rawExchange(sock, Buffer.from('GET / HTTP/1.0\r\n\r\n'))).status, Status.NotServed);
      const huge = Buffer.alloc(8);
      huge.writeUInt32LE(0x31514e4b, 0);
      huge.writeUInt32LE(0xffffffff, 4);
      assert.equal(declined(await rawExchange(sock, huge)).status, Status.NotServed);
      const good = encodeRequest({ plugin: 'knit-bridge', env: { CNI_COMMAND: 'VERSION' }, stdin: Buffer.from('{"cniVersion":"1.0.0"}') });
      // A body that lies about its inner lengths.
      const lying = Buffer.from(good);
      lying.writeUInt32LE(0x7fffffff, 8);
      assert.equal(declined(await rawExchange(sock, lying)).status, Status.NotServed);
      assert.equal(declined(await rawExchange(sock, Buffer.concat([good, Buffer.from('x')]))).status, Status.NotServed);
      // A truncated request: the client goes away, knitd just forgets it.
      assert.equal((await rawExchange(sock, good.subarray(0, 20))).length, 0);
      const unknown = encodeRequest({ plugin: 'knit-nope', env: { CNI_COMMAND: 'VERSION' }, stdin: Buffer.alloc(0) });
      assert.equal(declined(await rawExchange(sock, unknown)).status, Status.NotServed);
      const v = declined(await rawExchange(sock, good));
      assert.deepEqual({ status: v.status, exitCode: v.exitCode }, { status: Status.Answered, exitCode: 0 });
      assert.equal(JSON.parse(v.stdout).cniVersion, '1.0.0');
      assert.equal(k.proc.exitCode, null, 'knitd still runs');
    });

    it('a plugin knitd does not know runs on the Node path with the stdin the client already read', async () => {
      const pod = await lab.pod('kd-unk');
      const alt = path.join(tmp, 'alt');
      fs.mkdirSync(path.join(alt, 'bin'), { recursive: true });
      fs.mkdirSync(path.join(alt, 'lib'), { recursive: true });
      for (const f of ['knit-client', 'knit_netlink.node']) fs.copyFileSync(path.join(ROOT, 'dist/lib', f), path.join(alt, 'lib', f));
      fs.chmodSync(path.join(alt, 'lib/knit-client'), 0o755);
      fs.copyFileSync(path.join(ROOT, 'dist/package.json'), path.join(alt, 'package.json'));
      fs.copyFileSync(path.join(BIN, 'knit-bridge'), path.join(alt, 'bin/knit-unknown'));
      fs.chmodSync(path.join(alt, 'bin/knit-unknown'), 0o755);
      const c = conf('kdunk', dir, '10.65.0.0/24');
      const r = ok(await call(host, 'ADD', c, 'cunk', pod, {}, path.join(alt, 'bin/knit-unknown')), 'ADD as an unknown plugin');
      assert.equal(r.ips[0].address, '10.65.0.2/24');
      assert.equal(k.served('ADD', 'cunk'), 0);
      assert.match(k.log(), /not serving unknown plugin "knit-unknown"/);
      ok(await call(host, 'DEL', c, 'cunk', pod), 'DEL (served)');
    });

    it('SIGTERM removes the socket; calls then take the Node path', async () => {
      assert.equal(await stopKnitd(k), 0);
      assert.ok(!fs.existsSync(socketOf(host)), 'socket removed');
      const pod = await lab.pod('kd-after');
      const c = conf('kdafter', dir, '10.66.0.0/24');
      ok(await call(host, 'ADD', c, 'cafter', pod), 'ADD without knitd');
      ok(await call(host, 'DEL', c, 'cafter', pod), 'DEL without knitd');
      assert.equal(k.served('ADD', 'cafter'), 0);
    });
  });

  describe('when knitd dies mid-ADD', () => {
    it('the client answers code 11, the Node path serves the stale socket\'s namespace, a new knitd replaces it and the retry succeeds', async () => {
      const dir = fs.mkdtempSync(path.join(tmp, 'ipam-'));
      const k1 = await startKnitd(host);
      const [pod, pod2] = [await lab.pod('kd-crash'), await lab.pod('kd-crash2')];
      const c = conf('kdcrash', dir, '10.67.0.0/24');
      // Killed (SIGKILL) right after the veth pair was made: the host veth and the pod's eth0 stay.
      const r = await call(host, 'ADD', c, 'ccrash', pod, { KNIT_FAILPOINT: 'port!' });
      assert.equal(r.code, 1, r.stdout);
      assert.equal(r.json?.code, 11, r.stdout);
      assert.match(r.json.msg, /knitd closed the connection before answering.*try again/);
      await k1.exited;
      assert.ok(fs.existsSync(socketOf(host)), 'a killed knitd leaves its socket file');
      assert.equal((await lab.ipJson<any[]>(pod, ['link', 'show', 'eth0'])).length, 1, 'the crash left eth0 in the pod');

      // Nobody answers on the stale socket: the Node path serves.
      ok(await call(host, 'ADD', c, 'cother', pod2), 'ADD beside the stale socket');

      const k2 = await startKnitd(host);
      assert.match(k2.log(), /serving /, k2.log());
      const again = ok(await call(host, 'ADD', c, 'ccrash', pod), 'retried ADD');
      assert.equal(k2.served('ADD', 'ccrash'), 1);
      assert.equal((await attachmentLinks(lab, host, 'kdcrash', 'ccrash')).length, 1);
      ok(await call(host, 'CHECK', { ...c, prevResult: again }, 'ccrash', pod), 'CHECK after the retry');
      assert.ok(await lab.ping(pod, '10.67.0.1'), 'pod pings its gateway');

      // A second knitd for the same namespace refuses to start.
      const dup = await startKnitd(host);
      assert.equal(await dup.exited, 1);
      assert.match(dup.log(), /another knitd already serves/);

      for (const [cid, p] of [['ccrash', pod], ['cother', pod2]] as const) ok(await call(host, 'DEL', c, cid, p), `DEL ${cid}`);
      assert.deepEqual(reservations(dir, 'kdcrash'), []);
      assert.equal(await stopKnitd(k2), 0);
    });
  });
});
