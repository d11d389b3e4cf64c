// Overlay agent at scale: N simulated nodes' leases in etcd (100, 1000, 5000 by default), one
// real knitd (dist/bin/knitd) in a lab host. Measures, per N:
//   - start: knitd exec to every peer's route in the kernel (the full program at start);
//   - new lease: a lease put into etcd to its route in the kernel, p50/p99 over --samples;
//   - knitd RSS (VmHWM, VmRSS) and CPU seconds after all that.
//   node --import tsx scripts/bench/overlay-scale.ts [--nodes 100,1000,5000] [--samples 50] [--out DIR]
// etcd runs in its own lab namespace on the underlay switch; the measuring part of this script
// re-runs itself inside the agent's host namespace (`--inner`), so nothing touches the root netns.
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab } from '../../test/lab/lab';
import { EtcdCluster } from '../../test/lab/etcd';
import { arg, q, sleep } from './script';

const ROOT = path.resolve(__dirname, '../..');


interface Row { nodes: number; startMs: number; newP50: number; newP99: number; newMax: number; rssMiB: number; hwmMiB: number; cpuS: number }


/** Inside the host netns: seed, start knitd, measure. */
async function inner(): Promise<void> {
  const { EtcdClient } = await import('../../pkg/etcd');
  const { routeList, withNetlink, KNIT_RTPROT } = await import('../../pkg/netlink');
  const endpoint = arg('endpoint', '');
  const n = Number(arg('n', '100'));
  const samples = Number(arg('samples', '50'));
  const prefix = arg('prefix', '/bench');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-ovscale-'));
  const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 30_000 });
  await client.put(`${prefix}/config`, JSON.stringify({ network: '10.0.0.0/8', subnetLen: 24, backend: { type: 'vxlan', vni: 1 } }));
  // Simulated node i holds 10.<1 + i/256>.<i%256>.0/24; the agent is steered to 10.0.0.0/24 (its state dir).
  const lease = (i: number): [string, string] => {
    const a = 1 + (i >> 8), b = i & 0xff;
    const hex = (x: number): string => (x & 0xff).toString(16).padStart(2, '0');
    return [`${prefix}/subnets/10.${a}.${b}.0-24`,
      JSON.stringify({ nodeName: `sim${i}`, underlayAddr: `172.16.${a}.${b}`, vtepMac: `02:aa:00:${hex(i >> 16)}:${hex(i >> 8)}:${hex(i)}`, backend: 'vxlan' })];
  };
  fs.mkdirSync(path.join(tmp, 'state'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'state', 'overlay-lease.json'), JSON.stringify({ nodeName: 'agent', network: '10.0.0.0/8', subnet: '10.0.0.0/24' }));
  for (let i = 0; i < n; i += 100) {
    const ops = [];
    for (let j = i; j < Math.min(n, i + 100); j++) { const [k, v] = lease(j); ops.push({ put: { key: k, value: v } }); }
    await client.txn({ compare: [], success: ops });
  }
  const count = (): number => withNetlink(null, (nl) => routeList(nl, { family: 4, protocol: KNIT_RTPROT }).length);
  const has = (dst: string): boolean => withNetlink(null, (nl) => routeList(nl, { family: 4, protocol: KNIT_RTPROT }).some((r) => r.dst === dst));
  const t0 = Date.now();
  const knitd = spawn(path.join(ROOT, 'dist/bin/knitd'), ['--cni-socket-dir', path.join(tmp, 'cni'), '--etcd-endpoints', endpoint, '--etcd-prefix', prefix,
    '--node-name', 'agent', '--iface', 'eth0', '--run-dir', path.join(tmp, 'run'), '--state-dir', path.join(tmp, 'state'), '--log-level', 'warn'],
  { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  while (count() < n) { if (Date.now() - t0 > 300_000) throw new Error(`only ${count()} of ${n} routes after 300 s`); await sleep(20); }
  const startMs = Date.now() - t0;
  const lat: number[] = [];
  for (let s = 0; s < samples; s++) {
    const [k, v] = lease(n + s);
    const dst = /subnets\/(.*)-24$/.exec(k)![1] + '/24';
    const t = process.hrtime.bigint();
    await client.put(k, v);
    while (!has(dst)) await sleep(2);
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    await sleep(20);
  }
  const st = fs.readFileSync(`/proc/${knitd.pid}/status`, 'utf8');
  const kb = (f: string): number => Number(new RegExp(`${f}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) / 1024;
  const stat = fs.readFileSync(`/proc/${knitd.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const cpuS = (Number(stat[11]) + Number(stat[12])) / 100; // utime + stime, in clock ticks of 10 ms
  knitd.kill('SIGKILL');
  client.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  const row: Row = { nodes: n, startMs, newP50: q(lat, 0.5), newP99: q(lat, 0.99), newMax: Math.max(...lat), rssMiB: kb('VmRSS'), hwmMiB: kb('VmHWM'), cpuS };
  process.stdout.write(JSON.stringify(row));
}

async function outer(): Promise<void> {
  const sizes = arg('nodes', '100,1000,5000').split(',').map(Number);
  const samples = arg('samples', '50');
  const out = path.resolve(arg('out', path.join(ROOT, 'bench/results')));
  execFileSync(process.execPath, ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'ignore' });
  const rows: Row[] = [];
  for (const n of sizes) {
    const lab = new Lab();
    let etcd: EtcdCluster | undefined;
    try {
      const sw = await lab.switch();
      const eh = await lab.host('etcd', sw, { address: '192.168.90.100/24' });
      const host = await lab.host('agent', sw, { address: '192.168.90.1/24' });
      etcd = await EtcdCluster.start({ netns: eh, host: '192.168.90.100' });
      const r = await lab.exec(host, process.execPath, ['--import', 'tsx', __filename, '--inner', '--endpoint', etcd.endpoints[0]!, '--n', String(n), '--samples', samples],
        { timeoutMs: 900_000, env: { NODE_EXTRA_CA_CERTS: undefined } });
      const row = JSON.parse(r.stdout) as Row;
      rows.push(row);
      console.log(JSON.stringify(row));
    } finally {
      await etcd?.stop();
      await lab.cleanup();
    }
  }
  const md = [
    '# Overlay agent at scale', '',
    `${new Date().toISOString()} · ${os.hostname()} · ${os.cpus().length} CPUs · load ${os.loadavg()[0]!.toFixed(2)} · ${samples} new-lease samples per size`, '',
    'Simulated nodes\' leases in etcd (in a lab namespace), one knitd (vxlan) in a lab host. "start": knitd exec to every peer\'s',
    'route in the kernel; "new lease": etcd put to the route in the kernel. Goal: new lease programmed < 1 s p99 at 5000 nodes.', '',
    '| nodes | start (ms) | new lease p50 (ms) | p99 (ms) | max (ms) | knitd RSS (MiB) | peak RSS (MiB) | knitd CPU (s) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.nodes} | ${r.startMs} | ${r.newP50.toFixed(1)} | ${r.newP99.toFixed(1)} | ${r.newMax.toFixed(1)} | ${r.rssMiB.toFixed(0)} | ${r.hwmMiB.toFixed(0)} | ${r.cpuS.toFixed(2)} |`),
    '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'overlay-scale.json'), JSON.stringify(rows, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'overlay-scale.md'), md);
  console.log(md);
}

if (process.argv.includes('--inner')) inner().catch((e) => { console.error(e); process.exit(1); });
else outer().catch((e) => { console.error(e); process.exit(1); });
