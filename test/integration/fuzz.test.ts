// The fuzz suite's short seeded run inside `npm test` (issue 14): 350 cases in-process
// through dispatch() and a dozen exec'd from dist/bin, in a netns lab with etcd, judged by the
// spec's codes, with a cleanup DEL and a residue check after each case that may create. Long
// runs: `npm run fuzz -- --runs N --seed S`. FUZZ_SEED / FUZZ_RUNS / FUZZ_EXEC_RUNS override.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot } from '../lab/lab';
import { attachmentLinks, natState, natEmpty, reservations } from '../lab/cni';
import { requireEtcd } from '../lab/etcd';
import { formatReport, runFuzz } from '../fuzz/runner';
import { mainPluginOf } from '../../pkg/network/conflist';
import { buildNetwork } from '../../pkg/network/spec';

describe('fuzz: every plugin and verb under malformed stdin and environment (issue 14)', function () {
  this.timeout(240_000);
  before(function () {
    requireRoot(this);
    requireEtcd(this);
  });

  it('no crash, wrong answer, leak, residue or hang', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 1414);
    const report = await runFuzz({
      seed, runs: Number(process.env.FUZZ_RUNS ?? 350), execRuns: Number(process.env.FUZZ_EXEC_RUNS ?? 14), timeoutMs: 30_000,
    });
    assert.ok(report);
    const text = formatReport(report);
    console.log(text.split('\n').map((l) => `      ${l}`).join('\n'));
    assert.ok(report.cases >= 300, `${report.cases} cases`);
    // The fixtures let good ADDs through (knit-l2overlay: its bridge, node file and lease), so the
    // residue checks after them prove something.
    for (const p of ['knit-bridge', 'knit-l2overlay']) assert.ok((report.addsOk[p] ?? 0) > 0, `no ${p} ADD succeeded:\n${text}`);
    assert.equal(report.failed, 0, text);
    assert.deepEqual({ crashes: report.crashes, wrong: report.wrong, leaks: report.leaks, residue: report.residue, hangs: report.hangs },
      { crashes: 0, wrong: 0, leaks: 0, residue: 0, hangs: 0 }, text);
  });
});

describe('fuzz finds, as regression tests (issue 14)', function () {
  this.timeout(60_000);
  let lab: Lab;
  let dir: string;
  before(function () { requireRoot(this); });
  beforeEach(() => { lab = new Lab(); dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-fuzzreg-')); });
  afterEach(async () => { await lab?.cleanup(); fs.rmSync(dir, { recursive: true, force: true }); });

  it('knit-macvlan with a 200-character network name and container ID: ADD, DEL and a clean host (was ENAMETOOLONG on both)', async () => {
    const host = await lab.netns('h');
    const pod = await lab.pod('p');
    await lab.ip(host, ['link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'm0p']);
    await lab.ip(host, ['link', 'set', 'm0', 'up']);
    const name = 'n'.repeat(200);
    const conf = { cniVersion: '1.0.0', name, type: 'knit-macvlan', master: 'm0', runDir: path.join(dir, 'run'),
      ipam: { type: 'knit-host-local', dataDir: dir, ranges: [[{ subnet: '10.68.0.0/24' }]] } };
    const call = { containerId: 'c'.repeat(200), netns: pod.path, ifName: 'eth0', conf, env: { KNIT_CNI_SOCKET_DIR: '/nonexistent' } };
    const bin = path.resolve(__dirname, '../../dist/bin/knit-macvlan');
    const add = await lab.runPlugin(host, bin, { command: 'ADD', ...call });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.equal(reservations(dir, name).length, 1);
    const del = await lab.runPlugin(host, bin, { command: 'DEL', ...call });
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.deepEqual(reservations(dir, name), []);
    assert.deepEqual((await lab.ipJson(pod, ['link', 'show'])).map((l: { ifname: string }) => l.ifname), ['lo']);
    const att = path.join(dir, 'run', 'macvlan');
    const left = fs.existsSync(att) ? fs.readdirSync(att, { recursive: true }).map(String).filter((f) => f.includes('/att/') && !f.endsWith('/att')) : [];
    assert.deepEqual(left, []);
  });

  it('knit-l2overlay with a network name longer than a named network\'s (63): code 7 naming name on ADD, nothing left (was 11 here, 5 on a ready node: the nft comment limit)', async () => {
    const host = await lab.netns('h');
    const pod = await lab.pod('p');
    const net = buildNetwork({ name: 'ln', driver: 'overlay', subnets: ['10.67.0.0/24'], opts: ['vni=4300'] }, [], new Date(0), 'e'.repeat(64));
    // No etcd here: the name is refused before anything is read or made (the fuzz suite runs the good ones).
    const main = mainPluginOf(net, { nodeName: 'n1', etcd: { endpoints: ['http://127.0.0.1:1'], prefix: '/knit-ln', timeoutMs: 300 }, runDir: path.join(dir, 'run') });
    await lab.ip(host, ['link', 'add', 'knb4300', 'mtu', '1450', 'type', 'bridge']);
    const bin = path.resolve(__dirname, '../../dist/bin/knit-l2overlay');
    for (const name of ['x'.repeat(64), 'x'.repeat(200)]) {
      const call = { containerId: 'c1', netns: pod.path, ifName: 'eth0', conf: { cniVersion: '1.0.0', name, ...main }, env: { KNIT_CNI_SOCKET_DIR: '/nonexistent' } };
      const add = await lab.runPlugin(host, bin, { command: 'ADD', ...call });
      assert.equal(add.code, 1, add.stdout);
      assert.equal(add.json?.code, 7, add.stdout);
      assert.match(add.json.msg, /\bname\b.*at most 63 characters/);
      assert.doesNotMatch(add.stderr, /unexpected failure|\n\s+at /);
      assert.deepEqual(await attachmentLinks(lab, host, name), []);
      assert.ok(natEmpty(await natState(lab, host, name)));
      // DEL of a config it refuses still frees the attachment and asks the IPAM (etcd is unreachable here: 11, try again).
      const del = await lab.runPlugin(host, bin, { command: 'DEL', ...call });
      assert.equal(del.json?.code, 11, del.stdout);
    }
  });

  it('knit-bridge ADD whose default route the kernel refuses (a multicast gateway): code 100 with errno and extack, nothing left', async () => {
    const host = await lab.netns('h');
    const pod = await lab.pod('p');
    const conf = { cniVersion: '1.0.0', name: 'mc', type: 'knit-bridge', bridge: 'mcbr0', isGateway: true, ipMasq: true,
      ipam: { type: 'knit-host-local', dataDir: dir, ranges: [[{ subnet: '224.0.0.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } };
    const call = { containerId: 'c1', netns: pod.path, ifName: 'eth0', conf, env: { KNIT_CNI_SOCKET_DIR: '/nonexistent' } };
    const bin = path.resolve(__dirname, '../../dist/bin/knit-bridge');
    const add = await lab.runPlugin(host, bin, { command: 'ADD', ...call });
    assert.equal(add.code, 1, add.stdout);
    assert.equal(add.json?.code, 100, add.stdout);
    assert.match(add.json.msg, /^the kernel refused RTM_NEWROUTE 0\.0\.0\.0\/0 via 224\.0\.0\.1/);
    assert.match(add.json.details, /^errno ENETUNREACH/);
    assert.doesNotMatch(add.stderr, /unexpected failure|\n\s+at /);
    // A failed ADD leaves nothing: no link of the attachment, no reservation, no NAT entry.
    assert.deepEqual(await attachmentLinks(lab, host, 'mc'), []);
    assert.deepEqual(reservations(dir, 'mc'), []);
    assert.ok(natEmpty(await natState(lab, host, 'mc')));
    const del = await lab.runPlugin(host, bin, { command: 'DEL', ...call });
    assert.equal(del.code, 0, del.stdout);
  });
});

