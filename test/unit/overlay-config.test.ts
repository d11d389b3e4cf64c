// The overlay's pure parts: network config validation, subnet enumeration, the VTEP MAC scheme,
// the lease file (atomic write, "not ready" when absent), knit-overlay's synthesized bridge config
// and knitd's overlay flags.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseNetworkConfig } from '../../pkg/agent/network-config';
import { allSubnets, fitsNetwork, loadPersisted, savePersisted } from '../../pkg/agent/lease';
import { canonSubnet } from '../../pkg/agent/backend/reconcile';
import { vtepAddrOf, vtepMacFor } from '../../pkg/agent/backend/vxlan';
import { readLeaseFile, writeLeaseFile } from '../../pkg/agent/lease-file';
import { bridgeConfOf, requireLease, runDirOf } from '../../plugins/main/overlay/config';
import { overlayFlags } from '../../cmd/knitd/overlay';
import { parseLeaseValue, subnetFromKey, subnetKeyPart } from '../../pkg/datastore/etcd-overlay';
import type { NetConf } from '../../pkg/cni/types';

describe('overlay: network config', () => {
  it('fills defaults and accepts both backends', () => {
    assert.deepEqual(parseNetworkConfig('{"network":"10.216.0.0/16"}'), { network: '10.216.0.0/16', subnetLen: 24, backend: { type: 'vxlan', vni: 1, port: 4789 } });
    assert.deepEqual(parseNetworkConfig({ network: '10.0.0.0/8', subnetLen: 20, backend: { type: 'vxlan', vni: 7, port: 8472, mtu: 8950, directRouting: true } }).backend,
      { type: 'vxlan', vni: 7, port: 8472, mtu: 8950, directRouting: true });
    assert.deepEqual(parseNetworkConfig({ network: '10.216.0.0/16', backend: { type: 'host-gw' } }).backend, { type: 'host-gw' });
  });

  it('names the key, the value and what is valid', () => {
    const bad: Array<[unknown, RegExp]> = [
      ['nope', /not JSON/],
      [{ network: '10.216.0.1/16' }, /network "10\.216\.0\.1\/16".*"10\.216\.0\.0\/16"/],
      [{ network: 'fd00::/64' }, /IPv4 CIDR/],
      [{ network: '10.216.0.0/16', subnetLen: 16 }, /subnetLen 16: an integer from 17/],
      [{ network: '10.216.0.0/16', backend: { type: 'geneve' } }, /backend\.type "geneve"/],
      [{ network: '10.216.0.0/16', backend: { type: 'vxlan', vni: -1 } }, /backend\.vni -1/],
      [{ network: '10.216.0.0/16', backend: { type: 'vxlan', port: 0 } }, /backend\.port 0/],
      [{ network: '10.216.0.0/16', backend: { type: 'vxlan', directRouting: 'yes' } }, /directRouting "yes"/],
      [{ network: '10.216.0.0/16', backend: { type: 'host-gw', vni: 1 } }, /backend\.vni/],
      [{ network: '10.216.0.0/16', extra: 1 }, /extra 1: unknown key/],
    ];
    for (const [v, re] of bad) assert.throws(() => parseNetworkConfig(v as string), re, JSON.stringify(v));
  });
});

describe('overlay: subnets and VTEP', () => {
  const cfg = parseNetworkConfig({ network: '10.216.0.0/16', subnetLen: 24 });
  it('enumerates every subnet of the network', () => {
    const all = allSubnets(cfg);
    assert.equal(all.length, 256);
    assert.equal(all[0], '10.216.0.0/24');
    assert.equal(all[255], '10.216.255.0/24');
    assert.ok(fitsNetwork(cfg, '10.216.7.0/24'));
    assert.ok(!fitsNetwork(cfg, '10.217.7.0/24'));
    assert.ok(!fitsNetwork(cfg, '10.216.7.0/25'));
    assert.ok(!fitsNetwork(cfg, '10.216.7.1/24'));
  });

  it('derives a stable, locally administered unicast VTEP MAC per node and VNI', () => {
    const a = vtepMacFor('node-a', 1);
    assert.equal(a, vtepMacFor('node-a', 1));
    assert.notEqual(a, vtepMacFor('node-b', 1));
    assert.notEqual(a, vtepMacFor('node-a', 2));
    assert.match(a, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = parseInt(a.slice(0, 2), 16);
    assert.equal(first & 0x03, 0x02);
    assert.equal(vtepAddrOf('10.216.7.0/24'), '10.216.7.0');
    assert.equal(canonSubnet('10.216.7.9/24'), '10.216.7.0/24');
  });

  it('keys a lease by its subnet', () => {
    assert.equal(subnetKeyPart('10.216.7.0/24'), '10.216.7.0-24');
    assert.equal(subnetFromKey('/knit/subnets/10.216.7.0-24'), '10.216.7.0/24');
    assert.deepEqual(parseLeaseValue('/knit/subnets/10.216.7.0-24', '{"nodeName":"a","underlayAddr":"192.168.1.1","subnet":"bogus"}', 5),
      { nodeName: 'a', underlayAddr: '192.168.1.1', subnet: '10.216.7.0/24', revision: 5 });
    assert.equal(parseLeaseValue('/knit/subnets/10.216.7.0-24', 'garbage'), null);
  });
});

describe('overlay: lease file and state', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-lease-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes atomically and reads back; absent is null, corrupt throws', () => {
    assert.equal(readLeaseFile(dir), null);
    writeLeaseFile(path.join(dir, 'run'), { network: '10.216.0.0/16', subnet: '10.216.3.0/24', mtu: 1450 });
    assert.deepEqual(readLeaseFile(path.join(dir, 'run')), { network: '10.216.0.0/16', subnet: '10.216.3.0/24', mtu: 1450 });
    assert.deepEqual(fs.readdirSync(path.join(dir, 'run')), ['lease.json']);
    fs.writeFileSync(path.join(dir, 'lease.json'), '{"network":"x"}');
    assert.throws(() => readLeaseFile(dir), /network "x"/);
    assert.throws(() => writeLeaseFile(dir, { network: '10.216.0.0/16', subnet: '10.216.3.0/24', mtu: 10 }), /mtu/);
  });

  it('persists the subnet under the state dir', () => {
    assert.equal(loadPersisted(dir), null);
    savePersisted(path.join(dir, 's'), { nodeName: 'a', network: '10.216.0.0/16', subnet: '10.216.3.0/24' });
    assert.deepEqual(loadPersisted(path.join(dir, 's')), { nodeName: 'a', network: '10.216.0.0/16', subnet: '10.216.3.0/24' });
  });

  it('knit-overlay: code 11 without a lease; the bridge config it synthesizes', () => {
    const conf = { cniVersion: '1.1.0', name: 'n', type: 'knit-overlay', runDir: dir } as NetConf;
    assert.throws(() => requireLease(conf), (e: any) => e.code === 11 && /knitd is not ready/.test(e.message));
    assert.throws(() => requireLease({ ...conf, runDir: 'rel' }), /runDir "rel"/);
    const lease = { network: '10.216.0.0/16', subnet: '10.216.3.0/24', mtu: 1450 };
    assert.deepEqual(bridgeConfOf(conf, lease), {
      bridge: 'knit-ov0', isGateway: true, isDefaultGateway: true, forceAddress: true, ipMasq: false, mtu: 1450,
      ipam: { type: 'knit-host-local', ranges: [[{ subnet: '10.216.3.0/24' }]] },
    });
    assert.deepEqual(bridgeConfOf({ ...conf, ipam: { type: 'knit-host-local', dataDir: '/d' } }, lease).ipam,
      { type: 'knit-host-local', dataDir: '/d', ranges: [[{ subnet: '10.216.3.0/24' }]] });
    const other = { type: 'knit-etcd-ipam', etcd: {} };
    assert.deepEqual(bridgeConfOf({ ...conf, ipam: other }, lease).ipam, other);
  });
});

describe('knit-overlay config', () => {
  it('runDir: absent is the default; anything but an absolute path is code 7 naming key, value and what is valid', () => {
    const conf = (runDir: unknown) => ({ cniVersion: '1.1.0', name: 'n', type: 'knit-overlay', runDir }) as NetConf;
    assert.equal(runDirOf(conf(undefined)), '/run/knit');
    assert.equal(runDirOf(conf(null)), '/run/knit');
    assert.equal(runDirOf(conf('/run/knit-test')), '/run/knit-test');
    for (const [v, shown] of [['rel', '"rel"'], ['', '""'], [5, '5'], [true, 'true']] as const) {
      assert.throws(() => runDirOf(conf(v)), (e: any) => e.code === 7
        && e.message === `invalid runDir ${shown}: an absolute directory path (default /run/knit)`, String(v));
    }
  });
});

describe('knitd overlay flags', () => {
  it('off without endpoints; defaults; validation', () => {
    assert.equal(overlayFlags({}, {}), undefined);
    const f = overlayFlags({ 'etcd-endpoints': 'http://a:2379,http://b:2379', 'node-name': 'n1' }, {})!;
    assert.deepEqual(f, { endpoints: ['http://a:2379', 'http://b:2379'], prefix: '/knit', nodeName: 'n1', runDir: '/run/knit', stateDir: '/var/lib/knit', confDir: '/etc/cni/net.d', ttlSec: 300, resyncSec: 60, dns: { on: true, resolvConf: '/etc/resolv.conf' } });
    assert.deepEqual(overlayFlags({ 'etcd-endpoints': 'http://a:2379', dns: 'off', 'dns-resolv-conf': '/r' }, {})!.dns, { on: false, resolvConf: '/r' });
    assert.throws(() => overlayFlags({ 'etcd-endpoints': 'http://a:2379', dns: 'maybe' }, {}), /--dns maybe/);
    assert.equal(overlayFlags({}, { KNIT_ETCD_ENDPOINTS: 'https://x:2379', KNIT_NODE_NAME: 'y' })!.nodeName, 'y');
    assert.throws(() => overlayFlags({ 'etcd-endpoints': 'x:2379' }, {}), /--etcd-endpoints x:2379/);
    assert.throws(() => overlayFlags({ 'etcd-endpoints': 'http://x', 'lease-ttl': '0' }, {}), /--lease-ttl 0/);
    assert.throws(() => overlayFlags({ 'etcd-endpoints': 'http://x', 'etcd-certfile': '/c' }, {}), /go together/);
    assert.throws(() => overlayFlags({ 'etcd-endpoints': 'http://x', 'node-name': 'a/b' }, {}), /--node-name a\/b/);
  });
});
