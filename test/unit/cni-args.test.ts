import assert from 'node:assert/strict';
import { parseCniArgs, staticIPs, staticMac, normalizeMac, parseStaticIP } from '../../pkg/cni/args';
import { CniError } from '../../pkg/cni/errors';
import type { NetConf } from '../../pkg/cni/types';

const isErr = (code: number, re: RegExp) => (e: unknown) => e instanceof CniError && e.code === code && re.test(e.message);
const conf = (extra: Partial<NetConf> = {}): NetConf => ({ cniVersion: '1.1.0', name: 'n', type: 't', ...extra });

describe('cni CNI_ARGS', () => {
  it('empty → defaults', () => {
    assert.deepEqual(parseCniArgs(''), { ignoreUnknown: false, ips: [], raw: {} });
    assert.deepEqual(parseCniArgs(undefined), { ignoreUnknown: false, ips: [], raw: {} });
  });

  it('parses the keys podman and kubelet send', () => {
    const a = parseCniArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;IP=10.1.0.5/24,fd00::5;MAC=0A-58-0A-01-00-05');
    assert.equal(a.ignoreUnknown, true);
    assert.equal(a.k8sPodNamespace, 'ns');
    assert.equal(a.k8sPodName, 'p');
    assert.equal(a.k8sPodInfraContainerId, 'abc');
    assert.equal(a.k8sPodUid, 'u-1');
    assert.deepEqual(a.ips.map((i) => [i.text, i.prefix, i.ip.family, i.source]), [['10.1.0.5/24', 24, 4, 'CNI_ARGS IP'], ['fd00::5', undefined, 6, 'CNI_ARGS IP']]);
    assert.equal(a.mac, '0a:58:0a:01:00:05');
    assert.equal(a.raw.K8S_POD_NAME, 'p');
  });

  it('unknown keys are an error (4) naming them, unless IgnoreUnknown', () => {
    assert.throws(() => parseCniArgs('FOO=1;IP=10.0.0.1'), isErr(4, /CNI_ARGS has unknown keys \["FOO=1"\].*IgnoreUnknown=1/));
    for (const v of ['1', 'true', 'True', 'TRUE']) assert.equal(parseCniArgs(`FOO=1;IgnoreUnknown=${v}`).raw.FOO, '1');
    assert.throws(() => parseCniArgs('FOO=1;IgnoreUnknown=0'), isErr(4, /unknown keys/));
    assert.throws(() => parseCniArgs('FOO=1;IgnoreUnknown=false'), isErr(4, /unknown keys/));
    assert.throws(() => parseCniArgs('IgnoreUnknown=yes'), isErr(4, /invalid CNI_ARGS IgnoreUnknown "yes": 1, true, 0 or false/));
  });

  it('a plugin can declare extra keys', () => {
    const a = parseCniArgs('VLAN=5', { known: ['VLAN'] });
    assert.equal(a.raw.VLAN, '5');
    assert.throws(() => parseCniArgs('VLAN=5'), isErr(4, /known keys are .*K8S_POD_UID/));
  });

  it('bad pairs, IPs and MACs → 4 naming the key and value', () => {
    assert.throws(() => parseCniArgs('IP'), isErr(4, /invalid CNI_ARGS pair "IP": KEY=VALUE pairs/));
    assert.throws(() => parseCniArgs('=x'), isErr(4, /invalid CNI_ARGS pair "=x"/));
    assert.throws(() => parseCniArgs('IP=10.0.0.300'), isErr(4, /invalid CNI_ARGS IP "10.0.0.300": an IP address/));
    assert.throws(() => parseCniArgs('IP=10.0.0.1,nope'), isErr(4, /invalid CNI_ARGS IP "10.0.0.1,nope"/));
    assert.throws(() => parseCniArgs('IP=10.0.0.1/33'), isErr(4, /CNI_ARGS IP/));
    assert.throws(() => parseCniArgs('IP='), isErr(4, /CNI_ARGS IP ""/));
    assert.throws(() => parseCniArgs('MAC=zz:00:00:00:00:00'), isErr(4, /invalid CNI_ARGS MAC "zz:00:00:00:00:00": a unicast MAC/));
    assert.throws(() => parseCniArgs('MAC=01:00:5e:00:00:01'), isErr(4, /CNI_ARGS MAC/));
  });

  it('tolerates empty pairs and "=" in values', () => {
    const a = parseCniArgs('IgnoreUnknown=1;;X=a=b;');
    assert.equal(a.raw.X, 'a=b');
  });

  it('lenient mode (DEL) reports instead of failing', () => {
    const warnings: string[] = [];
    const a = parseCniArgs('FOO=1;IP=bad;MAC=0a:00:00:00:00:01', { lenient: true, onWarning: (m) => warnings.push(m) });
    assert.equal(a.mac, '0a:00:00:00:00:01');
    assert.deepEqual(a.ips, []);
    assert.equal(warnings.length, 2);
  });

  it('normalizeMac and parseStaticIP', () => {
    assert.equal(normalizeMac('AB:BB:CC:DD:EE:FF'), null); // multicast bit set
    assert.equal(normalizeMac('AA:BB:CC:DD:EE:FF'), 'aa:bb:cc:dd:ee:ff');
    assert.equal(normalizeMac('A2:BB:CC:DD:EE:FF'), 'a2:bb:cc:dd:ee:ff');
    assert.equal(normalizeMac('00:00:00:00:00:00'), null);
    assert.equal(normalizeMac('a2:bb:cc:dd:ee'), null);
    assert.equal(parseStaticIP('fd00::1/129', 'x'), null);
    assert.equal(parseStaticIP('fd00::1/128', 'x')?.prefix, 128);
    assert.equal(parseStaticIP('10.0.0.1/', 'x'), null);
  });

  describe('static requests precedence', () => {
    const args = parseCniArgs('IP=10.0.0.9;MAC=0a:00:00:00:00:09');
    it('runtimeConfig.ips beats args.cni.ips beats CNI_ARGS IP', () => {
      const c = conf({ runtimeConfig: { ips: ['10.0.0.1/24'] }, args: { cni: { ips: ['10.0.0.2'] } } });
      assert.deepEqual(staticIPs(c, args).map((i) => [i.text, i.source]), [['10.0.0.1/24', 'runtimeConfig.ips[0]']]);
      const c2 = conf({ args: { cni: { ips: ['10.0.0.2', 'fd00::2/64'] } } });
      assert.deepEqual(staticIPs(c2, args).map((i) => [i.text, i.source]), [['10.0.0.2', 'args.cni.ips[0]'], ['fd00::2/64', 'args.cni.ips[1]']]);
      assert.deepEqual(staticIPs(conf({ runtimeConfig: { ips: [] } }), args).map((i) => i.text), ['10.0.0.9']);
      assert.deepEqual(staticIPs(conf(), parseCniArgs('')), []);
    });
    it('MAC: runtimeConfig.mac, then args.cni.mac, then CNI_ARGS MAC', () => {
      assert.deepEqual(staticMac(conf({ runtimeConfig: { mac: '0A:00:00:00:00:01' }, args: { cni: { mac: '0a:00:00:00:00:02' } } }), args), { mac: '0a:00:00:00:00:01', source: 'runtimeConfig.mac' });
      assert.deepEqual(staticMac(conf({ args: { cni: { mac: '0a:00:00:00:00:02' } } }), args), { mac: '0a:00:00:00:00:02', source: 'args.cni.mac' });
      assert.deepEqual(staticMac(conf(), args), { mac: '0a:00:00:00:00:09', source: 'CNI_ARGS MAC' });
      assert.equal(staticMac(conf(), parseCniArgs('')), undefined);
    });
    it('an unvalidated bad config value is still refused with code 7', () => {
      assert.throws(() => staticIPs(conf({ runtimeConfig: { ips: ['x'] } }), args), isErr(7, /invalid runtimeConfig.ips\[0\] "x"/));
      assert.throws(() => staticMac(conf({ runtimeConfig: { mac: 'x' } }), args), isErr(7, /invalid runtimeConfig.mac "x"/));
    });
  });
});
