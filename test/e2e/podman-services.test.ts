// End to end with a real runtime: podman 4.3 (CNI backend) on two lab hosts running knitd, a
// named overlay network, and a service VIP (docs/services.md). `podman run --name <svc>` on each
// host makes a backend (podman passes the container's name as K8S_POD_NAME, which the plugin
// records); a client container's HTTP requests to the VIP reach both; after `podman rm -f` of
// one backend every request reaches the other.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, run as labRun, type Switch } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { EtcdCluster, haveEtcd } from '../lab/etcd';
import { conflistFile } from '../../pkg/network/conflist';
import { PodmanHost, podmanMissing } from './podman';

const PREFIX = '/knps';

const run0 = (ns: string, file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  labRun('ip', ['netns', 'exec', ns, file, ...args], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });

describe('podman e2e: a service VIP balanced over containers on two hosts', function () {
  this.timeout(300_000);
  const labs = { net: new Lab(), h1: new Lab(), h2: new Lab() };
  let knit: KnitBuild;
  let sw: Switch;
  let etcd: EtcdCluster;
  const hosts: PodmanHost[] = [];
  const knitds: ChildProcess[] = [];
  const logs: string[][] = [[], []];
  const name = (s: string): string => `${labs.net.prefix}-${s}`;
  const knitctl = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    run0(hosts[0]!.ns.name, knit.bin('knitctl'), ['--etcd-endpoints', etcd.endpoints[0]!, '--etcd-prefix', PREFIX, ...args]);

  before(async function () {
    const missing = podmanMissing() ?? (haveEtcd() ? null : 'needs /usr/bin/etcd (scripts/bootstrap installs etcd-server)');
    if (missing) { console.log(`      skipped: podman service e2e ${missing}`); this.skip(); }
    knit = await buildKnit(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge', 'knit-etcd-ipam']);
    sw = await labs.net.switch();
    const etcdHost = await labs.net.host('etcd', sw, { address: '192.168.73.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.73.100' });
    for (const [i, lab] of [labs.h1, labs.h2].entries()) {
      const h = await PodmanHost.create(lab, knit, ['portmap'], { name: `ps${i + 1}`, sw, address: `192.168.73.${i + 1}/24` });
      hosts.push(h);
      const runDir = path.join(h.dir, 'knit-run');
      const proc = spawn('ip', ['netns', 'exec', h.ns.name, knit.bin('knitd'), '--cni-socket-dir', path.join(runDir, 'cni'), '--etcd-endpoints', etcd.endpoints[0]!,
        '--etcd-prefix', PREFIX, '--node-name', `ps${i + 1}`, '--iface', 'eth0', '--run-dir', runDir, '--state-dir', path.join(h.dir, 'knit-state'),
        '--cni-conf-dir', h.netDir, '--lease-ttl', '10'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
      proc.stderr!.on('data', (d: Buffer) => logs[i]!.push(d.toString()));
      knitds.push(proc);
    }
    for (const [i, h] of hosts.entries()) {
      await eventually(() => fs.existsSync(path.join(h.dir, 'knit-run', 'networks', 'node.json')), 30_000, `knitd on ps${i + 1} (log: ${logs[i]!.join('')})`);
    }
    const r = await knitctl('network', 'create', '-d', 'overlay', '--subnet', '10.236.0.0/24', name('app'));
    assert.equal(r.code, 0, r.stderr);
    for (const h of hosts) await eventually(() => fs.existsSync(path.join(h.netDir, conflistFile(name('app')))), 10_000, 'conflist');
  });

  after(async () => {
    for (const h of hosts) await h.cleanup();
    for (const k of knitds) k.kill('SIGKILL');
    await etcd?.stop();
    await labs.net.cleanup();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') logs.forEach((l, i) => console.log(`--- knitd ps${i + 1}\n${l.join('').split('\n').slice(-30).join('\n')}`));
  });

  const run = (h: PodmanHost, opts: string[], cmd: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    h.podman(['run', ...opts, '--rootfs', h.rootfs, ...cmd], { allowFail: true, timeoutMs: 90_000 });

  /** `count` HTTP GETs of the VIP from a client container on h (busybox nc: its static wget crashes here): the bodies. */
  const fetchAll = async (h: PodmanHost, vip: string, count: number): Promise<string[]> => {
    const r = await run(h, ['--rm', '--network', name('app')], ['sh', '-c', `for i in $(seq ${count}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${vip} 80 | tail -n 1; done`]);
    assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`);
    return r.stdout.trim().split('\n');
  };

  it('podman run --name web on each host: requests to the VIP reach both; after podman rm -f, only the other', async () => {
    const [h1, h2] = hosts as [PodmanHost, PodmanHost];
    const svc = name('web');
    const c = await knitctl('service', 'create', svc, '--network', name('app'), '--port', 'tcp:80');
    assert.equal(c.code, 0, c.stderr);
    const vip = JSON.parse((await knitctl('service', 'inspect', svc)).stdout)[0].Endpoint.VirtualIPs[0].Addr as string;
    // The rootfs is one directory per host: each backend serves its own folder of it.
    for (const [i, h] of [h1, h2].entries()) {
      const dir = `/tmp/${labs.net.prefix}-www${i + 1}`;
      const r = await run(h, ['-d', '--name', svc, '--network', name('app')], ['sh', '-c', `mkdir -p ${dir} && echo ps${i + 1} > ${dir}/index.html && exec httpd -f -p 80 -h ${dir}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    await eventually(async () => JSON.parse((await knitctl('service', 'inspect', svc)).stdout)[0].Backends.length === 2, 10_000, 'two backends recorded (K8S_POD_NAME)');
    for (const h of [h1, h2]) {
      let got: string[] = [];
      await eventually(async () => { got = await fetchAll(h, vip, 8); return got.includes('ps1') && got.includes('ps2'); }, 30_000, `both backends from ${h.ns.name}`)
        .catch((e: Error) => { throw new Error(`${e.message}; last answers: ${JSON.stringify(got)}`); });
      assert.ok(got.every((g) => g === 'ps1' || g === 'ps2'), `every request answered: ${got}`);
    }
    assert.equal((await h2.podman(['rm', '-f', svc], { allowFail: true })).code, 0);
    await eventually(async () => JSON.parse((await knitctl('service', 'inspect', svc)).stdout)[0].Backends.length === 1, 10_000, 'one backend left');
    for (const h of [h1, h2]) assert.deepEqual(await fetchAll(h, vip, 6), Array(6).fill('ps1'), `only ps1 from ${h.ns.name}`);
    assert.equal((await h1.podman(['rm', '-f', svc], { allowFail: true })).code, 0);
    assert.equal((await knitctl('service', 'rm', svc)).code, 0);
  });
});
