// Services, `knitctl ipam ls|gc` on the mesh (knitd --datastore mesh, docs/services.md "On the
// mesh"), no etcd anywhere: three lab hosts; `service create` on h1 goes to its knitd over
// mesh.sock and is put to the mesh's vote; the VIP balances connections over backends on h1 and
// h2 (knit-l2overlay containers from the rendered conflists) from clients on both hosts;
// `service ls/inspect/rm`, `ipam ls` and `dns ls` from h3, the name answered by knitd's resolver (no container there); a backend killed without
// DEL (its netns gone) is reclaimed by `knitctl ipam gc` on its host: address, endpoint and
// backend gone; `service rm` removes the maps everywhere and frees the VIP.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, requireRoot, type Netns } from '../lab/lab';
import { eventually, type KnitBuild } from '../lab/cni';
import { KnitdHosts, type KnitdHost } from '../lab/knitd-hosts';
import { conflistFile } from '../../pkg/network/conflist';
import { SERVICES_TABLE } from '../../pkg/service/lb';
import { connectEach, serveAnswer } from '../lab/answer';

const NET = '192.168.64';
const CLIENT = path.join(__dirname, '..', 'lab', 'dns-client.cjs');

type Node = KnitdHost;

describe('services and ipam ls|gc on the mesh (no etcd)', function () {
  this.timeout(180_000);
  let knit: KnitBuild;
  let lab: Lab;
  let tmp: string;
  let mesh: KnitdHosts;
  let nodes: Node[] = [];
  const servers: ChildProcess[] = [];
  const pods: Record<string, { ns: Netns; ip: string; node: Node; id: string }> = {};

  const ctl = (n: Node, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> => mesh.ctl(n, args, 60_000);
  const ok = async (n: Node, args: string[]): Promise<string> => {
    const r = await ctl(n, args);
    assert.equal(r.code, 0, `knitctl ${args.join(' ')} on ${n.name}: ${r.stderr}`);
    return r.stdout;
  };

  async function cni(n: Node, command: 'ADD' | 'DEL', id: string, name: string, pod: Netns): Promise<string> {
    await eventually(() => fs.existsSync(path.join(n.confDir, conflistFile('app'))), 10_000, `${n.name} conflist`);
    const cl = JSON.parse(fs.readFileSync(path.join(n.confDir, conflistFile('app')), 'utf8'));
    const conf = { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0] };
    const r = await lab.runPlugin(n.host, knit.bin(conf.type), {
      command, containerId: id, netns: pod.path, ifName: 'eth0', path: [knit.binDir], conf, args: `IgnoreUnknown=1;K8S_POD_NAME=${name}`,
      env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
    assert.equal(r.code, 0, `${command} ${id}: ${r.stdout} ${r.stderr}`);
    return command === 'ADD' ? String(r.json.ips[0].address).split('/')[0]! : '';
  }

  async function serve(pod: Netns, answer: string): Promise<void> {
    servers.push(await serveAnswer(pod, answer));
  }

  const connect = (pod: Netns, addr: string, port: number, count: number): Promise<string[]> => connectEach(lab, pod, addr, port, count);

  /** The backends in the nft map of service app/`name` on a node (null: no such map). */
  const mapOf = async (n: Node, name: string): Promise<string[] | null> => {
    const r = await lab.exec(n.host, 'nft', ['-j', 'list', 'table', 'inet', SERVICES_TABLE], { allowFail: true });
    if (r.code) return null;
    const m = (JSON.parse(r.stdout).nftables as any[]).find((x) => x.map?.comment === `knit service app/${name}`)?.map;
    return m ? (m.elem ?? []).map((e: any) => e[1]).sort() : null;
  };

  before(async function () {
    requireRoot(this);
    mesh = await KnitdHosts.open(['knitd', 'knitctl', 'knit-l2overlay', 'knit-bridge'], NET, 'knit-meshsvc-');
    ({ knit, lab, tmp } = mesh);
    nodes = await mesh.add(3);
    mesh.startAll();
    await mesh.sockets();
    await eventually(async () => JSON.parse((await ctl(nodes[0]!, ['status', 'peers', '--json'])).stdout).members.length === 3, 20_000, 'h1 knows 3 members');
    await ok(nodes[0]!, ['network', 'create', '-d', 'overlay', '--subnet', '10.88.0.0/24', '--ip-range', '10.88.0.0/25', 'app']);
    await eventually(() => nodes.every((n) => fs.existsSync(path.join(n.confDir, conflistFile('app')))), 10_000, 'conflist on every host');
  });

  after(async () => {
    for (const s of servers) s.kill('SIGKILL');
    await mesh?.cleanup();
  });

  afterEach(function () {
    mesh.printLogsIfFailed(this.currentTest?.state, 30);
  });

  it('service create on h1: the VIP balances to backends on h1 and h2 from both hosts; ls and inspect from h3; ipam ls lists blocks and attachments', async () => {
    for (const [key, node, name] of [['b1', nodes[0]!, 'api'], ['b2', nodes[1]!, 'api'], ['c1', nodes[0]!, 'client1'], ['c2', nodes[1]!, 'client2']] as const) {
      const ns = await lab.pod(key);
      const id = `${key}-${name}`;
      pods[key] = { ns, ip: await cni(node, 'ADD', id, name, ns), node, id };
    }
    await serve(pods.b1!.ns, 'b1');
    await serve(pods.b2!.ns, 'b2');
    const id = (await ok(nodes[0]!, ['service', 'create', 'api', '--network', 'app', '--port', 'tcp:80'])).trim();
    assert.match(id, /^[0-9a-f]{64}$/, 'create prints the service ID');
    // A second create of the name, from another host: etcd's message.
    const dup = await ctl(nodes[2]!, ['service', 'create', 'api', '--network', 'app']);
    assert.match(dup.stderr, /service api already exists on network app/);
    const [svc] = JSON.parse(await ok(nodes[2]!, ['service', 'inspect', 'api']));
    const vip = svc.Endpoint.VirtualIPs[0].Addr as string;
    assert.equal(svc.ID, id);
    assert.ok(Number(vip.split('.')[3]) < 128 && !Object.values(pods).some((p) => p.ip === vip), `the VIP ${vip} is from the ip-range and no container's`);
    assert.deepEqual(svc.Backends.map((b: any) => `${b.Host} ${b.Addresses[0].split('/')[0]}`).sort(), [`h1 ${pods.b1!.ip}`, `h2 ${pods.b2!.ip}`]);
    for (const n of [nodes[0]!, nodes[1]!]) await eventually(async () => JSON.stringify(await mapOf(n, 'api')) === JSON.stringify([pods.b1!.ip, pods.b2!.ip].sort()), 15_000, `${n.name} map of api`);
    await eventually(async () => JSON.parse(await ok(nodes[2]!, ['service', 'inspect', 'api']))[0].LoadBalancers.length === 3, 10_000, 'a load-balancer address per node');
    for (const c of ['c1', 'c2']) {
      const got = await connect(pods[c]!.ns, vip, 80, 12);
      assert.ok(got.every((g) => g === 'b1' || g === 'b2'), `${c}: every connection answered by a backend: ${got}`);
      assert.ok(got.includes('b1') && got.includes('b2'), `${c}: both backends reached: ${got}`);
    }
    const ls = await ok(nodes[2]!, ['service', 'ls']);
    assert.match(ls, new RegExp(`^${id.slice(0, 12)}\\s+api\\s+app\\s+vip\\s+${vip.replace(/\./g, '\\.')}\\s+80/tcp\\s+2$`, 'm'));
    // The names: the service's name answers its VIP in dns ls.
    const dns = JSON.parse(await ok(nodes[2]!, ['dns', 'ls', '--network', 'app', '--json'])) as Array<{ name: string; address: string }>;
    assert.ok(dns.some((r) => r.name === 'api' && r.address === vip), `dns ls has api -> ${vip}`);
    // ... and knitd's resolver on h2's gateway answers it from the replica.
    const dig = async (): Promise<string[]> => {
      const q = await lab.exec(pods.c2!.ns, process.execPath, [CLIENT, 'query', '10.88.0.1', 'api', 'A', 'udp'], { allowFail: true, env: { NODE_EXTRA_CA_CERTS: undefined } });
      try { return ((JSON.parse(q.stdout) as { answers?: Array<{ type: string; data: string }> }).answers ?? []).filter((x) => x.type === 'A').map((x) => x.data); } catch { return []; }
    };
    await eventually(async () => JSON.stringify(await dig()) === JSON.stringify([vip]), 10_000, 'api resolves to the VIP on h2\'s gateway');
    // ipam ls on h3: every node's blocks, the containers' addresses, the VIP and the LB addresses.
    const [l] = JSON.parse(await ok(nodes[2]!, ['ipam', 'ls', 'app', '--json']));
    assert.deepEqual([...new Set(l.blocks.map((b: any) => b.node))].sort(), ['h1', 'h2', 'h3']);
    for (const p of Object.values(pods)) assert.ok(l.ips.some((r: any) => r.ip === p.ip && r.node === p.node.name && r.containerId === p.id), `ipam ls has ${p.id} ${p.ip}`);
    assert.ok(l.ips.some((r: any) => r.ip === vip && r.node === 'h1' && r.containerId.startsWith('vip-api.')), 'ipam ls has the VIP on h1');
    const text = await ok(nodes[2]!, ['ipam', 'ls', '--network', 'app']);
    assert.match(text, /^network app: \d+ blocks, \d+ addresses, \d+ attachments$/m);
    assert.match(text, new RegExp(`^h2\\s+${pods.b2!.ip.replace(/\./g, '\\.')}\\s+b2-api\\s+eth0`, 'm'));
  });

  it('a backend killed without DEL is reclaimed by ipam gc on its host: address, endpoint and backend gone', async () => {
    const b2 = pods.b2!;
    // The container dies: its processes and its netns go (the kernel deletes its veth with it), no DEL.
    const srv = servers[1]!;
    if (srv.exitCode === null) { const done = new Promise((r) => srv.once('exit', r)); srv.kill('SIGKILL'); await done; }
    await lab.exec(null, 'ip', ['netns', 'del', b2.ns.name]);
    const notHere = await ok(nodes[0]!, ['ipam', 'gc', '--grace', '0', '--json']);
    assert.deepEqual(JSON.parse(notHere).released, [], 'h1: nothing of h1\'s is gone');
    assert.match((await ctl(nodes[1]!, ['ipam', 'gc', '--node', 'h1'])).stderr, /invalid --node "h1": on the mesh, ipam gc works on this node \(h2\) only/);
    await eventually(async () => {
      const r = JSON.parse(await ok(nodes[1]!, ['ipam', 'gc', '--grace', '1', '--json']));
      return r.released.some((x: any) => x.ip === b2.ip && x.containerId === b2.id);
    }, 20_000, 'h2 releases b2\'s address');
    const again = await ok(nodes[1]!, ['ipam', 'gc', '--grace', '1']);
    assert.match(again, /no attachment of a container that is gone on node h2: nothing to release/);
    await eventually(async () => !JSON.parse(await ok(nodes[2]!, ['ipam', 'ls', '--network', 'app', '--json']))[0].ips.some((r: any) => r.ip === b2.ip), 10_000, 'b2\'s address gone from ipam ls on h3');
    for (const n of [nodes[0]!, nodes[1]!]) await eventually(async () => JSON.stringify(await mapOf(n, 'api')) === JSON.stringify([pods.b1!.ip]), 10_000, `${n.name}: b2 left the map`);
    const [svc] = JSON.parse(await ok(nodes[2]!, ['service', 'inspect', 'api']));
    assert.deepEqual(svc.Backends.map((b: any) => b.Host), ['h1']);
    assert.ok((await connect(pods.c2!.ns, svc.Endpoint.VirtualIPs[0].Addr, 80, 4)).every((g) => g === 'b1'), 'every connection reaches b1');
  });

  it('network rm refused while the service exists; service rm from h3 removes the maps everywhere and frees the VIP', async () => {
    const rm = await ctl(nodes[2]!, ['network', 'rm', 'app']);
    assert.match(rm.stderr, /network app has service api: remove it first \(knitctl service rm\)/);
    await ok(nodes[2]!, ['service', 'rm', 'api']);
    assert.match((await ctl(nodes[2]!, ['service', 'rm', 'api'])).stderr, /no service named api/);
    for (const n of nodes) await eventually(async () => (await lab.exec(n.host, 'nft', ['list', 'table', 'inet', SERVICES_TABLE], { allowFail: true })).code !== 0, 10_000, `${n.name}: no services table`);
    await eventually(async () => !JSON.parse(await ok(nodes[2]!, ['ipam', 'ls', '--network', 'app', '--json']))[0].ips.some((r: any) => /^(vip|lb)-/.test(r.containerId)), 10_000, 'VIP and LB addresses freed');
    assert.equal((await ok(nodes[0]!, ['service', 'ls', '-q'])).trim(), '');
  });

  it('knitd\'s pod GC (--ipam-gc-interval, --ipam-gc-grace) reclaims a container gone without DEL and keeps a live one', async () => {
    const h3 = nodes[2]!;
    await mesh.stop(h3, 'SIGKILL');
    mesh.start(h3, [nodes[0]!], { extra: ['--ipam-gc-interval', '1', '--ipam-gc-grace', '1'] });
    await eventually(async () => (await ctl(h3, ['network', 'ls'])).code === 0, 20_000, 'h3 back');
    const live = await lab.pod('y');
    const gone = await lab.pod('z');
    const yIp = await cni(h3, 'ADD', 'y-live', 'live', live);
    const zIp = await cni(h3, 'ADD', 'z-gone', 'gone', gone);
    await lab.exec(null, 'ip', ['netns', 'del', gone.name]);
    await eventually(async () => !JSON.parse(await ok(nodes[0]!, ['ipam', 'ls', '--network', 'app', '--json']))[0].ips.some((r: any) => r.ip === zIp), 20_000, 'z\'s address reclaimed by h3\'s knitd');
    assert.match(h3.log.join(''), new RegExp(`ipam gc: network app: released ${zIp.replace(/\./g, '\\.')} of z-gone \\(eth0\\): container gone`));
    await new Promise((r) => setTimeout(r, 2500)); // two more passes
    const [l] = JSON.parse(await ok(nodes[0]!, ['ipam', 'ls', '--network', 'app', '--json']));
    assert.ok(l.ips.some((r: any) => r.ip === yIp && r.containerId === 'y-live'), 'the live container keeps its address');
  });
});
