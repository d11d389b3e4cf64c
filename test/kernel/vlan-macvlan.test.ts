// knit-macvlan on 802.1Q VLANs under a kernel with 8021q (the kernel lane): the seeds' second way
// across hosts. Lab: an underlay switch, hosts a and b and a router r on it by their uplink
// `ens33`; pods are namespaces wired by the knit-macvlan executable run "on" a host, addresses
// from knit-host-local (one data dir per host, disjoint ranges per host). `ip -json` is the
// oracle. The topology is built once; each test adds its own networks and pods.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, type Host, type Netns, type PluginOutput, type Switch } from '../lab/lab';
import { knitBinDir, outcome, requireExecutable, requireVlanKernel } from './lane';

const UPLINK = 'ens33';

interface NetSpec {
  name: string;
  vlan?: number;
  mode?: 'bridge' | 'private' | 'vepa' | 'passthru';
  /** /24 prefix, e.g. "10.100.0": gateway .1 (the router), host a .10-.49, host b .50-.89, c .90-.99 */
  net: string;
  master?: string;
}

describe('knit-macvlan on 802.1Q VLANs (kernel lane)', function () {
  this.timeout(180_000);
  let plugin: string;
  let lab: Lab;
  let tmp: string;
  let sw: Switch;
  let a: Host;
  let b: Host;
  let r: Host;
  const ranges: Record<string, [number, number]> = { a: [10, 49], b: [50, 89], c: [90, 99] };

  before(async function () {
    requireVlanKernel(this);
    plugin = requireExecutable(this, 'knit-macvlan');
    lab = new Lab();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-kernel-macvlan-'));
    sw = await lab.switch();
    [a, b, r] = [
      await lab.host('a', sw, { ifName: UPLINK }),
      await lab.host('b', sw, { ifName: UPLINK }),
      await lab.host('r', sw, { ifName: UPLINK }),
    ];
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const hostKey = (h: Host): string => h.name.slice(h.name.lastIndexOf('-') + 1);
  const runDir = (): string => path.join(tmp, 'run');

  function conf(h: Host, n: NetSpec): Record<string, unknown> {
    const [lo, hi] = ranges[hostKey(h)] ?? [100, 199];
    return {
      cniVersion: '1.1.0', name: n.name, type: 'knit-macvlan', master: n.master ?? UPLINK,
      ...(n.vlan ? { vlan: n.vlan } : {}), ...(n.mode ? { mode: n.mode } : {}),
      runDir: runDir(),
      ipam: {
        type: 'knit-host-local', dataDir: path.join(tmp, `ipam-${hostKey(h)}`),
        ranges: [[{ subnet: `${n.net}.0/24`, rangeStart: `${n.net}.${lo}`, rangeEnd: `${n.net}.${hi}`, gateway: `${n.net}.1` }]],
        routes: [{ dst: '0.0.0.0/0' }],
      },
    };
  }

  function call(h: Host, command: 'ADD' | 'DEL' | 'CHECK', n: NetSpec, cid: string, pod: Netns | null, ifName = 'eth0'): Promise<PluginOutput> {
    return lab.runPlugin(h, plugin, {
      command, conf: conf(h, n), containerId: cid, netns: pod?.path, ifName, path: [knitBinDir()],
      env: { KNIT_LOG_LEVEL: 'warn' },
    });
  }

  /** ADD that must succeed; returns the pod's IPv4 address. */
  async function add(h: Host, n: NetSpec, cid: string, pod: Netns, ifName = 'eth0'): Promise<string> {
    const o = await call(h, 'ADD', n, cid, pod, ifName);
    assert.equal(o.code, 0, `ADD ${cid} on ${hostKey(h)} (${n.name}): ${outcome(o)}`);
    return String(o.json.ips[0].address).split('/')[0]!;
  }

  async function del(h: Host, n: NetSpec, cid: string, pod: Netns | null, ifName = 'eth0'): Promise<void> {
    const o = await call(h, 'DEL', n, cid, pod, ifName);
    assert.equal(o.code, 0, `DEL ${cid} on ${hostKey(h)} (${n.name}): ${outcome(o)}`);
  }

  /** A link of ns by name, with details (undefined when absent). */
  async function link(ns: Netns, name: string): Promise<any> {
    const res = await lab.exec(null, 'ip', ['-n', ns.name, '-d', '-json', 'link', 'show', 'dev', name], { allowFail: true });
    if (res.code !== 0) {
      if (/does not exist/.test(res.stderr)) return undefined;
      throw new Error(`ip -n ${ns.name} link show dev ${name}: ${res.stderr.trim()}`);
    }
    return (JSON.parse(res.stdout) as any[])[0];
  }

  async function assertVlanLink(h: Host, vlan: number): Promise<any> {
    const l = await link(h, `${UPLINK}.${vlan}`);
    assert.ok(l, `${UPLINK}.${vlan} is missing on ${hostKey(h)}`);
    assert.equal(l.linkinfo?.info_kind, 'vlan');
    assert.equal(l.linkinfo?.info_data?.id, vlan);
    assert.equal(l.linkinfo?.info_data?.protocol, '802.1Q');
    assert.equal(l.link, UPLINK);
    return l;
  }

  /** The pod's interface is a macvlan whose parent is the host's <uplink>.<vlan>, in `mode`. */
  async function assertChild(h: Host, pod: Netns, vlan: number, mode = 'bridge', ifName = 'eth0'): Promise<void> {
    const parent = await assertVlanLink(h, vlan);
    const l = await link(pod, ifName);
    assert.ok(l, `${ifName} is missing from ${pod.name}`);
    assert.equal(l.linkinfo?.info_kind, 'macvlan', `${ifName} in ${pod.name}`);
    assert.equal(l.linkinfo?.info_data?.mode, mode);
    assert.equal(l.link_index, parent.ifindex, `${ifName} in ${pod.name} is not a child of ${UPLINK}.${vlan}`);
  }

  /** One ping; resolves to its TTL (undefined when no answer). */
  async function pingTtl(from: Netns, addr: string): Promise<number | undefined> {
    const res = await lab.exec(from, 'ping', ['-c', '1', '-W', '2', addr], { allowFail: true, timeoutMs: 10_000 });
    const m = /ttl=(\d+)/.exec(res.stdout);
    return res.code === 0 && m ? Number(m[1]) : undefined;
  }

  const V100: NetSpec = { name: 'v100', vlan: 100, net: '10.100.0' };
  const V200: NetSpec = { name: 'v200', vlan: 200, net: '10.200.0' };
  const pods: Record<string, { pod: Netns; ip: string }> = {};

  it('VLAN 100: pods on two hosts ping each other over the sub-interfaces knit created', async () => {
    assert.equal(await link(a, `${UPLINK}.100`), undefined, 'precondition: no sub-interface yet');
    for (const [h, id] of [[a, 'a100'], [b, 'b100']] as const) {
      const pod = await lab.pod(id);
      pods[id] = { pod, ip: await add(h, V100, id, pod) };
      await assertChild(h, pod, 100);
    }
    assert.ok(await lab.ping(pods.a100!.pod, pods.b100!.ip), 'a100 -> b100');
    assert.ok(await lab.ping(pods.b100!.pod, pods.a100!.ip), 'b100 -> a100');
  });

  it('VLAN 200: pods reach each other but not VLAN 100', async () => {
    for (const [h, id] of [[a, 'a200'], [b, 'b200']] as const) {
      const pod = await lab.pod(id);
      pods[id] = { pod, ip: await add(h, V200, id, pod) };
      await assertChild(h, pod, 200);
    }
    assert.ok(await lab.ping(pods.a200!.pod, pods.b200!.ip), 'a200 -> b200');
    assert.ok(await lab.ping(pods.b200!.pod, pods.a200!.ip), 'b200 -> a200');
    // Layer 2 isolation, independent of any router: give b200 an address in VLAN 100's subnet;
    // the connected route sends straight out on VLAN 200, where no VLAN 100 pod can answer.
    await lab.ip(pods.b200!.pod, ['addr', 'add', '10.100.0.250/24', 'dev', 'eth0']);
    try {
      // (Unanswered pings wait: run them side by side.)
      const [toA, toB] = await Promise.all([lab.ping(pods.b200!.pod, pods.a100!.ip), lab.ping(pods.b200!.pod, pods.b100!.ip)]);
      assert.ok(!toA, 'a VLAN 200 pod reached a VLAN 100 pod at layer 2');
      assert.ok(!toB, 'a VLAN 200 pod reached a VLAN 100 pod on its own host');
    } finally {
      await lab.ip(pods.b200!.pod, ['addr', 'del', '10.100.0.250/24', 'dev', 'eth0']);
    }
  });

  it('a router namespace with .100/.200 sub-interfaces as gateways routes between the VLANs', async () => {
    for (const [vlan, gw] of [[100, '10.100.0.1/24'], [200, '10.200.0.1/24']] as const) {
      const dev = `${UPLINK}.${vlan}`;
      await lab.ip(r, ['link', 'add', 'link', UPLINK, 'name', dev, 'type', 'vlan', 'id', String(vlan)]);
      await lab.ip(r, ['addr', 'add', gw, 'dev', dev]);
      await lab.ip(r, ['link', 'set', dev, 'up']);
    }
    await lab.exec(r, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    for (const [id, gw] of [['a100', '10.100.0.1'], ['b100', '10.100.0.1'], ['a200', '10.200.0.1'], ['b200', '10.200.0.1']]) {
      const routes = await lab.ipJson<any[]>(pods[id]!.pod, ['route', 'show', 'default']);
      assert.deepEqual(routes.map((x) => x.gateway), [gw], `default route of ${id}`);
    }
    // TTL 63: exactly one router between them.
    assert.equal(await pingTtl(pods.a100!.pod, pods.b200!.ip), 63, 'a100 -> b200 through the router');
    assert.equal(await pingTtl(pods.b200!.pod, pods.a100!.ip), 63, 'b200 -> a100 through the router');
    assert.equal(await pingTtl(pods.a200!.pod, pods.b100!.ip), 63, 'a200 -> b100 through the router');
    // Same VLAN stays one hop.
    assert.equal(await pingTtl(pods.a100!.pod, pods.b100!.ip), 64, 'a100 -> b100 directly');
  });

  it('private mode blocks child-to-child on a VLAN parent; bridge mode allows it', async () => {
    const PRIV: NetSpec = { name: 'priv', vlan: 300, mode: 'private', net: '10.30.0' };
    const BRG: NetSpec = { name: 'brg', vlan: 400, mode: 'bridge', net: '10.40.0' };
    const ip: Record<string, string> = {};
    const ns: Record<string, Netns> = {};
    for (const [h, n, id] of [[a, PRIV, 'p1'], [a, PRIV, 'p2'], [b, PRIV, 'p3'], [a, BRG, 'q1'], [a, BRG, 'q2']] as const) {
      ns[id] = await lab.pod(id);
      ip[id] = await add(h, n, id, ns[id]!);
      await assertChild(h, ns[id]!, n.vlan!, n.mode);
    }
    const [p12, p21, p13, q12, q21] = await Promise.all([
      lab.ping(ns.p1!, ip.p2!), lab.ping(ns.p2!, ip.p1!), lab.ping(ns.p1!, ip.p3!), lab.ping(ns.q1!, ip.q2!), lab.ping(ns.q2!, ip.q1!),
    ]);
    assert.ok(!p12, 'private: p1 reached p2, a child of the same parent');
    assert.ok(!p21, 'private: p2 reached p1, a child of the same parent');
    assert.ok(p13, 'private still reaches the wire: p1 (host a) -> p3 (host b)');
    assert.ok(q12, 'bridge: q1 -> q2 on the same parent');
    assert.ok(q21, 'bridge: q2 -> q1 on the same parent');
  });

  it('the last DEL removes a sub-interface knit created; DELs before it keep it', async () => {
    const N: NetSpec = { name: 'last', vlan: 500, net: '10.50.0' };
    const [x1, x2] = [await lab.pod('x1'), await lab.pod('x2')];
    await add(b, N, 'x1', x1);
    await add(b, N, 'x2', x2);
    await assertVlanLink(b, 500);
    await del(b, N, 'x1', x1);
    await assertChild(b, x2, 500); // x2 keeps its parent and its interface
    assert.equal(await link(x1, 'eth0'), undefined, 'x1 still has eth0 after DEL');
    await del(b, N, 'x2', x2);
    assert.equal(await link(b, `${UPLINK}.500`), undefined, `${UPLINK}.500 outlived its last knit child`);
    await del(b, N, 'x2', null); // idempotent, also without the netns
  });

  it('a sub-interface that existed before knit is kept after the last DEL', async () => {
    const N: NetSpec = { name: 'pre', vlan: 600, net: '10.60.0' };
    await lab.ip(b, ['link', 'add', 'link', UPLINK, 'name', `${UPLINK}.600`, 'type', 'vlan', 'id', '600']);
    await lab.ip(b, ['link', 'set', `${UPLINK}.600`, 'up']);
    const before = await assertVlanLink(b, 600);
    const y1 = await lab.pod('y1');
    await add(b, N, 'y1', y1);
    await assertChild(b, y1, 600);
    await del(b, N, 'y1', y1);
    const after = await assertVlanLink(b, 600);
    assert.equal(after.ifindex, before.ifindex, 'the pre-existing sub-interface was replaced');
  });

  it('a concurrent ADD never loses its sub-interface to a racing DEL', async () => {
    // Each round DELs the previous round's pods (the parent's only children, so each DEL may
    // decide it is the last) while ADDs for new containers on the same VLAN run. Every ADD must
    // succeed and its pod must keep a live macvlan on <uplink>.700 that reaches the router.
    const N: NetSpec = { name: 'race', vlan: 700, net: '10.70.0' };
    await lab.ip(r, ['link', 'add', 'link', UPLINK, 'name', `${UPLINK}.700`, 'type', 'vlan', 'id', '700']);
    await lab.ip(r, ['addr', 'add', '10.70.0.1/24', 'dev', `${UPLINK}.700`]);
    await lab.ip(r, ['link', 'set', `${UPLINK}.700`, 'up']);
    const ROUNDS = Number(process.env.KNIT_KERNEL_RACE_ROUNDS || 4);
    const K = 2;
    const pool = [await lab.pod('z0'), await lab.pod('z1'), await lab.pod('z2'), await lab.pod('z3')];
    let live: Array<{ cid: string; pod: Netns }> = [];
    const problems: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const fresh = pool.slice((round % 2) * K, (round % 2) * K + K).map((pod, i) => ({ cid: `r${round}c${i}`, pod }));
      const outs = await Promise.all([
        ...fresh.map((p) => call(a, 'ADD', N, p.cid, p.pod).then((o) => ({ verb: 'ADD', p, o }))),
        ...live.map((p) => call(a, 'DEL', N, p.cid, p.pod).then((o) => ({ verb: 'DEL', p, o }))),
      ]);
      for (const { verb, p, o } of outs) if (o.code !== 0) problems.push(`round ${round}: ${verb} ${p.cid} ${outcome(o)}`);
      for (const p of fresh) {
        const l = await link(p.pod, 'eth0');
        if (!l) { problems.push(`round ${round}: ${p.cid} lost its interface`); continue; }
        if (!(await lab.ping(p.pod, '10.70.0.1'))) problems.push(`round ${round}: ${p.cid} cannot reach the router on VLAN 700`);
      }
      assert.deepEqual(problems, [], problems.join('\n'));
      live = fresh;
    }
    for (const p of live) await del(a, N, p.cid, p.pod);
    assert.equal(await link(a, `${UPLINK}.700`), undefined, `${UPLINK}.700 outlived its last knit child`);
  });

  it('DEL of the last VLAN 100 and 200 pods removes those sub-interfaces and their state', async () => {
    for (const [h, n, id] of [[a, V100, 'a100'], [b, V100, 'b100'], [a, V200, 'a200'], [b, V200, 'b200']] as const) {
      await del(h, n, id, pods[id]!.pod);
      assert.equal(await link(pods[id]!.pod, 'eth0'), undefined, `${id} still has eth0 after DEL`);
    }
    for (const h of [a, b]) {
      for (const dev of [`${UPLINK}.100`, `${UPLINK}.200`]) assert.equal(await link(h, dev), undefined, `${dev} left on ${hostKey(h)}`);
    }
    // Reference counts: no directory of those parents remains (<runDir>/macvlan/ns<inode>/<parent>).
    const state = path.join(runDir(), 'macvlan');
    const left = (fs.existsSync(state) ? fs.readdirSync(state, { recursive: true }) as string[] : [])
      .filter((f) => /(^|\/)ens33\.(100|200)(\/|$)/.test(f));
    assert.deepEqual(left, [], `knit state left in ${state}`);
  });

  it("creates the pod's eth0 when the host's uplink is eth0 too (the usual names)", async () => {
    // 6.1's RTM_NEWLINK looks the new link's name up in the namespace that sends the request,
    // even when IFLA_NET_NS_FD creates it in another one: with NLM_F_EXCL a pod's "eth0" made from
    // a host that has an "eth0" fails with EEXIST (later kernels, e.g. 6.18, look in the target
    // namespace). A plugin must use a temporary name and rename the link inside the pod.
    const c = await lab.host('c', sw); // uplink eth0
    const N: NetSpec = { name: 'eth0name', vlan: 800, net: '10.80.0', master: 'eth0' };
    const pod = await lab.pod('e1');
    const o = await call(c, 'ADD', N, 'e1', pod);
    assert.equal(o.code, 0, `ADD with CNI_IFNAME eth0 on a host with master eth0: ${outcome(o)}`);
    const l = await link(pod, 'eth0');
    assert.equal(l?.linkinfo?.info_kind, 'macvlan');
    await del(c, N, 'e1', pod);
    assert.equal(await link(c, 'eth0.800'), undefined);
  });
});
