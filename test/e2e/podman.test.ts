// End to end with a real runtime: podman 4.3 (CNI backend) runs busybox containers on a
// knit-bridge network (knit-host-local IPAM, then the reference portmap). podman itself runs in a
// lab netns, which is the "host" the plugins see: the bridge, the host veths, the masquerade and
// portmap's DNAT live there, never in the root namespace. See test/e2e/podman.ts for the setup.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Lab, type Netns } from '../lab/lab';
import { attachmentLinks, buildKnit, links, natEmpty, natState, reservations } from '../lab/cni';
import { chainName } from '../../pkg/nat/masq';
import { httpGet, podmanMissing, PodmanHost, timed, type PodmanNetwork } from './podman';

/** Root-namespace state the suite must not change: link names, and anything of knit's there. */
function rootSnapshot(): { links: string[]; nft: string } {
  const links = (JSON.parse(execFileSync('ip', ['-json', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>).map((l) => l.ifname).sort();
  let nft = '';
  try { nft = execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }); } catch { /* no nft */ }
  return { links, nft };
}

describe('podman e2e: containers on a knit-bridge network', function () {
  this.timeout(120_000);
  const lab = new Lab();
  let host: PodmanHost | undefined;
  let client: Netns;
  let net: PodmanNetwork;
  let ref: PodmanNetwork;
  let rootBefore: ReturnType<typeof rootSnapshot>;
  const timings: string[] = [];
  // The lab host's uplink to a "client" netns: the host's own address, and the client behind it.
  const HOST_ADDR = '192.0.2.1';
  const CLIENT_ADDR = '192.0.2.2';
  const A_IP = '10.77.41.50';
  const A_MAC = '02:4b:4e:49:54:32';
  const PAGE = `served by busybox httpd on ${lab.prefix}\n`;
  let aName: string;
  let bName: string;
  let aId: string;
  let bId: string;

  before(async function () {
    const missing = podmanMissing();
    if (missing) {
      console.log(`      skipped: podman e2e ${missing}`);
      this.skip();
    }
    rootBefore = rootSnapshot();
    const knit = await buildKnit(['knit-bridge', 'knit-host-local']);
    host = await PodmanHost.create(lab, knit, ['portmap', 'bridge', 'host-local']);
    net = { name: `${lab.prefix}-pm`, bridge: `${lab.prefix}-pm`.slice(0, 15), subnet: '10.77.41.0/24', dataDir: path.join(host.dir, 'data/knit') };
    ref = { name: `${lab.prefix}-ref`, bridge: `${lab.prefix}-rf`.slice(0, 15), subnet: '10.77.42.0/24', dataDir: path.join(host.dir, 'data/ref') };
    host.addNetwork(net, [
      {
        type: 'knit-bridge', bridge: net.bridge, isGateway: true, ipMasq: true,
        ipam: { type: 'knit-host-local', dataDir: net.dataDir, ranges: [[{ subnet: net.subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ]);
    // The reference bridge beside it, only for the timing comparison.
    host.addNetwork(ref, [
      {
        type: 'bridge', bridge: ref.bridge, isGateway: true, ipMasq: true,
        ipam: { type: 'host-local', dataDir: ref.dataDir, ranges: [[{ subnet: ref.subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ]);
    fs.writeFileSync(path.join(host.rootfs, 'www/index.html'), PAGE);
    // The uplink: a veth made inside the lab host with its peer put straight into the client.
    client = await lab.netns('client');
    await host.exec('ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client.name]);
    await host.exec('ip', ['addr', 'add', `${HOST_ADDR}/24`, 'dev', 'up0']);
    await host.exec('ip', ['link', 'set', 'up0', 'up']);
    await lab.exec(client, 'ip', ['addr', 'add', `${CLIENT_ADDR}/24`, 'dev', 'eth0']);
    await lab.exec(client, 'ip', ['link', 'set', 'eth0', 'up']);
    // Only an unusable runtime skips; a failure with the knit network below is a test failure.
    const probe = await host.podman(['run', '--rm', '--network', 'none', '--rootfs', host.rootfs, '/bin/true'], { allowFail: true });
    if (probe.code !== 0) {
      console.log(`      skipped: podman cannot run a container here: ${probe.stderr.trim().split('\n').slice(-2).join(' | ')}`);
      this.skip();
    }
    aName = `${lab.prefix}-a`;
    bName = `${lab.prefix}-b`;
  });

  after(async function () {
    this.timeout(120_000);
    if (timings.length) console.log(`      podman timings:\n${timings.map((t) => `        ${t}`).join('\n')}`);
    await host?.cleanup();
    await lab.cleanup();
    if (host) {
      assert.ok(!fs.existsSync(host.dir), `${host.dir} should be gone`);
      // Nothing of ours may have reached the root namespace.
      const after = rootSnapshot();
      for (const n of [net.bridge, ref.bridge]) assert.ok(!after.links.includes(n), `bridge ${n} appeared in the root namespace`);
      const newLinks = after.links.filter((l) => !rootBefore.links.includes(l) && /^(kn|veth)/.test(l));
      assert.deepEqual(newLinks, [], 'host veths appeared in the root namespace');
      assert.ok(!after.nft.includes(chainName(net.name)), 'masquerade chain of the test network appeared in the root namespace');
      assert.ok(!after.nft.includes(net.subnet) && !after.nft.includes(ref.subnet), 'rules for the test subnets appeared in the root namespace');
    }
  });

  it('runs two containers that ping each other by IP, and reach outside through the masquerade', async function () {
    const h = host!;
    const a = await timed(() => h.podman(['run', '-d', '--name', aName, '--network', net.name, '--ip', A_IP, '--mac-address', A_MAC,
      '-p', '8080:80', '--rootfs', h.rootfs, '/bin/httpd', '-f', '-p', '80', '-h', '/www']));
    timings.push(`podman run -d (knit network, --ip, --mac-address, -p): ${a.ms.toFixed(0)} ms`);
    const b = await timed(() => h.podman(['run', '-d', '--name', bName, '--network', net.name, '--rootfs', h.rootfs, '/bin/sleep', '600']));
    timings.push(`podman run -d (knit network): ${b.ms.toFixed(0)} ms`);
    const ia = await h.inspect(aName);
    const ib = await h.inspect(bName);
    aId = ia.Id;
    bId = ib.Id;
    const bIp: string = ib.NetworkSettings.Networks[net.name].IPAddress;
    assert.match(bIp, /^10\.77\.41\.\d+$/);
    assert.notEqual(bIp, A_IP);
    // The bridge and one host veth per container are in the lab host, each named by its alias.
    const linksA = await attachmentLinks(lab, h.ns, net.name, aId);
    const linksB = await attachmentLinks(lab, h.ns, net.name, bId);
    assert.equal(linksA.length, 1, 'one host veth for container a');
    assert.equal(linksB.length, 1, 'one host veth for container b');
    assert.equal(linksA[0]!.master, net.bridge);
    const ping = async (from: string, to: string): Promise<void> => {
      const r = await h.podman(['exec', from, 'ping', '-c', '2', '-W', '2', to], { allowFail: true, timeoutMs: 15_000 });
      assert.equal(r.code, 0, `${from} could not ping ${to}: ${r.stdout}${r.stderr}`);
    };
    await ping(bName, A_IP);
    await ping(aName, bIp);
    // ipMasq: the client has no route to the containers' subnet, so its answers only come back
    // when the container's packets leave the lab host with the host's address.
    await ping(bName, CLIENT_ADDR);
    const nat = await natState(lab, h.ns, net.name);
    assert.deepEqual(nat.subnets, [net.subnet], 'the masquerade entry for the subnet is in the lab host');
  });

  it('honours --ip and --mac-address (CNI_ARGS IP= and MAC=)', async function () {
    const h = host!;
    const addr = (await h.podman(['exec', aName, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout;
    assert.match(addr, new RegExp(`inet ${A_IP.replace(/\./g, '\\.')}/24 `), addr);
    const mac = (await h.podman(['exec', aName, 'cat', '/sys/class/net/eth0/address'])).stdout.trim();
    assert.equal(mac, A_MAC);
    const route = (await h.podman(['exec', aName, 'ip', 'route', 'show', 'default'])).stdout;
    assert.match(route, /default via 10\.77\.41\.1 dev eth0/, route);
    const info = await h.inspect(aName);
    assert.equal(info.NetworkSettings.Networks[net.name].IPAddress, A_IP);
    assert.equal(info.NetworkSettings.Networks[net.name].MacAddress, A_MAC);
    // host-local recorded the static request under the container's ID.
    assert.ok(reservations(net.dataDir, net.name).some((r) => r.ip === A_IP && r.owner === aId), 'reservation of the static IP');
  });

  it('publishes -p 8080:80 through portmap: busybox httpd answers on the host address, 127.0.0.1 and from outside', async function () {
    const h = host!;
    assert.equal(await httpGet(h.ns, `http://${A_IP}:80/`), PAGE, 'direct to the container');
    assert.equal(await httpGet(h.ns, `http://${HOST_ADDR}:8080/`), PAGE, "the host's own address");
    assert.equal(await httpGet(h.ns, 'http://127.0.0.1:8080/'), PAGE, 'localhost on the host');
    assert.equal(await httpGet(client, `http://${HOST_ADDR}:8080/`), PAGE, 'from the client behind the uplink');
  });

  it('stop and rm leave nothing: no host veths, reservations, NAT entry or portmap rule', async function () {
    const h = host!;
    const ids = [aId, bId];
    const st = await timed(() => h.podman(['stop', '-t', '0', aName, bName]));
    timings.push(`podman stop -t 0 (two containers): ${st.ms.toFixed(0)} ms`);
    const check = async (when: string): Promise<void> => {
      const left = (await attachmentLinks(lab, h.ns, net.name)).map((l) => l.ifname);
      assert.deepEqual(left, [], `knit host veths after ${when}`);
      const anyKnit = (await links(lab, h.ns)).filter((l) => l.ifalias?.startsWith('knit:')).map((l) => l.ifname);
      assert.deepEqual(anyKnit, [], `links with a knit: alias after ${when}`);
      assert.deepEqual(reservations(net.dataDir, net.name), [], `reservation files after ${when}`);
      const attachments = path.join(net.dataDir, net.name, 'attachments');
      assert.deepEqual(fs.existsSync(attachments) ? fs.readdirSync(attachments) : [], [], `attachment records after ${when}`);
      const nat = await natState(lab, h.ns, net.name);
      assert.ok(natEmpty(nat), `NAT state for ${net.name} after ${when}: ${JSON.stringify(nat)}`);
      const dnat = (await h.exec('iptables', ['-t', 'nat', '-S'], { allowFail: true })).stdout;
      for (const id of ids) assert.ok(!dnat.includes(id), `portmap rule of ${id.slice(0, 12)} after ${when}`);
      for (const id of ids) {
        const cache = fs.existsSync('/var/lib/cni/results') ? fs.readdirSync('/var/lib/cni/results').filter((f) => f.includes(id)) : [];
        assert.deepEqual(cache, [], `libcni cache after ${when}`);
      }
    };
    await check('podman stop');
    const rm = await timed(() => h.podman(['rm', aName, bName]));
    timings.push(`podman rm (two stopped containers): ${rm.ms.toFixed(0)} ms`);
    await check('podman rm');
    assert.equal((await h.podman(['ps', '-aq'])).stdout.trim(), '', 'no containers remain');
  });

  it('times podman run --rm on the knit network (beside the reference bridge and --network none)', async function () {
    const h = host!;
    const runRm = async (network: string): Promise<number> => {
      const r = await timed(() => h.podman(['run', '--rm', '--network', network, '--rootfs', h.rootfs, '/bin/true']));
      return r.ms;
    };
    const res: Record<string, number[]> = { [net.name]: [], [ref.name]: [], none: [] };
    for (let i = 0; i < 3; i++) for (const n of [net.name, ref.name, 'none']) res[n]!.push(await runRm(n));
    const fmt = (xs: number[]): string => `median ${[...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!.toFixed(0)} ms (${xs.map((x) => x.toFixed(0)).join(', ')})`;
    timings.push(`podman run --rm true, knit-bridge + knit-host-local + portmap: ${fmt(res[net.name]!)}`);
    timings.push(`podman run --rm true, reference bridge + host-local + portmap: ${fmt(res[ref.name]!)}`);
    timings.push(`podman run --rm true, --network none: ${fmt(res.none!)}`);
    assert.deepEqual((await attachmentLinks(lab, h.ns, net.name)).map((l) => l.ifname), [], 'run --rm leaves no host veth');
    assert.deepEqual(reservations(net.dataDir, net.name), [], 'run --rm leaves no reservation');
    assert.ok(natEmpty(await natState(lab, h.ns, net.name)), 'run --rm leaves no NAT entry');
  });
});
