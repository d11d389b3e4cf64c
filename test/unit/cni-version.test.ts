import assert from 'node:assert/strict';
import { SUPPORTED_VERSIONS, LATEST_VERSION, compareVersions, checkVersion, checkVerbVersion, versionInfo } from '../../pkg/cni/version';
import { convertResult, parseResult } from '../../pkg/cni/result';
import { CniError } from '../../pkg/cni/errors';
import type { Result } from '../../pkg/cni/types';

const isErr = (code: number, re: RegExp) => (e: unknown) => e instanceof CniError && e.code === code && re.test(e.message);

const full11: Result = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'knit0', mac: '0a:00:00:00:00:01', mtu: 1450 },
    { name: 'eth0', mac: '0a:00:00:00:00:02', mtu: 1450, sandbox: '/run/netns/p', socketPath: '/run/s.sock', pciID: '0000:00:01.0' },
  ],
  ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 }, { address: 'fd00::5/64', gateway: 'fd00::1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 }, { dst: '::/0' }],
  dns: { nameservers: ['10.1.0.1'], domain: 'cluster.local', search: ['a.b'], options: ['ndots:5'] },
};
// The subset of full11 that every version can carry.
const common: Result = {
  cniVersion: '1.1.0',
  interfaces: [{ name: 'knit0', mac: '0a:00:00:00:00:01' }, { name: 'eth0', mac: '0a:00:00:00:00:02', sandbox: '/run/netns/p' }],
  ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 1 }, { address: 'fd00::5/64', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }],
  dns: { nameservers: ['10.1.0.1'], search: ['a.b'] },
};

describe('cni versions', () => {
  it('supports 0.3.0 … 1.1.0, latest 1.1.0', () => {
    assert.deepEqual(SUPPORTED_VERSIONS, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    assert.equal(LATEST_VERSION, '1.1.0');
  });
  it('compareVersions', () => {
    assert.ok(compareVersions('0.4.0', '0.3.1') > 0);
    assert.ok(compareVersions('1.0.0', '1.1.0') < 0);
    assert.equal(compareVersions('0.10.0', '0.10.0'), 0);
    assert.ok(compareVersions('0.10.0', '0.9.0') > 0);
    assert.throws(() => compareVersions('1.0', '1.0.0'), isErr(6, /invalid version "1.0"/));
  });
  it('checkVersion → 1 naming value and list', () => {
    for (const v of SUPPORTED_VERSIONS) checkVersion(v);
    assert.throws(() => checkVersion('0.2.0'), isErr(1, /cniVersion "0.2.0" is not supported; supported versions are 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0/));
  });
  it('verb gates follow the reference skel', () => {
    for (const v of SUPPORTED_VERSIONS) { checkVerbVersion('ADD', v); checkVerbVersion('DEL', v); }
    assert.throws(() => checkVerbVersion('CHECK', '0.3.1'), isErr(1, /does not allow CHECK/));
    checkVerbVersion('CHECK', '0.4.0');
    assert.throws(() => checkVerbVersion('STATUS', '1.0.0'), isErr(1, /does not allow STATUS/));
    assert.throws(() => checkVerbVersion('GC', '1.0.0'), isErr(1, /does not allow GC/));
    checkVerbVersion('GC', '1.1.0');
  });
  it('VERSION answer echoes a supported request, else latest', () => {
    assert.deepEqual(versionInfo('0.4.0'), { cniVersion: '0.4.0', supportedVersions: [...SUPPORTED_VERSIONS] });
    assert.equal(versionInfo(undefined).cniVersion, '1.1.0');
    assert.equal(versionInfo('0.1.0').cniVersion, '1.1.0');
    assert.equal(versionInfo('9.0.0').cniVersion, '1.1.0');
  });
});

describe('cni result conversion', () => {
  it('1.1.0 keeps every field, in spec key order', () => {
    const out = convertResult(full11, '1.1.0');
    assert.deepEqual(out, full11);
    assert.deepEqual(Object.keys(out), ['cniVersion', 'interfaces', 'ips', 'routes', 'dns']);
  });
  it('1.0.0 keeps fields like the reference 1.x type', () => {
    assert.deepEqual(convertResult(full11, '1.0.0'), { ...full11, cniVersion: '1.0.0' });
  });
  for (const v of ['0.3.0', '0.3.1', '0.4.0']) {
    it(`${v}: adds ips[].version, drops 1.1-only fields`, () => {
      const out = convertResult(full11, v) as any;
      assert.equal(out.cniVersion, v);
      assert.deepEqual(out.ips.map((i: any) => i.version), ['4', '6']);
      assert.deepEqual(Object.keys(out.ips[0]), ['version', 'address', 'gateway', 'interface']);
      assert.deepEqual(out.interfaces[1], { name: 'eth0', mac: '0a:00:00:00:00:02', sandbox: '/run/netns/p' });
      assert.deepEqual(out.routes[0], { dst: '0.0.0.0/0', gw: '10.1.0.1' });
      assert.deepEqual(out.dns, full11.dns);
    });
  }
  for (const from of SUPPORTED_VERSIONS) {
    for (const to of SUPPORTED_VERSIONS) {
      it(`round trip ${from} → ${to} → 1.x`, () => {
        const wire = JSON.parse(JSON.stringify(convertResult({ ...common, cniVersion: from }, from)));
        const back = parseResult(wire, { code: 6 });
        const again = JSON.parse(JSON.stringify(convertResult(back, to)));
        const final = parseResult(again, { code: 6 });
        assert.deepEqual({ ...final, cniVersion: '1.1.0' }, common);
        assert.equal(final.cniVersion, to);
      });
    }
  }
  it('1.1.0 → 1.0.0 → 1.1.0 is lossless', () => {
    assert.deepEqual(parseResult(convertResult(parseResult(convertResult(full11, '1.0.0')), '1.1.0')), full11);
  });
  it('empty parts are omitted', () => {
    assert.deepEqual(convertResult({ cniVersion: '1.1.0', interfaces: [], ips: [], dns: {} }, '0.4.0'), { cniVersion: '0.4.0' });
    assert.deepEqual(parseResult({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }], dns: {} }), { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }] });
  });
  it('IPv4-mapped IPv6 is version 6', () => {
    const out = convertResult({ cniVersion: '1.1.0', ips: [{ address: '::ffff:10.0.0.1/128' }] }, '0.3.1') as any;
    assert.equal(out.ips[0].version, '6');
  });
  it('parse errors use the caller code and path', () => {
    assert.throws(() => parseResult({ ips: [{ address: 'x' }] }, { code: 6, path: 'result of host-local' }), isErr(6, /invalid result of host-local.ips\[0\].address "x"/));
  });
});
