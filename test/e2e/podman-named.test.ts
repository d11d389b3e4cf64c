// End to end across two hosts with a real runtime: podman 4.3 (CNI backend) on two lab hosts
// whose network_config_dir is where knitd renders the named networks. A network created once in
// etcd is usable by `podman run --network NAME` on both hosts with no step on either: containers
// of one network ping each other across the VXLAN underlay, a container of another network
// cannot reach them, and one container on both networks reaches both.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, run as labRun, type Switch } from '../lab/lab';
import { buildKnit, eventually, type KnitBuild } from '../lab/cni';
import { EtcdCluster, haveEtcd } from '../lab/etcd';
import { conflistFile } from '../../pkg/network/conflist';
import { PodmanHost, podmanMissing } from './podman';

const PREFIX = '/knpm';

/** A command inside a lab netns, its exit code kept. */
const run0 = (ns: string, file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  labRun('ip', ['netns', 'exec', ns, file, ...args], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });

describe('podman e2e: named overlay networks across two hosts', function () {
  this.timeout(300_000);
  const labs = { net: new Lab(), h1: new Lab(), h2: new Lab() };
  let knit: KnitBuild;
  let sw: Switch;
  let etcd: EtcdCluster;
  const hosts: PodmanHost[] = [];
  const knitds: ChildProcess[] = [];
  const logs: string[][] = [[], []];
  const nets: Array<{ name: string }> = [];
  const name = (s: string): string => `${labs.net.prefix}-${s}`;

  before(async function () {
    const missing = podmanMissing() ?? (haveEtcd() ? null : 'needs /usr/bin/etcd (scripts/bootstrap installs etcd-server)');
    if (missing) { console.log(`      skipped: podman named-network e2e ${missing}`); this.skip(); }
    knit = await buildKnit(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge', 'knit-etcd-ipam']);
    sw = await labs.net.switch();
    const etcdHost = await labs.net.host('etcd', sw, { address: '192.168.71.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.71.100' });
    for (const [i, lab] of [labs.h1, labs.h2].entries()) {
      const h = await PodmanHost.create(lab, knit, ['portmap'], { name: `ph${i + 1}`, sw, address: `192.168.71.${i + 1}/24` });
      hosts.push(h);
      const runDir = path.join(h.dir, 'knit-run');
      const proc = spawn('ip', ['netns', 'exec', h.ns.name, knit.bin('knitd'), '--cni-socket-dir', path.join(runDir, 'cni'), '--etcd-endpoints', etcd.endpoints[0]!,
        '--etcd-prefix', PREFIX, '--node-name', `ph${i + 1}`, '--iface', 'eth0', '--run-dir', runDir, '--state-dir', path.join(h.dir, 'knit-state'),
        '--cni-conf-dir', h.netDir, '--lease-ttl', '10'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
      proc.stderr!.on('data', (d: Buffer) => logs[i]!.push(d.toString()));
      knitds.push(proc);
    }
    for (const [i, h] of hosts.entries()) {
      await eventually(() => fs.existsSync(path.join(h.dir, 'knit-run', 'networks', 'node.json')), 30_000, `knitd on ph${i + 1} (log: ${logs[i]!.join('')})`);
    }
    // knitctl network create on one host, as an admin would, Docker's flags.
    for (const [net, subnet] of [['app', '10.234.0.0/24'], ['other', '10.235.0.0/24']] as const) {
      const r = await run0(hosts[0]!.ns.name, knit.bin('knitctl'), ['--etcd-endpoints', etcd.endpoints[0]!, '--etcd-prefix', PREFIX, 'network', 'create', '-d', 'overlay', '--subnet', subnet, name(net)]);
      assert.equal(r.code, 0, r.stderr);
      nets.push({ name: name(net) });
    }
    for (const h of hosts) for (const n of nets) await eventually(() => fs.existsSync(path.join(h.netDir, conflistFile(n.name))), 10_000, `conflist of ${n.name}`);
  });

  after(async () => {
    for (const h of hosts) await h.cleanup();
    for (const k of knitds) k.kill('SIGKILL');
    await etcd?.stop();
    await labs.net.cleanup();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') logs.forEach((l, i) => console.log(`--- knitd ph${i + 1}\n${l.join('').split('\n').slice(-30).join('\n')}`));
  });

  /** podman run OPTIONS --rootfs ROOTFS COMMAND...: options must come before the rootfs (podman's first positional). */
  const run = (h: PodmanHost, opts: string[], cmd: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    h.podman(['run', ...opts, '--rootfs', h.rootfs, ...cmd], { allowFail: true, timeoutMs: 90_000 });
  const ipOn = async (h: PodmanHost, container: string, net: string): Promise<string> => (await h.inspect(container)).NetworkSettings.Networks[net].IPAddress;

  // A container just started on one host is reachable from the other once that host's knitd has
  // its endpoint record (FDB and proxy-ARP entries, well under a second when the machine is quiet):
  // up to 5 tries of one ping each, done at the first reply.
  const reach = (...ips: string[]): string[] =>
    ['sh', '-c', `reach() { for i in 1 2 3 4 5; do ping -c1 -W2 "$1" && return 0; done; return 1; }; ${ips.map((ip) => `reach ${ip}`).join(' && ')}`];

  it('podman run --network app on two hosts: the containers ping each other across the underlay', async () => {
    const [h1, h2] = hosts as [PodmanHost, PodmanHost];
    const a1 = await run(h1, ['-d', '--name', name('a1'), '--network', name('app')], ['sleep', '600']);
    assert.equal(a1.code, 0, a1.stderr);
    const ip1 = await ipOn(h1, name('a1'), name('app'));
    assert.match(ip1, /^10\.234\.0\.\d+$/);
    const a2 = await run(h2, ['--rm', '--name', name('a2'), '--network', name('app')], reach(ip1));
    assert.equal(a2.code, 0, `a2 on ph2 pings a1 on ph1 (${ip1}): ${a2.stdout} ${a2.stderr}`);
  });

  it('a container of another network cannot reach them; one on both networks reaches both', async () => {
    const [h1, h2] = hosts as [PodmanHost, PodmanHost];
    const ip1 = await ipOn(h1, name('a1'), name('app'));
    const o1 = await run(h1, ['-d', '--name', name('o1'), '--network', name('other')], ['sleep', '600']);
    assert.equal(o1.code, 0, o1.stderr);
    const ipO = await ipOn(h1, name('o1'), name('other'));
    const cross = await run(h2, ['--rm', '--network', name('other')], ['ping', '-c', '1', '-W', '2', ip1]);
    assert.notEqual(cross.code, 0, 'a container of "other" must not reach a1 of "app"');
    const both = await run(h2, ['--rm', '--network', name('app'), '--network', name('other')], reach(ip1, ipO));
    assert.equal(both.code, 0, `on both networks: ${both.stdout} ${both.stderr}`);
  });
});
