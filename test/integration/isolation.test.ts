// Isolation between knit networks on one host (pkg/nat/isolation via knit-bridge), in the netns
// lab: two dual-stack networks on two bridges, two pods each; pods of one network reach each
// other and (masqueraded) an underlay peer, never the pods of the other network, in either
// direction and family; isolation: false on both lets them through; networks sharing a bridge
// are never cut; a published (DNAT'd) port passes; the last DEL (and GC) removes a network's
// entries; CHECK reports missing entries as drift (104); STATUS is a dry run (50 without nft); a
// failed ADD leaves nothing; a network joining a shared bridge during a removal keeps its entries.
// Oracles: ping, and `nft -j` inside the lab host (isolationState in test/lab/cni.ts).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput } from '../lab/lab';
import { buildKnit, isolationState, natEmpty, natState, type KnitBuild } from '../lab/cni';
import { chainName } from '../../pkg/nat/masq';

describe('isolation between knit networks', function () {
  this.timeout(120_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let host: Host;
  let outside: Host;

  before(async function () {
    requireRoot(this);
    knit = await buildKnit();
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-isolation-test-'));
    const sw = await lab.switch('iso-sw');
    host = await lab.host('iso-h', sw, { address: '192.168.211.1/24' });
    outside = await lab.host('iso-o', sw, { address: '192.168.211.2/24' });
    await lab.ip(host, ['addr', 'add', 'fd00:211:ff::1/64', 'dev', 'eth0', 'nodad']);
    await lab.ip(outside, ['addr', 'add', 'fd00:211:ff::2/64', 'dev', 'eth0', 'nodad']);
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const dataDir = (): string => fs.mkdtempSync(path.join(tmp, 'ipam-'));

  /** A dual-stack knit-bridge network on its own bridge, masqueraded, isolation as the default unless extra says. */
  function conf(name: string, bridge: string, n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      cniVersion: '1.1.0', name, type: 'knit-bridge', bridge, isGateway: true, isDefaultGateway: true, ipMasq: true,
      ipam: { type: 'knit-host-local', dataDir: dataDir(), ranges: [[{ subnet: `10.211.${n}.0/24` }], [{ subnet: `fd00:211:${n}::/64` }]] },
      ...extra,
    };
  }

  function plugin(command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC', c: object, o: { containerId?: string; netns?: string; env?: Record<string, string> } = {}): Promise<PluginOutput> {
    const attach = command === 'ADD' || command === 'DEL' || command === 'CHECK';
    return lab.runPlugin(host, knit.bin('knit-bridge'), {
      command, conf: c, path: [knit.binDir], env: o.env,
      ...(attach ? { containerId: o.containerId, netns: o.netns, ifName: 'eth0' } : {}),
    });
  }
  const ok = (o: PluginOutput, what: string): PluginOutput => { assert.equal(o.code, 0, `${what} exited ${o.code}: ${o.stdout} ${o.stderr}`); return o; };

  interface Pod { ns: Netns; id: string; result: any; v4: string; v6: string }
  async function add(c: Record<string, unknown>, id: string): Promise<Pod> {
    const ns = await lab.pod(`iso-${id}`);
    const result = ok(await plugin('ADD', c, { containerId: id, netns: ns.path }), `ADD ${id}`).json;
    const ip = (fam: 4 | 6): string => String(result.ips.find((i: any) => i.address.includes(':') === (fam === 6)).address).split('/')[0]!;
    return { ns, id, result, v4: ip(4), v6: ip(6) };
  }
  const del = async (c: object, p: Pod): Promise<void> => { ok(await plugin('DEL', c, { containerId: p.id, netns: p.ns.path }), `DEL ${p.id}`); };

  /** Pings from -> to over both families; [v4, v6] reachability. */
  async function reach(from: Pod, to: Pod): Promise<[boolean, boolean]> {
    return [await lab.ping(from.ns, to.v4), await lab.ping(from.ns, to.v6)];
  }

  let confA: Record<string, unknown>;
  let confB: Record<string, unknown>;
  let a1: Pod, a2: Pod, b1: Pod, b2: Pod;

  it('on by default: pods of one network reach each other and the underlay, never the other network', async () => {
    confA = conf('iso-a', 'kiso-a', 1);
    confB = conf('iso-b', 'kiso-b', 2);
    a1 = await add(confA, 'a1');
    a2 = await add(confA, 'a2');
    b1 = await add(confB, 'b1');
    b2 = await add(confB, 'b2');

    assert.deepEqual(await reach(a1, a2), [true, true], 'same network A, IPv4 and IPv6');
    assert.deepEqual(await reach(b2, b1), [true, true], 'same network B');
    for (const [from, to] of [[a1, b1], [a2, b2], [b1, a1], [b2, a2]] as const) {
      assert.deepEqual(await reach(from, to), [false, false], `${from.id} -> ${to.id} across networks, IPv4 and IPv6`);
    }
    // The outside host has no route to the pod subnets: masquerade, which isolation leaves alone.
    assert.ok(await lab.ping(a1.ns, '192.168.211.2'), 'A reaches the underlay peer over IPv4');
    assert.ok(await lab.ping(b1.ns, 'fd00:211:ff::2'), 'B reaches it over IPv6');

    // One record per network, one shared rule; nothing per pod.
    const a = await isolationState(lab, host, 'iso-a');
    assert.deepEqual(a.interfaces, ['kiso-a']);
    assert.deepEqual(a.bridges.sort(), ['kiso-a', 'kiso-b']);
    assert.deepEqual(a.same.sort(), ['kiso-a . kiso-a', 'kiso-b . kiso-b']);
    assert.equal(a.dropRules, 1);
    assert.deepEqual((await isolationState(lab, host, 'iso-b')).interfaces, ['kiso-b']);
    const table = await lab.exec(host, 'nft', ['list', 'table', 'inet', 'knit-isolation']);
    assert.ok(!table.stdout.includes(a1.v4) && !table.stdout.includes('veth'), `no per-pod state:\n${table.stdout}`);
    ok(await plugin('STATUS', confA), 'STATUS');
  });

  it('STATUS: a dry run that installs nothing; 50 when nft is missing', async () => {
    const fresh = await lab.netns('iso-st');
    const c = conf('iso-st', 'kiso-st', 11);
    const st = (env?: Record<string, string>): Promise<PluginOutput> => lab.runPlugin(fresh, knit.bin('knit-bridge'), { command: 'STATUS', conf: c, path: [knit.binDir], env });
    ok(await st(), 'STATUS');
    assert.equal((await isolationState(lab, fresh, 'iso-st')).table, false, 'STATUS created no table');
    const o = await st({ PATH: '/usr/local/bin:/usr/bin:/bin' }); // node is in /usr/bin, nft in /usr/sbin
    assert.equal(o.json?.code, 50, o.stdout);
    assert.match(o.json.msg, /isolation cannot be installed: .*nft command/);
    // With isolation off STATUS does not need nft.
    ok(await lab.runPlugin(fresh, knit.bin('knit-bridge'), { command: 'STATUS', conf: { ...c, isolation: false }, path: [knit.binDir], env: { PATH: '/usr/local/bin:/usr/bin:/bin' } }), 'STATUS without nft, isolation off');
  });

  it('lets a published (DNAT\'d) address through, both directions of the connection', async () => {
    // As portmap would: the host's underlay address, seen from network B, forwarded to a pod of A.
    await lab.exec(host, 'nft', ['-f', '-'], {
      input: `table ip lab-dnat {\n chain pre {\n  type nat hook prerouting priority dstnat;\n  iifname "kiso-b" ip daddr 192.168.211.1 dnat to ${a1.v4}\n }\n}\n`,
    });
    try {
      assert.ok(await lab.ping(b1.ns, '192.168.211.1'), 'B reaches the published address, answered by A');
      assert.ok(!(await lab.ping(b1.ns, a1.v4)), 'but not A directly');
    } finally {
      await lab.exec(host, 'nft', ['delete', 'table', 'ip', 'lab-dnat']);
    }
  });

  it('CHECK reports missing isolation as drift (104); the next ADD of the network repairs it', async () => {
    const check = (p: Pod): Promise<PluginOutput> => plugin('CHECK', { ...confA, prevResult: p.result }, { containerId: p.id, netns: p.ns.path });
    ok(await check(a1), 'CHECK');
    await lab.exec(host, 'nft', ['delete', 'element', 'inet', 'knit-isolation', 'bridges', '{ "kiso-a" }']);
    let o = await check(a1);
    assert.equal(o.json?.code, 104, o.stdout);
    assert.match(o.json.msg, /isolation of network iso-a: kiso-a is not in set bridges/);
    assert.deepEqual(await reach(a1, b1), [true, true], 'without the element A is not isolated: the drift is real');
    await lab.exec(host, 'nft', ['delete', 'set', 'inet', 'knit-isolation', chainName('iso-a')]);
    o = await check(a2);
    assert.equal(o.json?.code, 104, o.stdout);
    assert.match(o.json.msg, /isolation of network iso-a \(bridge kiso-a\) is missing from nftables table inet knit-isolation/);
    const a3 = await add(confA, 'a3');
    ok(await check(a1), 'CHECK after a new ADD of the network');
    assert.deepEqual(await reach(a1, b1), [false, false], 'isolated again');
    await del(confA, a3);
    // isolation: false in the config while the network is isolated is drift too.
    o = await plugin('CHECK', { ...confA, isolation: false, prevResult: a1.result }, { containerId: a1.id, netns: a1.ns.path });
    assert.equal(o.json?.code, 104, o.stdout);
    assert.match(o.json.msg, /isolation: false/);
  });

  it('isolation: false on both networks lets them reach each other (and the isolated ones)', async () => {
    const cC = conf('iso-c', 'kiso-c', 3, { isolation: false });
    const cD = conf('iso-d', 'kiso-d', 4, { isolation: false });
    const c1 = await add(cC, 'c1');
    const d1 = await add(cD, 'd1');
    assert.deepEqual(await reach(c1, d1), [true, true], 'C -> D');
    assert.deepEqual(await reach(d1, c1), [true, true], 'D -> C');
    // Isolation is between networks that both have it on: an open network reaches them all.
    assert.deepEqual(await reach(c1, a1), [true, true], 'open C -> isolated A');
    assert.deepEqual(await reach(a1, b1), [false, false], 'A and B stay isolated');
    for (const n of ['iso-c', 'iso-d']) assert.deepEqual((await isolationState(lab, host, n)).interfaces, [], `${n} has no record`);
    const st = await isolationState(lab, host, 'iso-a');
    assert.deepEqual(st.bridges.sort(), ['kiso-a', 'kiso-b'], 'open bridges are not in set bridges');
    ok(await plugin('CHECK', { ...cC, prevResult: c1.result }, { containerId: 'c1', netns: c1.ns.path }), 'CHECK of an open network');
    await del(cC, c1);
    await del(cD, d1);
  });

  it('never cuts networks that share a bridge (one L2 segment), and keeps the bridge while one of them remains', async () => {
    const cE = conf('iso-e', 'kiso-e', 5);
    const cF = conf('iso-f', 'kiso-e', 6);
    const e1 = await add(cE, 'e1');
    const f1 = await add(cF, 'f1');
    assert.deepEqual(await reach(e1, f1), [true, true], 'E -> F routed back out of the same bridge');
    assert.deepEqual(await reach(f1, e1), [true, true], 'F -> E');
    assert.deepEqual(await reach(e1, a1), [false, false], 'but not to A');
    await del(cE, e1);
    const f = await isolationState(lab, host, 'iso-f');
    assert.deepEqual((await isolationState(lab, host, 'iso-e')).interfaces, [], 'E\'s record went with its last pod');
    assert.deepEqual(f.interfaces, ['kiso-e']);
    assert.ok(f.bridges.includes('kiso-e') && f.same.includes('kiso-e . kiso-e'), `F still needs kiso-e: ${JSON.stringify(f)}`);
    assert.deepEqual(await reach(f1, a1), [false, false], 'F still isolated from A');
    await del(cF, f1);
    const g = await isolationState(lab, host, 'iso-f');
    assert.ok(!g.bridges.includes('kiso-e') && !g.same.includes('kiso-e . kiso-e'), `kiso-e gone with the last network on it: ${JSON.stringify(g)}`);
  });

  it('a network joining a shared bridge while the last pod of another one on it goes keeps its isolation', async () => {
    const lost: string[] = [];
    for (let i = 0; i < 4; i++) {
      const cR = conf(`iso-r${i}`, 'kiso-r', 9);
      const cS = conf(`iso-s${i}`, 'kiso-r', 10);
      const r = await add(cR, `r${i}`);
      const podS = await lab.pod(`iso-s${i}`);
      // The DEL reads the table, then removes kiso-r (no other record yet); the ADD lands in between or not.
      const wait = 20 + i * 15;
      const [d, a] = await Promise.all([
        plugin('DEL', cR, { containerId: r.id, netns: r.ns.path }),
        new Promise((res) => setTimeout(res, wait)).then(() => plugin('ADD', cS, { containerId: `s${i}`, netns: podS.path })),
      ]);
      ok(d, 'DEL');
      ok(a, 'ADD');
      const st = await isolationState(lab, host, `iso-s${i}`);
      if (st.interfaces.join() !== 'kiso-r' || !st.bridges.includes('kiso-r') || !st.same.includes('kiso-r . kiso-r')) lost.push(`round ${i} (ADD ${wait} ms after DEL): ${JSON.stringify(st)}`);
      ok(await plugin('DEL', cS, { containerId: `s${i}`, netns: podS.path }), 'DEL s');
    }
    assert.deepEqual(lost, [], 'an isolated network left without its elements');
  });

  for (const fp of ['isolation', 'result']) {
    it(`a failed ADD (failpoint "${fp}") leaves no isolation entry when it was the network's first, and keeps it beside another`, async () => {
      const c = conf(`iso-fp-${fp}`, 'kiso-fp', 7);
      const pod = await lab.pod(`iso-fp-${fp}`);
      const o = await plugin('ADD', c, { containerId: 'f1', netns: pod.path, env: { KNIT_FAILPOINT: fp } });
      assert.equal(o.code, 1, o.stdout);
      assert.ok(o.json.msg.includes(fp), o.stdout);
      const st = await isolationState(lab, host, `iso-fp-${fp}`);
      assert.deepEqual(st.interfaces, []);
      assert.ok(!st.bridges.includes('kiso-fp') && !st.same.some((s) => s.includes('kiso-fp')), JSON.stringify(st));
      const keep = await add(c, `k-${fp}`);
      const o2 = await plugin('ADD', c, { containerId: 'f2', netns: pod.path, env: { KNIT_FAILPOINT: fp } });
      assert.equal(o2.code, 1, o2.stdout);
      assert.deepEqual((await isolationState(lab, host, `iso-fp-${fp}`)).interfaces, ['kiso-fp'], 'kept for the other attachment');
      assert.deepEqual(await reach(keep, a1), [false, false], 'which stays isolated');
      await del(c, keep);
      assert.deepEqual((await isolationState(lab, host, `iso-fp-${fp}`)).interfaces, []);
    });
  }

  it('GC removes the entries of a network with no attachment left', async () => {
    const c = conf('iso-gc', 'kiso-gc', 8);
    await add(c, 'g1');
    assert.deepEqual((await isolationState(lab, host, 'iso-gc')).interfaces, ['kiso-gc']);
    ok(await plugin('GC', { ...c, 'cni.dev/valid-attachments': [] }), 'GC');
    const st = await isolationState(lab, host, 'iso-gc');
    assert.deepEqual(st.interfaces, []);
    assert.ok(!st.bridges.includes('kiso-gc'), JSON.stringify(st));
  });

  it('a network name of 200 characters (the longest valid) masquerades and isolates; its nft comments are cut, never refused', async () => {
    const name = 'L'.repeat(200);
    const c = conf(name, 'kiso-long', 9);
    const p = await add(c, 'long1');
    const st = await isolationState(lab, host, name);
    assert.deepEqual(st.interfaces, ['kiso-long']);
    assert.ok(!natEmpty(await natState(lab, host, name)), 'masquerade installed');
    const listed = (await lab.exec(host, 'nft', ['list', 'table', 'inet', 'knit-nat'])).stdout;
    const comment = /comment "(knit L+~[0-9a-f]{8})"/.exec(listed)?.[1];
    assert.ok(comment && comment.length <= 127, `a cut comment with the name's hash: ${listed}`);
    await del(c, p);
    assert.deepEqual((await isolationState(lab, host, name)).interfaces, []);
    assert.ok(natEmpty(await natState(lab, host, name)), 'masquerade removed');
  });

  it('DEL of the last pod of a network removes its entries only; DEL is idempotent', async () => {
    await del(confA, a1);
    assert.deepEqual((await isolationState(lab, host, 'iso-a')).interfaces, ['kiso-a'], 'one pod of A remains');
    await del(confA, a2);
    await del(confA, a2);
    const a = await isolationState(lab, host, 'iso-a');
    assert.deepEqual(a.interfaces, [], 'A\'s record gone');
    assert.deepEqual(a.bridges, ['kiso-b'], 'only B remains isolated');
    assert.deepEqual(a.same, ['kiso-b . kiso-b']);
    assert.ok(natEmpty(await natState(lab, host, 'iso-a')), 'masquerade of A gone too');
    assert.deepEqual(await reach(b1, b2), [true, true]);
    await del(confB, b1);
    await del(confB, b2);
    const b = await isolationState(lab, host, 'iso-b');
    assert.deepEqual([b.interfaces, b.bridges, b.same], [[], [], []], 'nothing isolated on the host any more');
  });
});
