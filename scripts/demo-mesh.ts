// The mesh part of `npm run demo`, weave's model (docs/mesh.md): knitd on three lab hosts with no
// etcd at all, each told only its predecessor; `knitctl status peers` shows the mesh; a named
// overlay network created on one host is put to the mesh's vote and appears on every host; pods on
// two hosts get addresses from per-node blocks (knit-mesh-ipam), ping across hosts and find each
// other by name; a conflicting create is refused.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Host, type Netns } from '../test/lab/lab';
import { BIN, indent, step } from './demo-ui';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function meshDemo(): Promise<void> {
  step('no datastore (weave\'s model): knitd --datastore mesh on three hosts, each told only the previous one');
  const lab = new Lab();
  const tmp = mkdtempSync(join(tmpdir(), 'knit-demo-mesh-'));
  const agents: ChildProcess[] = [];
  try {
    const pw = join(tmp, 'mesh-password');
    writeFileSync(pw, 'a long random secret\n', { mode: 0o600 });
    const sw = await lab.switch();
    const hosts: Host[] = [];
    for (let i = 1; i <= 3; i++) hosts.push(await lab.host(`m${i}`, sw, { address: `192.168.79.${i}/24` }));
    const dir = (i: number, what: string): string => join(tmp, `m${i + 1}`, what);
    for (const [i, h] of hosts.entries()) {
      const args = ['--datastore', 'mesh', '--mesh-password-file', pw, ...(i ? ['--peers', `192.168.79.${i}`] : []), '--node-name', `m${i + 1}`, '--iface', 'eth0',
        '--cni-socket-dir', dir(i, 'cni'), '--run-dir', dir(i, 'run'), '--state-dir', dir(i, 'state'), '--cni-conf-dir', dir(i, 'net.d')];
      console.log(indent(`${h.name}$ knitd ${args.map((a) => a.startsWith(tmp) ? a.replace(tmp, '$D') : a).join(' ')}`));
      agents.push(spawn('ip', ['netns', 'exec', h.name, join(BIN, 'knitd'), ...args], { stdio: 'ignore', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } }));
    }
    const ctl = async (i: number, ...args: string[]): Promise<{ out: string; code: number }> => {
      const r = await lab.exec(hosts[i]!, join(BIN, 'knitctl'), [...args, '--run-dir', dir(i, 'run')], { env: { NODE_EXTRA_CA_CERTS: undefined, KNIT_ETCD_ENDPOINTS: undefined }, allowFail: true });
      return { out: (r.stdout + r.stderr).trimEnd(), code: r.code };
    };
    for (let t = 0; ; t++) {
      const peers = await ctl(2, 'status', 'peers', '--json');
      if (peers.code === 0 && ((JSON.parse(peers.out).peers ?? JSON.parse(peers.out).members ?? []) as unknown[]).length >= 3) break;
      if (t > 150) break;
      await sleep(200);
    }
    console.log(indent(`m3$ knitctl status peers\n${(await ctl(2, 'status', 'peers')).out}`));
    console.log(indent(`m3$ knitctl status connections\n${(await ctl(2, 'status', 'connections')).out}`));

    step('a named network on the mesh: created on m1 by a majority\'s votes, on every host within a second');
    const create = ['network', 'create', '-d', 'overlay', '--subnet', '10.79.0.0/24', '--ip-range', '10.79.0.64/26', '--aux-address', 'router=10.79.0.65', 'app'];
    let made = await ctl(0, ...create);
    for (let t = 0; made.code !== 0 && t < 20; t++) { await sleep(500); made = await ctl(0, ...create); }
    console.log(indent(`m1$ knitctl ${create.join(' ')}\n${made.out}`));
    console.log(indent(`m3$ knitctl network create -d overlay --subnet 10.79.0.128/25 clash\n${(await ctl(2, 'network', 'create', '-d', 'overlay', '--subnet', '10.79.0.128/25', 'clash')).out}`));
    for (let t = 0; ![0, 1, 2].every((i) => existsSync(join(dir(i, 'net.d'), 'knit-app.conflist'))); t++) { if (t > 100) throw new Error('conflists did not appear'); await sleep(50); }
    console.log(indent(`m2$ knitctl network ls\n${(await ctl(1, 'network', 'ls')).out}`));

    step('pods web on m1 and api on m2: addresses from each node\'s own blocks (never the aux address), ping and names across hosts');
    const add = async (i: number, id: string, pod: Netns): Promise<string> => {
      const cl = JSON.parse(readFileSync(join(dir(i, 'net.d'), 'knit-app.conflist'), 'utf8'));
      const r = await lab.runPlugin(hosts[i]!, join(BIN, cl.plugins[0].type), {
        command: 'ADD', containerId: id, netns: pod.path, ifName: 'eth0', path: [BIN], conf: { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0] },
        args: `IgnoreUnknown=1;K8S_POD_NAME=${id}`, env: { KNIT_CNI_SOCKET_DIR: join(tmp, 'none') },
      });
      if (r.code !== 0) throw new Error(`ADD ${id} failed: ${r.stdout || r.stderr}`);
      return String(r.json.ips[0].address).split('/')[0]!;
    };
    const web = await lab.pod('web');
    const api = await lab.pod('api');
    const ip = { web: await add(0, 'web', web), api: await add(1, 'api', api) };
    console.log(indent(`web ${ip.web} on m1, api ${ip.api} on m2`));
    let reached = false;
    for (let t = 0; t < 20 && !reached; t++) { reached = await lab.ping(api, ip.web, 1); if (!reached) await sleep(200); }
    console.log(indent(`api (m2) ${reached ? 'reaches' : 'cannot reach'} web (m1) across the VXLAN underlay`));
    const gw = JSON.parse(readFileSync(join(dir(1, 'net.d'), 'knit-app.conflist'), 'utf8')).plugins[0].ipam?.ranges?.[0]?.[0]?.gateway ?? '10.79.0.1';
    let ns = '';
    for (let t = 0; t < 20; t++) {
      const r = await lab.exec(api, 'busybox', ['nslookup', 'web', gw], { allowFail: true });
      ns = [...new Set((r.stdout + r.stderr).split('\n').filter((l) => /Name:|Address: (?!\d+\.\d+\.\d+\.\d+:53)|NXDOMAIN|can't/.test(l) && !l.includes(gw)))].join('  ');
      if (r.code === 0) break;
      await sleep(200);
    }
    console.log(indent(`$ nslookup web   (from api)   ${ns}`));
    console.log(indent(`m3$ knitctl dns ls\n${(await ctl(2, 'dns', 'ls')).out}`));
    console.log(indent(`m3$ knitctl network rm app\n${(await ctl(2, 'network', 'rm', 'app')).out}`));
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await lab.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) meshDemo().catch((e) => { console.error(e); process.exit(1); });
