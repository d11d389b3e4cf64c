// knit-bridge as a runtime sees it: the bundled executable run "on" lab hosts (network
// namespaces), pods as further namespaces, `ip -json` and `nft -j` as the oracles. Covers the
// result and its versions, static MAC/IP/MTU, CHECK drift, DEL idempotence, rollback at every
// failpoint, masquerade per network, GC, STATUS, config errors and concurrent ADD/DEL.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Netns, type PluginOutput } from '../lab/lab';
import {
  attachmentLinks, buildKnit, linkAddrs, links, natEmpty, natState, reservations, reservationsOf, sh, type KnitBuild,
} from '../lab/cni';
import { hostLinkName } from '../../pkg/iface/attachment';
import { chainName } from '../../pkg/nat/masq';

/** Every name accepted by KNIT_FAILPOINT on the ADD path (plugins/main/bridge, pkg/iface). */
const ROOT = path.resolve(__dirname, '../..');
const FAILPOINTS = ['bridge', 'veth', 'port', 'address', 'route', 'gateway', 'forward', 'masq', 'result'] as const;

describe('knit-bridge integration', function () {
  this.timeout(60_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;

  before(async function () {
    requireRoot(this);
    knit = await buildKnit();
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-bridge-test-'));
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A fresh IPAM data dir. */
  const dataDir = (): string => fs.mkdtempSync(path.join(tmp, 'ipam-'));

  interface NetOpts {
    name: string;
    dir: string;
    v4?: string;
    v6?: string;
    cniVersion?: string;
    extra?: Record<string, unknown>;
    ipam?: Record<string, unknown>;
  }

  /** A knit-bridge config with knit-host-local over the given subnets. */
  function conf(o: NetOpts): Record<string, unknown> {
    const ranges: object[] = [];
    if (o.v4) ranges.push([{ subnet: o.v4 }]);
    if (o.v6) ranges.push([{ subnet: o.v6 }]);
    return {
      cniVersion: o.cniVersion ?? '1.1.0', name: o.name, type: 'knit-bridge', bridge: 'kbr0',
      isGateway: true, isDefaultGateway: true, ipMasq: true,
      ipam: { type: 'knit-host-local', dataDir: o.dir, ranges, ...o.ipam },
      ...o.extra,
    };
  }

  interface CallOpts { containerId?: string; netns?: string; ifName?: string; args?: string; env?: Record<string, string> }

  function plugin(host: Netns, command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC', c: object, o: CallOpts = {}): Promise<PluginOutput> {
    const attach = command === 'ADD' || command === 'DEL' || command === 'CHECK';
    return lab.runPlugin(host, knit.bin('knit-bridge'), {
      command, conf: c, path: [knit.binDir, '/usr/lib/cni'], args: o.args, env: o.env,
      ...(attach ? { containerId: o.containerId, netns: o.netns, ifName: o.ifName ?? 'eth0' } : {}),
    });
  }

  function ok(o: PluginOutput, what = 'plugin'): PluginOutput {
    assert.equal(o.code, 0, `${what} exited ${o.code}: ${o.stdout} ${o.stderr}`);
    return o;
  }

  /** Asserts a CNI error with `code` whose msg contains every part. */
  function fails(o: PluginOutput, code: number, ...parts: string[]): void {
    assert.equal(o.code, 1, `expected a failure, got exit ${o.code}: ${o.stdout}`);
    assert.ok(o.json && typeof o.json.msg === 'string', `stdout is not a CNI error: ${o.stdout}`);
    assert.equal(o.json.code, code, `code: ${o.stdout}`);
    for (const p of parts) assert.ok(o.json.msg.includes(p), `msg ${JSON.stringify(o.json.msg)} should contain ${JSON.stringify(p)}`);
  }

  async function add(host: Netns, c: object, containerId: string, pod: Netns, o: CallOpts = {}): Promise<any> {
    return ok(await plugin(host, 'ADD', c, { containerId, netns: pod.path, ...o }), `ADD ${containerId}`).json;
  }

  async function del(host: Netns, c: object, containerId: string, pod: Netns | null, o: CallOpts = {}): Promise<void> {
    ok(await plugin(host, 'DEL', c, { containerId, ...(pod ? { netns: pod.path } : {}), ...o }), `DEL ${containerId}`);
  }

  const addrOf = (r: any, fam: 4 | 6): string => String(r.ips.find((i: any) => i.address.includes(':') === (fam === 6)).address).split('/')[0]!;

  async function podLink(pod: Netns, ifName = 'eth0'): Promise<any> {
    return (await lab.ipJson<any[]>(pod, ['-d', 'addr', 'show'])).find((l) => l.ifname === ifName);
  }

  async function bridgeOf(host: Netns, name = 'kbr0'): Promise<any> {
    return (await links(lab, host)).find((l) => l.ifname === name);
  }

  const attachmentFile = (dir: string, net: string, cid: string, ifName = 'eth0'): string => path.join(dir, net, 'attachments', `${cid}:${ifName}`);

  /** Nothing of attachment cid remains: no host link, no container interface, no reservation. */
  async function assertGone(host: Netns, net: string, dir: string, cid: string, pod: Netns | null): Promise<void> {
    assert.deepEqual((await attachmentLinks(lab, host, net, cid)).map((l) => l.ifname), [], `host links of ${cid}`);
    assert.equal(await linkAddrs(lab, host, hostLinkName({ network: net, containerId: cid, ifName: 'eth0' })), undefined, `host veth of ${cid}`);
    if (pod) assert.equal(await podLink(pod), undefined, `eth0 of ${cid} still in the pod`);
    assert.deepEqual(reservationsOf(dir, net, cid), [], `reservations of ${cid}`);
    assert.ok(!fs.existsSync(attachmentFile(dir, net, cid)), `attachment record of ${cid}`);
  }

  describe('ADD', () => {
    it('connects two dual-stack pods that ping each other, and reports what ip -json shows', async () => {
      const net = 'dual';
      const host = await lab.netns('h-dual');
      const [pa, pb] = [await lab.pod('dual-a'), await lab.pod('dual-b')];
      const c = conf({ name: net, dir: dataDir(), v4: '10.201.1.0/24', v6: 'fd00:201:1::/64', extra: { hairpinMode: true } });
      const ra = await add(host, c, 'ca', pa);
      const rb = await add(host, c, 'cb', pb);

      // The result: [bridge, host veth, container interface with its sandbox].
      assert.equal(ra.cniVersion, '1.1.0');
      assert.equal(ra.interfaces.length, 3);
      const [ibr, iveth, ipod] = ra.interfaces;
      assert.equal(ibr.name, 'kbr0');
      assert.equal(ibr.sandbox, undefined);
      assert.equal(iveth.name, hostLinkName({ network: net, containerId: 'ca', ifName: 'eth0' }));
      assert.equal(iveth.sandbox, undefined);
      assert.deepEqual([ipod.name, ipod.sandbox], ['eth0', pa.path]);
      assert.equal(ra.ips.length, 2);
      for (const ip of ra.ips) assert.equal(ip.interface, 2, JSON.stringify(ip));
      assert.deepEqual(ra.ips.map((i: any) => i.gateway).sort(), ['10.201.1.1', 'fd00:201:1::1']);
      assert.match(ra.ips[0].address, /^10\.201\.1\.\d+\/24$/);
      assert.match(ra.ips[1].address, /^fd00:201:1::[0-9a-f]+\/64$/);
      assert.deepEqual(ra.routes.map((r: any) => `${r.dst} ${r.gw}`).sort(), ['0.0.0.0/0 10.201.1.1', '::/0 fd00:201:1::1']);
      assert.notEqual(addrOf(ra, 4), addrOf(rb, 4));
      assert.notEqual(addrOf(ra, 6), addrOf(rb, 6));

      // The pod, as ip -json sees it.
      const eth = await podLink(pa);
      assert.ok(eth, 'eth0 in the pod');
      assert.equal(eth.address, ipod.mac);
      assert.equal(eth.mtu, 1500);
      assert.equal(eth.linkinfo?.info_kind, 'veth');
      assert.equal(eth.operstate, 'UP');
      const have = eth.addr_info.filter((a: any) => a.scope === 'global').map((a: any) => `${a.local}/${a.prefixlen}`).sort();
      assert.deepEqual(have, ra.ips.map((i: any) => i.address).sort());
      assert.ok(eth.addr_info.find((a: any) => a.family === 'inet6' && a.scope === 'global').nodad, 'IPv6 address added without DAD');
      const r4 = await lab.ipJson<any[]>(pa, ['-4', 'route', 'show', 'default']);
      const r6 = await lab.ipJson<any[]>(pa, ['-6', 'route', 'show', 'default']);
      assert.deepEqual(r4.map((r) => [r.gateway, r.dev]), [['10.201.1.1', 'eth0']]);
      assert.deepEqual(r6.map((r) => [r.gateway, r.dev]), [['fd00:201:1::1', 'eth0']]);

      // The host: veth on the bridge with hairpin, bridge holds both gateways, MACs as reported.
      const hl = await links(lab, host);
      const br = hl.find((l) => l.ifname === 'kbr0')!;
      const veth = hl.find((l) => l.ifname === iveth.name)!;
      assert.equal(br.linkinfo?.info_kind, 'bridge');
      assert.equal(br.address, ibr.mac);
      assert.equal(veth.address, iveth.mac);
      assert.equal(veth.master, 'kbr0');
      assert.equal(veth.ifalias, `knit:${net}:ca:eth0`);
      assert.equal(veth.linkinfo?.info_slave_kind, 'bridge');
      assert.equal(veth.linkinfo?.info_slave_data?.hairpin, true, 'hairpin on the port');
      const bra = (await linkAddrs(lab, host, 'kbr0'))!.addr_info!.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort();
      assert.deepEqual(bra, ['10.201.1.1/24', 'fd00:201:1::1/64']);
      assert.equal((await sh(host, 'cat /proc/sys/net/ipv4/ip_forward')).trim(), '1');

      // Traffic both ways, both families, and to the gateway.
      assert.ok(await lab.ping(pa, addrOf(rb, 4)), 'a -> b over IPv4');
      assert.ok(await lab.ping(pb, addrOf(ra, 4)), 'b -> a over IPv4');
      assert.ok(await lab.ping(pa, addrOf(rb, 6)), 'a -> b over IPv6');
      assert.ok(await lab.ping(pb, addrOf(ra, 6)), 'b -> a over IPv6');
      assert.ok(await lab.ping(pa, '10.201.1.1'), 'a -> gateway');

      await del(host, c, 'ca', pa);
      await del(host, c, 'cb', pb);
      assert.ok(natEmpty(await natState(lab, host, net)));
    });

    it('converts the result to every cniVersion (ips[].version below 1.0.0)', async () => {
      const host = await lab.netns('h-ver');
      const dir = dataDir();
      for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
        const pod = await lab.pod(`ver-${v.replace(/\./g, '')}`);
        const c = conf({ name: 'ver', dir, v4: '10.201.2.0/24', v6: 'fd00:201:2::/64', cniVersion: v });
        const r = await add(host, c, `v${v.replace(/\./g, '')}`, pod);
        assert.equal(r.cniVersion, v);
        assert.equal(r.interfaces.length, 3, v);
        assert.equal(r.ips.length, 2, v);
        for (const ip of r.ips) {
          assert.equal(ip.interface, 2, v);
          if (v < '1.0.0') assert.equal(ip.version, ip.address.includes(':') ? '6' : '4', `${v} ips[].version`);
          else assert.ok(!('version' in ip), `${v} has no ips[].version`);
        }
        assert.ok(Array.isArray(r.routes), v);
        // CHECK exists from 0.4.0 on; prevResult in the config's own version form.
        if (v !== '0.3.1') ok(await plugin(host, 'CHECK', { ...c, prevResult: r }, { containerId: `v${v.replace(/\./g, '')}`, netns: pod.path }), `CHECK ${v}`);
        await del(host, c, `v${v.replace(/\./g, '')}`, pod);
        assert.equal(await podLink(pod), undefined);
      }
      assert.deepEqual(reservations(dir, 'ver'), []);
    });

    it('applies a static MAC (runtimeConfig.mac, CNI_ARGS MAC=), a static IP (CNI_ARGS IP=) and mtu on both ends', async () => {
      const host = await lab.netns('h-static');
      const dir = dataDir();
      const c = conf({ name: 'static', dir, v4: '10.201.3.0/24', extra: { mtu: 1400 } });
      const p1 = await lab.pod('static-1');
      const p2 = await lab.pod('static-2');
      const r1 = await add(host, { ...c, runtimeConfig: { mac: '0A:58:0A:C9:03:05' } }, 's1', p1);
      const r2 = await add(host, c, 's2', p2, { args: 'IgnoreUnknown=1;MAC=0a:58:0a:c9:03:06;IP=10.201.3.77' });
      assert.equal(r1.interfaces[2].mac, '0a:58:0a:c9:03:05');
      assert.equal((await podLink(p1)).address, '0a:58:0a:c9:03:05');
      assert.equal(r2.interfaces[2].mac, '0a:58:0a:c9:03:06');
      assert.equal((await podLink(p2)).address, '0a:58:0a:c9:03:06');
      assert.deepEqual(r2.ips.map((i: any) => i.address), ['10.201.3.77/24']);
      assert.deepEqual((await podLink(p2)).addr_info.filter((a: any) => a.family === 'inet').map((a: any) => a.local), ['10.201.3.77']);
      assert.deepEqual(reservationsOf(dir, 'static', 's2'), ['10.201.3.77']);
      for (const [r, pod] of [[r1, p1], [r2, p2]] as const) {
        assert.equal(r.interfaces[2].mtu, 1400);
        assert.equal((await podLink(pod)).mtu, 1400, 'container end MTU');
        assert.equal((await linkAddrs(lab, host, r.interfaces[1].name))!.mtu, 1400, 'host end MTU');
      }
      assert.ok(await lab.ping(p1, '10.201.3.77'));
      await del(host, c, 's1', p1);
      await del(host, c, 's2', p2, { args: 'IgnoreUnknown=1;MAC=0a:58:0a:c9:03:06;IP=10.201.3.77' });
      assert.deepEqual(reservations(dir, 'static'), []);
    });

    it('runs 20 concurrent ADDs on a new bridge with distinct addresses, then 20 concurrent DELs leave nothing', async () => {
      const host = await lab.netns('h-conc');
      const dir = dataDir();
      const net = 'conc';
      const c = conf({ name: net, dir, v4: '10.201.11.0/24', v6: 'fd00:201:11::/64' });
      const pods = await Promise.all(Array.from({ length: 20 }, (_, i) => lab.pod(`conc-${i}`)));
      const outs = await Promise.all(pods.map((p, i) => plugin(host, 'ADD', c, { containerId: `k${i}`, netns: p.path })));
      outs.forEach((o, i) => ok(o, `concurrent ADD ${i}`));
      const v4 = outs.map((o) => addrOf(o.json, 4));
      const v6 = outs.map((o) => addrOf(o.json, 6));
      assert.equal(new Set(v4).size, 20, `distinct IPv4: ${v4.join(' ')}`);
      assert.equal(new Set(v6).size, 20, `distinct IPv6: ${v6.join(' ')}`);
      assert.equal((await attachmentLinks(lab, host, net)).length, 20);
      const bra = (await linkAddrs(lab, host, 'kbr0'))!.addr_info!.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort();
      assert.deepEqual(bra, ['10.201.11.1/24', 'fd00:201:11::1/64'], 'the gateways once each');
      const nat = await natState(lab, host, net);
      assert.deepEqual(nat.rules, { ip: 1, ip6: 1 });
      assert.deepEqual(nat.subnets.sort(), ['10.201.11.0/24', 'fd00:201:11::/64']);
      assert.ok(await lab.ping(pods[0]!, v4[19]!), 'first pod reaches the last');

      const dels = await Promise.all(pods.map((p, i) => plugin(host, 'DEL', c, { containerId: `k${i}`, netns: p.path })));
      dels.forEach((o, i) => ok(o, `concurrent DEL ${i}`));
      assert.deepEqual((await attachmentLinks(lab, host, net)).map((l) => l.ifname), []);
      assert.deepEqual(reservations(dir, net), []);
      assert.ok(natEmpty(await natState(lab, host, net)), 'NAT entries of the network');
      for (const p of pods) assert.equal(await podLink(p), undefined);
    });
  });

  describe('CHECK', () => {
    it('passes right after ADD and fails with 104 naming each drift', async () => {
      const host = await lab.netns('h-check');
      const net = 'chk';
      const c = conf({ name: net, dir: dataDir(), v4: '10.201.4.0/24', v6: 'fd00:201:4::/64', extra: { mtu: 1450 } });
      const pods: Netns[] = [];
      const res: any[] = [];
      for (let i = 0; i < 5; i++) {
        pods.push(await lab.pod(`chk-${i}`));
        res.push(await add(host, c, `q${i}`, pods[i]!));
      }
      const check = (i: number): Promise<PluginOutput> => plugin(host, 'CHECK', { ...c, prevResult: res[i] }, { containerId: `q${i}`, netns: pods[i]!.path });
      for (let i = 0; i < 5; i++) ok(await check(i), `CHECK q${i} after ADD`);

      // An address gone from the container.
      const a0 = res[0].ips.find((i: any) => !i.address.includes(':')).address;
      await lab.ip(pods[0]!, ['addr', 'del', a0, 'dev', 'eth0']);
      fails(await check(0), 104, `address ${a0} is missing`);

      // MTU changed.
      await lab.ip(pods[1]!, ['link', 'set', 'eth0', 'mtu', '1300']);
      fails(await check(1), 104, 'MTU is 1300', '1450');

      // Host veth detached from the bridge.
      await lab.ip(host, ['link', 'set', res[2].interfaces[1].name, 'nomaster']);
      fails(await check(2), 104, `${res[2].interfaces[1].name} is not on bridge kbr0`);

      // Container interface down.
      await lab.ip(pods[3]!, ['link', 'set', 'eth0', 'down']);
      fails(await check(3), 104, 'eth0 is down');

      // The breaks above are per attachment: the fifth still checks out.
      ok(await check(4), 'CHECK of an untouched attachment');

      // The network's NAT chain deleted (with the map elements that jump to it).
      const chain = chainName(net);
      await lab.exec(host, 'nft', ['-f', '-'], {
        input: [
          'delete element inet knit-nat masq4 { 10.201.4.0/24 }',
          'delete element inet knit-nat masq6 { fd00:201:4::/64 }',
          `delete chain inet knit-nat ${chain}`, '',
        ].join('\n'),
      });
      assert.ok(natEmpty(await natState(lab, host, net)));
      fails(await check(4), 104, 'masquerade for 10.201.4.0/24', 'masquerade for fd00:201:4::/64');

      for (let i = 0; i < 5; i++) await del(host, c, `q${i}`, pods[i]!);
      assert.deepEqual((await attachmentLinks(lab, host, net)).length, 0);
    });
  });

  describe('DEL', () => {
    const net = 'del';
    let host: Netns;
    let dir: string;
    let c: Record<string, unknown>;
    before(async () => {
      host = await lab.netns('h-del');
      dir = dataDir();
      c = conf({ name: net, dir, v4: '10.201.5.0/24', v6: 'fd00:201:5::/64' });
    });

    it('is idempotent: a second DEL succeeds and nothing is left', async () => {
      const pod = await lab.pod('del-twice');
      await add(host, c, 'd1', pod);
      await del(host, c, 'd1', pod);
      await assertGone(host, net, dir, 'd1', pod);
      await del(host, c, 'd1', pod);
      assert.ok(natEmpty(await natState(lab, host, net)));
    });

    it('succeeds after the pod netns was deleted, releasing everything', async () => {
      const pod = await lab.pod('del-gone');
      await add(host, c, 'd2', pod);
      await lab.exec(null, 'ip', ['netns', 'del', pod.name]);
      await del(host, c, 'd2', pod);
      await assertGone(host, net, dir, 'd2', null);
      assert.ok(natEmpty(await natState(lab, host, net)));
    });

    it('succeeds for a container never added', async () => {
      const pod = await lab.pod('del-never');
      await del(host, c, 'never', pod);
      await del(host, c, 'never', null);
      await assertGone(host, net, dir, 'never', pod);
    });

    it('succeeds with CNI_NETNS omitted, removing both veth ends', async () => {
      const pod = await lab.pod('del-nonetns');
      await add(host, c, 'd4', pod);
      await del(host, c, 'd4', null);
      await assertGone(host, net, dir, 'd4', pod);
      assert.ok(natEmpty(await natState(lab, host, net)));
    });
  });

  describe('failed ADD leaves nothing', () => {
    /** A failing ADD of attachment `cid`: CNI error JSON, then nothing of it is left. */
    async function failingAdd(host: Netns, c: object, dir: string, net: string, cid: string, pod: Netns, env: Record<string, string>): Promise<PluginOutput> {
      const o = await plugin(host, 'ADD', c, { containerId: cid, netns: pod.path, env });
      assert.equal(o.code, 1, `ADD with ${JSON.stringify(env)} should fail: ${o.stdout}`);
      assert.ok(o.json && typeof o.json.code === 'number' && typeof o.json.msg === 'string', `CNI error JSON: ${o.stdout}`);
      await assertGone(host, net, dir, cid, pod);
      return o;
    }

    it('covers every failpoint in the source', () => {
      const found = new Set<string>();
      for (const dir of ['plugins/main/bridge', 'pkg/iface']) {
        for (const f of fs.readdirSync(path.join(ROOT, dir)).filter((n) => n.endsWith('.ts'))) {
          for (const m of fs.readFileSync(path.join(ROOT, dir, f), 'utf8').matchAll(/\bfailpoint\((?:[\w.]+, )?'([^']+)'\)/g)) found.add(m[1]!);
        }
      }
      assert.deepEqual([...found].sort(), [...FAILPOINTS].sort());
    });

    for (const fp of FAILPOINTS) {
      it(`at failpoint "${fp}": on a new bridge, and beside an existing attachment`, async () => {
        const net = `fp-${fp}`;
        const dir = dataDir();
        const host = await lab.netns(`h-fp-${fp}`);
        const c = conf({ name: net, dir, v4: '10.201.6.0/24', v6: 'fd00:201:6::/64', extra: { hairpinMode: true } });
        const env = { KNIT_FAILPOINT: fp };

        // 1. First ADD of the network on this host: the bridge it made goes too.
        const o = await failingAdd(host, c, dir, net, 'f1', await lab.pod(`fp-${fp}-1`), env);
        assert.ok(o.json.msg.includes(fp), `msg names the failpoint: ${o.json.msg}`);
        assert.equal(await bridgeOf(host), undefined, 'the bridge this ADD created');
        assert.ok(natEmpty(await natState(lab, host, net)), 'no NAT entries');

        // 2. Beside a working attachment: the bridge, its gateways, the NAT and the other pod stay.
        const keeperPod = await lab.pod(`fp-${fp}-k`);
        const keeper = await add(host, c, 'keep', keeperPod);
        await failingAdd(host, c, dir, net, 'f2', await lab.pod(`fp-${fp}-2`), env);
        assert.ok(await bridgeOf(host), 'the bridge that existed before');
        const bra = (await linkAddrs(lab, host, 'kbr0'))!.addr_info!.filter((a) => a.scope === 'global').map((a) => a.local).sort();
        assert.deepEqual(bra, ['10.201.6.1', 'fd00:201:6::1']);
        const nat = await natState(lab, host, net);
        assert.deepEqual(nat.subnets.sort(), ['10.201.6.0/24', 'fd00:201:6::/64']);
        assert.deepEqual(nat.rules, { ip: 1, ip6: 1 });
        assert.deepEqual(reservationsOf(dir, net, 'keep').sort(), keeper.ips.map((i: any) => i.address.split('/')[0]).sort());
        ok(await plugin(host, 'CHECK', { ...c, prevResult: keeper }, { containerId: 'keep', netns: keeperPod.path }), 'CHECK of the other attachment');
        assert.ok(await lab.ping(keeperPod, '10.201.6.1'));
        await del(host, c, 'keep', keeperPod);
        assert.ok(natEmpty(await natState(lab, host, net)));
      });
    }

    it('on a bridge made beforehand: keeps the bridge, removes the gateway address it added', async () => {
      const net = 'fp-pre';
      const dir = dataDir();
      const host = await lab.netns('h-fp-pre');
      await lab.ip(host, ['link', 'add', 'kbr0', 'type', 'bridge']);
      const c = conf({ name: net, dir, v4: '10.201.6.0/24' });
      await failingAdd(host, c, dir, net, 'f1', await lab.pod('fp-pre-1'), { KNIT_FAILPOINT: 'result' });
      const br = await linkAddrs(lab, host, 'kbr0');
      assert.ok(br, 'the bridge that existed before');
      assert.deepEqual(br.addr_info!.filter((a) => a.family === 'inet').map((a) => a.local), []);
      assert.ok(natEmpty(await natState(lab, host, net)));
    });

    it('when IPAM fails (exhausted /30): nothing on a new host, the other attachment kept', async () => {
      const net = 'exh';
      const dir = dataDir();
      const c = conf({ name: net, dir, v4: '10.201.7.0/30' });
      const hostA = await lab.netns('h-exh-a');
      const pa = await lab.pod('exh-a');
      await add(hostA, c, 'e1', pa); // takes the only free address (.2; .1 is the gateway)
      // Same data dir seen from a second host: its first ADD creates the bridge, then IPAM fails.
      const hostB = await lab.netns('h-exh-b');
      const o = await failingAdd(hostB, c, dir, net, 'e2', await lab.pod('exh-b'), {});
      assert.ok(o.json.msg.length > 0);
      assert.equal(await bridgeOf(hostB), undefined, 'the bridge the failed ADD created');
      assert.ok(!(await natState(lab, hostB, net)).table || natEmpty(await natState(lab, hostB, net)));
      // On the first host: the working attachment and its NAT stay.
      await failingAdd(hostA, c, dir, net, 'e3', await lab.pod('exh-c'), {});
      assert.deepEqual(reservationsOf(dir, net, 'e1'), ['10.201.7.2']);
      assert.equal((await attachmentLinks(lab, hostA, net)).length, 1);
      assert.equal((await natState(lab, hostA, net)).rules.ip, 1);
      await del(hostA, c, 'e1', pa);
    });
  });

  describe('masquerade', () => {
    it('lets a pod reach an underlay host that has no route back, per network, one rule per family', async () => {
      const sw = await lab.switch('masq-sw');
      const host = await lab.host('masq-h', sw, { address: '192.168.201.1/24' });
      const outside = await lab.host('masq-o', sw, { address: '192.168.201.2/24' });
      await lab.ip(host, ['addr', 'add', 'fd00:201:ff::1/64', 'dev', 'eth0', 'nodad']);
      await lab.ip(outside, ['addr', 'add', 'fd00:201:ff::2/64', 'dev', 'eth0', 'nodad']);
      const dir = dataDir();
      const cA = conf({ name: 'masqa', dir, v4: '10.201.8.0/24', v6: 'fd00:201:8::/64' });
      const cB = conf({ name: 'masqb', dir, v4: '10.201.9.0/24', v6: 'fd00:201:9::/64', extra: { bridge: 'kbr1' } });
      const cN = conf({ name: 'nomasq', dir, v4: '10.201.10.0/24', v6: 'fd00:201:10::/64', extra: { bridge: 'kbr2', ipMasq: false } });
      const [pa1, pa2, pb, pn] = [await lab.pod('masq-a1'), await lab.pod('masq-a2'), await lab.pod('masq-b'), await lab.pod('masq-n')];
      await add(host, cA, 'ma1', pa1);
      await add(host, cA, 'ma2', pa2);
      await add(host, cB, 'mb', pb);
      await add(host, cN, 'mn', pn);

      // The outside host has no route to any pod subnet: only masquerade makes replies come back.
      assert.deepEqual((await lab.ipJson<any[]>(outside, ['route', 'show', 'default'])), []);
      assert.ok(await lab.ping(pa1, '192.168.201.2'), 'masqueraded pod of network A reaches the outside over IPv4');
      assert.ok(await lab.ping(pa2, 'fd00:201:ff::2'), 'and over IPv6');
      assert.ok(await lab.ping(pb, '192.168.201.2'), 'network B masquerades too');
      assert.ok(!(await lab.ping(pn, '192.168.201.2')), 'a network without ipMasq does not reach it');
      assert.ok(!(await lab.ping(pn, 'fd00:201:ff::2')), 'nor over IPv6');

      // Two pods, one network: one chain with one rule per family; a chain per network.
      const a = await natState(lab, host, 'masqa');
      assert.ok(a.chain);
      assert.deepEqual(a.rules, { ip: 1, ip6: 1 });
      assert.deepEqual(a.subnets.sort(), ['10.201.8.0/24', 'fd00:201:8::/64']);
      const b = await natState(lab, host, 'masqb');
      assert.deepEqual(b.subnets.sort(), ['10.201.9.0/24', 'fd00:201:9::/64']);
      assert.ok(natEmpty(await natState(lab, host, 'nomasq')));

      // The last DEL of network A removes A's entries only.
      await del(host, cA, 'ma1', pa1);
      assert.deepEqual((await natState(lab, host, 'masqa')).rules, { ip: 1, ip6: 1 }, 'one attachment of A remains');
      await del(host, cA, 'ma2', pa2);
      assert.ok(natEmpty(await natState(lab, host, 'masqa')), 'A gone after its last DEL');
      assert.deepEqual((await natState(lab, host, 'masqb')).rules, { ip: 1, ip6: 1 }, 'B untouched');
      assert.ok(await lab.ping(pb, '192.168.201.2'));
      await del(host, cB, 'mb', pb);
      await del(host, cN, 'mn', pn);
      assert.ok(natEmpty(await natState(lab, host, 'masqb')));
    });
  });

  describe('masquerade races', () => {
    it('an ADD racing the last DEL of the network keeps its masquerade', async () => {
      const net = 'mrace';
      const missing: string[] = [];
      // The DEL's "last one?" look and its removal are a window; stagger the ADD across it,
      // on two hosts at once (each host netns has its own nftables).
      await Promise.all([0, 1].map(async (h) => {
        const host = await lab.netns(`h-mrace${h}`);
        const c = conf({ name: net, dir: dataDir(), v4: '10.201.15.0/24' });
        for (let i = 0; i < 5; i++) {
          const [p0, p1] = [await lab.pod(`mrace-${h}${i}a`), await lab.pod(`mrace-${h}${i}b`)];
          await add(host, c, `old${i}`, p0);
          const delay = 18 + (i * 2 + h) * 4;
          const [d, a] = await Promise.all([
            plugin(host, 'DEL', c, { containerId: `old${i}`, netns: p0.path }),
            new Promise((r) => setTimeout(r, delay)).then(() => plugin(host, 'ADD', c, { containerId: `new${i}`, netns: p1.path })),
          ]);
          ok(d, 'DEL');
          ok(a, 'ADD');
          const st = await natState(lab, host, net);
          if (!st.chain || !st.subnets.includes('10.201.15.0/24')) missing.push(`host ${h} round ${i} (ADD ${delay} ms after DEL)`);
          await del(host, c, `new${i}`, p1);
        }
      }));
      assert.deepEqual(missing, [], 'a live attachment without its masquerade');
    });
  });

  describe('GC', () => {
    it('removes every attachment not listed, their addresses and (when none remain) the NAT entries', async () => {
      const host = await lab.netns('h-gc');
      const dir = dataDir();
      const net = 'gc';
      const c = conf({ name: net, dir, v4: '10.201.12.0/24', v6: 'fd00:201:12::/64' });
      const pods = [await lab.pod('gc-1'), await lab.pod('gc-2'), await lab.pod('gc-3')];
      for (let i = 0; i < 3; i++) await add(host, c, `g${i}`, pods[i]!);
      const gc = (valid: object[]): Promise<PluginOutput> => plugin(host, 'GC', { ...c, 'cni.dev/valid-attachments': valid });

      ok(await gc([{ containerID: 'g1', ifname: 'eth0' }]), 'GC');
      assert.deepEqual((await attachmentLinks(lab, host, net)).map((l) => l.ifalias), [`knit:${net}:g1:eth0`]);
      for (const i of [0, 2]) {
        assert.deepEqual(reservationsOf(dir, net, `g${i}`), [], `addresses of g${i}`);
        assert.equal(await podLink(pods[i]!), undefined, `eth0 of g${i} went with its host end`);
      }
      assert.equal(reservationsOf(dir, net, 'g1').length, 2);
      assert.deepEqual((await natState(lab, host, net)).rules, { ip: 1, ip6: 1 }, 'NAT kept for the valid one');
      assert.ok(await lab.ping(pods[1]!, '10.201.12.1'), 'the valid attachment still pings over IPv4');
      assert.ok(await lab.ping(pods[1]!, 'fd00:201:12::1'), 'and IPv6');

      ok(await gc([]), 'GC with nothing valid');
      assert.deepEqual(await attachmentLinks(lab, host, net), []);
      assert.deepEqual(reservations(dir, net), []);
      assert.ok(natEmpty(await natState(lab, host, net)), 'NAT entries gone with the last attachment');
    });
  });

  describe('STATUS', () => {
    it('exits 0 normally', async () => {
      const host = await lab.netns('h-st');
      ok(await plugin(host, 'STATUS', conf({ name: 'st', dir: dataDir(), v4: '10.201.13.0/24' })), 'STATUS');
    });

    it('fails with 50 when the bridge name is taken by a non-bridge link', async () => {
      const host = await lab.netns('h-st-veth');
      await lab.ip(host, ['link', 'add', 'kbr0', 'type', 'veth', 'peer', 'name', 'kbr0p']);
      fails(await plugin(host, 'STATUS', conf({ name: 'st', dir: dataDir(), v4: '10.201.13.0/24' })), 50, 'kbr0', 'not a bridge');
    });

    it('fails with 50 when IPAM is exhausted', async () => {
      const host = await lab.netns('h-st-exh');
      const c = conf({ name: 'stx', dir: dataDir(), v4: '10.201.13.0/30' });
      ok(await plugin(host, 'STATUS', c), 'STATUS before');
      const pod = await lab.pod('st-exh');
      await add(host, c, 'x1', pod);
      fails(await plugin(host, 'STATUS', c), 50, 'stx');
      await del(host, c, 'x1', pod);
      ok(await plugin(host, 'STATUS', c), 'STATUS after DEL');
    });
  });

  describe('config errors', () => {
    let host: Netns;
    let pod: Netns;
    let dir: string;
    before(async () => {
      host = await lab.netns('h-cfg');
      pod = await lab.pod('cfg');
      dir = dataDir();
    });
    const base = (extra: Record<string, unknown>, name = 'cfg'): Record<string, unknown> => conf({ name, dir, v4: '10.201.14.0/24', extra });

    const cases: Array<[string, Record<string, unknown>, string[]]> = [
      ['mtu as a string', { mtu: '1500' }, ['mtu', '"1500"']],
      ['mtu too small', { mtu: 10 }, ['mtu', '10']],
      ['mtu too large', { mtu: 70000 }, ['mtu', '70000']],
      ['hairpinMode with promiscMode', { hairpinMode: true, promiscMode: true }, ['hairpinMode', 'promiscMode']],
      ['a bad mac', { mac: 'zz:00:00:00:00:01' }, ['mac', 'zz:00:00:00:00:01']],
      ['a multicast mac', { mac: '01:00:5e:00:00:01' }, ['mac', '01:00:5e:00:00:01']],
      ['a bridge name too long', { bridge: 'this-is-too-long0' }, ['bridge', 'this-is-too-long0']],
      ['a bridge name with a slash', { bridge: 'kb/r' }, ['bridge', 'kb/r']],
    ];
    for (const [what, extra, parts] of cases) {
      it(`ADD with ${what} fails with 7 naming the key and value, leaving nothing`, async () => {
        fails(await plugin(host, 'ADD', base(extra), { containerId: 'cfg1', netns: pod.path }), 7, ...parts);
        assert.deepEqual((await links(lab, host)).map((l) => l.ifname), ['lo']);
        assert.equal(await podLink(pod), undefined);
        assert.deepEqual(reservations(dir, 'cfg'), []);
      });
    }

    it('ADD fails with 104 when the bridge name is a veth, leaving nothing', async () => {
      const h = await lab.netns('h-cfg-veth');
      await lab.ip(h, ['link', 'add', 'kbr0', 'type', 'veth', 'peer', 'name', 'kbr0p']);
      fails(await plugin(h, 'ADD', base({}), { containerId: 'cfgv', netns: pod.path }), 104, 'kbr0', 'veth');
      assert.deepEqual((await links(lab, h)).map((l) => l.ifname).sort(), ['kbr0', 'kbr0p', 'lo']);
      await assertGone(h, 'cfg', dir, 'cfgv', pod);
    });

    it('forceAddress false: an overlapping address on the bridge fails with 104 naming both; true replaces it', async () => {
      const h = await lab.netns('h-force');
      await lab.ip(h, ['link', 'add', 'kbr0', 'type', 'bridge']);
      await lab.ip(h, ['addr', 'add', '10.201.0.254/16', 'dev', 'kbr0']);
      const p = await lab.pod('force');
      const c = base({}, 'force');
      fails(await plugin(h, 'ADD', c, { containerId: 'fo', netns: p.path }), 104, '10.201.0.254/16', '10.201.14.1/24', 'forceAddress');
      await assertGone(h, 'force', dir, 'fo', p);
      assert.deepEqual((await linkAddrs(lab, h, 'kbr0'))!.addr_info!.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), ['10.201.0.254/16']);

      const cf = { ...c, forceAddress: true };
      const r = await add(h, cf, 'fo', p);
      assert.deepEqual((await linkAddrs(lab, h, 'kbr0'))!.addr_info!.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), ['10.201.14.1/24']);
      assert.ok(await lab.ping(p, '10.201.14.1'));
      await del(h, cf, 'fo', p);
      assert.equal(r.ips.length, 1);
    });
  });
});
