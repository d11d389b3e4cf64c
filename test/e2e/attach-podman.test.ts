// knitctl attach / detach with a real runtime: a podman 4.3 container (CNI backend, in a lab netns
// as test/e2e/podman.ts sets it up) running on its own network is attached by name to a second
// network, reaches a netns attached there by path, keeps its podman network, and is detached
// by name; attached again, removed by podman, and detached by its container ID from the cache.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, run, type ExecResult, type Netns } from '../lab/lab';
import { attachmentLinks, buildKnit, reservations, type KnitBuild } from '../lab/cni';
import { podmanMissing, PodmanHost, type PodmanNetwork } from './podman';

const CNI_RESULTS = '/var/lib/cni/results';

describe('podman e2e: knitctl attach / detach of a podman container', function () {
  this.timeout(180_000);
  const lab = new Lab();
  let knit: KnitBuild;
  let host: PodmanHost | undefined;
  let own: PodmanNetwork;
  let att: PodmanNetwork;
  let peer: Netns;
  let ctr: string;

  before(async function () {
    const missing = podmanMissing();
    if (missing) {
      console.log(`      skipped: podman attach e2e ${missing}`);
      this.skip();
    }
    knit = await buildKnit(['knit-bridge', 'knit-host-local', 'knitctl']);
    host = await PodmanHost.create(lab, knit, []);
    const bridge = (n: PodmanNetwork, caps?: object): object => ({
      type: 'knit-bridge', bridge: n.bridge, isGateway: true, ...(caps ? { capabilities: caps } : {}),
      ipam: { type: 'knit-host-local', dataDir: n.dataDir, ranges: [[{ subnet: n.subnet }]] },
    });
    own = { name: `${lab.prefix}-own`, bridge: `${lab.prefix}-ow`.slice(0, 15), subnet: '10.77.51.0/24', dataDir: path.join(host.dir, 'data/own') };
    att = { name: `${lab.prefix}-att`, bridge: `${lab.prefix}-at`.slice(0, 15), subnet: '10.77.52.0/24', dataDir: path.join(host.dir, 'data/att') };
    host.addNetwork(own, [bridge(own)]);
    host.addNetwork(att, [bridge(att, { ips: true, mac: true })]);
    const probe = await host.podman(['run', '--rm', '--network', 'none', '--rootfs', host.rootfs, '/bin/true'], { allowFail: true });
    if (probe.code !== 0) {
      console.log(`      skipped: podman cannot run a container here: ${probe.stderr.trim().split('\n').slice(-2).join(' | ')}`);
      this.skip();
    }
    ctr = `${lab.prefix}-box`;
    peer = await lab.pod('peer');
  });

  after(async function () {
    this.timeout(120_000);
    await host?.cleanup();
    await lab.cleanup();
  });

  /** knitctl on the podman host, with podman's configuration in its environment (as an admin's shell would have). */
  function knitctl(...args: string[]): Promise<ExecResult> {
    return run('nsenter', [`--net=${host!.ns.path}`, knit.bin('knitctl'), ...args, '--cni-conf-dir', host!.netDir, '--cni-path', host!.binDir], {
      env: { ...host!.env, NODE_EXTRA_CA_CERTS: undefined }, allowFail: true, timeoutMs: 60_000,
    });
  }

  const ok = (r: ExecResult, what: string): ExecResult => {
    assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stdout} ${r.stderr}`);
    return r;
  };
  const inCtr = (args: string[]): Promise<ExecResult> => host!.podman(['exec', ctr, ...args], { allowFail: true, timeoutMs: 20_000 });

  it('attaches a running container by name to a second network, where it reaches another attachment; detach by name', async () => {
    const h = host!;
    ok(await h.podman(['run', '-d', '--name', ctr, '--network', own.name, '--rootfs', h.rootfs, '/bin/sleep', '600']), 'podman run');
    const id: string = (await h.inspect(ctr)).Id;
    // Another member of the network: a netns attached by path, with a fixed address.
    ok(await knitctl('attach', att.name, peer.path, '--ip', '10.77.52.20/24'), 'attach peer');

    const r = ok(await knitctl('attach', att.name, ctr, '--mac', '02:4b:00:00:00:52'), 'attach container');
    assert.match(r.stdout, new RegExp(`^attached podman container ${ctr} \\(${id.slice(0, 12)}\\) to ${att.name} as eth1: 10\\.77\\.52\\.\\d+/24 \\(container ID ${id}\\)`));
    const addr = (await inCtr(['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth1'])).stdout;
    assert.match(addr, /inet 10\.77\.52\.\d+\/24 /, addr);
    assert.equal((await inCtr(['cat', '/sys/class/net/eth1/address'])).stdout.trim(), '02:4b:00:00:00:52');
    assert.equal((await inCtr(['ping', '-c', '2', '-W', '2', '10.77.52.20'])).code, 0, 'container -> peer on the attached network');
    assert.equal((await inCtr(['ping', '-c', '1', '-W', '2', '10.77.51.1'])).code, 0, 'container -> its own network\'s gateway, still');
    // Recorded where podman's own attachments are, under podman's container ID.
    const cache = path.join(CNI_RESULTS, `${att.name}-${id}-eth1`);
    const ours = JSON.parse(fs.readFileSync(cache, 'utf8'));
    const podmans = JSON.parse(fs.readFileSync(path.join(CNI_RESULTS, `${own.name}-${id}-eth0`), 'utf8'));
    assert.equal(ours.containerId, id);
    // The entry podman's libcni wrote for its own network has the same keys (ours adds netns, as libcni 1.2 does) and args.
    assert.deepEqual(Object.keys(podmans).filter((k) => !(k in ours)), [], `podman's keys ${Object.keys(podmans)} vs ours ${Object.keys(ours)}`);
    assert.deepEqual(ours.cniArgs, podmans.cniArgs);
    assert.deepEqual(ours.cniArgs, [['IgnoreUnknown', '1'], ['K8S_POD_NAME', ctr]]);
    assert.equal((await attachmentLinks(lab, h.ns, att.name, id)).length, 1);

    const d = ok(await knitctl('detach', att.name, ctr), 'detach container');
    assert.equal(d.stdout.trim(), `detached podman container ${ctr} (${id.slice(0, 12)}) from ${att.name} (eth1)`);
    assert.notEqual((await inCtr(['ip', 'link', 'show', 'eth1'])).code, 0, 'eth1 gone');
    assert.ok(!fs.existsSync(cache), 'cache entry gone');
    assert.deepEqual(reservations(att.dataDir, att.name).map((x) => x.ip), ['10.77.52.20'], 'only the peer\'s address is held');
    assert.equal((await inCtr(['ping', '-c', '1', '-W', '2', '10.77.51.1'])).code, 0, 'podman\'s own network untouched');
    ok(await knitctl('detach', att.name, ctr), 'detach twice');
  });

  it('a container removed while attached is detached by its container ID from the cache', async () => {
    const h = host!;
    const id: string = (await h.inspect(ctr)).Id;
    ok(await knitctl('attach', att.name, ctr), 'attach');
    assert.equal(reservations(att.dataDir, att.name).length, 2);
    ok(await h.podman(['rm', '-f', '-t', '0', ctr]), 'podman rm');
    const gone = await knitctl('detach', att.name, ctr);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, new RegExp(`invalid TARGET "${ctr}": not a path, not a PID, and no podman container .*\\(a target that is gone: give its container ID; ${att.name}'s cached attachments are .*${id}`));
    const d = ok(await knitctl('detach', att.name, id), 'detach by ID');
    assert.equal(d.stdout.trim(), `detached container ${id} from ${att.name} (eth1)`);
    assert.deepEqual(reservations(att.dataDir, att.name).map((x) => x.ip), ['10.77.52.20'], 'the address is freed');
    assert.deepEqual(await attachmentLinks(lab, h.ns, att.name, id), [], 'host veth gone');
    assert.ok(!fs.existsSync(path.join(CNI_RESULTS, `${att.name}-${id}-eth1`)));
    ok(await knitctl('detach', att.name, peer.path), 'detach peer');
    assert.deepEqual(reservations(att.dataDir, att.name), []);
  });
});
