// knit's resolver without sockets or etcd (pkg/dns): the record table (names per network, aliases,
// services, round robin, scopes by the client's address), query handling on real wire bytes
// (dns-packet on the client side too), malformed packets dropped (fast-check), resolv.conf, and
// the server on 127.0.0.1 surviving a stream of junk with its counter going up.
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import * as packet from 'dns-packet';
import { buildNetwork, type Network } from '../../pkg/network/spec';
import type { Endpoint } from '../../pkg/network/store';
import type { Service } from '../../pkg/service/spec';
import { RecordTable } from '../../pkg/dns/table';
import { handleQuery, precheck, type Outcome } from '../../pkg/dns/query';
import { checkAliases, isDnsName } from '../../pkg/dns/names';
import { Forwarder, parseResolvConf } from '../../pkg/dns/upstream';
import { DnsServer } from '../../pkg/dns/server';
import { dnsOf } from '../../pkg/network/conflist';
import { nullLogger } from '../../pkg/cni/log';

const NOW = new Date('2026-12-06T00:00:00Z');
const net = (name: string, subnet: string, opts: string[] = [], existing: Network[] = []): Network =>
  buildNetwork({ name, driver: 'overlay', subnets: [subnet], opts }, existing, NOW, name.padEnd(64, '0'));
const APP = net('app', '10.1.0.0/24');
const DB = net('db', '10.2.0.0/24', [], [APP]);
const ep = (network: string, node: string, cid: string, ip: string, name?: string, aliases?: string[], ifName = 'eth0'): Endpoint => ({
  network, node, containerId: cid, ifName, nodeIp: '192.168.0.1', mac: '02:00:00:00:00:01', ips: [ip], ...(name ? { name } : {}), ...(aliases ? { aliases } : {}), created: NOW.toISOString(),
});

function table(): RecordTable {
  const t = new RecordTable();
  t.resync([APP, DB], [
    ep('app', 'h1', 'c1', '10.1.0.5/24', 'web', ['api']),
    ep('app', 'h2', 'c2', '10.1.0.6/24', 'web2', ['api']),
    ep('app', 'h2', 'c3', '10.1.0.7/24', 'client'),
    ep('db', 'h1', 'c4', '10.2.0.5/24', 'web'), // the same name on another network
    ep('db', 'h2', 'c3', '10.2.0.7/24', 'client', undefined, 'eth1'), // client is on both
    ep('db', 'h2', 'c5', '10.2.0.9/24', 'store'),
  ]);
  return t;
}

const query = (name: string, type: packet.RecordType = 'A', extra: Partial<packet.Packet> = {}): Buffer =>
  packet.encode({ type: 'query', id: 4242, flags: packet.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }], ...extra });
/** A decoded response (dns-packet's types leave out the flags and rcode it decodes). */
type Reply = any; // eslint-disable-line @typescript-eslint/no-explicit-any
const ask = (t: RecordTable, client: string, name: string, type: packet.RecordType = 'A', network = 'app', upstream = true): { out: Outcome; r?: Reply } => {
  const out = handleQuery(query(name, type), { table: t, client, network, transport: 'udp', upstream });
  return out.kind === 'answer' ? { out, r: packet.decode(out.response) } : { out };
};
const addrs = (r?: Reply): string[] => ((r?.answers ?? []) as Reply[]).map((a) => String(a.data));

describe('dns: record table and queries', () => {
  it('answers a container name with its address on the client\'s network, authoritative, TTL 5 s, id kept', () => {
    const { out, r } = ask(table(), '10.1.0.7', 'web');
    assert.equal(out.kind, 'answer');
    assert.equal(r!.id, 4242);
    assert.equal(r!.rcode, 'NOERROR');
    assert.ok(r!.flag_aa && r!.flag_rd && r!.flag_ra);
    assert.deepEqual(addrs(r), ['10.1.0.5']);
    assert.equal(r!.answers![0]!.ttl, 5);
    assert.deepEqual(addrs(ask(table(), '10.1.0.7', 'WEB.').r), ['10.1.0.5'], 'case-insensitive, trailing dot');
    assert.deepEqual(addrs(ask(table(), '10.1.0.7', 'web.app.knit').r), ['10.1.0.5'], 'the search domain form');
  });

  it('scopes names per network: the same name answers each network its own container; a client on both resolves both', () => {
    const t = table();
    assert.deepEqual(addrs(ask(t, '10.2.0.9', 'web', 'A', 'db').r), ['10.2.0.5'], 'db\'s web');
    assert.equal(ask(t, '10.2.0.9', 'web2', 'A', 'db').r!.rcode, 'NXDOMAIN', 'app\'s names are not visible from db');
    assert.equal(ask(t, '10.1.0.5', 'store').r!.rcode, 'NXDOMAIN');
    // client (c3) is on app and db: asking on app it resolves db's store too; app's web wins for "web".
    assert.deepEqual(addrs(ask(t, '10.1.0.7', 'store').r), ['10.2.0.9']);
    assert.deepEqual(addrs(ask(t, '10.1.0.7', 'web').r), ['10.1.0.5'], 'the network asked on first');
    assert.deepEqual(addrs(ask(t, '10.2.0.7', 'web', 'A', 'db').r), ['10.2.0.5']);
    assert.deepEqual(addrs(ask(t, '10.1.0.7', 'web.db.knit').r), ['10.2.0.5'], 'qualified: that network');
    assert.equal(ask(t, '10.1.0.5', 'web.db.knit').r!.rcode, 'NXDOMAIN', 'not a network of the client');
  });

  it('round robin: an alias shared by two containers answers both, rotated', () => {
    const t = table();
    const seen = [0, 1, 2, 3].map(() => addrs(ask(t, '10.1.0.7', 'api').r));
    for (const s of seen) assert.deepEqual([...s].sort(), ['10.1.0.5', '10.1.0.6']);
    assert.notDeepEqual(seen[0], seen[1], 'rotated');
    assert.deepEqual(seen[0], seen[2]);
  });

  it('NODATA (NOERROR, no answer) for AAAA or MX of a v4-only name; NXDOMAIN for unknown knit names; others forwarded', () => {
    const t = table();
    const aaaa = ask(t, '10.1.0.7', 'web', 'AAAA').r!;
    assert.equal(aaaa.rcode, 'NOERROR');
    assert.equal(aaaa.answers!.length, 0);
    assert.equal(ask(t, '10.1.0.7', 'web', 'MX').r!.rcode, 'NOERROR');
    assert.equal(ask(t, '10.1.0.7', 'nosuch').r!.rcode, 'NXDOMAIN', 'single label: knit\'s, never forwarded');
    assert.equal(ask(t, '10.1.0.7', 'nosuch.app.knit').r!.rcode, 'NXDOMAIN');
    assert.equal(ask(t, '10.1.0.7', 'example.com').out.kind, 'forward');
    assert.equal(ask(t, '10.1.0.7', 'example.com', 'A', 'app', false).r!.rcode, 'SERVFAIL', 'no upstream known');
  });

  it('--internal networks: names answered, nothing forwarded (REFUSED), unless the client is also on a network with egress', () => {
    const inner = buildNetwork({ name: 'inner', driver: 'overlay', subnets: ['10.5.0.0/24'], internal: true }, [APP, DB], NOW, 'i'.repeat(64));
    const t = table();
    t.network(undefined, inner);
    t.endpoint(undefined, ep('inner', 'h1', 'i1', '10.5.0.5/24', 'secret'));
    t.endpoint(undefined, ep('inner', 'h1', 'i2', '10.5.0.6/24', 'hybrid'));
    t.endpoint(undefined, ep('app', 'h1', 'i2', '10.1.0.66/24', 'hybrid'));
    assert.deepEqual(addrs(ask(t, '10.5.0.6', 'secret', 'A', 'inner').r), ['10.5.0.5']);
    assert.equal(ask(t, '10.5.0.5', 'example.com', 'A', 'inner').r!.rcode, 'REFUSED');
    assert.equal(ask(t, '10.5.0.6', 'example.com', 'A', 'inner').out.kind, 'forward', 'i2 is on app too');
  });

  it('REFUSED for clients outside knit networks, names and recursion alike', () => {
    const t = table();
    for (const name of ['web', 'example.com']) {
      const { r } = ask(t, '192.168.0.9', name);
      assert.equal(r!.rcode, 'REFUSED', name);
      assert.equal(r!.answers!.length, 0);
    }
    // A client in the subnet but not recorded yet (its ADD in flight) is on that network.
    assert.deepEqual(addrs(ask(t, '10.1.0.99', 'web').r), ['10.1.0.5']);
  });

  it('DEL: the name goes away with its endpoint; a changed endpoint answers its new address', () => {
    const t = table();
    const e = ep('app', 'h1', 'c1', '10.1.0.5/24', 'web', ['api']);
    t.endpoint(e, undefined);
    assert.equal(ask(t, '10.1.0.6', 'web').r!.rcode, 'NXDOMAIN');
    assert.deepEqual(addrs(ask(t, '10.1.0.7', 'web').r), ['10.2.0.5'], 'a client on db too now finds db\'s web');
    assert.deepEqual(addrs(ask(t, '10.1.0.6', 'api').r), ['10.1.0.6'], 'the alias keeps its other holder');
    t.endpoint(undefined, { ...e, ips: ['10.1.0.50/24'] });
    assert.deepEqual(addrs(ask(t, '10.1.0.6', 'web').r), ['10.1.0.50']);
    t.endpoint({ ...e, ips: ['10.1.0.50/24'] }, { ...e, ips: ['10.1.0.51/24'] });
    assert.deepEqual(addrs(ask(t, '10.1.0.6', 'web').r), ['10.1.0.51']);
    assert.equal(t.scopeOf('10.1.0.50').join(), 'app', 'the old address is forgotten: only its subnet places it');
  });

  it('services: the name answers the VIPs, tasks.<name> the containers; a network with -o dns=false has no names', () => {
    const t = table();
    const svc: Service = { name: 'api', network: 'app', vips: ['10.1.0.200'], ports: [], id: 'x', created: NOW.toISOString() };
    t.service(undefined, svc);
    assert.deepEqual(addrs(ask(t, '10.1.0.7', 'api').r), ['10.1.0.200']);
    assert.deepEqual(addrs(ask(t, '10.1.0.7', 'tasks.api').r).sort(), ['10.1.0.5', '10.1.0.6']);
    assert.deepEqual(t.records('app').filter((r) => r.name === 'api').map((r) => `${r.address} ${r.source.kind}`).sort(), ['10.1.0.200 service', '10.1.0.5 alias', '10.1.0.6 alias']);
    t.service(svc, undefined);
    assert.equal(addrs(ask(t, '10.1.0.7', 'api').r).length, 2);
    const off = net('quiet', '10.3.0.0/24', ['dns=false'], [APP, DB]);
    t.network(undefined, off);
    t.endpoint(undefined, ep('quiet', 'h1', 'q1', '10.3.0.5/24', 'q'));
    assert.equal(t.serves('quiet'), false);
    assert.equal(ask(t, '10.3.0.5', 'q', 'A', 'quiet').r!.rcode, 'REFUSED');
    assert.equal(dnsOf(off), undefined, 'its conflist has no dns');
    assert.deepEqual(dnsOf(APP), { nameservers: ['10.1.0.1'], search: ['app.knit'] });
  });

  it('dual stack: A and AAAA from the endpoint\'s addresses, a client by its IPv6 address, both gateways in the result', () => {
    const ds = buildNetwork({ name: 'ds', driver: 'overlay', subnets: ['10.6.0.0/24', 'fd00:6::/64'], ipv6: true }, [APP, DB], NOW, 'd'.repeat(64));
    const t = new RecordTable();
    t.resync([ds], [{ ...ep('ds', 'h1', 'c1', '10.6.0.5/24', 'web'), ips: ['10.6.0.5/24', 'fd00:6:0:0::5/64'] }, { ...ep('ds', 'h2', 'c2', '10.6.0.6/24', 'cli'), ips: ['10.6.0.6/24', 'fd00:6::6/64'] }]);
    assert.deepEqual(addrs(ask(t, 'fd00:6::6', 'web', 'AAAA', 'ds').r), ['fd00:6::5']);
    assert.deepEqual(addrs(ask(t, 'fd00:6::6', 'web', 'A', 'ds').r), ['10.6.0.5']);
    assert.deepEqual(dnsOf(ds)!.nameservers, ['10.6.0.1', 'fd00:6::1']);
  });

  it('answers too big for UDP are cut to what fits, TC set', () => {
    const t = new RecordTable();
    const big = net('big', '10.9.0.0/16');
    t.resync([big], Array.from({ length: 60 }, (_, i) => ep('big', 'h1', `c${i}`, `10.9.1.${i + 1}/16`, `n${i}`, ['all'])));
    const r = ask(t, '10.9.1.1', 'all', 'A', 'big').r!;
    assert.ok(r.flag_tc, 'truncated');
    assert.ok(r.answers!.length > 10 && r.answers!.length < 60, `${r.answers!.length} answers`);
    const tcp = handleQuery(query('all'), { table: t, client: '10.9.1.1', network: 'big', transport: 'tcp', upstream: true });
    assert.equal(packet.decode((tcp as { response: Buffer }).response).answers!.length, 60, 'all of them over TCP');
  });

  it('names: aliases validated with the key named; names DNS cannot carry are not published', () => {
    assert.deepEqual(checkAliases('runtimeConfig.aliases.app', ['Web', 'web', 'api.v1']), ['web', 'api.v1']);
    assert.throws(() => checkAliases('runtimeConfig.aliases.app', ['ok', 'bad name']), /invalid runtimeConfig\.aliases\.app\[1\] "bad name": a DNS name/);
    assert.throws(() => checkAliases('runtimeConfig.aliases.app', 'web'), /invalid runtimeConfig\.aliases\.app "web": a list/);
    assert.throws(() => checkAliases('k', ['-x']), /k\[0\]/);
    assert.throws(() => checkAliases('k', ['x.app.knit']), /not under \.knit/);
    assert.equal(isDnsName('a'.repeat(64)), false);
    const t = new RecordTable();
    t.resync([APP], [ep('app', 'h1', 'c1', '10.1.0.5/24', 'bad..name')]);
    assert.equal(t.records().length, 0);
  });

  it('resolv.conf: nameserver lines, IPv6 zones dropped, duplicates and junk ignored', () => {
    assert.deepEqual(parseResolvConf('# x\nnameserver 10.0.0.53\nsearch lan\nnameserver fe80::1%eth0\nnameserver 10.0.0.53\nnameserver bogus\n options ndots:2'), ['10.0.0.53', 'fe80::1']);
  });
});

describe('dns: the codec stays off the plugins\' start path (design.md D18)', () => {
  it('dns-packet is bundled into knitd only, not into any plugin or knitctl', async function () {
    this.timeout(60_000);
    const { build } = await import('esbuild');
    const root = path.resolve(__dirname, '../..');
    const inputs = async (exe: string): Promise<string[]> => {
      const r = await build({ entryPoints: [path.join(root, 'cmd', exe, 'main.ts')], bundle: true, platform: 'node', format: 'cjs', write: false, metafile: true, external: ['*.node', '@kubernetes/client-node'], logLevel: 'silent' });
      return Object.keys(r.metafile.inputs);
    };
    for (const exe of ['knit-bridge', 'knit-l2overlay', 'knit-macvlan', 'knit-etcd-ipam', 'knitctl']) {
      assert.ok(!(await inputs(exe)).some((f) => f.includes('node_modules/dns-packet')), `${exe} must not bundle dns-packet`);
    }
    assert.ok((await inputs('knitd')).some((f) => f.includes('node_modules/dns-packet')), 'knitd does');
  });
});

describe('dns: malformed packets are dropped, never answered, never thrown', () => {
  const t = table();
  const ctx = { table: t, client: '10.1.0.7', network: 'app', transport: 'udp' as const, upstream: true };
  const dropped = (msg: Buffer): boolean => handleQuery(msg, ctx).kind === 'drop';

  it('the classic cases: truncated, compression loop, huge counts, a response', () => {
    const good = query('web');
    for (let n = 0; n < good.length; n++) assert.ok(dropped(good.subarray(0, n)), `truncated to ${n} bytes`);
    // A name that points at itself (offset 12), and two pointers pointing at each other.
    const head = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert.ok(dropped(Buffer.concat([head, Buffer.from([0xc0, 12, 0, 1, 0, 1])])), 'self pointer');
    assert.ok(dropped(Buffer.concat([head, Buffer.from([1, 0x61, 0xc0, 16, 0xc0, 12, 0, 1, 0, 1])])), 'pointer loop');
    const huge = Buffer.from(good);
    huge.writeUInt16BE(0xffff, 4);
    assert.ok(dropped(huge), 'qdcount 65535');
    const ar = Buffer.from(good);
    ar.writeUInt16BE(0xffff, 10);
    assert.ok(dropped(ar), 'arcount 65535');
    const resp = Buffer.from(good);
    resp.writeUInt16BE(0x8100, 2);
    assert.ok(dropped(resp), 'a response');
    assert.match(precheck(Buffer.alloc(5000), 'udp')!, /longer/);
  });

  it('fast-check: random bytes, mutated and cut queries: an answer to a well-formed query or a drop, never an exception', () => {
    const base = [query('web'), query('example.com', 'AAAA'), query('api', 'A', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as never] })];
    const mutated = fc.tuple(fc.constantFrom(...base), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat())
      .map(([b, edits, cut]) => {
        const m = Buffer.from(b);
        for (const [i, v] of edits) m[i % m.length] = v;
        return m.subarray(0, Math.max(0, m.length - (cut % 4)));
      });
    const junk = fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a));
    fc.assert(fc.property(fc.oneof(mutated, junk), (m) => {
      const out = handleQuery(m, ctx);
      if (out.kind === 'answer') {
        const r = packet.decode(out.response);
        assert.equal(r.id, m.readUInt16BE(0), 'an answer keeps the query id');
      }
    }), { numRuns: 3000, seed: 1306 });
  });

  it('the server on 127.0.0.1 counts junk as dropped and still answers the next query', async () => {
    const t2 = new RecordTable();
    const lo = net('lo', '127.0.0.0/8');
    t2.resync([lo], [ep('lo', 'h1', 'c1', '127.0.0.9/8', 'web')]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-dns-'));
    fs.writeFileSync(path.join(dir, 'resolv.conf'), '');
    const server = new DnsServer({ table: t2, forwarder: new Forwarder({ resolvConf: path.join(dir, 'resolv.conf') }), log: nullLogger, port: 0 });
    // port 0: the kernel picks; read it back from the bound socket.
    await server.listen([{ address: '127.0.0.1', network: 'lo' }]);
    const port = (server as unknown as { bound: Map<string, { udp: dgram.Socket }> }).bound.get('127.0.0.1')!.udp.address().port;
    const sock = dgram.createSocket('udp4');
    try {
      for (let i = 0; i < 200; i++) sock.send(Buffer.from(Array.from({ length: i % 40 }, (_, j) => (i * 7 + j * 13) & 0xff)), port, '127.0.0.1');
      const ans = await new Promise<Reply>((resolve, reject) => {
        sock.on('message', (m) => resolve(packet.decode(m)));
        setTimeout(() => reject(new Error('no answer')), 3000);
        setTimeout(() => sock.send(query('web'), port, '127.0.0.1'), 100);
      });
      assert.deepEqual(addrs(ans), ['127.0.0.9']);
      assert.equal(server.stats.dropped, 200);
      assert.equal(server.stats.answers.NOERROR, 1);
    } finally {
      sock.close();
      server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
