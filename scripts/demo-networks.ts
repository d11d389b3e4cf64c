// The named-network part of `npm run demo`, Docker's model: etcd on an underlay switch, knitd on
// two lab hosts, `knitctl network create` run once on one of them (Docker's documented example),
// the conflists that appear on both hosts, containers on two overlay networks across the hosts,
// isolation between the networks, one container on both, names across hosts (knitd's resolver),
// a service VIP balanced over two containers on two hosts,
// and `knitctl network inspect`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../test/lab/lab';
import { EtcdCluster, haveEtcd } from '../test/lab/etcd';
import { BIN, indent, step } from './demo-ui';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function networksDemo(): Promise<void> {
  step('named networks (Docker\'s model): knitd on two hosts, networks created once in etcd');
  if (!haveEtcd()) { console.log(indent('skipped: needs Debian etcd-server (scripts/bootstrap installs it)')); return; }
  const lab = new Lab();
  const tmp = mkdtempSync(join(tmpdir(), 'knit-demo-networks-'));
  const agents: ChildProcess[] = [];
  let etcd: EtcdCluster | undefined;
  try {
    const sw = await lab.switch();
    const etcdHost = await lab.host('etcd', sw, { address: '192.168.78.100/24' });
    etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.78.100' });
    const ep = etcd.endpoints[0]!;
    const hosts = [await lab.host('nn1', sw, { address: '192.168.78.1/24' }), await lab.host('nn2', sw, { address: '192.168.78.2/24' })];
    const dir = (i: number, what: string): string => join(tmp, `nn${i + 1}`, what);
    for (const [i, h] of hosts.entries()) {
      agents.push(spawn('ip', ['netns', 'exec', h.name, join(BIN, 'knitd'), '--cni-socket-dir', dir(i, 'cni'), '--etcd-endpoints', ep, '--node-name', `nn${i + 1}`,
        '--iface', 'eth0', '--run-dir', dir(i, 'run'), '--state-dir', dir(i, 'state'), '--cni-conf-dir', dir(i, 'net.d')], { stdio: 'ignore', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } }));
    }
    for (let i = 0; i < hosts.length; i++) {
      for (let t = 0; !existsSync(join(dir(i, 'run'), 'networks', 'node.json')); t++) { if (t > 300) throw new Error('knitd did not start'); await sleep(100); }
    }
    const ctl = async (...args: string[]): Promise<string> => {
      const r = await lab.exec(hosts[0]!, join(BIN, 'knitctl'), ['--etcd-endpoints', ep, ...args], { env: { NODE_EXTRA_CA_CERTS: undefined }, allowFail: true });
      return (r.stdout + r.stderr).trimEnd();
    };
    const create = ['network', 'create', '-d', 'overlay', '--subnet', '192.168.0.0/16', '--subnet', '192.170.0.0/16', '--gateway', '192.168.0.100', '--gateway', '192.170.0.100',
      '--ip-range', '192.168.1.0/24', '--aux-address', 'my-router=192.168.1.5', '--aux-address', 'my-switch=192.168.1.16', 'myoverlaynet'];
    console.log(indent(`$ knitctl ${create.join(' ')}\n${await ctl(...create)}`));
    console.log(indent(`$ knitctl network create -d overlay --subnet 10.70.0.0/24 backend\n${await ctl('network', 'create', '-d', 'overlay', '--subnet', '10.70.0.0/24', 'backend')}`));
    console.log(indent(`$ knitctl network create -d overlay --subnet 10.70.0.0/25 clash\n${await ctl('network', 'create', '-d', 'overlay', '--subnet', '10.70.0.0/25', 'clash')}`));
    console.log(indent(`$ knitctl network ls\n${await ctl('network', 'ls')}`));
    for (let t = 0; ![0, 1].every((i) => ['myoverlaynet', 'backend'].every((n) => existsSync(join(dir(i, 'net.d'), `knit-${n}.conflist`)))); t++) {
      if (t > 100) throw new Error('conflists did not appear'); await sleep(50);
    }
    step('on each host, with no step there: the conflists (what podman --network finds) and the devices');
    for (const [i, h] of hosts.entries()) {
      console.log(indent(`${h.name}: ${(await lab.exec(null, 'ls', [dir(i, 'net.d')])).stdout.trim().split('\n').join('  ')}`));
      console.log(indent(await lab.ip(h, ['-br', 'link', 'show', 'type', 'vxlan'])));
    }
    const cl = JSON.parse(readFileSync(join(dir(0, 'net.d'), 'knit-myoverlaynet.conflist'), 'utf8'));
    console.log(indent(`knit-myoverlaynet.conflist: plugins ${cl.plugins.map((p: { type: string }) => p.type).join(' + ')}, vni ${cl.plugins[0].vni}, ipam ranges ${JSON.stringify(cl.plugins[0].ipam.ranges)}, exclude ${JSON.stringify(cl.plugins[0].ipam.exclude)}`));

    const add = async (i: number, net: string, id: string, pod: Netns, ifName = 'eth0', aliases: string[] = []): Promise<string> => {
      const c = JSON.parse(readFileSync(join(dir(i, 'net.d'), `knit-${net}.conflist`), 'utf8'));
      const r = await lab.runPlugin(hosts[i]!, join(BIN, c.plugins[0].type), {
        command: 'ADD', containerId: id, netns: pod.path, ifName, path: [BIN],
        conf: { cniVersion: c.cniVersion, name: c.name, ...c.plugins[0], ...(aliases.length ? { runtimeConfig: { aliases: { [net]: aliases } } } : {}) },
        args: `IgnoreUnknown=1;K8S_POD_NAME=${id}`, env: { KNIT_CNI_SOCKET_DIR: join(tmp, 'none') },
      });
      if (r.code !== 0) throw new Error(`ADD ${id} failed: ${r.stdout || r.stderr}`);
      return String(r.json.ips[0].address).split('/')[0]!;
    };
    step('containers: web1 on nn1 and web2 on nn2 (myoverlaynet, alias web), db1 on nn1 (backend), api on nn2 on both');
    const pods = { web1: await lab.pod('web1'), web2: await lab.pod('web2'), db1: await lab.pod('db1'), api: await lab.pod('api') };
    const ip = {
      web1: await add(0, 'myoverlaynet', 'web1', pods.web1, 'eth0', ['web']), web2: await add(1, 'myoverlaynet', 'web2', pods.web2, 'eth0', ['web']),
      db1: await add(0, 'backend', 'db1', pods.db1), api: await add(1, 'myoverlaynet', 'api', pods.api),
    };
    const apiDb = await add(1, 'backend', 'api', pods.api, 'eth1');
    console.log(indent(`web1 ${ip.web1}, web2 ${ip.web2} (the ip-range, never an aux address), db1 ${ip.db1}, api ${ip.api} and ${apiDb}`));
    await sleep(300);
    const ping = async (from: Netns, to: string): Promise<string> => ((await lab.ping(from, to, 1)) ? 'reaches' : 'cannot reach');
    console.log(indent(`web1 (nn1) ${await ping(pods.web1, ip.web2)} web2 (nn2) across the VXLAN underlay`));
    console.log(indent(`db1 (backend, nn1) ${await ping(pods.db1, ip.web1)} web1 (myoverlaynet, same host): isolation`));
    console.log(indent(`api (both networks) ${await ping(pods.api, ip.web1)} web1 and ${await ping(pods.api, ip.db1)} db1`));
    step('FDB and neighbour entries knitd programmed on nn1 for the containers on nn2 (no flooding, proxy ARP)');
    const vni = cl.plugins[0].vni;
    console.log(indent((await lab.exec(hosts[0]!, 'bridge', ['fdb', 'show', 'dev', `knv${vni}`])).stdout.split('\n').filter((l) => l.includes('dst')).join('\n')));
    console.log(indent(await lab.ip(hosts[0]!, ['neigh', 'show', 'dev', `knv${vni}`])));
    step('names across hosts: knitd answers DNS on the gateway (docs/dns.md); api on nn2 asks for web1 on nn1, db1 on backend');
    const lookup = async (name: string): Promise<string> => {
      let out = '';
      for (let t = 0; t < 20; t++) {
        const r = await lab.exec(pods.api, 'busybox', ['nslookup', name, '192.168.0.100'], { allowFail: true });
        out = (r.stdout + r.stderr).trim();
        if (r.code === 0 || /NXDOMAIN/.test(out)) break;
        await sleep(200);
      }
      return [...new Set(out.split('\n').filter((l) => /Name:|Address: (?!192\.168\.0\.100)|NXDOMAIN|can't/.test(l)))].join('  ');
    };
    for (const name of ['web1', 'web', 'db1', 'web1.myoverlaynet.knit', 'nosuch']) console.log(indent(`$ nslookup ${name}   (from api)   ${await lookup(name)}`));
    console.log(indent(`$ knitctl dns ls\n${await ctl('dns', 'ls')}`));
    step('a service VIP (swarm\'s endpoint mode vip, docs/services.md): web on tcp:80, balanced by knitd on every host over the containers aliased web');
    const servers: ChildProcess[] = [];
    try {
      for (const [name, pod] of [['web1', pods.web1], ['web2', pods.web2]] as const) {
        const p = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', `require('net').createServer((s) => s.end('${name}\\n')).listen(80, () => console.log('up'))`],
          { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
        servers.push(p);
        await new Promise<void>((res) => { p.stdout!.once('data', () => res()); p.once('exit', () => res()); });
      }
      console.log(indent(`$ knitctl service create web --network myoverlaynet --port tcp:80\n${await ctl('service', 'create', 'web', '--network', 'myoverlaynet', '--port', 'tcp:80')}`));
      const svc = JSON.parse(await ctl('service', 'inspect', 'web'))[0];
      const vip = String(svc.Endpoint.VirtualIPs[0].Addr).split('/')[0]!;
      console.log(indent(`$ knitctl service ls\n${await ctl('service', 'ls')}`));
      console.log(indent(`$ nslookup web   (from api)   ${await lookup('web')}   (the name now answers with the VIP)`));
      const answers: string[] = [];
      for (let t = 0; t < 50 && !(answers.includes('web1') && answers.includes('web2')); t++) {
        const r = await lab.exec(pods.api, 'busybox', ['nc', '-w', '2', vip, '80'], { allowFail: true, input: '' });
        answers.push(r.stdout.trim() || '(no answer)');
        if (!r.stdout.trim()) await sleep(200);
      }
      console.log(indent(`connections from api to ${vip}:80, one after the other, answered by: ${answers.join(' ')}`));
      console.log(indent(`$ knitctl service rm web\n${await ctl('service', 'rm', 'web')}`));
    } finally {
      for (const p of servers) p.kill('SIGTERM');
    }
    step('knitctl network inspect myoverlaynet (Docker\'s shape, every container on every host)');
    const ins = JSON.parse(await ctl('network', 'inspect', 'myoverlaynet'))[0];
    console.log(indent(JSON.stringify({ Name: ins.Name, Driver: ins.Driver, IPAM: ins.IPAM, Containers: ins.Containers, Options: ins.Options, Peers: ins.Peers }, null, 1).replace(/\n\s*/g, ' ')));
    console.log(indent(`$ knitctl network rm myoverlaynet\n${await ctl('network', 'rm', 'myoverlaynet')}`));
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await etcd?.stop();
    await lab.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) networksDemo().catch((e) => { console.error(e); process.exit(1); });
