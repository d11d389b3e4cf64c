// knit-bridge's config keys, validated without root and without netlink: the defaults, every key
// accepted, and each bad key answered with code 7 naming the key, the bad value and what is valid.
import assert from 'node:assert/strict';
import { parseBridgeConf, DEFAULT_BRIDGE } from '../../plugins/main/bridge/config';
import { parseCniArgs } from '../../pkg/cni/args';
import { CniError } from '../../pkg/cni/errors';
import type { NetConf } from '../../pkg/cni/types';

const IPAM = { type: 'knit-host-local', ranges: [[{ subnet: '10.1.0.0/24' }]] };
const conf = (extra: Record<string, unknown> = {}): NetConf =>
  ({ cniVersion: '1.1.0', name: 'net1', type: 'knit-bridge', ipam: IPAM, ...extra }) as NetConf;
const noArgs = parseCniArgs('');

/** Asserts code 7 and that the message holds every fragment (key, shown value, what is valid). */
function rejects(extra: Record<string, unknown>, ...fragments: string[]): void {
  let err: unknown;
  try { parseBridgeConf(conf(extra), noArgs); } catch (e) { err = e; }
  assert.ok(err instanceof CniError, `${JSON.stringify(extra)} was accepted`);
  assert.equal(err.code, 7, `${JSON.stringify(extra)}: ${err.message}`);
  for (const f of fragments) assert.ok(err.message.includes(f), `${JSON.stringify(extra)}: "${err.message}" lacks "${f}"`);
}

describe('knit-bridge config', () => {
  it('fills the defaults', () => {
    assert.deepEqual(parseBridgeConf(conf(), noArgs), {
      network: 'net1', bridge: DEFAULT_BRIDGE, isGateway: false, isDefaultGateway: false, forceAddress: false,
      ipMasq: false, isolation: true, hairpinMode: false, promiscMode: false, hasIpam: true, resolver: false, macFromAddress: false, runDir: '/run/knit',
    });
    assert.equal(DEFAULT_BRIDGE, 'knit0');
    // null is absent, as for the reference plugin's Go decoder.
    const nulls = parseBridgeConf(conf({ bridge: null, isGateway: null, ipMasq: null, mtu: null }), noArgs);
    assert.equal(nulls.bridge, 'knit0');
    assert.equal(nulls.isGateway, false);
    assert.equal(nulls.mtu, undefined);
  });

  it('accepts every key', () => {
    const c = parseBridgeConf(conf({
      bridge: 'br-123456789abc', isGateway: true, isDefaultGateway: false, forceAddress: true, ipMasq: true, isolation: false,
      hairpinMode: true, promiscMode: false, mtu: 9000, mac: '0A-58-0A-01-00-05', resolver: true, runDir: '/tmp/knit-run', macFromAddress: true,
    }), noArgs);
    assert.deepEqual(c, {
      network: 'net1', bridge: 'br-123456789abc', isGateway: true, isDefaultGateway: false, forceAddress: true,
      ipMasq: true, isolation: false, hairpinMode: true, promiscMode: false, mtu: 9000, mac: '0a:58:0a:01:00:05', hasIpam: true,
      resolver: true, runDir: '/tmp/knit-run', macFromAddress: true,
    });
    assert.throws(() => parseBridgeConf(conf({ resolver: true }), noArgs), /invalid resolver true: only with isGateway and an ipam/);
    assert.throws(() => parseBridgeConf(conf({ runDir: 'run' }), noArgs), /invalid runDir "run": an absolute directory path/);
    assert.equal(parseBridgeConf(conf({ promiscMode: true }), noArgs).promiscMode, true);
  });

  it('isDefaultGateway makes the bridge the gateway', () => {
    const c = parseBridgeConf(conf({ isDefaultGateway: true, isGateway: false }), noArgs);
    assert.equal(c.isDefaultGateway, true);
    assert.equal(c.isGateway, true);
  });

  it('mtu: 0 or absent is the kernel default; 68 and 65535 are the bounds', () => {
    assert.equal(parseBridgeConf(conf({ mtu: 0 }), noArgs).mtu, undefined);
    assert.equal(parseBridgeConf(conf(), noArgs).mtu, undefined);
    assert.equal(parseBridgeConf(conf({ mtu: 68 }), noArgs).mtu, 68);
    assert.equal(parseBridgeConf(conf({ mtu: 65535 }), noArgs).mtu, 65535);
  });

  it('no ipam (absent or {}) is a layer-2 attachment', () => {
    const { ipam: _drop, ...bare } = conf();
    assert.equal(parseBridgeConf(bare as NetConf, noArgs).hasIpam, false);
    assert.equal(parseBridgeConf(conf({ ipam: {} }), noArgs).hasIpam, false);
  });

  it('the MAC comes from runtimeConfig, args, CNI_ARGS or the mac key, in that order', () => {
    assert.equal(parseBridgeConf(conf({ mac: '02:00:00:00:00:01' }), parseCniArgs('MAC=02:00:00:00:00:02')).mac, '02:00:00:00:00:02');
    assert.equal(parseBridgeConf(conf({ mac: '02:00:00:00:00:01', runtimeConfig: { mac: '02:00:00:00:00:03' } }),
      parseCniArgs('MAC=02:00:00:00:00:02')).mac, '02:00:00:00:00:03');
    assert.equal(parseBridgeConf(conf(), noArgs).mac, undefined);
  });

  it('bridge: an interface name', () => {
    const valid = "an interface name of 1-15 bytes without '/', ':' or whitespace (default knit0)";
    rejects({ bridge: 5 }, 'invalid bridge 5', valid);
    rejects({ bridge: '' }, 'invalid bridge ""', valid);
    rejects({ bridge: 'br/0' }, 'invalid bridge "br/0"', valid);
    rejects({ bridge: 'br 0' }, 'invalid bridge "br 0"', valid);
    rejects({ bridge: 'br:0' }, 'invalid bridge "br:0"', valid);
    rejects({ bridge: 'b'.repeat(16) }, `invalid bridge "${'b'.repeat(16)}"`, valid);
    rejects({ bridge: 'é'.repeat(8) }, 'invalid bridge', valid); // 16 bytes in 8 characters
    rejects({ bridge: '..' }, 'invalid bridge ".."', valid);
  });

  it('macFromAddress: only with an ipam (the MAC comes from its address)', () => {
    rejects({ ipam: {}, macFromAddress: true }, 'invalid macFromAddress true', 'false when there is no ipam');
    assert.equal(parseBridgeConf(conf({ ipam: {}, macFromAddress: false }), noArgs).macFromAddress, false);
  });

  for (const key of ['isGateway', 'isDefaultGateway', 'forceAddress', 'ipMasq', 'hairpinMode', 'promiscMode', 'macFromAddress']) {
    it(`${key}: true or false`, () => {
      rejects({ [key]: 'true' }, `invalid ${key} "true"`, 'true or false');
      rejects({ [key]: 1 }, `invalid ${key} 1`, 'true or false');
      rejects({ [key]: {} }, `invalid ${key} {}`, 'true or false');
    });
  }

  it('mtu: an integer from 68 to 65535', () => {
    const valid = 'an integer from 68 to 65535 (0 or absent: the kernel default)';
    rejects({ mtu: 67 }, 'invalid mtu 67', valid);
    rejects({ mtu: 65536 }, 'invalid mtu 65536', valid);
    rejects({ mtu: -1500 }, 'invalid mtu -1500', valid);
    rejects({ mtu: 1500.5 }, 'invalid mtu 1500.5', valid);
    rejects({ mtu: '1500' }, 'invalid mtu "1500"', valid);
    rejects({ mtu: false }, 'invalid mtu false', valid);
  });

  it('mac: a unicast MAC address', () => {
    rejects({ mac: 'zz:00:00:00:00:01' }, 'invalid mac "zz:00:00:00:00:01"', 'a unicast MAC address');
    rejects({ mac: '01:00:5e:00:00:01' }, 'invalid mac "01:00:5e:00:00:01"', 'a unicast MAC address'); // multicast
    rejects({ mac: 42 }, 'invalid mac 42', 'a unicast MAC address');
  });

  it('hairpinMode and promiscMode exclude each other', () => {
    rejects({ hairpinMode: true, promiscMode: true }, 'invalid hairpinMode true', 'false when promiscMode is true');
  });

  it('ipMasq needs an ipam', () => {
    rejects({ ipMasq: true, ipam: {} }, 'invalid ipMasq true', 'false when there is no ipam');
    rejects({ ipMasq: true, ipam: undefined }, 'invalid ipMasq true', 'false when there is no ipam');
  });
});
