// End to end with a real runtime: names across hosts. podman 4.3 (CNI backend) on two lab hosts,
// knitd on each (named networks on etcd, with its resolver). `podman run --network app --name
// web` on host 1; on host 2 a container of the same network finds it by name with busybox's
// nslookup and ping; after `podman rm -f web` the name is NXDOMAIN on both hosts. Also what
// podman passes knit (K8S_POD_NAME, runtimeConfig.aliases) and what it does with the ADD result's
// dns (the container's resolv.conf), as docs/dns.md says.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, run as labRun, type Switch } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { EtcdCluster, haveEtcd } from '../lab/etcd';
import { conflistFile } from '../../pkg/network/conflist';
import { PodmanHost, podmanMissing } from './podman';

const PREFIX = '/kndns';

const run0 = (ns: string, file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  labRun('ip', ['netns', 'exec', ns, file, ...args], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });

describe('podman e2e: names across two hosts (knitd\'s resolver)', function () {
  this.timeout(300_000);
  const labs = { net: new Lab(), h1: new Lab(), h2: new Lab() };
  let knit: KnitBuild;
  let sw: Switch;
  let etcd: EtcdCluster;
  const hosts: PodmanHost[] = [];
  const knitds: ChildProcess[] = [];
  const logs: string[][] = [[], []];
  const name = (s: string): string => `${labs.net.prefix}-${s}`;
  const app = (): string => name('app');

  before(async function () {
    const missing = podmanMissing() ?? (haveEtcd() ? null : 'needs /usr/bin/etcd (scripts/bootstrap installs etcd-server)');
    if (missing) { console.log(`      skipped: podman dns e2e ${missing}`); this.skip(); }
    knit = await buildKnit(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge', 'knit-etcd-ipam']);
    sw = await labs.net.switch();
    const etcdHost = await labs.net.host('etcd', sw, { address: '192.168.72.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.72.100' });
    for (const [i, lab] of [labs.h1, labs.h2].entries()) {
      const h = await PodmanHost.create(lab, knit, ['portmap'], { name: `dh${i + 1}`, sw, address: `192.168.72.${i + 1}/24` });
      hosts.push(h);
      const runDir = path.join(h.dir, 'knit-run');
      // The node's resolv.conf: an upstream nobody answers for (the lab has no DNS); knit's names never go there.
      const resolv = path.join(h.dir, 'resolv.conf');
      fs.writeFileSync(resolv, 'nameserver 192.168.72.53\n');
      const proc = spawn('ip', ['netns', 'exec', h.ns.name, knit.bin('knitd'), '--cni-socket-dir', path.join(runDir, 'cni'), '--etcd-endpoints', etcd.endpoints[0]!,
        '--etcd-prefix', PREFIX, '--node-name', `dh${i + 1}`, '--iface', 'eth0', '--run-dir', runDir, '--state-dir', path.join(h.dir, 'knit-state'),
        '--cni-conf-dir', h.netDir, '--lease-ttl', '10', '--dns-resolv-conf', resolv, '--log-level', 'debug'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
      proc.stderr!.on('data', (d: Buffer) => logs[i]!.push(d.toString()));
      knitds.push(proc);
    }
    for (const [i, h] of hosts.entries()) {
      await eventually(() => fs.existsSync(path.join(h.dir, 'knit-run', 'networks', 'node.json')), 30_000, `knitd on dh${i + 1} (log: ${logs[i]!.join('')})`);
    }
    const r = await run0(hosts[0]!.ns.name, knit.bin('knitctl'), ['--etcd-endpoints', etcd.endpoints[0]!, '--etcd-prefix', PREFIX, 'network', 'create', '-d', 'overlay', '--subnet', '10.237.0.0/24', app()]);
    assert.equal(r.code, 0, r.stderr);
    for (const h of hosts) await eventually(() => fs.existsSync(path.join(h.netDir, conflistFile(app()))), 10_000, 'conflist of app');
  });

  after(async () => {
    for (const h of hosts) await h.cleanup();
    for (const k of knitds) k.kill('SIGKILL');
    await etcd?.stop();
    await labs.net.cleanup();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') logs.forEach((l, i) => console.log(`--- knitd dh${i + 1}\n${l.join('').split('\n').slice(-30).join('\n')}`));
  });

  const run = (h: PodmanHost, opts: string[], cmd: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    h.podman(['run', ...opts, '--rootfs', h.rootfs, ...cmd], { allowFail: true, timeoutMs: 90_000 });
  const endpoints = (): any[] => [...etcd.dump(`${PREFIX}/endpoints/${app()}/`).values()].map((v) => JSON.parse(v));

  it('what podman 4.3 gives knit: the container name (K8S_POD_NAME), --network-alias (runtimeConfig.aliases), resolv.conf from the ADD result', async () => {
    const [h1] = hosts as [PodmanHost];
    const web = await run(h1, ['-d', '--name', name('web'), '--network', app(), '--network-alias', 'www'], ['sleep', '600']);
    assert.equal(web.code, 0, web.stderr);
    const rec = endpoints().find((e) => e.node === 'dh1');
    assert.ok(rec, 'the endpoint record');
    console.log(`      podman ${(await h1.podman(['--version'])).stdout.trim()}: endpoint name=${rec.name} aliases=${JSON.stringify(rec.aliases)}`);
    assert.equal(rec.name, name('web'), 'K8S_POD_NAME is the container name');
    assert.ok((rec.aliases ?? []).includes('www'), `--network-alias reaches knit: ${JSON.stringify(rec.aliases)}`);
    const resolv = await h1.podman(['exec', name('web'), 'cat', '/etc/resolv.conf'], { allowFail: true });
    console.log(`      container resolv.conf: ${resolv.stdout.trim().replace(/\n/g, ' | ')}`);
    assert.match(resolv.stdout, /^nameserver 10\.237\.0\.1$/m, 'the gateway is the nameserver');
    assert.match(resolv.stdout, new RegExp(`^search .*${app()}\\.knit`, 'm'), 'the network\'s domain is searched');
  });

  it('host 2 finds web (host 1) by name: busybox nslookup and ping -c1; the alias too', async () => {
    const [h1, h2] = hosts as [PodmanHost, PodmanHost];
    const ip = (await h1.inspect(name('web'))).NetworkSettings.Networks[app()].IPAddress;
    const ns = await run(h2, ['--rm', '--network', app()], ['nslookup', name('web')]);
    assert.equal(ns.code, 0, `nslookup: ${ns.stdout} ${ns.stderr}`);
    assert.match(ns.stdout, new RegExp(`Address:\\s+${ip.replace(/\./g, '\\.')}$`, 'm'), ns.stdout);
    const alias = await run(h2, ['--rm', '--network', app()], ['nslookup', 'www']);
    assert.match(alias.stdout, new RegExp(ip.replace(/\./g, '\\.')), `alias: ${alias.stdout} ${alias.stderr}`);
    const ping = await run(h2, ['--rm', '--network', app()], ['ping', '-c1', '-W3', name('web')]);
    assert.equal(ping.code, 0, `ping by name: ${ping.stdout} ${ping.stderr}`);
    assert.match(ping.stdout, new RegExp(ip.replace(/\./g, '\\.')));
  });

  it('after podman rm -f web the name is NXDOMAIN on both hosts', async () => {
    const [h1, h2] = hosts as [PodmanHost, PodmanHost];
    const rm = await h1.podman(['rm', '-f', '-t', '0', name('web')], { allowFail: true });
    assert.equal(rm.code, 0, rm.stderr);
    assert.ok(!endpoints().some((e) => e.name === name('web')), 'the record is gone');
    for (const h of [h1, h2]) {
      const r = await run(h, ['--rm', '--network', app()], ['nslookup', name('web')]);
      assert.notEqual(r.code, 0, `nslookup after rm on ${h.ns.name}: ${r.stdout}`);
      assert.match(r.stdout + r.stderr, /NXDOMAIN/, r.stdout + r.stderr);
    }
  });
});
