// knit-etcd-ipam as runtimes and admins see it, against real etcd (Debian's etcd-server on
// loopback, random ports, temp data): the bundled executable with every verb, blocks returned to
// the pool, etcd unreachable (closed port, frozen member) -> code 11 within timeoutMs and STATUS
// 50, failover, TLS with client certificates and auth with a prefix-limited role (no secret in
// any output), knitctl ipam ls/gc, and both ways of running it in lab namespaces: in-process
// under knit-bridge and exec'd by the reference bridge, with etcd on a lab underlay host.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput } from '../lab/lab';
import { buildKnit, execJson, linkAddrs, REF_CNI_DIR, type ExecOut, type KnitBuild } from '../lab/cni';
import { EtcdCluster, freePorts, makeTls, requireEtcd, type TlsFiles } from '../lab/etcd';

type Out = ExecOut;

let knit: KnitBuild;

function cni(command: string, conf: object, cid = '', env: Record<string, string> = {}): Promise<Out> {
  return execJson(knit.bin('knit-etcd-ipam'), [], {
    CNI_COMMAND: command, CNI_PATH: knit.binDir, CNI_CONTAINERID: cid || undefined, CNI_IFNAME: cid ? 'eth0' : undefined,
    CNI_NETNS: cid ? '/run/netns/none' : undefined, ...env,
  }, JSON.stringify(conf));
}

function knitctl(args: string[], env: Record<string, string> = {}): Promise<Out> {
  return execJson(knit.bin('knitctl'), args, env);
}

function ok(o: Out, what = ''): Out {
  assert.equal(o.code, 0, `${what} exit ${o.code}: ${o.stdout} ${o.stderr}`);
  return o;
}

function fails(o: Out, code: number, ...parts: string[]): void {
  assert.equal(o.code, 1, `expected failure, got ${o.code}: ${o.stdout} ${o.stderr}`);
  assert.equal(o.json?.code, code, o.stdout);
  for (const p of parts) assert.ok(String(o.json.msg).includes(p), `${o.json.msg} should contain ${p}`);
}

const conf = (name: string, etcd: object, ipam: object = {}, extra: object = {}): Record<string, any> => ({
  cniVersion: '1.1.0', name, type: 'bridge',
  ipam: { type: 'knit-etcd-ipam', nodeName: 'n1', etcd, ranges: [[{ subnet: '10.230.0.0/24' }], [{ subnet: 'fd30::/64' }]], routes: [{ dst: '0.0.0.0/0' }], ...ipam },
  ...extra,
});

describe('knit-etcd-ipam', function () {
  this.timeout(60_000);

  before(async function () {
    requireEtcd(this);
    knit = await buildKnit(['knit-etcd-ipam', 'knitctl', 'knit-bridge']);
  });

  describe('executable against one member', () => {
    let etcd: EtcdCluster;
    let ep: { endpoints: string[]; timeoutMs: number };
    before(async () => {
      etcd = await EtcdCluster.start();
      ep = { endpoints: etcd.endpoints, timeoutMs: 2000 };
    });
    after(async () => { await etcd?.stop(); });

    for (const v of ['0.4.0', '1.1.0']) {
      it(`ADD / repeated ADD / CHECK / DEL (cniVersion ${v}), one transaction each`, async () => {
        const c: Record<string, any> = { ...conf(`v${v.replace(/\./g, '')}`, ep), cniVersion: v };
        const add = ok(await cni('ADD', c, 'ctr1')).json;
        assert.equal(add.cniVersion, v);
        assert.equal(add.ips.length, 2);
        assert.match(add.ips[0].address, /^10\.230\.0\.\d+\/24$/);
        assert.match(add.ips[1].address, /^fd30::[0-9a-f]+\/64$/);
        assert.equal(add.ips[0].gateway, '10.230.0.1');
        assert.deepEqual(add.routes, [{ dst: '0.0.0.0/0' }]);
        assert.deepEqual(ok(await cni('ADD', c, 'ctr1')).json.ips, add.ips, 'a repeated ADD returns the same addresses');
        ok(await cni('CHECK', { ...c, prevResult: add }, 'ctr1'));
        fails(await cni('CHECK', c, 'ctr2'), 3, 'ctr2');
        const keys = etcd.dump(`/knit/ipam/${c.name}/`);
        assert.equal([...keys.keys()].filter((k) => k.includes('/ips/')).length, 2);
        assert.equal([...keys.keys()].filter((k) => k.includes('/blocks/')).length, 2, 'one block per range set claimed');
        ok(await cni('DEL', c, 'ctr1'));
        const left = [...etcd.dump(`/knit/ipam/${c.name}/`).keys()].map((k) => k.split('/')[4]);
        assert.deepEqual(left.sort(), ['blocks', 'blocks', 'nodes', 'nodes'], 'addresses and index gone; the node keeps its one block per range set');
        ok(await cni('DEL', c, 'ctr1'));
      });
    }

    it('static requests, borrowing when the pool has no free block, exhaustion, STATUS with free counts', async () => {
      // 10.231.0.0/28: 13 addresses in 4 blocks of 4 (blockSize 30).
      const c = conf('small', ep, { blockSize: 30, ranges: [[{ subnet: '10.231.0.0/28' }]] });
      const st = ok(await cni('STATUS', c, '', { KNIT_LOG_LEVEL: 'info' }));
      assert.match(st.stderr, /10\.231\.0\.0\/28: 13 of 13 free/);
      const stat = ok(await cni('ADD', c, 's1', { CNI_ARGS: 'IP=10.231.0.9' })).json;
      assert.equal(stat.ips[0].address, '10.231.0.9/28');
      fails(await cni('ADD', c, 's2', { CNI_ARGS: 'IP=10.231.0.9' }), 102, '10.231.0.9', 'already reserved');
      const got = new Set<string>(['10.231.0.9']);
      // Node n1 takes the other 12 (claiming all 4 blocks of 4), then frees one address in each
      // of 3 blocks: no block is free, so node n2 must borrow those from n1's blocks.
      const mine = new Map<string, string>();
      for (let i = 0; i < 12; i++) mine.set(ok(await cni('ADD', c, `a${i}`)).json.ips[0].address.split('/')[0], `a${i}`);
      fails(await cni('ADD', c, 'a12'), 102, 'no free address');
      const blockOf = (ip: string): number => Number(ip.split('.')[3]) >> 2;
      const freed = new Map<number, string>();
      for (const [ip, id] of mine) if (ip !== '10.231.0.9' && !freed.has(blockOf(ip)) && freed.size < 3) freed.set(blockOf(ip), id);
      for (const id of freed.values()) ok(await cni('DEL', c, id));
      for (const [ip, id] of mine) if (![...freed.values()].includes(id)) got.add(ip);
      const c2 = conf('small', ep, { nodeName: 'n2', blockSize: 30, ranges: [[{ subnet: '10.231.0.0/28' }]] });
      for (let i = 0; i < 3; i++) got.add(ok(await cni('ADD', c2, `b${i}`)).json.ips[0].address.split('/')[0]);
      assert.equal(got.size, 13, 'every address handed out once');
      fails(await cni('ADD', c2, 'b9'), 102, 'no free address');
      fails(await cni('STATUS', c, ''), 50, '0 of 13 free');
      const ls = ok(await knitctl(['ipam', 'ls', '--network', 'small', '--etcd-endpoints', etcd.endpoints.join(','), '--json'])).json[0];
      assert.equal(ls.ips.length, 13);
      assert.ok(ls.ips.some((r: any) => r.node === 'n2' && r.blockNode === 'n1'), 'n2 borrowed from n1');
      const table = ok(await knitctl(['ipam', 'ls', '--network', 'small', '--etcd-endpoints', etcd.endpoints.join(',')])).stdout;
      assert.match(table, /NODE\s+ADDRESS\s+CONTAINER/);
      assert.match(table, /borrowed from n1/);
      assert.ok(ls.ips.every((r: any) => r.blockNode === 'n1'), 'n1 holds every block');
      // GC on n1 keeps only one attachment: the rest of n1's go, n2's stay.
      const keep = [...mine.values()].find((id) => ![...freed.values()].includes(id))!;
      ok(await cni('GC', { ...c, 'cni.dev/valid-attachments': [{ containerID: keep, ifname: 'eth0' }] }));
      const after = ok(await knitctl(['ipam', 'ls', '--network', 'small', '--etcd-endpoints', etcd.endpoints.join(','), '--json'])).json[0];
      assert.deepEqual(after.ips.filter((r: any) => r.node === 'n1').map((r: any) => r.containerId), [keep]);
      assert.equal(after.ips.filter((r: any) => r.node === 'n2').length, 3);
      // n2 left the cluster without DEL: the admin releases it.
      const gc = ok(await knitctl(['ipam', 'gc', '--node', 'n2', '--network', 'small', '--etcd-endpoints', etcd.endpoints.join(',')])).stdout;
      assert.match(gc, /released 3 addresses of node n2/);
      const end = ok(await knitctl(['ipam', 'ls', '--network', 'small', '--etcd-endpoints', etcd.endpoints.join(','), '--json'])).json[0];
      assert.deepEqual(end.ips.map((r: any) => r.containerId), [keep]);
      assert.ok(end.blocks.every((b: any) => b.node === 'n1'), `n2's blocks went back to the pool: ${JSON.stringify(end.blocks)}`);
      assert.ok(end.blocks.length <= 2, `n1's GC returned its empty blocks but one: ${JSON.stringify(end.blocks)}`);
    });

    it('fails over from a dead endpoint to a live one', async () => {
      const [dead] = await freePorts(1);
      const c = conf('failover', { ...ep, endpoints: [`http://127.0.0.1:${dead}`, ...etcd.endpoints] });
      for (let i = 0; i < 3; i++) ok(await cni('ADD', c, `f${i}`));
      ok(await cni('STATUS', c));
    });

    it('a frozen (blackholed) member: code 11 within timeoutMs, nothing written; STATUS 50', async () => {
      const c = conf('frozen', { ...ep, timeoutMs: 1500 });
      ok(await cni('ADD', c, 'before'));
      etcd.freeze(0, true);
      try {
        const add = await cni('ADD', c, 'during');
        fails(add, 11, 'etcd unavailable');
        assert.ok(add.ms < 1500 + 1500, `answered in ${add.ms} ms`);
        fails(await cni('STATUS', c), 50, 'etcd unavailable');
        fails(await cni('DEL', c, 'before'), 11);
      } finally {
        etcd.freeze(0, false);
      }
      const keys = [...etcd.dump('/knit/ipam/frozen/').keys()];
      assert.ok(!keys.some((k) => k.includes('during')), `no key of the failed ADD: ${keys.join(' ')}`);
      assert.ok(keys.some((k) => k.endsWith('/before:eth0')));
      ok(await cni('STATUS', c));
    });
  });

  it('etcd unreachable (closed port): every verb code 11 within timeoutMs, STATUS 50', async () => {
    const [p] = await freePorts(1);
    const c = conf('down', { endpoints: [`http://127.0.0.1:${p}`], timeoutMs: 800 });
    for (const verb of ['ADD', 'DEL', 'CHECK']) {
      const o = await cni(verb, verb === 'CHECK' ? { ...c, prevResult: { cniVersion: '1.1.0', ips: [] } } : c, 'x1');
      fails(o, 11, 'etcd unavailable', 'within 800 ms');
      assert.ok(o.ms < 800 + 1200, `${verb} answered in ${o.ms} ms`);
    }
    fails(await cni('STATUS', c), 50, 'etcd unavailable');
    fails(await cni('GC', { ...c, 'cni.dev/valid-attachments': [] }), 11);
    assert.equal((await knitctl(['ipam', 'ls', '--etcd-endpoints', `http://127.0.0.1:${p}`, '--etcd-timeout', '500'])).code, 1);
  });

  it('rejects bad etcd settings with code 7, naming the key', async () => {
    const base = { endpoints: ['http://127.0.0.1:2379'] };
    fails(await cni('ADD', conf('bad', { endpoints: ['ftp://x'] }), 'b1'), 7, 'ipam.etcd.endpoints[0]');
    fails(await cni('ADD', conf('bad', { ...base, timeoutMs: 5 }), 'b1'), 7, 'ipam.etcd.timeoutMs');
    fails(await cni('ADD', conf('bad', base, { blockSize: 31 }), 'b1'), 7, 'ipam.blockSize', 'from 16 to 30');
    fails(await cni('ADD', conf('bad', { ...base, tls: { cert: '/x.crt' } }), 'b1'), 7, 'ipam.etcd.tls');
    // A TLS file that cannot be read (missing; a directory) is the config's fault: 7, not 5 (found by the fuzz suite).
    const httpsBase = { endpoints: ['https://127.0.0.1:2379'], timeoutMs: 500 };
    fails(await cni('ADD', conf('bad', { ...httpsBase, tls: { ca: '/nonexistent/ca.pem' } }), 'b1'), 7, 'ipam.etcd.tls.ca', '/nonexistent/ca.pem', 'ENOENT', 'a readable PEM file');
    fails(await cni('DEL', conf('bad', { ...httpsBase, tls: { ca: '/' } }), 'b1'), 7, 'ipam.etcd.tls.ca', 'EISDIR');
    fails(await cni('ADD', conf('bad', base, { nodeName: 'a/b' }), 'b1'), 7, 'ipam.nodeName');
    const pw = await cni('ADD', conf('bad', { ...base, password: 12345 }), 'b1');
    fails(pw, 7, 'ipam.etcd.password');
    assert.ok(!pw.stdout.includes('12345'));
  });

  describe('TLS with client certificates and auth', () => {
    let etcd: EtcdCluster;
    let tls: TlsFiles;
    const secret = 'S3cret-pw-knit';
    before(async () => {
      tls = makeTls();
      etcd = await EtcdCluster.start({ tls, clientCertAuth: true });
      etcd.enableAuth({ rootPw: 'root-pw-knit', user: 'knit', pw: secret, prefix: '/knit/' });
    });
    after(async () => { await etcd?.stop(); });

    const tlsConf = (): Record<string, unknown> => ({ endpoints: etcd.endpoints, timeoutMs: 3000, tls: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey }, username: 'knit', password: secret });

    it('allocates over https with a user limited to the prefix; never prints the password', async () => {
      const c = conf('tlsnet', tlsConf());
      const env = { KNIT_LOG_LEVEL: 'debug' };
      const add = ok(await cni('ADD', c, 't1', env));
      assert.equal(add.json.ips.length, 2);
      assert.ok(add.stderr.includes('request'), 'debug logging was on');
      ok(await cni('CHECK', { ...c, prevResult: add.json }, 't1', env));
      const st = ok(await cni('STATUS', c, '', env));
      for (const o of [add, st]) assert.ok(!(o.stdout + o.stderr).includes(secret), 'the password appears nowhere');
      // The same user may not write outside its prefix.
      const outside = await cni('ADD', conf('tlsnet', { ...tlsConf(), prefix: '/other' }), 't2');
      fails(outside, 5, 'permission denied');
      ok(await cni('DEL', c, 't1', env));
      assert.deepEqual([...etcd.dump('/knit/ipam/tlsnet/', 'root:root-pw-knit').keys()].filter((k) => /\/(ips|attach)\//.test(k)), []);
    });

    it('wrong password: code 7, password not shown; no client certificate: refused', async () => {
      const bad = await cni('ADD', conf('tlsnet', { ...tlsConf(), password: 'wrong-pw-xyz' }), 't3', { KNIT_LOG_LEVEL: 'debug' });
      fails(bad, 7, 'authentication failed', 'knit');
      assert.ok(!(bad.stdout + bad.stderr).includes('wrong-pw-xyz'));
      const { cert: _c, key: _k, ...caOnly } = (tlsConf().tls as Record<string, string>);
      const nocert = await cni('ADD', conf('tlsnet', { ...tlsConf(), tls: caOnly, timeoutMs: 1500 }), 't4');
      assert.equal(nocert.code, 1);
      assert.ok([5, 11].includes(nocert.json.code), nocert.stdout);
    });

    it('knitctl ipam ls / gc with TLS flags and a user', async () => {
      const c = conf('tlsctl', tlsConf());
      ok(await cni('ADD', c, 'k1'));
      ok(await cni('ADD', c, 'k2'));
      const flags = ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-cafile', tls.ca, '--etcd-certfile', tls.clientCert, '--etcd-keyfile', tls.clientKey, '--etcd-username', 'knit'];
      const ls = ok(await knitctl(['ipam', 'ls', '--network', 'tlsctl', ...flags], { KNIT_ETCD_PASSWORD: secret }));
      assert.match(ls.stdout, /n1\s+10\.230\.0\.\d+\s+k1\s+eth0/);
      const gc = ok(await knitctl(['ipam', 'gc', '--node', 'n1', '--network', 'tlsctl', '--keep', 'k2:eth0', '--json', ...flags, '--etcd-password', secret]));
      assert.deepEqual(gc.json[0].released.map((r: any) => r.containerId), ['k1', 'k1']);
      const bad = await knitctl(['ipam', 'ls', ...flags, '--etcd-password', 'nope-pw']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /authentication failed/);
      assert.ok(!bad.stderr.includes('nope-pw'));
    });
  });

  describe('in lab namespaces: etcd on an underlay host', () => {
    let lab: Lab;
    let etcd: EtcdCluster;
    let h1: Host, h2: Host;
    before(async function () {
      requireRoot(this);
      lab = new Lab();
      const sw = await lab.switch();
      const ns = await lab.host('etcd', sw, { address: '192.168.77.10/24' });
      h1 = await lab.host('h1', sw, { address: '192.168.77.11/24' });
      h2 = await lab.host('h2', sw, { address: '192.168.77.12/24' });
      etcd = await EtcdCluster.start({ netns: ns, host: '192.168.77.10' });
    });
    after(async () => { await etcd?.stop(); await lab?.cleanup(); });

    function plugin(host: Netns, file: string, command: 'ADD' | 'DEL' | 'CHECK', c: object, cid: string, pod: Netns): Promise<PluginOutput> {
      return lab.runPlugin(host, file, { command, conf: c, containerId: cid, netns: pod.path, ifName: 'eth0', path: [knit.binDir, REF_CNI_DIR] });
    }

    it('in-process under knit-bridge on h1 and exec\'d by the reference bridge on h2: one pool', async () => {
      const ipam = (node: string): object => ({ type: 'knit-etcd-ipam', nodeName: node, etcd: { endpoints: etcd.endpoints, timeoutMs: 3000 }, ranges: [[{ subnet: '10.232.0.0/16' }]] });
      const kb = { cniVersion: '1.0.0', name: 'labnet', type: 'knit-bridge', bridge: 'kb-lab', isGateway: true, ipam: ipam('h1') };
      const rb = { cniVersion: '1.0.0', name: 'labnet', type: 'bridge', bridge: 'rb-lab', isGateway: true, ipam: ipam('h2') };
      const [p1, p2] = [await lab.pod('p1'), await lab.pod('p2')];
      const r1 = await plugin(h1, knit.bin('knit-bridge'), 'ADD', kb, 'lab1', p1);
      assert.equal(r1.code, 0, r1.stdout + r1.stderr);
      const r2 = await plugin(h2, path.join(REF_CNI_DIR, 'bridge'), 'ADD', rb, 'lab2', p2);
      assert.equal(r2.code, 0, r2.stdout + r2.stderr);
      const a1 = r1.json.ips[0].address, a2 = r2.json.ips[0].address;
      assert.notEqual(a1, a2);
      assert.equal((await linkAddrs(lab, p1, 'eth0'))?.addr_info?.find((a) => a.family === 'inet')?.local, a1.split('/')[0]);
      assert.equal((await linkAddrs(lab, p2, 'eth0'))?.addr_info?.find((a) => a.family === 'inet')?.local, a2.split('/')[0]);
      // Different nodes: different blocks.
      const blocks = [...etcd.dump('/knit/ipam/labnet/blocks/').values()].map((v) => JSON.parse(v).node).sort();
      assert.deepEqual(blocks, ['h1', 'h2']);
      assert.ok(await lab.ping(p1, r1.json.ips[0].gateway));
      assert.ok(await lab.ping(p2, r2.json.ips[0].gateway));
      assert.equal((await plugin(h1, knit.bin('knit-bridge'), 'DEL', kb, 'lab1', p1)).code, 0);
      assert.equal((await plugin(h2, path.join(REF_CNI_DIR, 'bridge'), 'DEL', rb, 'lab2', p2)).code, 0);
      assert.deepEqual([...etcd.dump('/knit/ipam/labnet/').keys()].filter((k) => /\/(ips|attach)\//.test(k)), []);
      assert.ok(fs.existsSync(knit.bin('knit-etcd-ipam')));
    });
  });
});
