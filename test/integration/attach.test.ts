// knitctl attach / detach with real parts: the knitctl bundle run "on" a lab host, knit-bridge with
// knit-host-local from a conflist the test writes, lab namespaces as targets (by path and by the
// PID of a process inside), libcni (knit-cnitool) reading what attach recorded, and recording
// plugins that compare what each plugin of a chain gets from knitctl with what libcni gives it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, run, type ExecResult, type Netns } from '../lab/lab';
import { attachmentLinks, buildKnit, eventually, linkAddrs, REF_CNI_DIR, reservations, type KnitBuild } from '../lab/cni';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { buildCnitool, LIBCNI_SRC } from '../e2e/libcni';

describe('knitctl attach / detach', function () {
  this.timeout(120_000);
  const lab = new Lab();
  let knit: KnitBuild;
  let tmp: string;
  let host: Netns;
  let confDir: string;
  let cacheDir: string;
  let dataDir: string;
  const sleepers: ChildProcess[] = [];
  // Network names: valid for libcni, unique per run.
  const NET = `${lab.prefix}-att`;
  const NET2 = `${lab.prefix}-att2`;
  const PLAIN = `${lab.prefix}-plain`;

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knit-bridge', 'knit-host-local', 'knitctl']);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.prefix}-attach-`));
    confDir = path.join(tmp, 'net.d');
    cacheDir = path.join(tmp, 'cache');
    dataDir = path.join(tmp, 'ipam');
    fs.mkdirSync(confDir);
    host = await lab.netns('host');
    const bridge = (net: string, br: string, subnet: string, caps: object | undefined): object => ({
      cniVersion: '1.0.0', name: net,
      plugins: [{
        type: 'knit-bridge', bridge: br, isGateway: true, ...(caps ? { capabilities: caps } : {}),
        ipam: { type: 'knit-host-local', dataDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
      }],
    });
    fs.writeFileSync(path.join(confDir, `knit-${NET}.conflist`), JSON.stringify(bridge(NET, `${lab.prefix}-a1`, '10.251.7.0/24', { ips: true, mac: true, aliases: true }), null, 2));
    fs.writeFileSync(path.join(confDir, `knit-${NET2}.conflist`), JSON.stringify(bridge(NET2, `${lab.prefix}-a2`, '10.251.8.0/24', { ips: true }), null, 2));
    fs.writeFileSync(path.join(confDir, '50-plain.conflist'), JSON.stringify(bridge(PLAIN, `${lab.prefix}-a3`, '10.251.9.0/24', undefined), null, 2));
  });

  after(async () => {
    for (const s of sleepers) if (s.exitCode === null && s.pid) try { process.kill(s.pid, 'SIGKILL'); } catch { /* gone */ }
    await lab.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const where = (): string[] => ['--cni-conf-dir', confDir, '--cni-path', knit.binDir, '--cni-cache-dir', cacheDir];

  /** knitctl run on the lab host (the node whose bridge the plugins build). */
  function knitctl(...args: string[]): Promise<ExecResult> {
    return lab.exec(host, knit.bin('knitctl'), [...args, ...where()], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
  }

  function ok(r: ExecResult, what: string): ExecResult {
    assert.equal(r.code, 0, `${what} exited ${r.code}: ${r.stdout} ${r.stderr}`);
    return r;
  }

  const ino = (p: string): bigint => fs.statSync(p, { bigint: true }).ino;
  const cacheOf = (net: string, cid: string, ifName: string): string => path.join(cacheDir, 'results', `${net}-${cid}-${ifName}`);
  const globalAddrs = async (ns: Netns, dev: string): Promise<string[]> =>
    ((await linkAddrs(lab, ns, dev))?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);

  /** A `sleep` inside a lab netns: its PID is a target. */
  async function sleeper(ns: Netns): Promise<number> {
    const p = spawn('ip', ['netns', 'exec', ns.name, 'sleep', '600'], { stdio: 'ignore' });
    sleepers.push(p);
    let pid = 0;
    await eventually(async () => {
      const out = (await run('ip', ['netns', 'pids', ns.name])).stdout.split(/\s+/).filter(Boolean);
      pid = Number(out[0] ?? 0);
      return pid > 0;
    }, 5000, `a process in ${ns.name}`);
    return pid;
  }

  it('attach by netns path: interface, address, MAC, ping to the gateway, and libcni\'s cache entry', async () => {
    const box = await lab.pod('box');
    const r = ok(await knitctl('attach', NET, box.path, '--ip', '10.251.7.50/24', '--mac', '02:aa:bb:cc:dd:01', '--alias', 'web'), 'attach');
    const cid = `knit-ns-${ino(box.path)}`;
    assert.match(r.stdout, new RegExp(`attached netns ${box.path} to ${NET} as eth0: 10\\.251\\.7\\.50/24 \\(container ID ${cid}\\)`));
    assert.deepEqual(await globalAddrs(box, 'eth0'), ['10.251.7.50/24']);
    assert.equal((await linkAddrs(lab, box, 'eth0'))!.address, '02:aa:bb:cc:dd:01');
    assert.ok(await lab.ping(box, '10.251.7.1'), 'box -> gateway');
    assert.deepEqual(reservations(dataDir, NET).map((x) => [x.ip, x.owner]), [['10.251.7.50', cid]]);
    // The record, as libcni writes it.
    const c = JSON.parse(fs.readFileSync(cacheOf(NET, cid, 'eth0'), 'utf8'));
    assert.equal(c.kind, 'cniCacheV1');
    assert.equal(c.containerId, cid);
    assert.equal(c.ifName, 'eth0');
    assert.equal(c.networkName, NET);
    assert.equal(c.netns, box.path);
    assert.deepEqual(Buffer.from(c.config, 'base64'), fs.readFileSync(path.join(confDir, `knit-${NET}.conflist`)), 'config: the conflist\'s bytes');
    assert.deepEqual(c.capabilityArgs, { ips: ['10.251.7.50/24'], mac: '02:aa:bb:cc:dd:01', aliases: { [NET]: ['web'] } });
    assert.deepEqual(c.cniArgs, [['IgnoreUnknown', '1'], ['K8S_POD_NAME', box.name]]);
    assert.equal(c.result.cniVersion, '1.0.0');
    assert.deepEqual(c.result.ips.map((x: any) => x.address), ['10.251.7.50/24']);
    assert.equal((fs.statSync(cacheOf(NET, cid, 'eth0')).mode & 0o777), 0o600);

    // A second network: the next free ethN.
    const r2 = ok(await knitctl('attach', NET2, box.path, '--json'), 'attach NET2');
    const j = JSON.parse(r2.stdout);
    assert.equal(j.ifName, 'eth1');
    assert.equal(j.target.containerId, cid);
    assert.match(j.result.ips[0].address, /^10\.251\.8\.\d+\/24$/);
    assert.ok(await lab.ping(box, '10.251.8.1'), 'box -> NET2 gateway');

    // Attached already: refused, nothing changed.
    const again = await knitctl('attach', NET, box.path);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`knitctl: netns ${box.path} is already attached to ${NET} \\(as eth0\\): knitctl detach`));
    // An interface name the target has.
    const taken = await knitctl('attach', NET, box.path, '--ifname', 'lo');
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /knitctl: invalid --ifname "lo": netns \S+ already has an interface of that name \(it has lo, eth0, eth1\); e\.g\. --ifname eth2/);
    assert.deepEqual(reservations(dataDir, NET).length, 1);

    // Detach by the PID of a process in the same netns: the same attachment (same netns inode).
    const pid = await sleeper(box);
    const hostVeths = (await attachmentLinks(lab, host, NET)).length;
    assert.equal(hostVeths, 1);
    const d = ok(await knitctl('detach', NET, String(pid)), 'detach by PID');
    assert.equal(d.stdout.trim(), `detached process ${pid} from ${NET} (eth0)`);
    assert.equal(await linkAddrs(lab, box, 'eth0'), undefined, 'eth0 gone');
    assert.deepEqual(await attachmentLinks(lab, host, NET), [], 'host veth gone');
    assert.deepEqual(reservations(dataDir, NET), [], 'address freed');
    assert.ok(!fs.existsSync(cacheOf(NET, cid, 'eth0')), 'cache entry gone');
    assert.ok((await globalAddrs(box, 'eth1')).length, 'NET2 untouched');
    // Twice: fine.
    const d2 = ok(await knitctl('detach', NET, box.path), 'detach again');
    assert.equal(d2.stdout.trim(), `netns ${box.path} is not attached to ${NET}: nothing to do`);
    // The freed address can be taken again.
    ok(await knitctl('attach', NET, box.path, '--ip', '10.251.7.50/24'), 're-attach');
    assert.deepEqual(await globalAddrs(box, 'eth0'), ['10.251.7.50/24']);
    ok(await knitctl('detach', NET, box.path), 'detach');
    ok(await knitctl('detach', NET2, box.path, '--ifname', 'eth1'), 'detach NET2');
    assert.equal(await linkAddrs(lab, box, 'eth1'), undefined);
    assert.deepEqual(reservations(dataDir, NET2), []);
    assert.deepEqual(fs.readdirSync(path.join(cacheDir, 'results')), []);
  });

  it('attach by PID; libcni (knit-cnitool) CHECKs and DELs it from the cache', async function () {
    const pod = await lab.pod('bypid');
    const pid = await sleeper(pod);
    const r = ok(await knitctl('attach', NET, String(pid), '--json'), 'attach by PID');
    const j = JSON.parse(r.stdout);
    const cid = `knit-ns-${ino(pod.path)}`;
    assert.equal(j.target.kind, 'pid');
    assert.equal(j.target.netns, `/proc/${pid}/ns/net`);
    assert.equal(j.target.containerId, cid, 'the same ID as by path');
    const addr = j.result.ips[0].address as string;
    assert.deepEqual(await globalAddrs(pod, 'eth0'), [addr]);
    assert.ok(await lab.ping(pod, '10.251.7.1'), 'pod -> gateway');
    if (!fs.existsSync(LIBCNI_SRC)) {
      console.log('      libcni part skipped: libcni sources (golang-github-appc-cni-dev) not installed; detaching with knitctl');
      ok(await knitctl('detach', NET, pod.path), 'detach');
      return;
    }
    const cnitool = await buildCnitool();
    // The netns path the attachment was made with (knit-bridge's CHECK compares it with the result's sandbox).
    const tool = (verb: string): Promise<ExecResult> => lab.exec(host, cnitool, [verb, path.join(confDir, `knit-${NET}.conflist`), `/proc/${pid}/ns/net`, 'eth0', cid], {
      env: { CNI_PATH: knit.binDir, CNI_CACHE_DIR: cacheDir, NODE_EXTRA_CA_CERTS: undefined }, allowFail: true,
    });
    // CHECK reads libcni's cached result as prevResult (knit-bridge's CHECK needs it): our entry parses.
    ok(await tool('check'), 'libcni check');
    ok(await tool('del'), 'libcni del');
    assert.equal(await linkAddrs(lab, pod, 'eth0'), undefined, 'eth0 gone');
    assert.deepEqual(reservations(dataDir, NET), [], 'address freed');
    assert.ok(!fs.existsSync(cacheOf(NET, cid, 'eth0')), 'libcni removed the entry');
    assert.equal(ok(await knitctl('detach', NET, String(pid)), 'detach after libcni del').stdout.trim(), `process ${pid} is not attached to ${NET}: nothing to do`);
  });

  it('errors name the argument, the value and what is valid', async () => {
    const pod = await lab.pod('errs');
    const unknown = await knitctl('attach', 'nosuch', pod.path);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, `knitctl: unknown NETWORK "nosuch": the networks in ${confDir} are ${[NET, NET2, PLAIN].sort().join(', ')}\n`);
    const missing = await knitctl('attach', NET, '/run/netns/knit-no-such-ns');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^knitctl: invalid TARGET "\/run\/netns\/knit-no-such-ns": no such file \/run\/netns\/knit-no-such-ns; TARGET is a network namespace path/);
    const file = path.join(tmp, 'not-a-netns');
    fs.writeFileSync(file, '');
    assert.match((await knitctl('attach', NET, file)).stderr, /: \S+not-a-netns is not a network namespace; TARGET is/);
    assert.match((await knitctl('attach', NET, '999999999')).stderr, /invalid TARGET "999999999": no process 999999999; TARGET is/);
    // A name is looked up as a podman container (podman may be missing; either way the message says what TARGET may be).
    assert.match((await knitctl('attach', NET, 'no-such-container')).stderr, /invalid TARGET "no-such-container": not a path, not a PID, and .*; TARGET is a network namespace path/);
    const badIp = await knitctl('attach', NET, pod.path, '--ip', '10.251.7.300/24');
    assert.equal(badIp.code, 2);
    assert.match(badIp.stderr, /^knitctl: invalid --ip "10\.251\.7\.300\/24": an IP address with optional prefix length/);
    assert.equal((await knitctl('attach', NET, pod.path, '--mac', 'zz')).code, 2);
    assert.match((await knitctl('attach', NET, pod.path, '--ifname', 'a/b')).stderr, /invalid --ifname "a\/b": an interface name of 1-15 bytes/);
    const noCap = await knitctl('attach', PLAIN, pod.path, '--ip', '10.251.9.5/24');
    assert.equal(noCap.code, 1);
    assert.match(noCap.stderr, /--ip cannot reach network \S+-plain: no plugin of \S+50-plain\.conflist declares the "ips" capability/);
    // A plugin's refusal comes back with its CNI code, and nothing is left.
    const outside = await knitctl('attach', NET, pod.path, '--ip', '10.99.0.5/24');
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /knitctl: plugin "knit-bridge" \(1 of 1\) failed \(add\): .*10\.99\.0\.5.*\(CNI error code \d+/);
    assert.equal(await linkAddrs(lab, pod, 'eth0'), undefined);
    assert.deepEqual(await attachmentLinks(lab, host, NET, `knit-ns-${ino(pod.path)}`), []);
    // The host's own namespace is no container.
    const self = await knitctl('attach', NET, host.path);
    assert.equal(self.code, 1);
    assert.match(self.stderr, new RegExp(`invalid TARGET "${host.path}": netns ${host.path} is in this host's own network namespace, not a container's`));
    // Detach of an unknown network is an error (a typo), of a known one with nothing attached is not.
    assert.match((await knitctl('detach', 'nosuch', pod.path)).stderr, /unknown NETWORK "nosuch": the networks in/);
    ok(await knitctl('detach', NET, pod.path), 'detach of nothing');
  });

  it('two attaches of one target at once: one attaches, the other is refused, the attachment intact', async () => {
    const pod = await lab.pod('race');
    const [a, b] = await Promise.all([knitctl('attach', NET, pod.path), knitctl('attach', NET, pod.path)]);
    assert.deepEqual([a.code, b.code].sort(), [0, 1], `${a.stderr} ${b.stderr}`);
    assert.match((a.code ? a : b).stderr, /is already attached to/);
    assert.equal((await globalAddrs(pod, 'eth0')).length, 1);
    assert.equal(await linkAddrs(lab, pod, 'eth1'), undefined);
    assert.ok(await lab.ping(pod, '10.251.7.1'), 'the attachment works');
    ok(await knitctl('detach', NET, pod.path), 'detach');
    assert.deepEqual(reservations(dataDir, NET).filter((x) => x.owner === `knit-ns-${ino(pod.path)}`), []);
  });

  it('an attachment whose cache entry is lost (knitctl killed after ADD): detach --ifname runs DEL with the network\'s list', async () => {
    const pod = await lab.pod('lost');
    const cid = `knit-ns-${ino(pod.path)}`;
    ok(await knitctl('attach', NET, pod.path), 'attach');
    fs.rmSync(cacheOf(NET, cid, 'eth0'));
    const none = ok(await knitctl('detach', NET, pod.path), 'detach without the entry');
    assert.match(none.stdout, /is not attached to .*: nothing to do/);
    assert.equal((await globalAddrs(pod, 'eth0')).length, 1, 'nothing known, nothing touched');
    const forced = ok(await knitctl('detach', NET, pod.path, '--ifname', 'eth0'), 'detach --ifname');
    assert.equal(forced.stdout.trim(), `netns ${pod.path} had no cached attachment to ${NET}; ran the network's DEL for eth0 anyway`);
    assert.equal(await linkAddrs(lab, pod, 'eth0'), undefined);
    assert.deepEqual(reservations(dataDir, NET).filter((x) => x.owner === cid), []);
    assert.deepEqual(await attachmentLinks(lab, host, NET, cid), []);
  });

  it('a failed ADD runs the chain\'s DEL: no interface, address, veth or cache entry left', async () => {
    const pod = await lab.pod('failing');
    const net = `${lab.prefix}-fail`;
    const list = JSON.parse(fs.readFileSync(path.join(confDir, `knit-${NET}.conflist`), 'utf8'));
    list.name = net;
    list.plugins.push({ type: 'knit-no-such-plugin' });
    fs.writeFileSync(path.join(confDir, 'fail.conflist'), JSON.stringify(list));
    try {
      const r = await knitctl('attach', net, pod.path);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /knitctl: plugin "knit-no-such-plugin" \(2 of 2\) failed \(add\): failed to find plugin "knit-no-such-plugin" in path/);
      assert.equal(await linkAddrs(lab, pod, 'eth0'), undefined, 'eth0');
      assert.deepEqual(await attachmentLinks(lab, host, net), [], 'host veth');
      assert.deepEqual(reservations(dataDir, net), [], 'address');
      assert.ok(!fs.existsSync(cacheOf(net, `knit-ns-${ino(pod.path)}`, 'eth0')), 'cache entry');
    } finally {
      fs.rmSync(path.join(confDir, 'fail.conflist'));
    }
  });

  it('each plugin of a chain gets from knitctl what libcni gives it (ADD and DEL, prevResult, runtimeConfig, env, cache)', async function () {
    if (!fs.existsSync(LIBCNI_SRC)) {
      console.log('      skipped: libcni sources (golang-github-appc-cni-dev) not installed');
      this.skip();
    }
    const cnitool = await buildCnitool();
    // A recording plugin: stdin and the CNI_* variables of every call, numbered; a result that
    // names its position so the next plugin's prevResult shows which one it came from.
    const bin = path.join(tmp, 'recbin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'rec'), [
      '#!/bin/sh',
      'n=$(ls "$REC_DIR" | wc -l)',
      'cat > "$REC_DIR/$n.stdin"',
      'for v in CNI_COMMAND CNI_CONTAINERID CNI_NETNS CNI_IFNAME CNI_ARGS CNI_PATH; do eval "echo $v=\\$$v"; done > "$REC_DIR/$n.env"',
      'x=$(grep -o \'"tag": *"[a-z]*"\' "$REC_DIR/$n.stdin" | head -1 | sed \'s/.*"\\([a-z]*\\)"$/\\1/\')',
      '[ "$CNI_COMMAND" = ADD ] && echo "{\\"cniVersion\\":\\"1.0.0\\",\\"interfaces\\":[{\\"name\\":\\"$x\\"}],\\"ips\\":[{\\"address\\":\\"10.9.9.9/24\\",\\"interface\\":0}]}"',
      'exit 0',
      '',
    ].join('\n'), { mode: 0o755 });
    const recConf = path.join(tmp, 'recconf');
    fs.mkdirSync(recConf, { recursive: true });
    const net = `${lab.prefix}-rec`;
    const file = path.join(recConf, 'rec.conflist');
    fs.writeFileSync(file, JSON.stringify({
      cniVersion: '1.0.0', name: net,
      plugins: [
        { type: 'rec', tag: 'first', capabilities: { ips: true, aliases: false } },
        { type: 'rec', tag: 'second', capabilities: { mac: true, portMappings: true }, runtimeConfig: { stale: 1 } },
        { type: 'rec', tag: 'third' },
      ],
    }, null, 2));
    const pod = await lab.pod('rec');
    const cid = `knit-ns-${ino(pod.path)}`;
    const record = async (dir: string, f: () => Promise<void>): Promise<Array<{ stdin: any; env: string }>> => {
      fs.mkdirSync(dir, { recursive: true });
      await f();
      return fs.readdirSync(dir).filter((x) => x.endsWith('.stdin')).map((x) => Number(x.split('.')[0])).sort((a, b) => a - b).map((n) => ({
        stdin: dropEmptyDns(JSON.parse(fs.readFileSync(path.join(dir, `${n}.stdin`), 'utf8'))),
        env: fs.readFileSync(path.join(dir, `${n}.env`), 'utf8'),
      }));
    };
    const caps = { ips: ['10.9.9.9/24'], mac: '02:00:00:00:00:09' };
    const kDir = path.join(tmp, 'rec-knitctl');
    const kCache = path.join(tmp, 'cache-knitctl');
    const ours = await record(kDir, async () => {
      const env = { NODE_EXTRA_CA_CERTS: undefined, REC_DIR: kDir };
      const flags = ['--cni-conf-dir', recConf, '--cni-path', bin, '--cni-cache-dir', kCache];
      ok(await lab.exec(host, knit.bin('knitctl'), ['attach', net, pod.path, '--ip', caps.ips[0]!, '--mac', caps.mac, ...flags], { env, allowFail: true }), 'knitctl attach');
      ok(await lab.exec(host, knit.bin('knitctl'), ['detach', net, pod.path, ...flags], { env, allowFail: true }), 'knitctl detach');
    });
    const lDir = path.join(tmp, 'rec-libcni');
    const lCache = path.join(tmp, 'cache-libcni');
    let knitEntry: any;
    let libcniEntry: any;
    const theirs = await record(lDir, async () => {
      const env = { NODE_EXTRA_CA_CERTS: undefined, REC_DIR: lDir, CNI_PATH: bin, CNI_CACHE_DIR: lCache, CAP_ARGS: JSON.stringify(caps), CNI_ARGS_PAIRS: `IgnoreUnknown=1;K8S_POD_NAME=${pod.name}` };
      ok(await lab.exec(host, cnitool, ['add', file, pod.path, 'eth0', cid], { env, allowFail: true }), 'libcni add');
      libcniEntry = JSON.parse(fs.readFileSync(path.join(lCache, 'results', `${net}-${cid}-eth0`), 'utf8'));
      ok(await lab.exec(host, cnitool, ['del', file, pod.path, 'eth0', cid], { env, allowFail: true }), 'libcni del');
    });
    assert.equal(ours.length, 6, 'three ADDs and three DELs');
    assert.deepEqual(ours.map((c) => c.env), theirs.map((c) => c.env), 'CNI_* variables of each call');
    assert.deepEqual(ours.map((c) => c.stdin), theirs.map((c) => c.stdin), 'stdin of each call');
    // Spot checks of what equal means here.
    assert.deepEqual(ours[0]!.stdin.runtimeConfig, { ips: caps.ips });
    assert.deepEqual(ours[1]!.stdin.runtimeConfig, { mac: caps.mac });
    assert.equal(ours[1]!.stdin.prevResult.interfaces[0].name, 'first');
    assert.equal(ours[2]!.stdin.runtimeConfig, undefined);
    assert.deepEqual(ours.slice(3).map((c) => c.stdin.tag), ['third', 'second', 'first'], 'DEL in reverse');
    assert.match(ours[0]!.env, new RegExp(`^CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=${pod.name}$`, 'm'), 'the netns name, as podman passes a container\'s');
    assert.equal(ours[3]!.stdin.prevResult.interfaces[0].name, 'third', 'DEL gets the cached result');
    // The cache entries: the same but for the netns field (libcni 1.1 predates it) and Go's empty dns.
    ok(await lab.exec(host, knit.bin('knitctl'), ['attach', net, pod.path, '--ip', caps.ips[0]!, '--mac', caps.mac, '--cni-conf-dir', recConf, '--cni-path', bin, '--cni-cache-dir', kCache],
      { env: { NODE_EXTRA_CA_CERTS: undefined, REC_DIR: kDir }, allowFail: true }), 'knitctl attach');
    knitEntry = JSON.parse(fs.readFileSync(path.join(kCache, 'results', `${net}-${cid}-eth0`), 'utf8'));
    delete knitEntry.netns;
    libcniEntry.result = dropEmptyDns(libcniEntry.result);
    assert.deepEqual(knitEntry, libcniEntry);
  });
});

describe('knitctl attach / detach on a named network (knitd on etcd)', function () {
  this.timeout(180_000);
  const lab = new Lab();
  const PREFIX = '/knat';
  let knit: KnitBuild;
  let etcd: EtcdCluster;
  let node: Netns;
  let tmp: string;
  let knitd: ChildProcess | undefined;
  const log: string[] = [];
  let sleeper: ChildProcess | undefined;

  before(async function () {
    requireRoot(this);
    requireEtcd(this);
    knit = await buildKnit(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge', 'knit-etcd-ipam']);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.prefix}-attach-named-`));
    const sw = await lab.switch();
    const etcdHost = await lab.host('etcd', sw, { address: '192.168.72.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.72.100' });
    node = await lab.host('n1', sw, { address: '192.168.72.1/24' });
    await lab.ip(node, ['route', 'add', 'default', 'via', '192.168.72.254']);
    knitd = spawn('ip', ['netns', 'exec', node.name, knit.bin('knitd'), '--cni-socket-dir', path.join(tmp, 'run/cni'), '--etcd-endpoints', etcd.endpoints[0]!,
      '--etcd-prefix', PREFIX, '--node-name', 'n1', '--iface', 'eth0', '--run-dir', path.join(tmp, 'run'), '--state-dir', path.join(tmp, 'state'),
      '--cni-conf-dir', path.join(tmp, 'net.d'), '--lease-ttl', '10'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    knitd.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
    await eventually(() => fs.existsSync(path.join(tmp, 'run/networks/node.json')), 30_000, `knitd's node.json (log: ${log.join('')})`);
  });

  after(async () => {
    if (sleeper?.pid && sleeper.exitCode === null) try { process.kill(sleeper.pid, 'SIGKILL'); } catch { /* gone */ }
    knitd?.kill('SIGKILL');
    await etcd?.stop();
    await lab.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const knitctl = (...args: string[]): Promise<ExecResult> => lab.exec(node, knit.bin('knitctl'), ['--etcd-endpoints', etcd.endpoints[0]!, '--etcd-prefix', PREFIX, ...args], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
  const cni = (): string[] => ['--cni-conf-dir', path.join(tmp, 'net.d'), '--cni-path', `${knit.binDir}:${REF_CNI_DIR}`, '--cni-cache-dir', path.join(tmp, 'cache')];

  it('the rendered conflist: static address and default one, endpoints recorded with the names, rm refused until detached', async () => {
    let r = await knitctl('network', 'create', '-d', 'overlay', '--subnet', '10.236.0.0/24', 'app');
    assert.equal(r.code, 0, r.stderr);
    await eventually(() => fs.existsSync(path.join(tmp, 'net.d', 'knit-app.conflist')), 10_000, 'the conflist of app');
    const p1 = await lab.pod('p1');
    const p2 = await lab.pod('p2');
    r = await knitctl('attach', 'app', p1.path, '--ip', '10.236.0.9/24', ...cni());
    assert.equal(r.code, 0, `${r.stdout} ${r.stderr} ${log.join('').slice(-2000)}`);
    sleeper = spawn('ip', ['netns', 'exec', p2.name, 'sleep', '600'], { stdio: 'ignore' });
    let pid = 0;
    await eventually(async () => (pid = Number((await run('ip', ['netns', 'pids', p2.name])).stdout.trim().split(/\s+/)[0] || 0)) > 0, 5000, 'sleep in p2');
    r = await knitctl('attach', 'app', String(pid), '--json', ...cni());
    assert.equal(r.code, 0, r.stderr);
    const ip2 = (JSON.parse(r.stdout).result.ips[0].address as string).split('/')[0]!;
    assert.ok(await lab.ping(p1, ip2, 2), 'p1 -> p2 on the network');
    assert.ok(await lab.ping(p2, '10.236.0.9'), 'p2 -> p1');
    assert.ok(await lab.ping(p1, '10.236.0.1'), 'p1 -> the gateway');
    const inspect = async (): Promise<any> => JSON.parse((await knitctl('network', 'inspect', 'app')).stdout)[0];
    const cs = Object.values((await inspect()).Containers) as any[];
    assert.deepEqual(cs.map((c) => [c.Name, c.IPv4Address.split('/')[0], c.Interface]).sort(), [[p1.name, '10.236.0.9', 'eth0'], [`knit-ns-${fs.statSync(p2.path, { bigint: true }).ino}`.slice(0, 12), ip2, 'eth0']].sort());
    const rm = await knitctl('network', 'rm', 'app');
    assert.notEqual(rm.code, 0, 'rm refused while attached');
    for (const p of [p1, p2]) assert.equal((await knitctl('detach', 'app', p.path, ...cni())).code, 0);
    assert.deepEqual((await inspect()).Containers, {});
    assert.equal(await linkAddrs(lab, p1, 'eth0'), undefined);
    r = await knitctl('network', 'rm', 'app');
    assert.equal(r.code, 0, r.stderr);
  });
});

/** Go's 1.0 result always has "dns" (a struct is never omitempty); knit omits an empty one. */
function dropEmptyDns(j: any): any {
  const strip = (r: any): void => { if (r && typeof r === 'object' && r.dns && !Object.keys(r.dns).length) delete r.dns; };
  strip(j);
  strip(j?.prevResult);
  return j;
}
