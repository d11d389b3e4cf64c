// knit-macvlan's config keys, validated without root and without netlink (the environment is a
// plain object): the defaults, every key accepted, and each bad key answered with code 7 naming
// the key, the bad value and what is valid. Checks that need the kernel (the master exists, mtu ≤
// the master's, 802.1Q support) are the plugin's and run in the netns lab.
import assert from 'node:assert/strict';
import { parseMacvlanConf, MODES } from '../../plugins/main/macvlan/config';
import { parseCniArgs } from '../../pkg/cni/args';
import type { Env } from '../../pkg/cni/env';
import { CniError } from '../../pkg/cni/errors';
import type { NetConf } from '../../pkg/cni/types';
import { DEFAULT_RUN_DIR } from '../../pkg/iface/parent-refs';

const IPAM = { type: 'knit-host-local', ranges: [[{ subnet: '10.100.0.0/24' }]] };
const conf = (extra: Record<string, unknown> = {}): NetConf =>
  ({ cniVersion: '1.1.0', name: 'vlan100', type: 'knit-macvlan', ipam: IPAM, ...extra }) as NetConf;
const noArgs = parseCniArgs('');
const noEnv: Env = {};

/** Asserts code 7 and that the message holds every fragment (key, shown value, what is valid). */
function rejects(extra: Record<string, unknown>, env: Env, ...fragments: string[]): void {
  let err: unknown;
  try { parseMacvlanConf(conf(extra), noArgs, env); } catch (e) { err = e; }
  assert.ok(err instanceof CniError, `${JSON.stringify(extra)} was accepted`);
  assert.equal(err.code, 7, `${JSON.stringify(extra)}: ${err.message}`);
  for (const f of fragments) assert.ok(err.message.includes(f), `${JSON.stringify(extra)}: "${err.message}" lacks "${f}"`);
}

describe('knit-macvlan config', () => {
  it('fills the defaults', () => {
    assert.deepEqual(parseMacvlanConf(conf(), noArgs, noEnv), {
      network: 'vlan100', mode: 'bridge', promisc: false, linkInContainer: false, hasIpam: true, runDir: DEFAULT_RUN_DIR,
    });
    // null and "" are absent for master and mode; 0 is absent for mtu.
    const c = parseMacvlanConf(conf({ master: '', mode: '', mtu: 0, vlan: null, promisc: null }), noArgs, noEnv);
    assert.equal(c.master, undefined);
    assert.equal(c.mode, 'bridge');
    assert.equal(c.mtu, undefined);
    assert.equal(c.vlan, undefined);
    assert.equal(c.promisc, false);
  });

  it('accepts every key', () => {
    const c = parseMacvlanConf(conf({
      master: 'eth0', mode: 'vepa', mtu: 1400, vlan: 100, promisc: true, linkInContainer: true,
      mac: '02:42:0A:64:00:0A', runDir: '/run/knit-test',
    }), noArgs, noEnv);
    assert.deepEqual(c, {
      network: 'vlan100', master: 'eth0', mode: 'vepa', mtu: 1400, vlan: 100, promisc: true, linkInContainer: true,
      mac: '02:42:0a:64:00:0a', hasIpam: true, runDir: '/run/knit-test',
    });
    for (const mode of MODES) assert.equal(parseMacvlanConf(conf({ mode }), noArgs, noEnv).mode, mode);
    assert.deepEqual([...MODES], ['bridge', 'private', 'vepa', 'passthru']);
  });

  it('vlan: 1 and 4094 are the bounds; the sub-interface name may be exactly 15 bytes', () => {
    assert.equal(parseMacvlanConf(conf({ vlan: 1 }), noArgs, noEnv).vlan, 1);
    assert.equal(parseMacvlanConf(conf({ vlan: 4094 }), noArgs, noEnv).vlan, 4094);
    assert.equal(parseMacvlanConf(conf({ master: 'enp0s31f6a', vlan: 4094 }), noArgs, noEnv).master, 'enp0s31f6a'); // "enp0s31f6a.4094": 15
  });

  it('runDir: the key, else KNIT_RUN_DIR, else the default', () => {
    assert.equal(parseMacvlanConf(conf(), noArgs, { KNIT_RUN_DIR: '/tmp/knt-run' }).runDir, '/tmp/knt-run');
    assert.equal(parseMacvlanConf(conf({ runDir: '/a' }), noArgs, { KNIT_RUN_DIR: '/b' }).runDir, '/a');
    assert.equal(parseMacvlanConf(conf(), noArgs, { KNIT_RUN_DIR: '' }).runDir, DEFAULT_RUN_DIR);
  });

  it('no ipam (absent or {}) is a layer-2 attachment; the MAC may come from CNI_ARGS', () => {
    assert.equal(parseMacvlanConf(conf({ ipam: {} }), noArgs, noEnv).hasIpam, false);
    assert.equal(parseMacvlanConf(conf({ ipam: undefined }), noArgs, noEnv).hasIpam, false);
    assert.equal(parseMacvlanConf(conf({ mac: '02:00:00:00:00:01' }), parseCniArgs('MAC=02:00:00:00:00:02'), noEnv).mac, '02:00:00:00:00:02');
  });

  it('master: an interface name', () => {
    const valid = "an interface name of 1-15 bytes without '/', ':' or whitespace (absent: the link of the default route)";
    rejects({ master: 7 }, noEnv, 'invalid master 7', valid);
    rejects({ master: 'eth/0' }, noEnv, 'invalid master "eth/0"', valid);
    rejects({ master: 'eth 0' }, noEnv, 'invalid master "eth 0"', valid);
    rejects({ master: 'eth0:1' }, noEnv, 'invalid master "eth0:1"', valid);
    rejects({ master: 'e'.repeat(16) }, noEnv, `invalid master "${'e'.repeat(16)}"`, valid);
    rejects({ master: '.' }, noEnv, 'invalid master "."', valid);
  });

  it('mode: one of bridge, private, vepa, passthru', () => {
    const valid = 'one of bridge, private, vepa, passthru (default bridge)';
    rejects({ mode: 'source' }, noEnv, 'invalid mode "source"', valid);
    rejects({ mode: 'Bridge' }, noEnv, 'invalid mode "Bridge"', valid);
    rejects({ mode: 1 }, noEnv, 'invalid mode 1', valid);
  });

  it("mtu: an integer from 68 to the master's MTU", () => {
    const valid = "an integer from 68 to the master's MTU (0 or absent: the master's)";
    rejects({ mtu: 67 }, noEnv, 'invalid mtu 67', valid);
    rejects({ mtu: 65536 }, noEnv, 'invalid mtu 65536', valid);
    rejects({ mtu: 1400.5 }, noEnv, 'invalid mtu 1400.5', valid);
    rejects({ mtu: '9000' }, noEnv, 'invalid mtu "9000"', valid);
    rejects({ mtu: -1 }, noEnv, 'invalid mtu -1', valid);
  });

  it('vlan: an 802.1Q VLAN id from 1 to 4094', () => {
    const valid = 'an 802.1Q VLAN id, an integer from 1 to 4094 (absent: no VLAN)';
    rejects({ vlan: 0 }, noEnv, 'invalid vlan 0', valid);
    rejects({ vlan: 4095 }, noEnv, 'invalid vlan 4095', valid);
    rejects({ vlan: -5 }, noEnv, 'invalid vlan -5', valid);
    rejects({ vlan: 10.5 }, noEnv, 'invalid vlan 10.5', valid);
    rejects({ vlan: '100' }, noEnv, 'invalid vlan "100"', valid);
    rejects({ vlan: true }, noEnv, 'invalid vlan true', valid);
  });

  it('master: short enough for its 802.1Q sub-interface name', () => {
    rejects({ master: 'enp0s31f6ab', vlan: 4094 }, noEnv, 'invalid master "enp0s31f6ab"', 'the sub-interface "enp0s31f6ab.4094" fits in 15 bytes');
    // 14 bytes in 7 characters: "ééééééé.100" is 18 bytes, too long for the kernel.
    rejects({ master: 'é'.repeat(7), vlan: 100 }, noEnv, `invalid master "${'é'.repeat(7)}"`, 'fits in 15 bytes');
  });

  for (const key of ['promisc', 'linkInContainer']) {
    it(`${key}: true or false`, () => {
      rejects({ [key]: 'yes' }, noEnv, `invalid ${key} "yes"`, 'true or false');
      rejects({ [key]: 0 }, noEnv, `invalid ${key} 0`, 'true or false');
    });
  }

  it('mac: a unicast MAC address', () => {
    rejects({ mac: '02:42:0a:64:00' }, noEnv, 'invalid mac "02:42:0a:64:00"', 'a unicast MAC address');
    rejects({ mac: 'ff:ff:ff:ff:ff:ff' }, noEnv, 'invalid mac "ff:ff:ff:ff:ff:ff"', 'a unicast MAC address');
  });

  it('runDir and KNIT_RUN_DIR: an absolute directory path', () => {
    const valid = `an absolute directory path (default ${DEFAULT_RUN_DIR})`;
    rejects({ runDir: 'run/knit' }, noEnv, 'invalid runDir "run/knit"', valid);
    rejects({ runDir: 5 }, noEnv, 'invalid runDir 5', valid);
    rejects({ runDir: '' }, noEnv, 'invalid runDir ""', valid);
    rejects({}, { KNIT_RUN_DIR: 'relative' }, 'invalid KNIT_RUN_DIR "relative"', valid);
  });
});
