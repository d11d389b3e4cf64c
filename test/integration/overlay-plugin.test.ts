// knit-overlay in lab namespaces, with lease.json written by hand (as knitd would): no lease means
// code 11 "knitd is not ready" and STATUS 50; with one, pods land on knit-ov0 with addresses of the
// lease's subnet, the gateway on the bridge, a default route and the lease's MTU; CHECK passes and
// sees drift; DEL is idempotent and works without a lease; GC collects stale attachments; a new
// lease subnet replaces the bridge's old gateway.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, requireRoot, type Netns, type PluginOutput } from '../lab/lab';
import { buildKnit, isolationState, type KnitBuild } from '../lab/cni';
import { writeLeaseFile, removeLeaseFile } from '../../pkg/agent/lease-file';

describe('knit-overlay plugin', function () {
  this.timeout(90_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let runDir: string;
  let dataDir: string;
  let host: Netns;
  let conf: Record<string, unknown>;

  before(async function () {
    requireRoot(this);
    knit = await buildKnit(['knit-overlay']);
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-overlay-test-'));
    runDir = path.join(tmp, 'run');
    dataDir = path.join(tmp, 'ipam');
    host = await lab.netns('ov-host');
    conf = { cniVersion: '1.1.0', name: 'ovnet', type: 'knit-overlay', runDir, ipam: { type: 'knit-host-local', dataDir } };
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function plugin(command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC', c: object, o: { containerId?: string; netns?: string } = {}): Promise<PluginOutput> {
    const attach = command === 'ADD' || command === 'DEL' || command === 'CHECK';
    return lab.runPlugin(host, knit.bin('knit-overlay'), {
      command, conf: c, path: [knit.binDir],
      ...(attach ? { containerId: o.containerId, netns: o.netns, ifName: 'eth0' } : {}),
    });
  }
  const ok = (o: PluginOutput, what: string): PluginOutput => { assert.equal(o.code, 0, `${what} exited ${o.code}: ${o.stdout} ${o.stderr}`); return o; };

  it('without a lease: ADD fails with code 11 saying knitd is not ready, STATUS with 50', async () => {
    const pod = await lab.pod('ov-p0');
    const add = await plugin('ADD', conf, { containerId: 'c0', netns: pod.path });
    assert.notEqual(add.code, 0);
    assert.equal(add.json?.code, 11, add.stdout);
    assert.match(add.json.msg, /knitd is not ready/);
    const st = await plugin('STATUS', conf);
    assert.equal(st.json?.code, 50, st.stdout);
    assert.match(st.json.msg, /knitd is not ready/);
    ok(await plugin('DEL', conf, { containerId: 'c0', netns: pod.path }), 'DEL without lease');
  });

  let results: any[] = [];
  let pods: Netns[] = [];

  it('with a lease: pods on knit-ov0 with lease addresses, gateway, default route and MTU', async () => {
    writeLeaseFile(runDir, { network: '10.216.0.0/16', subnet: '10.216.5.0/24', mtu: 1450 });
    ok(await plugin('STATUS', conf), 'STATUS');
    pods = [await lab.pod('ov-p1'), await lab.pod('ov-p2')];
    results = [];
    for (const [i, pod] of pods.entries()) {
      const r = ok(await plugin('ADD', conf, { containerId: `c${i + 1}`, netns: pod.path }), `ADD ${i}`).json;
      results.push(r);
      assert.equal(r.ips[0].address, `10.216.5.${i + 2}/24`);
      assert.equal(r.ips[0].gateway, '10.216.5.1');
      assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0', gw: '10.216.5.1' }]);
      assert.equal(r.interfaces[0].name, 'knit-ov0');
      const [l] = await lab.ipJson(pod, ['link', 'show', 'eth0']);
      assert.equal(l.mtu, 1450);
      assert.match(await lab.ip(pod, ['route', 'show', 'default']), /default via 10\.216\.5\.1 dev eth0/);
    }
    const [br] = await lab.ipJson(host, ['addr', 'show', 'dev', 'knit-ov0']);
    assert.equal(br.mtu, 1450);
    assert.ok(br.addr_info.some((a: any) => a.local === '10.216.5.1' && a.prefixlen === 24));
    assert.ok(await lab.ping(pods[0]!, '10.216.5.3'));
    assert.ok(await lab.ping(pods[1]!, '10.216.5.1'));
    // The routed pod network is one knit network: isolated from the node's other knit networks.
    assert.deepEqual((await isolationState(lab, host, 'ovnet')).interfaces, ['knit-ov0']);
  });

  it('CHECK passes, and reports drift', async () => {
    for (const [i, pod] of pods.entries()) ok(await plugin('CHECK', { ...conf, prevResult: results[i] }, { containerId: `c${i + 1}`, netns: pod.path }), `CHECK ${i}`);
    await lab.ip(pods[0]!, ['link', 'set', 'eth0', 'mtu', '1400']);
    const bad = await plugin('CHECK', { ...conf, prevResult: results[0] }, { containerId: 'c1', netns: pods[0]!.path });
    assert.equal(bad.json?.code, 104, bad.stdout);
    assert.match(bad.json.msg, /MTU is 1400/);
    await lab.ip(pods[0]!, ['link', 'set', 'eth0', 'mtu', '1450']);
  });

  it('GC removes attachments that are no longer valid', async () => {
    ok(await plugin('GC', { ...conf, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] }), 'GC');
    assert.ok(!(await lab.ipJson(pods[1]!, ['link', 'show'])).some((l: any) => l.ifname === 'eth0'));
    const hostLinks = await lab.ipJson(host, ['link', 'show', 'master', 'knit-ov0']);
    assert.equal(hostLinks.length, 1);
    // c2's address is released.
    assert.ok(!fs.existsSync(path.join(dataDir, 'ovnet', '10.216.5.3')), 'reservation of c2 released');
    const p3 = await lab.pod('ov-p3');
    const r = ok(await plugin('ADD', conf, { containerId: 'c3', netns: p3.path }), 'ADD c3').json;
    assert.match(r.ips[0].address, /^10\.216\.5\.\d+\/24$/);
    pods.push(p3);
  });

  it('DEL is idempotent and works without a lease', async () => {
    ok(await plugin('DEL', conf, { containerId: 'c3', netns: pods[2]!.path }), 'DEL c3');
    ok(await plugin('DEL', conf, { containerId: 'c3', netns: pods[2]!.path }), 'DEL c3 again');
    removeLeaseFile(runDir);
    ok(await plugin('DEL', conf, { containerId: 'c1', netns: pods[0]!.path }), 'DEL c1 without lease');
    assert.equal((await lab.ipJson(host, ['link', 'show', 'master', 'knit-ov0'])).length, 0);
    assert.deepEqual((await isolationState(lab, host, 'ovnet')).interfaces, [], 'isolation gone with the last pod');
    const left = fs.readdirSync(path.join(dataDir, 'ovnet')).filter((f) => /^\d/.test(f));
    assert.deepEqual(left, [], `reservations left: ${left.join(' ')}`);
  });

  it('a new subnet in the lease replaces the bridge gateway', async () => {
    writeLeaseFile(runDir, { network: '10.216.0.0/16', subnet: '10.216.9.0/24', mtu: 1450 });
    const pod = await lab.pod('ov-p4');
    const r = ok(await plugin('ADD', conf, { containerId: 'c4', netns: pod.path }), 'ADD c4').json;
    assert.equal(r.ips[0].address, '10.216.9.2/24');
    const [br] = await lab.ipJson(host, ['addr', 'show', 'dev', 'knit-ov0']);
    assert.deepEqual(br.addr_info.filter((a: any) => a.family === 'inet').map((a: any) => a.local), ['10.216.9.1']);
    ok(await plugin('DEL', conf, { containerId: 'c4', netns: pod.path }), 'DEL c4');
  });
});
