import assert from 'node:assert/strict';
import { CniError, Code } from '../../pkg/cni/errors';
import { IpamNetConf, parseIpamConfig } from '../../pkg/ipam/config';

const conf = (ipam: unknown, extra: Partial<IpamNetConf> = {}): IpamNetConf => ({ name: 'net1', ipam, ...extra });

/** Asserts a code-7 error whose message names `key` and contains each of `parts`. */
function rejects(c: IpamNetConf, key: string, ...parts: string[]): void {
  assert.throws(() => parseIpamConfig(c), (e: unknown) => {
    assert.ok(e instanceof CniError, String(e));
    assert.equal(e.code, Code.InvalidConfig);
    assert.ok(e.message.startsWith(`invalid ${key} `), `message ${JSON.stringify(e.message)} should name ${key}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} should contain ${p}`);
    return true;
  });
}

describe('ipam config', () => {
  it('parses ranges with defaults like the reference (gateway .1, start .1, end .254)', () => {
    const c = parseIpamConfig(conf({ type: 'knit-host-local', ranges: [[{ subnet: '10.1.0.0/24' }]] }));
    const r = c.rangeSets[0]!.ranges[0]!;
    assert.equal(r.subnet, '10.1.0.0/24');
    assert.equal(r.gateway, (10n << 24n) + (1n << 16n) + 1n);
    assert.equal(r.start & 0xffn, 1n);
    assert.equal(r.end & 0xffn, 254n);
    assert.equal(c.dataDir, '/var/lib/knit/networks');
    assert.equal(c.network, 'net1');
  });

  it('masks host bits of the subnet and keeps IPv6 ranges to the last address', () => {
    const c = parseIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.7/24' }], [{ subnet: 'fd00:1::/120' }]] }));
    assert.equal(c.rangeSets[0]!.ranges[0]!.subnet, '10.1.0.0/24');
    const v6 = c.rangeSets[1]!.ranges[0]!;
    assert.equal(v6.family, 6);
    assert.equal(v6.end, v6.last);
  });

  it('puts the legacy single range first, then ranges', () => {
    const c = parseIpamConfig(conf({ subnet: '10.2.0.0/16', gateway: '10.2.0.254', ranges: [[{ subnet: 'fd00::/64' }]] }));
    assert.equal(c.rangeSets.length, 2);
    assert.equal(c.rangeSets[0]!.ranges[0]!.path, 'ipam');
    assert.equal(c.rangeSets[1]!.family, 6);
  });

  it('prepends runtimeConfig.ipRanges', () => {
    const c = parseIpamConfig(conf({ ranges: [[{ subnet: '10.3.0.0/24' }]] }, { runtimeConfig: { ipRanges: [[{ subnet: '10.4.0.0/24' }]] } }));
    assert.equal(c.rangeSets[0]!.ranges[0]!.subnet, '10.4.0.0/24');
  });

  it('names the key path, the value and what is valid', () => {
    rejects(conf(undefined), 'ipam', 'an object');
    rejects(conf({ ranges: 'x' }), 'ipam.ranges', '"x"', 'array');
    rejects(conf({}), 'ipam.ranges', 'at least one range set');
    rejects(conf({ ranges: [[]] }), 'ipam.ranges[0]', 'non-empty');
    rejects(conf({ ranges: [['x']] }), 'ipam.ranges[0][0]', 'object');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/33' }]] }), 'ipam.ranges[0][0].subnet', '10.0.0.0/33', 'CIDR');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/31' }]] }), 'ipam.ranges[0][0].subnet', 'too small');
    rejects(conf({ ranges: [[{ subnet: 'fd00::/127' }]] }), 'ipam.ranges[0][0].subnet', 'too small');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.1.0/24', rangeStart: '10.0.2.1' }]] }),
      'ipam.ranges[0][1].rangeStart', '10.0.2.1', 'inside 10.0.1.0/24');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24', rangeEnd: 'fd00::1' }]] }), 'ipam.ranges[0][0].rangeEnd', 'IPv4');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.100', rangeEnd: '10.0.0.50' }]] }), 'ipam.ranges[0][0].rangeEnd', 'not before rangeStart 10.0.0.100');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24', gateway: '10.0.0.0' }]] }), 'ipam.ranges[0][0].gateway', 'network');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24', gateway: '10.0.0.255' }]] }), 'ipam.ranges[0][0].gateway', 'broadcast');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24', gateway: '10.9.0.1' }]] }), 'ipam.ranges[0][0].gateway', 'inside 10.0.0.0/24');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }]] }), 'ipam.ranges[0][1].subnet', 'one address family');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24', rangestart: '10.0.0.5' }]] }), 'ipam.ranges[0][0].rangestart', 'not a range key', 'rangeStart');
    rejects(conf({ rangeStart: '10.0.0.5' }), 'ipam.rangeStart', 'ipam.subnet');
    rejects(conf({ subnet: 'nope' }), 'ipam.subnet', 'CIDR');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], exclude: '10.0.0.5' }), 'ipam.exclude', 'array');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], exclude: ['10.0.0.5', 'x'] }), 'ipam.exclude[1]', '"x"');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], exclude: ['10.9.0.5'] }), 'ipam.exclude[0]', 'inside one of the configured subnets');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], routes: [{ dst: 'x' }] }), 'ipam.routes[0].dst', 'CIDR');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], routes: [{ dst: '0.0.0.0/0', gw: 'fd00::1' }] }), 'ipam.routes[0].gw', 'IPv4');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], dataDir: 'relative' }), 'ipam.dataDir', 'absolute');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], resolvConf: 5 }), 'ipam.resolvConf', 'absolute');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], dns: { nameservers: ['x'] } }), 'ipam.dns.nameservers[0]', 'IP address');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]] }, { runtimeConfig: { ipRanges: {} } }), 'runtimeConfig.ipRanges', 'array');
    rejects({ name: '../etc', ipam: { ranges: [[{ subnet: '10.0.0.0/24' }]] } }, 'name', 'network name');
  });

  it('rejects overlapping ranges within and across range sets', () => {
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/25' }]] }), 'ipam.ranges[1][0].subnet', 'overlapping ipam.ranges[0][0]');
    rejects(conf({ ranges: [[{ subnet: '10.0.0.0/16' }, { subnet: '10.0.5.0/24' }]] }), 'ipam.ranges[0][1].subnet', 'overlapping');
    rejects(conf({ subnet: '10.0.0.0/24', ranges: [[{ subnet: '10.0.0.0/24' }]] }), 'ipam.ranges[0][0].subnet', 'overlapping ipam (10.0.0.0/24)');
  });

  it('allows one subnet split into disjoint ranges', () => {
    const c = parseIpamConfig(conf({ ranges: [[
      { subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.19' },
      { subnet: '10.0.0.0/24', rangeStart: '10.0.0.20', rangeEnd: '10.0.0.29' },
    ]] }));
    assert.equal(c.rangeSets[0]!.ranges.length, 2);
  });

  it('blocks network, broadcast, gateway and exclusions (merged)', () => {
    const c = parseIpamConfig(conf({ ranges: [[{ subnet: '10.0.0.0/24' }]], exclude: ['10.0.0.2', '10.0.0.3', '10.0.0.128/30'] }));
    const b = c.rangeSets[0]!.ranges[0]!.blocked.map((i) => [Number(i.lo & 0xffn), Number(i.hi & 0xffn)]);
    assert.deepEqual(b, [[0, 3], [128, 131], [255, 255]]);
  });
});
