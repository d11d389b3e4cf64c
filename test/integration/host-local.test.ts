// knit-host-local as a runtime sees it: the bundled executable, real env and stdin, every verb
// across CNI versions, 100 concurrent processes, crash leftovers, and the reference bridge plugin
// using it as its IPAM inside lab network namespaces.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import { Lab, requireRoot, type Netns } from '../lab/lab';
import { execJson, type ExecOut } from '../lab/cni';

const ROOT = path.resolve(__dirname, '../..');
const BANNER = ['#!/bin/sh', `':' //; unset NODE_EXTRA_CA_CERTS; exec "\${KNIT_NODE:-node}" "$0" "$@"`].join('\n');

type Out = ExecOut;

let binDir: string;
let plugin: string;

/** Runs the plugin once with CNI_* env and conf on stdin. */
function cni(command: string, conf: object, env: Record<string, string> = {}): Promise<Out> {
  return execJson(plugin, [], { CNI_COMMAND: command, CNI_PATH: binDir, ...env }, JSON.stringify(conf));
}

const att = (id: string, ifName = 'eth0'): Record<string, string> => ({ CNI_CONTAINERID: id, CNI_IFNAME: ifName, CNI_NETNS: '/run/netns/none' });

function ok(o: Out): Out {
  assert.equal(o.code, 0, `exit ${o.code}: ${o.stdout} ${o.stderr}`);
  return o;
}

function fails(o: Out, code: number, ...parts: string[]): void {
  assert.equal(o.code, 1, `expected failure, got ${o.stdout}`);
  assert.equal(o.json?.code, code, o.stdout);
  for (const p of parts) assert.ok(String(o.json.msg).includes(p), `${o.json.msg} should contain ${p}`);
}

describe('knit-host-local integration', function () {
before(async function () {
  this.timeout(60_000);
  binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-hl-bin-'));
  plugin = path.join(binDir, 'knit-host-local');
  // The same bundle `npm run build` makes, built alone so other executables' work in progress
  // cannot break this suite.
  await build({
    entryPoints: [path.join(ROOT, 'cmd/knit-host-local/main.ts')], outfile: plugin, bundle: true, platform: 'node',
    target: 'node20', format: 'cjs', banner: { js: BANNER }, logLevel: 'warning',
  });
  fs.chmodSync(plugin, 0o755);
});

after(() => {
  if (binDir) fs.rmSync(binDir, { recursive: true, force: true });
});

describe('knit-host-local executable', function () {
  this.timeout(120_000);
  let dataDir: string;
  const net = 'hlnet';
  const dir = (): string => path.join(dataDir, net);
  const conf = (cniVersion: string, ipam: object = {}, extra: object = {}): object => ({
    cniVersion, name: net, type: 'bridge',
    ipam: { type: 'knit-host-local', dataDir, ranges: [[{ subnet: '10.77.0.0/24' }], [{ subnet: 'fd77::/64' }]], routes: [{ dst: '0.0.0.0/0' }], ...ipam },
    ...extra,
  });

  beforeEach(() => { dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-hl-data-')); });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    it(`ADD / repeated ADD / CHECK / DEL with cniVersion ${v}`, async () => {
      const add = ok(await cni('ADD', conf(v), att('ctr1'))).json;
      assert.equal(add.cniVersion, v);
      const addrs = add.ips.map((i: any) => i.address);
      assert.deepEqual(addrs, ['10.77.0.2/24', 'fd77::2/64']);
      assert.equal(add.ips[0].gateway, '10.77.0.1');
      if (v.startsWith('0.')) assert.deepEqual(add.ips.map((i: any) => i.version), ['4', '6']);
      assert.deepEqual(add.routes, [{ dst: '0.0.0.0/0' }]);
      assert.deepEqual(ok(await cni('ADD', conf(v), att('ctr1'))).json.ips, add.ips, 'a repeated ADD returns the same addresses');
      if (v !== '0.3.1') {
        ok(await cni('CHECK', conf(v, {}, { prevResult: add }), att('ctr1')));
        fails(await cni('CHECK', conf(v, {}, { prevResult: { ...add, ips: [add.ips[0]] } }), att('ctr1')), 104, 'fd77::2');
        fails(await cni('CHECK', conf(v), att('ctr2')), 3, 'ctr2');
      }
      ok(await cni('DEL', conf(v), att('ctr1')));
      assert.deepEqual(fs.readdirSync(path.join(dir(), 'ips')), []);
      assert.deepEqual(fs.readdirSync(path.join(dir(), 'attachments')), []);
      ok(await cni('DEL', conf(v), att('ctr1')));
      ok(await cni('DEL', conf(v), att('never-added')));
    });
  }

  it('STATUS reports free counts and code 50 when a range set is exhausted', async () => {
    const small = { ranges: [[{ subnet: '10.78.0.0/30' }]] };
    ok(await cni('STATUS', conf('1.1.0', small)));
    ok(await cni('ADD', conf('1.1.0', small), att('a')));
    fails(await cni('STATUS', conf('1.1.0', small)), 50, '10.78.0.0/30: 0 of 1 free');
    fails(await cni('ADD', conf('1.1.0', small), att('b')), 102, 'no free address');
  });

  it('GC releases attachments missing from cni.dev/valid-attachments', async () => {
    for (const id of ['g1', 'g2', 'g3']) ok(await cni('ADD', conf('1.1.0'), att(id)));
    ok(await cni('GC', conf('1.1.0', {}, { 'cni.dev/valid-attachments': [{ containerID: 'g2', ifname: 'eth0' }] })));
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'attachments')), ['g2:eth0']);
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'ips')).sort(), ['10.77.0.3', 'fd77::3']);
  });

  it('static requests from CNI_ARGS, args.cni.ips and runtimeConfig.ips, anywhere in the subnet', async () => {
    const ranged = { ranges: [[{ subnet: '10.77.0.0/24', rangeStart: '10.77.0.100', rangeEnd: '10.77.0.200' }]] };
    const a = ok(await cni('ADD', conf('1.0.0', ranged), { ...att('s1'), CNI_ARGS: 'IgnoreUnknown=1;IP=10.77.0.5' })).json;
    assert.equal(a.ips[0].address, '10.77.0.5/24');
    const b = ok(await cni('ADD', conf('1.0.0', ranged, { args: { cni: { ips: ['10.77.0.6'] } } }), att('s2'))).json;
    assert.equal(b.ips[0].address, '10.77.0.6/24');
    const c = ok(await cni('ADD', conf('1.0.0', ranged, { runtimeConfig: { ips: ['10.77.0.7/24'] } }), att('s3'))).json;
    assert.equal(c.ips[0].address, '10.77.0.7/24');
    fails(await cni('ADD', conf('1.0.0', ranged), { ...att('s4'), CNI_ARGS: 'IP=10.77.0.5' }), 102, '10.77.0.5', 'container s1');
    fails(await cni('ADD', conf('1.0.0', ranged), { ...att('s4'), CNI_ARGS: 'IP=10.99.0.5' }), 102, '10.99.0.5', 'outside every range');
    const d = ok(await cni('ADD', conf('1.0.0', ranged), att('s4'))).json;
    assert.equal(d.ips[0].address, '10.77.0.100/24');
  });

  it('rejects bad config with the key path', async () => {
    fails(await cni('ADD', conf('1.0.0', { ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.1.0/24', rangeStart: 'x' }]] }), att('x')),
      7, 'ipam.ranges[0][1].rangeStart', '"x"');
  });

  it('100 concurrent ADD processes get 100 distinct addresses; DEL frees exactly its own', async () => {
    const c = conf('1.0.0', { ranges: [[{ subnet: '10.79.0.0/24' }]] });
    const outs = await Promise.all(Array.from({ length: 100 }, (_, i) => cni('ADD', c, att(`p${i}`))));
    outs.forEach(ok);
    const addrs = outs.map((o) => o.json.ips[0].address as string);
    assert.equal(new Set(addrs).size, 100, 'all distinct');
    assert.equal(fs.readdirSync(path.join(dir(), 'ips')).length, 100);
    assert.equal(fs.readdirSync(path.join(dir(), 'attachments')).length, 100);
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'tmp')), []);
    for (let i = 0; i < 100; i++) {
      const idx = JSON.parse(fs.readFileSync(path.join(dir(), 'attachments', `p${i}:eth0`), 'utf8'));
      assert.deepEqual(idx.ips, [addrs[i]!.split('/')[0]]);
    }
    ok(await cni('DEL', c, att('p42')));
    const left = fs.readdirSync(path.join(dir(), 'ips'));
    assert.equal(left.length, 99);
    assert.ok(!left.includes(addrs[42]!.split('/')[0]!));
    const dels = await Promise.all(Array.from({ length: 100 }, (_, i) => cni('DEL', c, att(`p${i}`))));
    dels.forEach(ok);
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'ips')), []);
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'attachments')), []);
  });

  it('20 concurrent ADDs requesting one static address: exactly one wins, the others get 102', async () => {
    const c = conf('1.0.0', { ranges: [[{ subnet: '10.82.0.0/24' }]] });
    const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => cni('ADD', c, { ...att(`q${i}`), CNI_ARGS: 'IP=10.82.0.50' })));
    assert.equal(outs.filter((o) => o.code === 0).length, 1);
    for (const o of outs.filter((x) => x.code !== 0)) fails(o, 102, '10.82.0.50', 'already reserved by container q');
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'ips')), ['10.82.0.50']);
    assert.equal(fs.readdirSync(path.join(dir(), 'attachments')).length, 1);
  });

  it('crash leftovers: GC reclaims them and they never block ADD', async () => {
    const small = { ranges: [[{ subnet: '10.80.0.0/29' }]] }; // .2-.6 allocatable
    ok(await cni('ADD', conf('1.1.0', small), att('live')));   // .2, indexed
    const deadPid = spawnSync('true').pid!;
    const old = new Date(Date.now() - 3600_000);
    const put = (rel: string, content: string): void => {
      fs.writeFileSync(path.join(dir(), rel), content);
      fs.utimesSync(path.join(dir(), rel), old, old);
    };
    // reservations without index (crash between link and index write) fill the rest
    for (const ip of ['10.80.0.3', '10.80.0.4', '10.80.0.5', '10.80.0.6']) put(`ips/${ip}`, `crashed\neth0\n${deadPid}\n`);
    put(`tmp/${deadPid}.1.zz`, 'crashed\neth0\n');          // temp file of a dead writer
    put('attachments/ghost:eth0', JSON.stringify({ containerId: 'ghost', ifName: 'eth0', ips: ['10.80.0.9'] })); // index without reservation
    // ADD is not blocked: the exhausted walk reclaims the orphans and retries
    const a = ok(await cni('ADD', conf('1.1.0', small), att('new'))).json;
    assert.equal(a.ips[0].address, '10.80.0.3/29');
    ok(await cni('GC', conf('1.1.0', small, { 'cni.dev/valid-attachments': [{ containerID: 'live', ifname: 'eth0' }, { containerID: 'new', ifname: 'eth0' }] })));
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'ips')).sort(), ['10.80.0.2', '10.80.0.3']);
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'attachments')).sort(), ['live:eth0', 'new:eth0']);
    assert.deepEqual(fs.readdirSync(path.join(dir(), 'tmp')), []);
  });
});

describe('reference bridge with knit-host-local as IPAM (netns lab)', function () {
  this.timeout(60_000);
  const lab = new Lab();
  let host: Netns;
  let pod: Netns;
  let dataDir: string;
  let conf: object;

  before(async function () {
    requireRoot(this);
    if (!fs.existsSync('/usr/lib/cni/bridge')) this.skip();
    host = await lab.netns('host');
    pod = await lab.pod('pod');
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-hl-br-'));
    conf = {
      cniVersion: '1.0.0', name: 'brnet', type: 'bridge', bridge: 'kbr0', isGateway: true,
      ipam: { type: 'knit-host-local', dataDir, ranges: [[{ subnet: '10.81.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] },
    };
  });

  after(async () => {
    await lab.cleanup();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('ADD wires the pod with our address, CHECK passes, DEL releases it', async () => {
    const call = { containerId: 'brctr', netns: pod.path, ifName: 'eth0', path: [binDir, '/usr/lib/cni'], conf };
    const add = await lab.runPlugin(host, '/usr/lib/cni/bridge', { command: 'ADD', ...call });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ipc = add.json.ips[0];
    assert.equal(ipc.address, '10.81.0.2/24');
    assert.equal(ipc.gateway, '10.81.0.1');
    const podAddrs = await lab.ipJson(pod, ['addr', 'show', 'eth0']);
    assert.ok(podAddrs[0].addr_info.some((a: any) => a.local === '10.81.0.2' && a.prefixlen === 24));
    assert.ok(await lab.ping(pod, '10.81.0.1'), 'pod reaches its gateway on the bridge');
    const check = await lab.runPlugin(host, '/usr/lib/cni/bridge', { command: 'CHECK', ...call, conf: { ...conf, prevResult: add.json } });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const del = await lab.runPlugin(host, '/usr/lib/cni/bridge', { command: 'DEL', ...call });
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.deepEqual(fs.readdirSync(path.join(dataDir, 'brnet', 'ips')), []);
  });
});
});
