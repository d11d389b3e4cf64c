// Named networks from Docker's flags (pkg/network/spec.ts): the seeds' example verbatim, defaults,
// and every bad flag named with its value and what is valid.
import assert from 'node:assert/strict';
import { buildNetwork, cipherOf, splitParent, type CreateRequest, type Network } from '../../pkg/network/spec';
import { inspect, lsRows } from '../../pkg/network/inspect';
import { renderConflist } from '../../pkg/network/conflist';

const NOW = new Date('2026-12-06T00:00:00Z');
const ID = 'a'.repeat(64);
const build = (req: Partial<CreateRequest> & { name?: string }, existing: Network[] = []): Network =>
  buildNetwork({ name: 'net1', ...req }, existing, NOW, ID);
const rejects = (req: Partial<CreateRequest>, ...parts: string[]): void => {
  assert.throws(() => build(req), (e: Error) => {
    for (const p of parts) assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} should contain ${JSON.stringify(p)}`);
    return true;
  });
};

describe('named network spec (Docker flags)', () => {
  it('takes the Docker documentation example verbatim', () => {
    const n = build({
      name: 'myoverlaynet', driver: 'overlay',
      subnets: ['192.168.0.0/16', '192.170.0.0/16'], gateways: ['192.168.0.100', '192.170.0.100'],
      ipRanges: ['192.168.1.0/24'], auxAddresses: ['my-router=192.168.1.5', 'my-switch=192.168.1.16'],
    });
    assert.equal(n.driver, 'overlay');
    assert.deepEqual(n.subnets, [
      { subnet: '192.168.0.0/16', gateway: '192.168.0.100', ipRange: '192.168.1.0/24', auxAddresses: { 'my-router': '192.168.1.5', 'my-switch': '192.168.1.16' } },
      { subnet: '192.170.0.0/16', gateway: '192.170.0.100', auxAddresses: {} },
    ]);
    assert.equal(n.options.vni, 4096);
    assert.equal(n.options.isolation, true);
    assert.equal(n.created, NOW.toISOString());
  });

  it('defaults: bridge driver, the first free /24 of the default pool, gateway the first host', () => {
    const a = build({ name: 'a' });
    assert.equal(a.driver, 'bridge');
    assert.deepEqual(a.subnets, [{ subnet: '10.90.0.0/24', gateway: '10.90.0.1', auxAddresses: {} }]);
    const b = build({ name: 'b' }, [a]);
    assert.equal(b.subnets[0]!.subnet, '10.90.1.0/24');
  });

  it('allocates VNIs from 4096 upward past those in use, and takes a free given one', () => {
    const a = build({ name: 'a', driver: 'overlay', subnets: ['10.1.0.0/24'] });
    const b = build({ name: 'b', driver: 'overlay', subnets: ['10.2.0.0/24'] }, [a]);
    assert.equal(b.options.vni, 4097);
    const c = build({ name: 'c', driver: 'overlay', subnets: ['10.3.0.0/24'], opts: ['com.docker.network.driver.overlay.vxlanid_list=70'] }, [a, b]);
    assert.equal(c.options.vni, 70);
    assert.throws(() => build({ name: 'd', driver: 'overlay', subnets: ['10.4.0.0/24'], opts: ['vni=4096'] }, [a]), /-o vni 4096.*network a has it/);
  });

  it('dual stack needs --ipv6, and --ipv6 needs a v6 subnet', () => {
    rejects({ subnets: ['fd00:1::/64'] }, '--subnet', 'fd00:1::/64', '--ipv6');
    rejects({ ipv6: true }, '--ipv6', 'IPv6 --subnet');
    const n = build({ ipv6: true, subnets: ['10.5.0.0/24', 'fd00:5::/64'] });
    assert.deepEqual(n.subnets.map((s) => s.gateway), ['10.5.0.1', 'fd00:5::1']);
  });

  it('names every bad flag, its value and what is valid', () => {
    rejects({ name: '-x' }, 'network name', '"-x"', 'letter or digit');
    rejects({ name: 'host' }, 'network name', 'reserved');
    rejects({ driver: 'ipvlan' }, '--driver', 'ipvlan', 'overlay, bridge, macvlan');
    rejects({ subnets: ['10.0.0.1/24'] }, '--subnet', '10.0.0.1/24', '10.0.0.0/24');
    rejects({ subnets: ['10.0.0.0/31'] }, '--subnet', '/30');
    rejects({ subnets: ['banana'] }, '--subnet', 'banana', 'CIDR');
    rejects({ subnets: ['10.0.0.0/16', '10.0.1.0/24'] }, '--subnet', '10.0.1.0/24', 'overlap 10.0.0.0/16');
    rejects({ subnets: ['10.0.0.0/24'], gateways: ['10.9.0.1'] }, '--gateway', '10.9.0.1', 'inside one of the subnets 10.0.0.0/24');
    rejects({ subnets: ['10.0.0.0/24'], gateways: ['10.0.0.0'] }, '--gateway', 'not its network or broadcast');
    rejects({ subnets: ['10.0.0.0/24'], gateways: ['10.0.0.1', '10.0.0.2'] }, '--gateway', '10.0.0.2', 'one gateway per subnet');
    rejects({ subnets: ['10.0.0.0/24'], ipRanges: ['10.1.0.0/24'] }, '--ip-range', '10.1.0.0/24', 'inside one of the subnets');
    rejects({ subnets: ['10.0.0.0/24'], ipRanges: ['10.0.0.0/16'] }, '--ip-range', '10.0.0.0/16');
    rejects({ subnets: ['10.0.0.0/24'], auxAddresses: ['r=10.1.0.5'] }, '--aux-address', 'r=10.1.0.5', 'inside one of the subnets');
    rejects({ subnets: ['10.0.0.0/24'], auxAddresses: ['10.0.0.5'] }, '--aux-address', 'NAME=IP');
    rejects({ subnets: ['10.0.0.0/24'], auxAddresses: ['gw=10.0.0.1'] }, '--aux-address', 'other than the gateway');
    rejects({ opts: ['mtu=20'] }, '-o mtu', '"20"', '68 to 65535');
    rejects({ opts: ['colour=blue'] }, '-o', 'colour=blue', 'one of mtu, vni');
    rejects({ opts: ['encrypted=true'] }, '-o encrypted', 'only for --driver overlay');
    rejects({ driver: 'macvlan', opts: ['parent=eth0', 'encrypted'] }, '-o encrypted', 'only for --driver overlay');
    rejects({ driver: 'overlay', opts: ['encrypted=yes'] }, '-o encrypted', '"yes"', 'true or false');
    rejects({ driver: 'overlay', opts: ['encrypted', 'cipher=aes-cbc'] }, '-o cipher', '"aes-cbc"', 'one of aes-gcm, chacha20-poly1305');
    rejects({ driver: 'overlay', opts: ['cipher=chacha20-poly1305'] }, '-o cipher', '"chacha20-poly1305"', 'only with -o encrypted');
    rejects({ driver: 'overlay', opts: ['encrypted=false', 'cipher=aes-gcm'] }, '-o cipher', 'only with -o encrypted');
    rejects({ driver: 'bridge', opts: ['cipher=aes-gcm'] }, '-o cipher', '"aes-gcm"', 'only for --driver overlay');
    rejects({ driver: 'overlay', opts: ['vni=0'] }, '-o vni', '1 to 16777215');
    rejects({ driver: 'bridge', opts: ['vni=10'] }, '-o vni', 'only for --driver overlay');
    rejects({ driver: 'macvlan' }, '-o parent', 'required for --driver macvlan');
    rejects({ driver: 'bridge', opts: ['parent=eth0'] }, '-o parent', 'only for --driver macvlan');
    rejects({ labels: ['novalue'] }, '--label', 'KEY=VALUE');
  });

  it('refuses a subnet that overlaps another network, and a name in use', () => {
    const a = build({ name: 'a', subnets: ['10.7.0.0/16'] });
    assert.throws(() => build({ name: 'b', subnets: ['10.7.3.0/24'] }, [a]), /--subnet "10.7.3.0\/24".*10.7.0.0\/16 of network a/);
    assert.throws(() => build({ name: 'a', subnets: ['10.8.0.0/24'] }, [a]), /network a already exists/);
  });

  it('takes Docker\'s --opt encrypted (no value) and encrypted=true for overlay networks', () => {
    for (const o of ['encrypted', 'encrypted=true']) {
      const n = build({ driver: 'overlay', opts: [o] });
      assert.equal(n.options.encrypted, true, o);
      assert.equal(inspect(n, []).Options.encrypted, 'true');
      const main = (renderConflist(n, { nodeName: 'n1', etcd: { endpoints: ['http://10.0.0.1:2379'], prefix: '/knit', timeoutMs: 5000 }, runDir: '/run/knit' }).plugins as any[])[0];
      assert.equal(main.type, 'knit-l2overlay');
      assert.equal(main.encrypted, true, 'knit-l2overlay is told, so it refuses (code 101) where the kernel cannot encrypt');
    }
    const plain = build({ driver: 'overlay', opts: ['encrypted=false'] });
    assert.equal(plain.options.encrypted, undefined);
    assert.equal(inspect(plain, []).Options.encrypted, undefined);
  });

  it('-o cipher picks the ESP cipher: stored, in inspect and the conflist; absent: aes-gcm, as before', () => {
    const ctx = { nodeName: 'n1', etcd: { endpoints: ['http://10.0.0.1:2379'], prefix: '/knit', timeoutMs: 5000 }, runDir: '/run/knit' };
    // Either order: the cipher is checked against -o encrypted after all options are read.
    for (const opts of [['encrypted', 'cipher=chacha20-poly1305'], ['cipher=chacha20-poly1305', 'encrypted=true']]) {
      const n = build({ driver: 'overlay', opts });
      assert.equal(n.options.cipher, 'chacha20-poly1305');
      assert.equal(cipherOf(n), 'chacha20-poly1305');
      assert.deepEqual(inspect(n, []).Options, { 'com.docker.network.driver.overlay.vxlanid_list': '4096', encrypted: 'true', cipher: 'chacha20-poly1305' });
      const main = (renderConflist(n, ctx).plugins as any[])[0];
      assert.equal(main.encrypted, true);
      assert.equal(main.cipher, 'chacha20-poly1305', 'knit-l2overlay probes the kernel for this cipher');
    }
    const aes = build({ driver: 'overlay', opts: ['encrypted'] });
    assert.equal(aes.options.cipher, undefined, 'stored as before ciphers were a choice');
    assert.equal(cipherOf(aes), 'aes-gcm');
    assert.equal(inspect(aes, []).Options.cipher, undefined);
    assert.equal((renderConflist(aes, ctx).plugins as any[])[0].cipher, undefined);
    assert.equal(build({ driver: 'overlay', opts: ['encrypted', 'cipher=aes-gcm'] }).options.cipher, 'aes-gcm');
    assert.equal(cipherOf(build({ driver: 'overlay' })), null);
    assert.equal(cipherOf(build({ driver: 'bridge' })), null);
  });

  it('splits a Docker macvlan parent into master and VLAN', () => {
    assert.deepEqual(splitParent('ens33.100'), { master: 'ens33', vlan: 100 });
    assert.deepEqual(splitParent('eth0'), { master: 'eth0' });
    assert.deepEqual(splitParent('eth0.5000'), { master: 'eth0.5000' });
  });
});

describe('network inspect and ls (Docker\'s shape)', () => {
  it('shows IPAM config, options, containers with their hosts, and the peers', () => {
    const n = build({ name: 'web', driver: 'overlay', subnets: ['10.40.0.0/24'], ipRanges: ['10.40.0.128/25'], auxAddresses: ['r=10.40.0.5'], labels: ['team=a'] });
    const eps = [
      { network: 'web', containerId: 'bbbb', ifName: 'eth0', node: 'h2', nodeIp: '192.0.2.2', mac: '02:00:00:00:00:02', ips: ['10.40.0.130/24'], created: '' },
      { network: 'web', containerId: 'aaaa', ifName: 'eth0', node: 'h1', nodeIp: '192.0.2.1', mac: '02:00:00:00:00:01', ips: ['10.40.0.129/24', 'fd00::5/64'], name: 'api', created: '' },
      { network: 'other', containerId: 'cccc', ifName: 'eth0', node: 'h1', nodeIp: '192.0.2.1', mac: '02:00:00:00:00:03', ips: ['10.41.0.2/24'], created: '' },
    ];
    const d = inspect(n, eps);
    assert.equal(d.Scope, 'swarm');
    assert.deepEqual(d.IPAM.Config, [{ Subnet: '10.40.0.0/24', Gateway: '10.40.0.1', IPRange: '10.40.0.128/25', AuxiliaryAddresses: { r: '10.40.0.5' } }]);
    assert.deepEqual(d.Options, { 'com.docker.network.driver.overlay.vxlanid_list': '4096' });
    assert.deepEqual(Object.keys(d.Containers), ['aaaa', 'bbbb']);
    assert.deepEqual(d.Containers.aaaa, { Name: 'api', EndpointID: 'h1/aaaa/eth0', MacAddress: '02:00:00:00:00:01', IPv4Address: '10.40.0.129/24', IPv6Address: 'fd00::5/64', Host: 'h1', Interface: 'eth0' });
    assert.deepEqual(d.Peers, [{ Name: 'h1', IP: '192.0.2.1' }, { Name: 'h2', IP: '192.0.2.2' }]);
    assert.deepEqual(d.Labels, { team: 'a' });
    assert.deepEqual(lsRows([n], eps)[1], [n.id.slice(0, 12), 'web', 'overlay', 'swarm', '10.40.0.0/24', '2']);
  });
});
