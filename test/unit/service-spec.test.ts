// Services without etcd or a kernel: the flags' checks, the backends of a service, the nft table
// rendered from a desired state (the same state, the same table), knitctl service inspect's shape.
import assert from 'node:assert/strict';
import { buildNetwork, SpecError, type Network } from '../../pkg/network/spec';
import type { Endpoint } from '../../pkg/network/store';
import { inspectService, serviceRows } from '../../pkg/service/inspect';
import { backendsOf, renderChanges, renderTable, serviceId, type LbService } from '../../pkg/service/lb';
import { checkServiceName, checkServiceNetwork, checkVip, decodeService, parsePorts, type Service } from '../../pkg/service/spec';
import { serviceIpamConfig } from '../../pkg/service/store';
import { run } from '../../cmd/knitctl/main';

const NOW = new Date('2026-01-01T00:00:00Z');
const net = (req: Parameters<typeof buildNetwork>[0]): Network => buildNetwork(req, [], NOW, 'f'.repeat(64));
const app = net({ name: 'app', driver: 'overlay', subnets: ['10.0.0.0/24'], ipRanges: ['10.0.0.0/25'], auxAddresses: ['router=10.0.0.9'] });
const svc = (name: string, vips: string[], ports: Service['ports'] = []): Service => ({ name, network: 'app', vips, ports, id: 'a'.repeat(64), created: NOW.toISOString() });
const ep = (over: Partial<Endpoint>): Endpoint => ({
  network: 'app', containerId: 'c', ifName: 'eth0', node: 'h1', nodeIp: '192.168.0.1', mac: '02:00:00:00:00:01', ips: ['10.0.0.5/24'], created: '', ...over,
});

const throwsSpec = (fn: () => unknown, re: RegExp): void => assert.throws(fn, (e: Error) => e instanceof SpecError && re.test(e.message), String(re));

describe('services: flags', () => {
  it('service names are DNS labels (Docker\'s rule), at most 63', () => {
    for (const ok of ['api', 'a', 'web-1', 'my_svc', 'A9']) checkServiceName(ok);
    for (const bad of ['', '-a', 'a-', 'a.b', 'a b', 'x'.repeat(64), 'é']) throwsSpec(() => checkServiceName(bad), /^invalid service name /);
  });

  it('ports: PROTO:PORT or PORT (tcp), sorted, each once', () => {
    assert.deepEqual(parsePorts(['udp:53', 'tcp:443', '80']), [{ proto: 'tcp', port: 80 }, { proto: 'tcp', port: 443 }, { proto: 'udp', port: 53 }]);
    assert.deepEqual(parsePorts(['TCP:8080']), [{ proto: 'tcp', port: 8080 }]);
    assert.deepEqual(parsePorts([]), []);
    for (const bad of ['sctp:80', 'tcp:0', 'tcp:65536', 'tcp:', ':80', 'tcp:80:81', 'http']) throwsSpec(() => parsePorts([bad]), new RegExp(`^invalid --port "${bad}": PROTO:PORT`));
    throwsSpec(() => parsePorts(['tcp:80', '80']), /invalid --port "80": each PROTO:PORT once \(tcp:80 is given twice\)/);
  });

  it('the network: exists and is an overlay network', () => {
    throwsSpec(() => checkServiceNetwork(null, 'nope'), /invalid --network "nope": the name of an existing network/);
    throwsSpec(() => checkServiceNetwork(net({ name: 'br', driver: 'bridge' }), 'br'), /an overlay network .*br is a bridge network/);
    assert.equal(checkServiceNetwork(app, 'app'), app);
  });

  it('--vip: an IPv4 host address of the subnets, not the gateway, an aux address or another service\'s VIP', () => {
    assert.equal(checkVip('10.0.0.200', app, []).bytes.join('.'), '10.0.0.200');
    assert.equal(checkVip('10.0.0.50', app, []).bytes.join('.'), '10.0.0.50', 'inside the ip-range too (the IPAM reserves it)');
    throwsSpec(() => checkVip('nonsense', app, []), /invalid --vip "nonsense": an IPv4 address/);
    throwsSpec(() => checkVip('fd00::1', app, []), /invalid --vip "fd00::1": an IPv4 address: knit balances IPv4 VIPs only/);
    throwsSpec(() => checkVip('10.1.0.1', app, []), /invalid --vip "10\.1\.0\.1": an address inside the subnets of network app: 10\.0\.0\.0\/24/);
    throwsSpec(() => checkVip('10.0.0.0', app, []), /not its network or broadcast address/);
    throwsSpec(() => checkVip('10.0.0.255', app, []), /not its network or broadcast address/);
    throwsSpec(() => checkVip('10.0.0.1', app, []), /an address other than the gateway 10\.0\.0\.1 of 10\.0\.0\.0\/24/);
    throwsSpec(() => checkVip('10.0.0.9', app, []), /the aux address router=10\.0\.0\.9/);
    throwsSpec(() => checkVip('10.0.0.200', app, [svc('web', ['10.0.0.200'])]), /an address no other service has \(service web has it\)/);
  });

  it('the IPAM config of VIPs: the network\'s IPv4 ranges under the services node; whole subnets for a --vip', () => {
    const c = serviceIpamConfig(app, '/knit');
    assert.equal(c.nodeName, 'knit-services');
    assert.equal(c.rangeSets.length, 1);
    assert.equal(c.rangeSets[0]!.ranges[0]!.subnet, '10.0.0.0/24');
    assert.equal(String(c.rangeSets[0]!.ranges[0]!.end), String(0x0a00007fn), 'the ip-range ends at .127');
    const w = serviceIpamConfig(app, '/knit', true);
    assert.equal(String(w.rangeSets[0]!.ranges[0]!.end), String(0x0a0000fen), 'whole subnet: up to .254');
    const v6only = net({ name: 'six', driver: 'overlay', ipv6: true, subnets: ['fd00:1::/64', '10.0.1.0/24'] });
    assert.equal(serviceIpamConfig(v6only, '/knit').rangeSets.length, 1, 'IPv4 only');
  });

  it('decodeService ignores junk', () => {
    assert.equal(decodeService('{'), null);
    assert.equal(decodeService('{"name":"x"}'), null);
    assert.deepEqual(decodeService(JSON.stringify(svc('a', ['10.0.0.2']))), svc('a', ['10.0.0.2']));
  });
});

describe('services: backends and the nft table', () => {
  it('backends: endpoints of the network named or aliased after the service, IPv4, sorted, once', () => {
    const eps = [
      ep({ containerId: '1', name: 'api', ips: ['10.0.0.30/24', 'fd00::3/64'] }),
      ep({ containerId: '2', name: 'other', aliases: ['api'], ips: ['10.0.0.4/24'], node: 'h2' }),
      ep({ containerId: '3', name: 'other', ips: ['10.0.0.5/24'] }),
      ep({ containerId: '4', network: 'b', name: 'api', ips: ['10.0.9.5/24'] }),
      ep({ containerId: 'lb-app', ifName: 'lb', ips: ['10.0.0.6/24'] }),
      ep({ containerId: '5', ifName: 'eth1', name: 'api', ips: ['10.0.0.4/24'] }),
    ];
    assert.deepEqual(backendsOf(svc('api', []), eps), ['10.0.0.4', '10.0.0.30']);
  });

  const s1: LbService = { network: 'app', name: 'api', vip: '10.0.0.100', ports: [{ proto: 'tcp', port: 80 }, { proto: 'tcp', port: 443 }, { proto: 'udp', port: 53 }], backends: ['10.0.0.5', '10.0.0.6'], lb: '10.0.0.120' };
  const s2: LbService = { network: 'app', name: 'all', vip: '10.0.0.101', ports: [], backends: ['10.0.0.7'], lb: '10.0.0.120' };
  const s3: LbService = { network: 'app', name: 'none', vip: '10.0.0.102', ports: [], backends: [], lb: '10.0.0.120' };

  it('one map per service indexed by numgen inc mod N, dispatch by VIP, SNAT to the node\'s LB address', () => {
    const t = renderTable([s1, s2, s3]);
    const id = serviceId('app', 'api');
    assert.match(id, /^app_api_[0-9a-f]{8}$/);
    assert.match(t, /^table inet knit-services \{\}\ndelete table inet knit-services\ntable inet knit-services \{\n/, 'replaced whole in one transaction');
    assert.match(t, new RegExp(`map b_${id} \\{ typeof numgen inc mod 1 : ip daddr; comment "knit service app/api"; elements = \\{ 0 : 10\\.0\\.0\\.5, 1 : 10\\.0\\.0\\.6 \\}; \\}`));
    assert.match(t, new RegExp(`chain s_${id} \\{ tcp dport \\{ 80, 443 \\} dnat ip to numgen inc mod 2 map @b_${id}; udp dport \\{ 53 \\} dnat ip to numgen inc mod 2 map @b_${id}; \\}`));
    assert.match(t, new RegExp(`chain s_${serviceId('app', 'all')} \\{ meta l4proto \\{ tcp, udp \\} dnat ip to numgen inc mod 1 map`), 'no ports: every TCP and UDP port');
    assert.match(t, new RegExp(`chain s_${serviceId('app', 'none')} \\{ \\}`), 'no backend: no rule (the VIP refuses)');
    assert.match(t, new RegExp(`10\\.0\\.0\\.100 : jump s_${id}`));
    assert.match(t, /map snat4 \{ type ipv4_addr : ipv4_addr; elements = \{ 10\.0\.0\.101 : 10\.0\.0\.120, 10\.0\.0\.100 : 10\.0\.0\.120, 10\.0\.0\.102 : 10\.0\.0\.120 \}; \}/);
    assert.match(t, /set local4 \{ type ipv4_addr; elements = \{ 10\.0\.0\.100, 10\.0\.0\.101, 10\.0\.0\.102, 10\.0\.0\.120 \}; \}/);
    assert.match(t, /ct status dnat snat ip to ct original ip daddr map @snat4/);
    assert.equal((t.match(/^  map b_/gm) ?? []).length, 3, 'one map per service');
  });

  it('the same state renders the same table, in any order; no service removes the table', () => {
    assert.equal(renderTable([s1, s2, s3]), renderTable([s3, s1, s2]));
    assert.notEqual(renderTable([s1]), renderTable([{ ...s1, backends: ['10.0.0.5'] }]));
    assert.equal(renderTable([]), 'table inet knit-services {}\ndelete table inet knit-services\n');
  });

  it('a change touches only the services that changed (the whole table when nothing was written yet)', () => {
    assert.equal(renderChanges(null, [s1, s2]), renderTable([s1, s2]), 'first write: whole');
    assert.equal(renderChanges([s1, s2], []), renderTable([]), 'last service gone: the table goes');
    assert.equal(renderChanges([s1, s2], [s2, s1]), '', 'nothing changed: nothing to do');
    assert.equal(renderChanges(null, []), renderTable([]), 'knitd starting without services: any old table goes');
    assert.equal(renderChanges([], []), '', 'then no nft run per event while there is no service');
    const id = serviceId('app', 'api');
    const c = renderChanges([s1, s2], [{ ...s1, backends: ['10.0.0.6'] }, s2]);
    assert.equal(c, [
      'delete element inet knit-services vip4 { 10.0.0.100 }', 'delete element inet knit-services snat4 { 10.0.0.100 }',
      `flush chain inet knit-services s_${id}`, `flush map inet knit-services b_${id}`,
      `add element inet knit-services b_${id} { 0 : 10.0.0.6 }`,
      `add rule inet knit-services s_${id} tcp dport { 80, 443 } dnat ip to numgen inc mod 1 map @b_${id}`,
      `add rule inet knit-services s_${id} udp dport { 53 } dnat ip to numgen inc mod 1 map @b_${id}`,
      `add element inet knit-services vip4 { 10.0.0.100 : jump s_${id} }`, 'add element inet knit-services snat4 { 10.0.0.100 : 10.0.0.120 }',
      '',
    ].join('\n'));
    assert.doesNotMatch(c, new RegExp(serviceId('app', 'all')), 'the other service is not touched');
    const gone = renderChanges([s1, s2], [s1]);
    assert.match(gone, new RegExp(`delete chain inet knit-services s_${serviceId('app', 'all')}\ndelete map inet knit-services b_${serviceId('app', 'all')}`));
    assert.match(gone, /delete element inet knit-services local4 \{ 10\.0\.0\.101 \}/);
  });
});

describe('services: knitctl service inspect and ls', () => {
  it('shows the VIP, ports, backends on every node with addresses, and each node\'s LB address', () => {
    const eps = [
      ep({ containerId: 'c2', node: 'h2', nodeIp: '192.168.0.2', name: 'x', aliases: ['api'], ips: ['10.0.0.6/24'] }),
      ep({ containerId: 'c1', name: 'api', ips: ['10.0.0.5/24'] }),
      ep({ containerId: 'lb-app', ifName: 'lb', ips: ['10.0.0.120/24'] }),
      ep({ containerId: 'c3', name: 'db', ips: ['10.0.0.7/24'] }),
    ];
    const s = svc('api', ['10.0.0.100'], [{ proto: 'tcp', port: 80 }]);
    const i = inspectService(s, eps);
    assert.deepEqual(i.Endpoint, { Spec: { Mode: 'vip' }, VirtualIPs: [{ Network: 'app', Addr: '10.0.0.100' }], Ports: [{ Protocol: 'tcp', TargetPort: 80 }] });
    assert.deepEqual(i.Backends.map((b) => `${b.Host} ${b.Name} ${b.Addresses.join()}`), ['h1 api 10.0.0.5/24', 'h2 x 10.0.0.6/24']);
    assert.deepEqual(i.LoadBalancers, [{ Host: 'h1', Address: '10.0.0.120/24' }]);
    assert.deepEqual(serviceRows([s], eps)[1], ['aaaaaaaaaaaa', 'api', 'app', 'vip', '10.0.0.100', '80/tcp', '2']);
  });
});

describe('services: knitctl service (in-process, no etcd)', () => {
  const knitctl = (...argv: string[]): ReturnType<typeof run> => run(argv, async () => { throw new Error('no wait expected'); }, {});

  it('the service group shows its verbs; create checks name, --network and --port before any etcd request', async () => {
    const h = await knitctl('service', '--help');
    assert.equal(h.code, 0);
    for (const v of ['create <name>', 'ls', 'inspect <names..>', 'rm <names..>']) assert.match(h.out, new RegExp(`knitctl service ${v.replace(/[.<>]/g, '\\$&')} `), v);
    const c = await knitctl('service', 'create', '--help');
    for (const f of ['--network', '--vip', '--port']) assert.match(c.out, new RegExp(`${f} `));
    const noEtcd = ['--etcd-endpoints', 'http://127.0.0.1:1', '--etcd-timeout', '300'];
    for (const [argv, msg] of [
      [['service', 'create', 'api'], '--network is required: the overlay network of the service'],
      [['service', 'create', 'a.b', '--network', 'n'], 'invalid service name "a.b": letters and digits, "-" or "_" between them, at most 63 characters (it becomes a DNS name)'],
      [['service', 'create', 'api', '--network', 'n', '--port', 'icmp:1'], 'invalid --port "icmp:1": PROTO:PORT with PROTO tcp or udp and PORT from 1 to 65535, e.g. tcp:80 (PORT alone is tcp)'],
    ] as Array<[string[], string]>) {
      assert.deepEqual(await knitctl(...noEtcd, ...argv), { code: 2, out: '', err: `knitctl: ${msg}\nSee 'knitctl service create --help'.\n` }, argv.join(' '));
    }
    const down = await knitctl(...noEtcd, 'service', 'ls');
    assert.equal(down.code, 1, 'etcd unreachable: a failure, not a usage error');
  });
});
