// knit-bridge over the reference IPAM plugins (Debian containernetworking-plugins in /usr/lib/cni),
// exec'd from CNI_PATH per the spec: host-local and static, ADD/CHECK/DEL, and the spec's rule that
// a failing ADD releases what the IPAM reserved.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Netns, type PluginOutput } from '../lab/lab';
import { attachmentLinks, buildKnit, linkAddrs, natEmpty, natState, REF_CNI_DIR, reservations, reservationsOf, type KnitBuild } from '../lab/cni';

describe('knit-bridge over the reference IPAM plugins', function () {
  this.timeout(60_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let host: Netns;

  before(async function () {
    requireRoot(this);
    for (const p of ['host-local', 'static']) {
      if (!fs.existsSync(path.join(REF_CNI_DIR, p))) {
        console.log(`      skipped: reference ${p} not in ${REF_CNI_DIR} (Debian containernetworking-plugins)`);
        this.skip();
      }
    }
    knit = await buildKnit();
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-interop-'));
    host = await lab.netns('h-interop');
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function plugin(command: 'ADD' | 'DEL' | 'CHECK', conf: object, containerId: string, pod: Netns, env?: Record<string, string>): Promise<PluginOutput> {
    return lab.runPlugin(host, knit.bin('knit-bridge'), {
      command, conf, containerId, netns: pod.path, ifName: 'eth0', path: [knit.binDir, REF_CNI_DIR], env,
    });
  }

  function ok(o: PluginOutput, what: string): PluginOutput {
    assert.equal(o.code, 0, `${what} exited ${o.code}: ${o.stdout} ${o.stderr}`);
    return o;
  }

  async function podAddrs(pod: Netns): Promise<string[]> {
    const l = await linkAddrs(lab, pod, 'eth0');
    return (l?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort();
  }

  const bridgeConf = (name: string, ipam: object): Record<string, unknown> => ({
    cniVersion: '1.0.0', name, type: 'knit-bridge', bridge: `kb-${name}`.slice(0, 15), isDefaultGateway: true, ipMasq: true, ipam,
  });

  it('ADD/CHECK/DEL with reference host-local (dual-stack)', async () => {
    const dataDir = path.join(tmp, 'hl');
    const conf = bridgeConf('refhl', { type: 'host-local', dataDir, ranges: [[{ subnet: '10.202.1.0/24' }], [{ subnet: 'fd00:202:1::/64' }]] });
    const [p1, p2] = [await lab.pod('refhl-1'), await lab.pod('refhl-2')];
    const r1 = ok(await plugin('ADD', conf, 'h1', p1), 'ADD h1').json;
    const r2 = ok(await plugin('ADD', conf, 'h2', p2), 'ADD h2').json;
    for (const [r, p, cid] of [[r1, p1, 'h1'], [r2, p2, 'h2']] as const) {
      assert.equal(r.ips.length, 2);
      for (const ip of r.ips) assert.equal(ip.interface, 2);
      assert.deepEqual(r.ips.map((i: any) => i.gateway).sort(), ['10.202.1.1', 'fd00:202:1::1']);
      assert.deepEqual(await podAddrs(p), r.ips.map((i: any) => i.address).sort());
      // The reference host-local's own files name the container.
      assert.deepEqual(reservationsOf(dataDir, 'refhl', cid).sort(), r.ips.map((i: any) => i.address.split('/')[0]).sort());
      ok(await plugin('CHECK', { ...conf, prevResult: r }, cid, p), `CHECK ${cid}`);
    }
    assert.ok(await lab.ping(p1, r2.ips[0].address.split('/')[0]));
    assert.ok(await lab.ping(p2, r1.ips[1].address.split('/')[0]));

    ok(await plugin('DEL', conf, 'h1', p1), 'DEL h1');
    ok(await plugin('DEL', conf, 'h1', p1), 'DEL h1 again');
    assert.deepEqual(reservationsOf(dataDir, 'refhl', 'h1'), []);
    assert.equal(reservationsOf(dataDir, 'refhl', 'h2').length, 2);
    ok(await plugin('DEL', conf, 'h2', p2), 'DEL h2');
    assert.deepEqual(reservations(dataDir, 'refhl'), []);
    assert.deepEqual(await attachmentLinks(lab, host, 'refhl'), []);
    assert.ok(natEmpty(await natState(lab, host, 'refhl')));
  });

  it('ADD/CHECK/DEL with reference static', async () => {
    const conf = bridgeConf('refst', {
      type: 'static',
      addresses: [{ address: '10.202.2.5/24', gateway: '10.202.2.1' }, { address: 'fd00:202:2::5/64', gateway: 'fd00:202:2::1' }],
    });
    const pod = await lab.pod('refst');
    const r = ok(await plugin('ADD', conf, 's1', pod), 'ADD').json;
    assert.deepEqual(r.ips.map((i: any) => [i.address, i.gateway, i.interface]), [
      ['10.202.2.5/24', '10.202.2.1', 2], ['fd00:202:2::5/64', 'fd00:202:2::1', 2],
    ]);
    assert.deepEqual(await podAddrs(pod), ['10.202.2.5/24', 'fd00:202:2::5/64']);
    const br = await linkAddrs(lab, host, 'kb-refst');
    assert.deepEqual(br!.addr_info!.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort(), ['10.202.2.1/24', 'fd00:202:2::1/64']);
    assert.ok(await lab.ping(pod, '10.202.2.1'));
    assert.ok(await lab.ping(pod, 'fd00:202:2::1'));
    ok(await plugin('CHECK', { ...conf, prevResult: r }, 's1', pod), 'CHECK');
    await lab.ip(pod, ['addr', 'del', '10.202.2.5/24', 'dev', 'eth0']);
    const bad = await plugin('CHECK', { ...conf, prevResult: r }, 's1', pod);
    assert.equal(bad.code, 1, `CHECK after removing the address should fail: ${bad.stdout}`);
    assert.ok(bad.json?.msg?.includes('10.202.2.5'), bad.stdout);
    ok(await plugin('DEL', conf, 's1', pod), 'DEL');
    ok(await plugin('DEL', conf, 's1', pod), 'DEL again');
    assert.equal(await linkAddrs(lab, pod, 'eth0'), undefined);
    assert.deepEqual(await attachmentLinks(lab, host, 'refst'), []);
    assert.ok(natEmpty(await natState(lab, host, 'refst')));
  });

  it('a failing ADD after reference host-local ran releases its reservation', async () => {
    const dataDir = path.join(tmp, 'hl-fail');
    const conf = bridgeConf('reffail', { type: 'host-local', dataDir, ranges: [[{ subnet: '10.202.3.0/24' }]] });
    for (const fp of ['address', 'masq', 'result']) {
      const pod = await lab.pod(`reffail-${fp}`);
      const o = await plugin('ADD', conf, `f-${fp}`, pod, { KNIT_FAILPOINT: fp });
      assert.equal(o.code, 1, `ADD at failpoint ${fp} should fail: ${o.stdout}`);
      assert.ok(typeof o.json?.code === 'number' && o.json.msg.includes(fp), o.stdout);
      assert.ok(fs.existsSync(path.join(dataDir, 'reffail')), 'host-local ran (its network dir exists)');
      assert.deepEqual(reservations(dataDir, 'reffail'), [], `reservation released after failpoint ${fp}`);
      assert.equal(await linkAddrs(lab, pod, 'eth0'), undefined);
      assert.deepEqual(await attachmentLinks(lab, host, 'reffail'), []);
      assert.ok(natEmpty(await natState(lab, host, 'reffail')));
    }
    // The address is free again: the next ADD gets the first one.
    const pod = await lab.pod('reffail-ok');
    const r = ok(await plugin('ADD', conf, 'f-ok', pod), 'ADD').json;
    assert.deepEqual(reservationsOf(dataDir, 'reffail', 'f-ok'), [r.ips[0].address.split('/')[0]]);
    ok(await plugin('DEL', conf, 'f-ok', pod), 'DEL');
    assert.deepEqual(reservations(dataDir, 'reffail'), []);
  });
});
