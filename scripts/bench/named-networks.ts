// Named networks at scale: one real knitd (dist/bin/knitd) in a lab host, the endpoints of other
// hosts simulated in etcd (default 50 hosts x 200 endpoints on one overlay network). Measures:
//   - start: knitd exec to every remote endpoint's FDB entry in the kernel;
//   - new endpoint: an endpoint put into etcd to its FDB and neighbour entries, p50/p99;
//   - network create: a network stored in etcd (as knitctl network create does) to its conflist on the node, p50/p99;
//   - knitd RSS (VmRSS, VmHWM) and CPU seconds after all that.
//   node --import tsx scripts/bench/named-networks.ts [--hosts 50] [--per-host 200] [--samples 200] [--resync 60,1] [--out DIR]
// etcd runs in its own lab namespace on the underlay switch; the measuring part re-runs itself inside
// the agent's host namespace (`--inner`), so nothing touches the root netns.
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab } from '../../test/lab/lab';
import { EtcdCluster } from '../../test/lab/etcd';
import { arg, q, sleep } from './script';

const ROOT = path.resolve(__dirname, '../..');
const PREFIX = '/bench';


interface Row {
  hosts: number; endpoints: number; startMs: number; epP50: number; epP99: number; epMax: number;
  createP50: number; createP99: number; rssMiB: number; hwmMiB: number; cpuS: number;
  resyncSec: number; epMs: number[];
}


async function inner(): Promise<void> {
  const { EtcdClient } = await import('../../pkg/etcd/client');
  const { fdbList, linkFind, neighList, subscribe, withNetlink } = await import('../../pkg/netlink');
  const { buildNetwork } = await import('../../pkg/network/spec');
  const { conflistFile, vxlanName } = await import('../../pkg/network/conflist');
  const endpoint = arg('endpoint', '');
  const hosts = Number(arg('hosts', '50'));
  const perHost = Number(arg('per-host', '200'));
  const samples = Number(arg('samples', '50'));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-netscale-'));
  const confDir = path.join(tmp, 'net.d');
  const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 30_000 });
  const nets: import('../../pkg/network/spec').Network[] = [];
  const putNet = async (name: string, subnet: string): Promise<import('../../pkg/network/spec').Network> => {
    const n = buildNetwork({ name, driver: 'overlay', subnets: [subnet] }, nets, new Date(), 'c'.repeat(64));
    nets.push(n);
    await client.put(`${PREFIX}/networks/${name}`, JSON.stringify(n));
    return n;
  };
  const app = await putNet('app', '10.128.0.0/10');
  const hex = (x: number): string => (x & 0xff).toString(16).padStart(2, '0');
  const ep = (h: number, i: number): [string, string, string] => {
    const n = h * 1000 + i;
    const mac = `02:bb:${hex(h)}:${hex(i >> 8)}:${hex(i)}:01`;
    return [`${PREFIX}/endpoints/app/sim${h}/c${i}/eth0`, JSON.stringify({
      network: 'app', containerId: `c${i}`, ifName: 'eth0', node: `sim${h}`, nodeIp: `172.16.${h >> 8}.${h & 0xff}`, mac,
      ips: [`10.${128 + (n >> 16)}.${(n >> 8) & 0xff}.${n & 0xff}/10`], created: new Date().toISOString(),
    }), mac];
  };
  for (let h = 1; h <= hosts; h++) {
    const ops = [];
    for (let i = 0; i < perHost; i++) { const [k, v] = ep(h, i); ops.push({ put: { key: k, value: v } }); }
    for (let j = 0; j < ops.length; j += 100) await client.txn({ compare: [], success: ops.slice(j, j + 100) });
  }
  const dev = vxlanName(app.options.vni!);
  // Programmed = both entries: the FDB (where the MAC lives) and the neighbour (ARP answered locally).
  const fdbCount = (): number => withNetlink(null, (nl) => {
    const l = linkFind(nl, dev);
    return l ? Math.min(fdbList(nl, { link: l.index }).filter((f) => f.dst).length, neighList(nl, { link: l.index }).filter((n) => n.ip).length) : 0;
  });
  const hasMac = (mac: string): boolean => withNetlink(null, (nl) => { const l = linkFind(nl, dev); return !!l && fdbList(nl, { link: l.index }).some((f) => f.mac === mac); });
  const total = hosts * perHost;
  const t0 = Date.now();
  const knitd = spawn(path.join(ROOT, 'dist/bin/knitd'), ['--cni-socket-dir', path.join(tmp, 'cni'), '--etcd-endpoints', endpoint, '--etcd-prefix', PREFIX,
    '--node-name', 'agent', '--iface', 'eth0', '--resync-interval', arg('resync', '60'), '--run-dir', path.join(tmp, 'run'), '--state-dir', path.join(tmp, 'state'), '--cni-conf-dir', confDir, '--log-level', 'warn'],
  { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  while (fdbCount() < total) { if (Date.now() - t0 > 300_000) throw new Error(`only ${fdbCount()} of ${total} FDB and neighbour entries after 300 s`); await sleep(20); }
  const startMs = Date.now() - t0;
  // New endpoints: timed to the kernel's own FDB event for the MAC (no dump of 10,000 entries per poll,
  // which would compete with knitd for the CPU it is measured on); a dump confirms each at the end.
  const lat: number[] = [];
  let waiting: { mac: string; done: () => void } | null = null;
  const unsubscribe = subscribe({ neighbours: true }, (ev) => {
    // The neighbour entry is written after the FDB entry: its event means the endpoint is complete.
    if (ev.kind === 'neigh' && ev.type === 'new' && waiting && ev.neigh.mac === waiting.mac) waiting.done();
  });
  for (let s = 0; s < samples; s++) {
    const [k, v, mac] = ep(hosts + 1, s);
    const seen = new Promise<void>((resolve) => { waiting = { mac, done: resolve }; });
    const t = process.hrtime.bigint();
    await client.put(k, v);
    await Promise.race([seen, sleep(30_000).then(() => { throw new Error(`no FDB event for ${mac} within 30 s`); })]);
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    waiting = null;
    await sleep(20);
  }
  unsubscribe();
  for (let s = 0; s < samples; s++) if (!hasMac(ep(hosts + 1, s)[2])) throw new Error(`endpoint ${s} has no FDB entry`);
  const created: number[] = [];
  for (let s = 0; s < samples; s++) {
    const t = process.hrtime.bigint();
    await putNet(`n${s}`, `10.${10 + (s >> 8)}.${s & 0xff}.0/24`);
    while (!fs.existsSync(path.join(confDir, conflistFile(`n${s}`)))) await sleep(1);
    created.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const st = fs.readFileSync(`/proc/${knitd.pid}/status`, 'utf8');
  const kb = (f: string): number => Number(new RegExp(`${f}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) / 1024;
  const stat = fs.readFileSync(`/proc/${knitd.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const cpuS = (Number(stat[11]) + Number(stat[12])) / 100;
  knitd.kill('SIGKILL');
  client.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  const row: Row = {
    hosts, endpoints: total, startMs, epP50: q(lat, 0.5), epP99: q(lat, 0.99), epMax: Math.max(...lat),
    createP50: q(created, 0.5), createP99: q(created, 0.99), rssMiB: kb('VmRSS'), hwmMiB: kb('VmHWM'), cpuS,
    resyncSec: Number(arg('resync', '60')), epMs: lat.map((x) => Math.round(x * 10) / 10),
  };
  process.stdout.write(JSON.stringify(row));
}

async function outer(): Promise<void> {
  const samples = arg('samples', '200');
  const out = path.resolve(arg('out', path.join(ROOT, 'bench/results')));
  execFileSync(process.execPath, ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'ignore' });
  const rows: Row[] = [];
  // Default resync (60 s), and a full pass every second: the worst case for a new endpoint, which
  // may arrive while knitd walks every FDB and neighbour entry.
  for (const resync of arg('resync', '60,1').split(',')) {
    const lab = new Lab();
    let etcd: EtcdCluster | undefined;
    try {
      const sw = await lab.switch();
      const eh = await lab.host('etcd', sw, { address: '192.168.91.100/24' });
      const host = await lab.host('agent', sw, { address: '192.168.91.1/24' });
      etcd = await EtcdCluster.start({ netns: eh, host: '192.168.91.100' });
      const r = await lab.exec(host, process.execPath, ['--import', 'tsx', __filename, '--inner', '--endpoint', etcd.endpoints[0]!,
        '--hosts', arg('hosts', '50'), '--per-host', arg('per-host', '200'), '--samples', samples, '--resync', resync], { timeoutMs: 900_000, env: { NODE_EXTRA_CA_CERTS: undefined } });
      rows.push(JSON.parse(r.stdout) as Row);
    } finally {
      await etcd?.stop();
      await lab.cleanup();
    }
  }
  const md = [
    '# Named networks at scale', '',
    `${new Date().toISOString()} · ${os.hostname()} · ${os.cpus().length} CPUs · load ${os.loadavg()[0]!.toFixed(2)} · ${samples} samples`, '',
    'One knitd in a lab host; the endpoints of other hosts simulated in etcd on one overlay network. "start": knitd exec to every',
    'remote endpoint\'s FDB and neighbour entries in the kernel; "new endpoint": etcd put to its neighbour entry (written after',
    'its FDB entry); "create": a network stored in etcd to its conflist on the node; "resync": knitd\'s --resync-interval (1 s: a',
    'full pass over every entry each second, the worst case for a new endpoint). Goals: new endpoint p99 < 200 ms at 50 x 200,',
    'RSS < 200 MiB; create p99 < 1 s.', '',
    '| hosts x endpoints | resync (s) | start (ms) | new endpoint p50 (ms) | p99 (ms) | max (ms) | create p50 (ms) | create p99 (ms) | knitd RSS (MiB) | peak RSS (MiB) | knitd CPU (s) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((row) => `| ${row.hosts} x ${row.endpoints / row.hosts} | ${row.resyncSec} | ${row.startMs} | ${row.epP50.toFixed(1)} | ${row.epP99.toFixed(1)} | ${row.epMax.toFixed(1)} | ${row.createP50.toFixed(1)} | ${row.createP99.toFixed(1)} | ${row.rssMiB.toFixed(0)} | ${row.hwmMiB.toFixed(0)} | ${row.cpuS.toFixed(2)} |`),
    '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'named-networks.json'), JSON.stringify(rows, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'named-networks.md'), md);
  console.log(md);
}

if (process.argv.includes('--inner')) inner().catch((e) => { console.error(e); process.exit(1); });
else outer().catch((e) => { console.error(e); process.exit(1); });
