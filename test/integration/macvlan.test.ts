// knit-macvlan as a runtime sees it, on this machine's kernel (macvlan, no 8021q): two lab hosts
// on an underlay switch, pods on both that ping each other over their hosts' eth0; default master
// detection, modes, MAC/MTU, promiscuous mode and its restore, the 8021q error, CHECK drift, DEL
// idempotence, STATUS, GC, rollback at every failpoint, a crash holding the lock, and interop
// with the reference plugins. VLAN behaviour on a kernel with 8021q: test/kernel (the kernel lane).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Host, type Netns, type PluginOutput, type Switch } from '../lab/lab';
import { buildKnit, links, REF_CNI_DIR, reservations, reservationsOf, type KnitBuild } from '../lab/cni';

const ROOT = path.resolve(__dirname, '../..');
/** Every name accepted by KNIT_FAILPOINT on knit-macvlan's ADD path (plugins/main/macvlan, pkg/iface). */
const FAILPOINTS = ['record', 'parent', 'rename', 'macvlan', 'address', 'route', 'result'] as const;
const SUBNET = '10.210.0.0/24';

describe('knit-macvlan integration', function () {
  this.timeout(60_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let sw: Switch;
  let h1: Host;
  let h2: Host;
  let runDir: string;
  const dirs: Record<string, string> = {};

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knit-macvlan', 'knit-host-local']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-macvlan-test-'));
    runDir = path.join(tmp, 'run');
    sw = await lab.switch('mvsw');
    h1 = await lab.host('mv1', sw, { address: '10.210.0.1/24' });
    h2 = await lab.host('mv2', sw, { address: '10.210.0.2/24' });
    // h2 has a default route via eth0: knit-macvlan takes its master from it.
    await lab.ip(h2, ['route', 'add', 'default', 'via', '10.210.0.254']);
    dirs.h1 = path.join(tmp, 'ipam-h1');
    dirs.h2 = path.join(tmp, 'ipam-h2');
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** knit-macvlan with knit-host-local; each host allocates from its own part of the subnet. */
  function conf(host: 'h1' | 'h2', extra: Record<string, unknown> = {}, name = 'mv'): Record<string, unknown> {
    const part = host === 'h1' ? ['10.210.0.10', '10.210.0.99'] : ['10.210.0.100', '10.210.0.199'];
    return {
      cniVersion: '1.1.0', name, type: 'knit-macvlan', ...(host === 'h1' ? { master: 'eth0' } : {}), runDir,
      ipam: { type: 'knit-host-local', dataDir: dirs[host], ranges: [[{ subnet: SUBNET, rangeStart: part[0], rangeEnd: part[1] }]] },
      ...extra,
    };
  }

  interface CallOpts { netns?: string | null; ifName?: string; args?: string; env?: Record<string, string>; path?: string[] }

  function plugin(host: Netns, command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC', c: object, cid = '', o: CallOpts = {}, bin = knit.bin('knit-macvlan')): Promise<PluginOutput> {
    const attach = command === 'ADD' || command === 'DEL' || command === 'CHECK';
    return lab.runPlugin(host, bin, {
      command, conf: c, path: o.path ?? [knit.binDir, REF_CNI_DIR], args: o.args, env: o.env,
      ...(attach ? { containerId: cid, netns: o.netns ?? undefined, ifName: o.ifName ?? 'eth0' } : {}),
    });
  }

  function ok(o: PluginOutput, what = 'plugin'): PluginOutput {
    assert.equal(o.code, 0, `${what} exited ${o.code}: ${o.stdout} ${o.stderr}`);
    return o;
  }

  function fails(o: PluginOutput, code: number, ...parts: string[]): void {
    assert.equal(o.code, 1, `expected a failure, got exit ${o.code}: ${o.stdout}`);
    assert.ok(o.json && typeof o.json.msg === 'string', `stdout is not a CNI error: ${o.stdout}`);
    assert.equal(o.json.code, code, `code: ${o.stdout}`);
    for (const p of parts) assert.ok(o.json.msg.includes(p), `msg ${JSON.stringify(o.json.msg)} should contain ${JSON.stringify(p)}`);
  }

  const add = async (host: Netns, c: object, cid: string, pod: Netns, o: CallOpts = {}): Promise<any> =>
    ok(await plugin(host, 'ADD', c, cid, { netns: pod.path, ...o }), `ADD ${cid}`).json;
  const del = async (host: Netns, c: object, cid: string, pod: Netns | null, o: CallOpts = {}): Promise<void> => {
    ok(await plugin(host, 'DEL', c, cid, { netns: pod?.path ?? null, ...o }), `DEL ${cid}`);
  };

  const addrOf = (r: any): string => String(r.ips[0].address).split('/')[0]!;
  const podLink = async (pod: Netns, ifName = 'eth0'): Promise<any> =>
    (await lab.ipJson<any[]>(pod, ['-d', 'addr', 'show'])).find((l) => l.ifname === ifName);
  const hostLinkNames = async (host: Netns): Promise<string[]> => (await links(lab, host)).map((l) => l.ifname).sort();
  const promisc = async (host: Netns, dev = 'eth0'): Promise<boolean> =>
    ((await lab.ipJson<any[]>(host, ['-d', 'link', 'show', dev]))[0]?.promiscuity ?? 0) > 0;
  /** Attachment records anywhere under runDir (the reference counts). */
  const records = (): string[] => {
    const out: string[] = [];
    const walk = (d: string): void => {
      if (!fs.existsSync(d)) return;
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (path.basename(d) === 'att') out.push(e.name);
      }
    };
    walk(runDir);
    return out;
  };
  const recordsOf = (cid: string): string[] => records().filter((r) => r.split(':')[1] === cid);

  /** Nothing of attachment cid remains: no pod interface, no reservation, no record. */
  async function assertGone(cid: string, pod: Netns | null, dir = dirs.h1!, net = 'mv'): Promise<void> {
    if (pod) assert.equal(await podLink(pod), undefined, `eth0 of ${cid} still in the pod`);
    assert.deepEqual(reservationsOf(dir, net, cid), [], `reservations of ${cid}`);
    assert.deepEqual(recordsOf(cid), [], `records of ${cid}`);
  }

  describe('ADD', () => {
    it('connects pods on two hosts over eth0 (master given on one, taken from the default route on the other)', async () => {
      const [pa, pb, pc] = [await lab.pod('x-a'), await lab.pod('x-b'), await lab.pod('x-c')];
      const ra = await add(h1, conf('h1'), 'xa', pa);
      const rb = await add(h2, conf('h2'), 'xb', pb);
      const rc = await add(h1, conf('h1'), 'xc', pc);
      assert.equal(ra.cniVersion, '1.1.0');
      assert.equal(ra.interfaces.length, 1);
      assert.deepEqual([ra.interfaces[0].name, ra.interfaces[0].sandbox], ['eth0', pa.path]);
      assert.equal(ra.ips.length, 1);
      assert.equal(ra.ips[0].interface, 0);
      assert.match(ra.ips[0].address, /^10\.210\.0\.\d+\/24$/);
      assert.ok(Number(addrOf(rb).split('.')[3]) >= 100, `h2 allocates from its own part: ${addrOf(rb)}`);

      const eth = await podLink(pa);
      assert.equal(eth.linkinfo?.info_kind, 'macvlan');
      assert.equal(eth.linkinfo?.info_data?.mode, 'bridge');
      assert.equal(eth.address, ra.interfaces[0].mac);
      assert.equal(eth.mtu, 1500);
      assert.equal(eth.operstate, 'UP');
      assert.deepEqual(eth.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`), [ra.ips[0].address]);
      // Created in the pod (never moved): the host has no trace of it.
      assert.deepEqual(await hostLinkNames(h1), ['eth0', 'lo']);
      assert.equal((await podLink(pb)).linkinfo?.info_data?.mode, 'bridge', 'default master on h2');

      assert.ok(await lab.ping(pa, addrOf(rb)), 'pod on h1 -> pod on h2');
      assert.ok(await lab.ping(pb, addrOf(ra)), 'pod on h2 -> pod on h1');
      assert.ok(await lab.ping(pa, addrOf(rc)), 'bridge mode: pods on the same host reach each other');
      assert.ok(await lab.ping(pb, '10.210.0.1'), 'pod on h2 -> host h1');

      await del(h1, conf('h1'), 'xa', pa);
      await del(h2, conf('h2'), 'xb', pb);
      await del(h1, conf('h1'), 'xc', pc);
      await assertGone('xa', pa);
      await assertGone('xb', pb, dirs.h2);
      assert.deepEqual(records(), []);
      assert.deepEqual(fs.existsSync(runDir) ? fs.readdirSync(path.join(runDir, 'macvlan')) : [], [], 'no state left under runDir');
    });

    it('private blocks child-to-child on the same host, vepa and passthru create as asked', async () => {
      const [p1, p2, p3] = [await lab.pod('pr-1'), await lab.pod('pr-2'), await lab.pod('pr-3')];
      const cp = conf('h1', { mode: 'private' }, 'mvpriv');
      await add(h1, cp, 'pr1', p1);
      const r2 = await add(h1, cp, 'pr2', p2);
      assert.equal((await podLink(p1)).linkinfo?.info_data?.mode, 'private');
      assert.ok(!(await lab.ping(p1, addrOf(r2))), 'private: no child-to-child');
      const r3 = await add(h2, conf('h2', {}, 'mvpriv'), 'pr3', p3);
      assert.ok(await lab.ping(p1, addrOf(r3)), 'private: the other host is reachable');
      await del(h1, cp, 'pr1', p1);
      await del(h1, cp, 'pr2', p2);
      await del(h2, conf('h2', {}, 'mvpriv'), 'pr3', p3);

      const pv = await lab.pod('vepa');
      const cv = conf('h1', { mode: 'vepa' }, 'mvvepa');
      const rv = await add(h1, cv, 'vp', pv);
      assert.equal((await podLink(pv)).linkinfo?.info_data?.mode, 'vepa');
      ok(await plugin(h1, 'CHECK', { ...cv, prevResult: rv }, 'vp', { netns: pv.path }), 'CHECK vepa');
      await del(h1, cv, 'vp', pv);

      const h3 = await lab.host('mv3', sw, { address: '10.210.0.3/24' });
      const pp = await lab.pod('pass');
      const cpt = { ...conf('h1', { mode: 'passthru' }, 'mvpass'), ipam: {} };
      const rp = await add(h3, cpt, 'pt', pp);
      assert.equal((await podLink(pp)).linkinfo?.info_data?.mode, 'passthru');
      assert.deepEqual(rp.ips ?? [], []);
      await del(h3, cpt, 'pt', pp);
      assert.deepEqual(records(), []);
    });

    it('honours mac (key, runtimeConfig, CNI_ARGS) and mtu; refuses an mtu above the master\'s with 7 naming both', async () => {
      const [p1, p2, p3] = [await lab.pod('mac-1'), await lab.pod('mac-2'), await lab.pod('mac-3')];
      const c = conf('h1', { mtu: 1400, mac: '0a:58:0a:d2:00:01' });
      const r1 = await add(h1, c, 'm1', p1);
      const r2 = await add(h1, { ...c, runtimeConfig: { mac: '0A:58:0A:D2:00:02' } }, 'm2', p2);
      const r3 = await add(h1, c, 'm3', p3, { args: 'IgnoreUnknown=1;MAC=0a:58:0a:d2:00:03;IP=10.210.0.77' });
      for (const [r, p, mac] of [[r1, p1, '0a:58:0a:d2:00:01'], [r2, p2, '0a:58:0a:d2:00:02'], [r3, p3, '0a:58:0a:d2:00:03']] as const) {
        assert.equal(r.interfaces[0].mac, mac);
        assert.equal(r.interfaces[0].mtu, 1400);
        const l = await podLink(p);
        assert.equal(l.address, mac);
        assert.equal(l.mtu, 1400);
      }
      assert.equal(addrOf(r3), '10.210.0.77');
      for (const [cid, p] of [['m1', p1], ['m2', p2], ['m3', p3]] as const) await del(h1, c, cid, p);

      const p4 = await lab.pod('mtu-big');
      fails(await plugin(h1, 'ADD', conf('h1', { mtu: 9000 }), 'm4', { netns: p4.path }), 7, 'mtu', '9000', '1500', 'eth0');
      await assertGone('m4', p4);
    });

    it('promisc: sets the master promiscuous, restores it after the last DEL, leaves an already promiscuous master alone', async () => {
      const h = await lab.host('mvp', sw, { address: '10.210.0.4/24' });
      const c = { ...conf('h1', { promisc: true }, 'mvprom'), ipam: {} };
      const [p1, p2] = [await lab.pod('prom-1'), await lab.pod('prom-2')];
      assert.equal(await promisc(h), false);
      await add(h, c, 'q1', p1);
      assert.equal(await promisc(h), true, 'promiscuous after ADD');
      await add(h, c, 'q2', p2);
      await del(h, c, 'q1', p1);
      assert.equal(await promisc(h), true, 'a child remains');
      await del(h, c, 'q2', p2);
      assert.equal(await promisc(h), false, 'restored after the last DEL');

      await lab.ip(h, ['link', 'set', 'eth0', 'promisc', 'on']);
      await add(h, c, 'q3', p1);
      await del(h, c, 'q3', p1);
      assert.equal(await promisc(h), true, 'was promiscuous before knit: left so');
      assert.deepEqual(records(), []);
    });

    it('concurrent ADDs and DELs with promisc keep the count right', async () => {
      const h = await lab.host('mvc', sw, { address: '10.210.0.5/24' });
      const c = { ...conf('h1', { promisc: true }, 'mvconc'), ipam: {} };
      const pods = await Promise.all(Array.from({ length: 8 }, (_, i) => lab.pod(`conc-${i}`)));
      (await Promise.all(pods.map((p, i) => plugin(h, 'ADD', c, `k${i}`, { netns: p.path })))).forEach((o, i) => ok(o, `ADD k${i}`));
      assert.equal(await promisc(h), true);
      assert.equal(records().filter((r) => r.startsWith('mvconc:')).length, 8);
      // Half go while the other half are re-added: the master must stay promiscuous throughout.
      const mixed = await Promise.all([
        ...pods.slice(0, 4).map((p, i) => plugin(h, 'DEL', c, `k${i}`, { netns: p.path })),
        ...pods.slice(0, 4).map((p, i) => plugin(h, 'ADD', c, `n${i}`, { netns: p.path, ifName: 'eth1' })),
      ]);
      mixed.forEach((o, i) => ok(o, `mixed ${i}`));
      assert.equal(await promisc(h), true);
      const dels = await Promise.all([
        ...pods.slice(4).map((p, i) => plugin(h, 'DEL', c, `k${i + 4}`, { netns: p.path })),
        ...pods.slice(0, 4).map((p, i) => plugin(h, 'DEL', c, `n${i}`, { netns: p.path, ifName: 'eth1' })),
      ]);
      dels.forEach((o, i) => ok(o, `DEL ${i}`));
      assert.equal(await promisc(h), false, 'restored after the last of them');
      assert.deepEqual(records(), []);
    });

    it('linkInContainer: the master is a link inside the pod', async () => {
      const pod = await lab.pod('lic');
      await lab.ip(pod, ['link', 'add', 'vf0', 'type', 'veth', 'peer', 'name', 'vf0p']);
      await lab.ip(pod, ['link', 'set', 'vf0', 'up']);
      const c = { ...conf('h1', { master: 'vf0', linkInContainer: true }, 'mvlic') };
      const r = await add(h1, c, 'lic', pod, { ifName: 'net1' });
      const l = await podLink(pod, 'net1');
      assert.equal(l.linkinfo?.info_kind, 'macvlan');
      assert.equal(l.link, 'vf0');
      ok(await plugin(h1, 'CHECK', { ...c, prevResult: r }, 'lic', { netns: pod.path, ifName: 'net1' }), 'CHECK');
      await del(h1, c, 'lic', pod, { ifName: 'net1' });
      assert.equal(await podLink(pod, 'net1'), undefined);
      assert.deepEqual(reservationsOf(dirs.h1!, 'mvlic', 'lic'), []);
    });
  });

  describe('802.1Q on a kernel without 8021q', () => {
    it('ADD with vlan fails with 101 naming 8021q and the master, leaving no link, reservation or state', async () => {
      if (fs.existsSync('/proc/net/vlan/config')) {
        console.log('      skipped: this kernel has 8021q (the kernel lane tests VLANs)');
        return;
      }
      const pod = await lab.pod('vlan');
      const c = conf('h1', { vlan: 100, promisc: true });
      const before = await hostLinkNames(h1);
      fails(await plugin(h1, 'ADD', c, 'v1', { netns: pod.path }), 101, 'vlan 100 on eth0', '8021q');
      assert.deepEqual(await hostLinkNames(h1), before, 'no link on the host');
      assert.equal(await podLink(pod), undefined, 'no link in the pod');
      assert.deepEqual(reservations(dirs.h1!, 'mv'), [], 'no reservation');
      assert.deepEqual(records(), [], 'no record');
      assert.equal(await promisc(h1), false, 'promiscuous mode untouched');
      assert.deepEqual(fs.existsSync(path.join(runDir, 'macvlan')) ? fs.readdirSync(path.join(runDir, 'macvlan')) : [], [], 'no state files');
      // The default master (h2) is named too.
      const o = await plugin(h2, 'ADD', conf('h2', { vlan: 200 }), 'v2', { netns: pod.path });
      fails(o, 101, 'vlan 200 on eth0', '8021q');
      // STATUS says so without touching anything.
      fails(await plugin(h1, 'STATUS', c), 50, '8021q', 'eth0');
      ok(await plugin(h1, 'DEL', c, 'v1', { netns: pod.path }), 'DEL after the failed ADD');
    });

    it('ADD with vlan refuses a same-named link that is not that VLAN (104)', async () => {
      const h = await lab.netns('mvname');
      await lab.ip(h, ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0.100']);
      const pod = await lab.pod('vlname');
      fails(await plugin(h, 'ADD', { ...conf('h1', { vlan: 100 }), ipam: {} }, 'vn', { netns: pod.path }), 104, 'eth0.100', 'veth');
      assert.deepEqual(records(), []);
    });
  });

  describe('CHECK', () => {
    it('passes after ADD and names each drift with 104', async () => {
      const c = conf('h1', { mtu: 1450 }, 'mvchk');
      const pods: Netns[] = [];
      const res: any[] = [];
      for (let i = 0; i < 5; i++) {
        pods.push(await lab.pod(`chk-${i}`));
        res.push(await add(h1, c, `c${i}`, pods[i]!));
      }
      const check = (i: number, cc: object = c): Promise<PluginOutput> => plugin(h1, 'CHECK', { ...cc, prevResult: res[i] }, `c${i}`, { netns: pods[i]!.path });
      for (let i = 0; i < 5; i++) ok(await check(i), `CHECK c${i}`);
      await lab.ip(pods[0]!, ['addr', 'del', res[0].ips[0].address, 'dev', 'eth0']);
      fails(await check(0), 104, `address ${res[0].ips[0].address} is missing`);
      await lab.ip(pods[1]!, ['link', 'set', 'eth0', 'mtu', '1300']);
      fails(await check(1), 104, 'MTU is 1300', '1450');
      await lab.ip(pods[2]!, ['link', 'set', 'eth0', 'down']);
      fails(await check(2), 104, 'eth0 is down');
      await lab.ip(pods[3]!, ['link', 'set', 'eth0', 'type', 'macvlan', 'mode', 'private']);
      fails(await check(3), 104, 'mode private', 'bridge');
      fails(await check(4, { ...c, master: 'nope0' }), 104, 'nope0');
      ok(await check(4), 'an untouched attachment');
      for (let i = 0; i < 5; i++) await del(h1, c, `c${i}`, pods[i]!);
    });
  });

  describe('DEL', () => {
    const c = (): Record<string, unknown> => conf('h1', { promisc: true }, 'mvdel');
    it('is idempotent, works after the netns went, for a container never added, and without CNI_NETNS', async () => {
      const h = await lab.host('mvd', sw, { address: '10.210.0.6/24' });
      const cc = { ...c(), ipam: { ...(c().ipam as object), dataDir: path.join(tmp, 'ipam-del') } };
      const [p1, p2, p3, p4] = [await lab.pod('del-1'), await lab.pod('del-2'), await lab.pod('del-3'), await lab.pod('del-4')];
      await add(h, cc, 'd1', p1);
      await del(h, cc, 'd1', p1);
      await del(h, cc, 'd1', p1);
      await assertGone('d1', p1, path.join(tmp, 'ipam-del'), 'mvdel');

      await add(h, cc, 'd2', p2);
      await lab.exec(null, 'ip', ['netns', 'del', p2.name]);
      await del(h, cc, 'd2', p2);
      await assertGone('d2', null, path.join(tmp, 'ipam-del'), 'mvdel');
      assert.equal(await promisc(h), false, 'restored after the last DEL, with its netns gone');

      await del(h, cc, 'never', p3);
      await del(h, cc, 'never', null);

      await add(h, cc, 'd4', p4);
      await del(h, cc, 'd4', null);
      await assertGone('d4', p4, path.join(tmp, 'ipam-del'), 'mvdel');
      assert.equal(await promisc(h), false);
    });
  });

  describe('failed ADD leaves nothing', () => {
    it('covers every failpoint in the source', () => {
      const found = new Set<string>();
      for (const dir of ['plugins/main/macvlan', 'pkg/iface']) {
        for (const f of fs.readdirSync(path.join(ROOT, dir)).filter((n) => n.endsWith('.ts'))) {
          for (const m of fs.readFileSync(path.join(ROOT, dir, f), 'utf8').matchAll(/\bfailpoint\((?:[\w.]+, )?'([^']+)'\)/g)) found.add(m[1]!);
        }
      }
      assert.deepEqual([...found].sort(), [...FAILPOINTS].sort());
    });

    it('at each failpoint: no interface, reservation, record or promiscuous mode; a child beside it is kept', async () => {
      const h = await lab.host('mvf', sw, { address: '10.210.0.7/24' });
      const dir = path.join(tmp, 'ipam-fp');
      const c = { ...conf('h1', { promisc: true }, 'mvfp'), ipam: { type: 'knit-host-local', dataDir: dir, ranges: [[{ subnet: SUBNET, rangeStart: '10.210.0.200', rangeEnd: '10.210.0.250' }]] } };
      const keeperPod = await lab.pod('fp-keep');
      for (const fp of FAILPOINTS) {
        const pod = await lab.pod(`fp-${fp}`);
        for (const beside of [false, true]) {
          const keeper = beside ? await add(h, c, 'keep', keeperPod) : undefined;
          const o = await plugin(h, 'ADD', c, `f-${fp}`, { netns: pod.path, env: { KNIT_FAILPOINT: fp } });
          fails(o, o.json?.code ?? -1, fp);
          await assertGone(`f-${fp}`, pod, dir, 'mvfp');
          if (keeper) {
            assert.equal(await promisc(h), true, `${fp}: promiscuous kept for the other child`);
            ok(await plugin(h, 'CHECK', { ...c, prevResult: keeper }, 'keep', { netns: keeperPod.path }), `${fp}: CHECK of the other child`);
            await del(h, c, 'keep', keeperPod);
          }
          assert.equal(await promisc(h), false, `${fp}${beside ? ' beside another' : ''}: promiscuous mode restored`);
        }
      }
      assert.deepEqual(reservations(dir, 'mvfp'), []);
    });

    it('a plugin killed while holding the lock wedges nobody; its leftovers go with the next decision', async () => {
      const h = await lab.host('mvk', sw, { address: '10.210.0.8/24' });
      const c = { ...conf('h1', { promisc: true }, 'mvkill'), ipam: {} };
      const [p1, p2] = [await lab.pod('kill-1'), await lab.pod('kill-2')];
      const o = await plugin(h, 'ADD', c, 'k1', { netns: p1.path, env: { KNIT_FAILPOINT: 'parent!' } });
      assert.notEqual(o.code, 0, 'killed');
      assert.equal(await promisc(h), true, 'the crash left promiscuous mode on');
      assert.deepEqual(recordsOf('k1'), ['mvkill:k1:eth0'], 'and its record');
      const t0 = Date.now();
      await add(h, c, 'k2', p2);
      assert.ok(Date.now() - t0 < 5000, 'the lock was free');
      await del(h, c, 'k2', p2);
      assert.deepEqual(records(), [], 'the dead record was pruned');
      assert.equal(await promisc(h), false, 'and promiscuous mode restored');
      await del(h, c, 'k1', p1); // the runtime's DEL of the crashed ADD
    });
  });

  describe('STATUS and GC', () => {
    it('STATUS: 0 normally, 50 when the master is missing or there is no default route', async () => {
      ok(await plugin(h1, 'STATUS', conf('h1')), 'STATUS h1');
      ok(await plugin(h2, 'STATUS', conf('h2')), 'STATUS h2 (default master)');
      fails(await plugin(h1, 'STATUS', conf('h1', { master: 'nope0' })), 50, 'nope0');
      fails(await plugin(h1, 'STATUS', conf('h2')), 50, 'default route');
    });

    it('GC removes attachments not listed: their macvlans, addresses and records', async () => {
      const c = conf('h1', {}, 'mvgc');
      const pods = [await lab.pod('gc-1'), await lab.pod('gc-2'), await lab.pod('gc-3')];
      for (let i = 0; i < 3; i++) await add(h1, c, `g${i}`, pods[i]!);
      ok(await plugin(h1, 'GC', { ...c, 'cni.dev/valid-attachments': [{ containerID: 'g1', ifname: 'eth0' }] }), 'GC');
      for (const i of [0, 2]) {
        assert.equal(await podLink(pods[i]!), undefined, `eth0 of g${i}`);
        assert.deepEqual(reservationsOf(dirs.h1!, 'mvgc', `g${i}`), []);
        assert.deepEqual(recordsOf(`g${i}`), []);
      }
      assert.ok(await podLink(pods[1]!), 'the valid one stays');
      assert.equal(reservationsOf(dirs.h1!, 'mvgc', 'g1').length, 1);
      ok(await plugin(h1, 'GC', { ...c, 'cni.dev/valid-attachments': [] }), 'GC with nothing valid');
      assert.equal(await podLink(pods[1]!), undefined);
      assert.deepEqual(reservations(dirs.h1!, 'mvgc'), []);
      assert.deepEqual(records(), []);
    });
  });

  describe('config errors', () => {
    const cases: Array<[string, Record<string, unknown>, string[]]> = [
      ['an unknown mode', { mode: 'source' }, ['mode', 'source']],
      ['vlan 0', { vlan: 0 }, ['vlan', '0']],
      ['vlan 4095', { vlan: 4095 }, ['vlan', '4095']],
      ['promisc as a string', { promisc: 'yes' }, ['promisc', 'yes']],
      ['a missing master', { master: 'nope0' }, ['master', 'nope0']],
      ['a bad mac', { mac: 'zz:00:00:00:00:01' }, ['mac', 'zz:00:00:00:00:01']],
      ['mtu too small', { mtu: 10 }, ['mtu', '10']],
    ];
    for (const [what, extra, parts] of cases) {
      it(`ADD with ${what} fails with 7, leaving nothing`, async () => {
        const pod = await lab.pod(`cfg-${what.replace(/\W+/g, '')}`.slice(0, 20));
        fails(await plugin(h1, 'ADD', conf('h1', extra), 'cfg', { netns: pod.path }), 7, ...parts);
        await assertGone('cfg', pod);
      });
    }
    it('ADD without master on a host without a default route fails with 7 saying so', async () => {
      const pod = await lab.pod('cfg-noroute');
      fails(await plugin(h1, 'ADD', conf('h2'), 'cfg', { netns: pod.path }), 7, 'default route', 'master');
      await assertGone('cfg', pod, dirs.h2);
    });
  });

  describe('interop with the reference plugins', () => {
    before(function () {
      for (const p of ['host-local', 'static', 'macvlan']) {
        if (!fs.existsSync(path.join(REF_CNI_DIR, p))) {
          console.log(`      skipped: reference ${p} not in ${REF_CNI_DIR}`);
          this.skip();
        }
      }
    });

    it('knit-macvlan over the reference host-local and static', async () => {
      const dataDir = path.join(tmp, 'ref-hl');
      const chl = { cniVersion: '1.0.0', name: 'mvrefhl', type: 'knit-macvlan', master: 'eth0', runDir, ipam: { type: 'host-local', dataDir, ranges: [[{ subnet: SUBNET, rangeStart: '10.210.0.60', rangeEnd: '10.210.0.69' }]] } };
      const cst = { cniVersion: '1.0.0', name: 'mvrefst', type: 'knit-macvlan', runDir, ipam: { type: 'static', addresses: [{ address: '10.210.0.150/24' }] } };
      const [pa, pb] = [await lab.pod('ref-a'), await lab.pod('ref-b')];
      const ra = await add(h1, chl, 'ra', pa);
      const rb = await add(h2, cst, 'rb', pb);
      assert.deepEqual(reservationsOf(dataDir, 'mvrefhl', 'ra'), [addrOf(ra)]);
      assert.equal(addrOf(rb), '10.210.0.150');
      assert.ok(await lab.ping(pa, '10.210.0.150'));
      ok(await plugin(h1, 'CHECK', { ...chl, prevResult: ra }, 'ra', { netns: pa.path }), 'CHECK over host-local');
      ok(await plugin(h2, 'CHECK', { ...cst, prevResult: rb }, 'rb', { netns: pb.path }), 'CHECK over static');
      await del(h1, chl, 'ra', pa);
      await del(h2, cst, 'rb', pb);
      assert.deepEqual(reservations(dataDir, 'mvrefhl'), []);
      assert.equal(await podLink(pa), undefined);
      assert.equal(await podLink(pb), undefined);
    });

    it('the reference macvlan over knit-host-local', async () => {
      const dataDir = path.join(tmp, 'knit-hl');
      const c = { cniVersion: '1.0.0', name: 'mvrefmv', type: 'macvlan', master: 'eth0', ipam: { type: 'knit-host-local', dataDir, ranges: [[{ subnet: SUBNET, rangeStart: '10.210.0.70', rangeEnd: '10.210.0.79' }]] } };
      const pod = await lab.pod('refmv');
      const ref = path.join(REF_CNI_DIR, 'macvlan');
      const r = ok(await plugin(h1, 'ADD', c, 'rm', { netns: pod.path }, ref), 'reference ADD').json;
      assert.deepEqual(reservationsOf(dataDir, 'mvrefmv', 'rm'), [addrOf(r)]);
      assert.ok(await lab.ping(pod, '10.210.0.2'), 'reference macvlan pod -> h2');
      ok(await plugin(h1, 'DEL', c, 'rm', { netns: pod.path }, ref), 'reference DEL');
      assert.deepEqual(reservations(dataDir, 'mvrefmv'), []);
    });
  });
});
