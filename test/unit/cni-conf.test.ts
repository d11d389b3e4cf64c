import assert from 'node:assert/strict';
import { parseConf, decodeJson, jsonErrorOffset, versionRequest } from '../../pkg/cni/conf';
import { CniError } from '../../pkg/cni/errors';

const isErr = (code: number, re: RegExp) => (e: unknown) => {
  if (!(e instanceof CniError)) return false;
  if (e.code !== code || !re.test(e.message)) throw new Error(`got ${e.code} ${e.message}`);
  return true;
};
const base = { cniVersion: '1.1.0', name: 'net1', type: 'knit-bridge' };
const parse = (o: unknown, cmd?: 'ADD' | 'CHECK' | 'STATUS' | 'GC' | 'DEL') => parseConf(JSON.stringify(o), cmd);

describe('cni conf', () => {
  it('accepts a minimal config and keeps unknown keys', () => {
    const c = parse({ ...base, bridge: 'br0', ipam: { type: 'knit-host-local', subnet: '10.1.0.0/24' } });
    assert.equal(c.bridge, 'br0');
    assert.equal(c.ipam?.type, 'knit-host-local');
  });

  describe('decode (6)', () => {
    it('non-JSON names line, column and offset', () => {
      assert.throws(() => parseConf('{"cniVersion": "1.1.0",\n "name": }'), isErr(6, /failed to decode network config on stdin at line 2 column 10 \(offset 33\)/));
      assert.throws(() => parseConf('{"a":1'), isErr(6, /at line 1 column 7 \(offset 6\)/));
    });
    it('empty stdin', () => assert.throws(() => parseConf(''), isErr(6, /it is empty/)));
    it('array, number, null, string documents', () => {
      assert.throws(() => parseConf('[1]'), isErr(6, /got a list, a JSON object is expected/));
      assert.throws(() => parseConf('42'), isErr(6, /got a number/));
      assert.throws(() => parseConf('null'), isErr(6, /got null/));
      assert.throws(() => parseConf('"x"'), isErr(6, /got a string/));
    });
    it('a BOM is tolerated', () => assert.equal(parseConf('\ufeff' + JSON.stringify(base)).name, 'net1'));
    it('jsonErrorOffset finds the first error', () => {
      assert.equal(jsonErrorOffset('{"a": [1, 2,]}'), 12);
      assert.equal(jsonErrorOffset('{"a": tru}'), 6);
      assert.equal(jsonErrorOffset('{"a": "x\u0001"}'), 8);
      assert.equal(jsonErrorOffset('{} x'), 3);
      assert.equal(jsonErrorOffset('{"a": 1}'), -1);
      assert.equal(jsonErrorOffset('{"a": -0.5e+3, "b": [true, false, null, "\\u00e9"]}'), -1);
    });
    it('decodeJson details show the neighbourhood', () => {
      try { decodeJson('{"name": "x",, }'); assert.fail(); } catch (e) { assert.match((e as CniError).details!, /near/); }
    });
  });

  describe('version (1)', () => {
    it('unsupported versions name the value and the supported list', () => {
      for (const v of ['0.1.0', '0.2.0', '2.0.0', '1.2.0', 'banana']) {
        assert.throws(() => parse({ ...base, cniVersion: v }), isErr(1, new RegExp(`cniVersion "${v}" is not supported; supported versions are 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0`)));
      }
    });
    it('missing cniVersion', () => assert.throws(() => parse({ name: 'n', type: 't' }), isErr(1, /cniVersion is missing/)));
    it('non-string cniVersion → 7', () => assert.throws(() => parse({ ...base, cniVersion: 1 }), isErr(7, /invalid cniVersion 1/)));
    it('CHECK needs 0.4.0, STATUS and GC 1.1.0', () => {
      assert.throws(() => parse({ ...base, cniVersion: '0.3.1' }, 'CHECK'), isErr(1, /config version does not allow CHECK.*0\.4\.0 or later/));
      parse({ ...base, cniVersion: '0.4.0', prevResult: { cniVersion: '0.4.0' } }, 'CHECK');
      for (const cmd of ['STATUS', 'GC'] as const) {
        for (const v of ['0.3.0', '0.4.0', '1.0.0']) {
          assert.throws(() => parse({ ...base, cniVersion: v, 'cni.dev/valid-attachments': [] }, cmd), isErr(1, new RegExp(`does not allow ${cmd}.*1\\.1\\.0 or later`)));
        }
      }
      parse({ ...base, 'cni.dev/valid-attachments': [] }, 'GC');
    });
    it('cniVersions must be a list of strings (informational)', () => {
      parse({ ...base, cniVersions: ['0.3.1', '9.9.9'] });
      assert.throws(() => parse({ ...base, cniVersions: '1.1.0' }), isErr(7, /invalid cniVersions "1.1.0"/));
    });
  });

  describe('top-level keys (7)', () => {
    const cases: [string, object, RegExp][] = [
      ['missing name', { cniVersion: '1.1.0', type: 't' }, /^name is required/],
      ['empty name', { ...base, name: '' }, /invalid name "": a network name/],
      ['name with /', { ...base, name: 'a/b' }, /invalid name "a\/b"/],
      ['name starting with -', { ...base, name: '-a' }, /invalid name "-a"/],
      ['numeric name', { ...base, name: 5 }, /invalid name 5/],
      ['missing type', { cniVersion: '1.1.0', name: 'n' }, /^type is required/],
      ['type with /', { ...base, type: '../bin/sh' }, /invalid type "..\/bin\/sh": a plugin executable name/],
      ['ipam not object', { ...base, ipam: 'host-local' }, /invalid ipam "host-local"/],
      ['ipam without type', { ...base, ipam: { subnet: '10.0.0.0/24' } }, /^ipam.type is required/],
      ['ipam type with /', { ...base, ipam: { type: 'a/b' } }, /invalid ipam.type "a\/b"/],
      ['dns nameserver not IP', { ...base, dns: { nameservers: ['x'] } }, /invalid dns.nameservers\[0\] "x": an IPv4 or IPv6 address/],
      ['dns search not list', { ...base, dns: { search: 'a' } }, /invalid dns.search "a"/],
      ['capabilities value', { ...base, capabilities: { ips: 'yes' } }, /invalid capabilities.ips "yes": true or false/],
      ['disableCheck', { ...base, disableCheck: 'true' }, /invalid disableCheck "true"/],
      ['logFile', { ...base, logFile: 1 }, /invalid logFile 1/],
      ['args not object', { ...base, args: [] }, /invalid args \[\]/],
      ['args.cni.ips', { ...base, args: { cni: { ips: ['10.0.0.1', 'x'] } } }, /invalid args.cni.ips\[1\] "x"/],
      ['args.cni.mac', { ...base, args: { cni: { mac: 'x' } } }, /invalid args.cni.mac "x"/],
      ['args.cni.labels', { ...base, args: { cni: { labels: [{ key: 'a' }] } } }, /invalid args.cni.labels\[0\]/],
      ['valid-attachments', { ...base, 'cni.dev/valid-attachments': [{ containerID: 'a' }] }, /invalid cni.dev\/valid-attachments\[0\]/],
    ];
    for (const [what, o, re] of cases) it(what, () => assert.throws(() => parse(o), isErr(7, re)));
    it('"ipam": {} means no IPAM', () => parse({ ...base, ipam: {} }));
    it('args with other keys pass through', () => assert.deepEqual(parse({ ...base, args: { foo: 1, cni: { bar: 2 } } }).args, { foo: 1, cni: { bar: 2 } }));
  });

  describe('runtimeConfig (7 naming the key path)', () => {
    const rc = (r: unknown) => parse({ ...base, runtimeConfig: r });
    it('accepts the well-known capabilities', () => {
      rc({
        ips: ['10.0.0.5/24', 'fd00::5'], mac: '0a:58:0a:00:00:05',
        portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }, { hostPort: 53, containerPort: 53, protocol: 'UDP', hostIP: '' }, { hostPort: 1, containerPort: 1, protocol: 'sctp', hostIP: '127.0.0.1' }],
        bandwidth: { ingressRate: 2048, ingressBurst: 1600, egressRate: 4096, egressBurst: 1600 },
        dns: { servers: ['8.8.8.8', '2001:4860:4860::8888'], searches: ['a.b'], options: ['ndots:5'] },
        ipRanges: [[{ subnet: '10.1.2.0/24', rangeStart: '10.1.2.3', rangeEnd: '10.1.2.99', gateway: '10.1.2.254' }]],
        aliases: ['db'], cgroupPath: '/kubepods', deviceID: '0000:04:00.5', somethingElse: { x: 1 },
      });
    });
    it('accepts aliases keyed by network name, as podman sends them', () => {
      assert.deepEqual(rc({ aliases: { app: ['web', '0522c8a9089b'] } }).runtimeConfig?.aliases, { app: ['web', '0522c8a9089b'] });
    });
    const cases: [string, unknown, RegExp][] = [
      ['not object', [], /invalid runtimeConfig \[\]/],
      ['ips not list', { ips: '10.0.0.1' }, /invalid runtimeConfig.ips "10.0.0.1"/],
      ['ips entry', { ips: ['10.0.0.1/24', '10.0.0.256'] }, /invalid runtimeConfig.ips\[1\] "10.0.0.256": an IP address with optional prefix/],
      ['mac', { mac: 'nope' }, /invalid runtimeConfig.mac "nope": a unicast MAC address/],
      ['portMappings not list', { portMappings: {} }, /invalid runtimeConfig.portMappings \{\}/],
      ['hostPort string', { portMappings: [{ hostPort: '80', containerPort: 80, protocol: 'tcp' }] }, /invalid runtimeConfig.portMappings\[0\].hostPort "80": an integer from 1 to 65535/],
      ['hostPort range', { portMappings: [{ hostPort: 1, containerPort: 1 }, { hostPort: 70000, containerPort: 80 }] }, /runtimeConfig.portMappings\[1\].hostPort 70000/],
      ['containerPort', { portMappings: [{ hostPort: 80, containerPort: 1.5 }] }, /runtimeConfig.portMappings\[0\].containerPort 1.5/],
      ['protocol', { portMappings: [{ hostPort: 80, containerPort: 80, protocol: 'icmp' }] }, /runtimeConfig.portMappings\[0\].protocol "icmp": "tcp", "udp" or "sctp"/],
      ['hostIP', { portMappings: [{ hostPort: 80, containerPort: 80, hostIP: 'x' }] }, /runtimeConfig.portMappings\[0\].hostIP "x"/],
      ['bandwidth', { bandwidth: { ingressRate: -1 } }, /invalid runtimeConfig.bandwidth.ingressRate -1/],
      ['bandwidth not obj', { bandwidth: 5 }, /invalid runtimeConfig.bandwidth 5/],
      ['dns servers', { dns: { servers: ['x'] } }, /invalid runtimeConfig.dns.servers\[0\] "x": an IP address/],
      ['dns searches', { dns: { searches: [1] } }, /invalid runtimeConfig.dns.searches\[0\] 1/],
      ['ipRanges subnet', { ipRanges: [[{ subnet: '10.0.0.0' }]] }, /invalid runtimeConfig.ipRanges\[0\]\[0\].subnet "10.0.0.0"/],
      ['ipRanges gateway', { ipRanges: [[{ subnet: '10.0.0.0/24', gateway: 'g' }]] }, /runtimeConfig.ipRanges\[0\]\[0\].gateway "g"/],
      ['cgroupPath', { cgroupPath: 5 }, /invalid runtimeConfig.cgroupPath 5/],
      ['aliases of a network not a list', { aliases: { app: 'web' } }, /invalid runtimeConfig.aliases.app "web"/],
    ];
    for (const [what, r, re] of cases) it(what, () => assert.throws(() => rc(r), isErr(7, re)));
  });

  describe('prevResult', () => {
    it('0.4.0 prevResult is converted to 1.x (version dropped)', () => {
      const c = parse({
        ...base, cniVersion: '0.4.0',
        prevResult: { cniVersion: '0.4.0', interfaces: [{ name: 'eth0', mac: '0a:00:00:00:00:01', sandbox: '/run/netns/x' }], ips: [{ version: '4', address: '10.0.0.5/24', gateway: '10.0.0.1', interface: 0 }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['10.0.0.1'] } },
      });
      assert.deepEqual(c.prevResult, {
        cniVersion: '0.4.0', interfaces: [{ name: 'eth0', mac: '0a:00:00:00:00:01', sandbox: '/run/netns/x' }],
        ips: [{ address: '10.0.0.5/24', gateway: '10.0.0.1', interface: 0 }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['10.0.0.1'] },
      });
    });
    it('a prevResult without cniVersion inherits the config\'s', () => {
      assert.equal(parse({ ...base, cniVersion: '0.3.1', prevResult: { ips: [] } }).prevResult?.cniVersion, '0.3.1');
    });
    it('a 0.2.0-style prevResult is understood', () => {
      const c = parse({ ...base, prevResult: { cniVersion: '0.2.0', ip4: { ip: '10.0.0.5/24', gateway: '10.0.0.1', routes: [{ dst: '0.0.0.0/0' }] } } });
      assert.deepEqual(c.prevResult?.ips, [{ address: '10.0.0.5/24', gateway: '10.0.0.1' }]);
      assert.deepEqual(c.prevResult?.routes, [{ dst: '0.0.0.0/0' }]);
    });
    const cases: [string, unknown, RegExp][] = [
      ['not object', 'x', /invalid prevResult "x"/],
      ['address without prefix', { ips: [{ address: '10.0.0.5' }] }, /invalid prevResult.ips\[0\].address "10.0.0.5": an address with prefix length/],
      ['version mismatch', { ips: [{ version: '6', address: '10.0.0.5/24' }] }, /invalid prevResult.ips\[0\].version "6": "4" for address/],
      ['gateway', { ips: [{ address: '10.0.0.5/24', gateway: 'gw' }] }, /invalid prevResult.ips\[0\].gateway "gw"/],
      ['interface index', { ips: [{ address: '10.0.0.5/24', interface: -1 }] }, /invalid prevResult.ips\[0\].interface -1/],
      ['interfaces name', { interfaces: [{ mac: 'x' }] }, /invalid prevResult.interfaces\[0\].name undefined/],
      ['route dst', { routes: [{ dst: 'default' }] }, /invalid prevResult.routes\[0\].dst "default"/],
      ['route mtu', { routes: [{ dst: '0.0.0.0/0', mtu: 'big' }] }, /invalid prevResult.routes\[0\].mtu "big"/],
      ['dns', { dns: { nameservers: 'x' } }, /invalid prevResult.dns.nameservers "x"/],
      ['ips not list', { ips: {} }, /invalid prevResult.ips \{\}/],
    ];
    for (const [what, p, re] of cases) it(what, () => assert.throws(() => parse({ ...base, prevResult: p }), isErr(7, re)));
  });

  it('valid-attachments parsed for GC', () => {
    const c = parse({ ...base, 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0', extra: 1 }] }, 'GC');
    assert.deepEqual(c['cni.dev/valid-attachments'], [{ containerID: 'a', ifname: 'eth0' }]);
  });

  it('versionRequest reads only cniVersion', () => {
    assert.equal(versionRequest(''), undefined);
    assert.equal(versionRequest('{"cniVersion":"0.4.0","name":5}'), '0.4.0');
    assert.equal(versionRequest('[]'), undefined);
    assert.throws(() => versionRequest('{'), isErr(6, /VERSION request on stdin/));
  });
});
