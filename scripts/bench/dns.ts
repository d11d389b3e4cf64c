// knitd's resolver (docs/dns.md), beside dnsmasq: one real knitd (dist/bin/knitd) in a lab host with
// etcd on the underlay, one overlay network, a pod added by knit-l2overlay (its gateway is where
// knitd listens). Measures:
//   - visible: an endpoint record put into etcd (the last step of another host's ADD) to the name
//     answering on this host's gateway, p50/p99; gone: its delete to NXDOMAIN (goal p99 < 500 ms);
//   - churn: failed lookups of a stable name from the pod while 200 names are added and removed;
//   - answers: query to answer from the pod at 5,000 queries/s, p50/p99 (goal p99 < 2 ms), knitd
//     and dnsmasq (Debian's, serving the same names from a hosts file on another address of the
//     same bridge) interleaved, two rounds each; ratio knit/dnsmasq.
//   node --import tsx scripts/bench/dns.ts [--names 200] [--churn 200] [--qps 5000] [--seconds 10] [--out DIR]
// The measuring part re-runs itself inside the lab host (`--inner`): nothing touches the root netns.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab } from '../../test/lab/lab';
import { EtcdCluster } from '../../test/lab/etcd';
import { arg, q, sleep } from './script';

const ROOT = path.resolve(__dirname, '../..');
const PREFIX = '/benchdns';
const CLIENT = path.join(ROOT, 'test/lab/dns-client.cjs');
const SUBNET = '10.250.0.0/16';
const GW = '10.250.0.1';
const DNSMASQ_ADDR = '10.250.0.53';


interface Load { sent: number; answered: number; lost: number; failed: number; ms: number[] }
interface Result {
  names: number; churn: number; qps: number; seconds: number;
  visibleP50: number; visibleP99: number; visibleMax: number; goneP50: number; goneP99: number; goneMax: number;
  churnLookups: number; churnFailed: number; churnLost: number;
  rounds: Array<{ server: 'knitd' | 'dnsmasq'; p50: number; p99: number; max: number; sent: number; lost: number; failed: number }>;
  knitdCpuS: number; knitdRssMiB: number;
}

async function inner(): Promise<void> {
  const packet = await import('dns-packet');
  const { EtcdClient } = await import('../../pkg/etcd/client');
  const endpoint = arg('endpoint', '');
  const pod = arg('pod', '');
  const knitdPid = Number(arg('knitd-pid', '0'));
  const names = Number(arg('names', '200'));
  const churn = Number(arg('churn', '200'));
  const qps = Number(arg('qps', '5000'));
  const seconds = Number(arg('seconds', '10'));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-benchdns-'));
  const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 30_000 });
  const ip = (i: number): string => `10.250.${2 + Math.floor(i / 250)}.${(i % 250) + 1}`;
  const rec = (name: string, i: number): [string, string] => [`${PREFIX}/endpoints/app/sim1/${name}/eth0`, JSON.stringify({
    network: 'app', containerId: name, ifName: 'eth0', node: 'sim1', nodeIp: '192.168.92.9', mac: '02:cc:00:00:00:01', ips: [`${ip(i)}/16`], name, created: new Date().toISOString(),
  })];

  // Queries from the gateway address itself (in the network's subnet: a knit client), one socket.
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind({ address: GW, port: 0 }, () => r()));
  const waiting = new Map<number, (m: Buffer | null) => void>();
  sock.on('message', (m) => { const w = waiting.get(m.readUInt16BE(0)); if (w) { waiting.delete(m.readUInt16BE(0)); w(m); } });
  let nextId = 1;
  const ask = (name: string): Promise<{ rcode: number; answers: number } | null> => new Promise((resolve) => {
    const id = (nextId = (nextId + 1) & 0xffff);
    const t = setTimeout(() => { waiting.delete(id); resolve(null); }, 500);
    waiting.set(id, (m) => { clearTimeout(t); resolve(m ? { rcode: m.readUInt16BE(2) & 0xf, answers: m.readUInt16BE(6) } : null); });
    sock.send(packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name, class: 'IN' }] }), 53, GW);
  });
  /** Time until the name answers (or stops answering), polling every 2 ms. */
  const until = async (name: string, present: boolean, t0: bigint): Promise<number> => {
    for (;;) {
      const r = await ask(name);
      if (r && (present ? r.rcode === 0 && r.answers > 0 : r.rcode === 3)) return Number(process.hrtime.bigint() - t0) / 1e6;
      if (Number(process.hrtime.bigint() - t0) > 30e9) throw new Error(`${name} ${present ? 'never answered' : 'never went away'} in 30 s`);
      await sleep(2);
    }
  };

  // The stable names, also written as dnsmasq's hosts file.
  const hosts: string[] = [];
  for (let i = 0; i < names; i += 100) {
    const ops = [];
    for (let j = i; j < Math.min(names, i + 100); j++) { const [k, v] = rec(`r${j}`, j); ops.push({ put: { key: k, value: v } }); hosts.push(`${ip(j)} r${j}`); }
    await client.txn({ compare: [], success: ops });
  }
  await until(`r${names - 1}`, true, process.hrtime.bigint());

  // Churn: `churn` names added one by one, then removed, each timed; a stable name looked up meanwhile from the pod.
  const load = (server: string, name: string, rate: number, secs: number): { proc: ChildProcess; done: Promise<Load> } => {
    const proc = spawn('ip', ['netns', 'exec', pod, process.execPath, CLIENT, 'load', server, name, String(rate), String(secs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let outText = '';
    proc.stdout!.on('data', (d: Buffer) => { outText += d.toString(); });
    return { proc, done: new Promise((resolve, reject) => proc.once('exit', (c) => (c === 0 ? resolve(JSON.parse(outText) as Load) : reject(new Error(`load client exited ${c}`))))) };
  };
  const bg = load(GW, 'r7', 500, 0);
  await sleep(500);
  const visible: number[] = [];
  const gone: number[] = [];
  for (let s = 0; s < churn; s++) {
    const [k, v] = rec(`p${s}`, names + s);
    const t0 = process.hrtime.bigint();
    await client.put(k, v);
    visible.push(await until(`p${s}`, true, t0));
  }
  for (let s = 0; s < churn; s++) {
    const t0 = process.hrtime.bigint();
    await client.delete(rec(`p${s}`, names + s)[0]);
    gone.push(await until(`p${s}`, false, t0));
  }
  await sleep(500);
  bg.proc.kill('SIGTERM');
  const bgr = await bg.done;

  // Answers under load: dnsmasq on another address of the same bridge, the same names from a hosts file.
  const bridge = JSON.parse(execFileSync('ip', ['-j', 'addr', 'show', 'to', GW]).toString())[0].ifname as string;
  execFileSync('ip', ['addr', 'add', `${DNSMASQ_ADDR}/16`, 'dev', bridge]);
  fs.writeFileSync(path.join(tmp, 'hosts'), hosts.join('\n') + '\n');
  const dnsmasq = spawn('dnsmasq', ['-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${path.join(tmp, 'hosts')}`,
    `--listen-address=${DNSMASQ_ADDR}`, '--bind-interfaces', '--port=53', '--local-ttl=5', '--cache-size=1000', `--pid-file=${path.join(tmp, 'dnsmasq.pid')}`, '--user=root'], { stdio: 'ignore' });
  await sleep(500);
  const rounds: Result['rounds'] = [];
  try {
    // Warm-up (JIT, caches, socket buffers), unrecorded: 2 s each.
    for (const addr of [GW, DNSMASQ_ADDR]) await load(addr, 'r7', qps, 2).done;
    for (let round = 0; round < 2; round++) {
      for (const [server, addr] of [['knitd', GW], ['dnsmasq', DNSMASQ_ADDR]] as const) {
        const r = await load(addr, 'r7', qps, seconds).done;
        rounds.push({ server, p50: q(r.ms, 0.5), p99: q(r.ms, 0.99), max: Math.max(...r.ms), sent: r.sent, lost: r.lost, failed: r.failed });
        await sleep(1000);
      }
    }
  } finally {
    dnsmasq.kill('SIGKILL');
  }
  const st = fs.readFileSync(`/proc/${knitdPid}/status`, 'utf8');
  const stat = fs.readFileSync(`/proc/${knitdPid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  sock.close();
  client.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  const res: Result = {
    names, churn, qps, seconds,
    visibleP50: q(visible, 0.5), visibleP99: q(visible, 0.99), visibleMax: Math.max(...visible),
    goneP50: q(gone, 0.5), goneP99: q(gone, 0.99), goneMax: Math.max(...gone),
    churnLookups: bgr.sent, churnFailed: bgr.failed, churnLost: bgr.lost, rounds,
    knitdCpuS: (Number(stat[11]) + Number(stat[12])) / 100, knitdRssMiB: Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0) / 1024,
  };
  process.stdout.write(JSON.stringify(res));
}

function ensureDnsmasq(): void {
  try { execFileSync('dnsmasq', ['--version'], { stdio: 'ignore' }); return; } catch { /* install it */ }
  // dnsmasq-base: the binary only (the dnsmasq package would start a system-wide service on port 53).
  console.log('installing dnsmasq-base (Debian) for the comparison');
  try { execFileSync('apt-get', ['install', '-y', '-q', 'dnsmasq-base'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }); } catch {
    execFileSync('apt-get', ['update', '-q'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-q', 'dnsmasq-base'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
}

async function outer(): Promise<void> {
  const out = path.resolve(arg('out', path.join(ROOT, 'bench/results')));
  ensureDnsmasq();
  execFileSync(process.execPath, ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'ignore' });
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: '' };
  const lab = new Lab();
  let etcd: EtcdCluster | undefined;
  let knitd: ChildProcess | undefined;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-benchdns-'));
  let res: Result;
  try {
    const sw = await lab.switch();
    const eh = await lab.host('etcd', sw, { address: '192.168.92.100/24' });
    const host = await lab.host('node', sw, { address: '192.168.92.1/24' });
    etcd = await EtcdCluster.start({ netns: eh, host: '192.168.92.100' });
    const ep = etcd.endpoints[0]!;
    const confDir = path.join(tmp, 'net.d');
    const runDir = path.join(tmp, 'run');
    fs.writeFileSync(path.join(tmp, 'resolv.conf'), '');
    knitd = spawn('ip', ['netns', 'exec', host.name, path.join(ROOT, 'dist/bin/knitd'), '--cni-socket-dir', path.join(runDir, 'cni'), '--etcd-endpoints', ep,
      '--etcd-prefix', PREFIX, '--node-name', 'node', '--iface', 'eth0', '--run-dir', runDir, '--state-dir', path.join(tmp, 'state'), '--cni-conf-dir', confDir,
      '--dns-resolv-conf', path.join(tmp, 'resolv.conf'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    const knitctl = (...a: string[]): Promise<unknown> => lab.exec(host, path.join(ROOT, 'dist/bin/knitctl'), ['--etcd-endpoints', ep, '--etcd-prefix', PREFIX, ...a], { env: { NODE_EXTRA_CA_CERTS: undefined } });
    for (let i = 0; !fs.existsSync(path.join(runDir, 'networks/node.json')); i++) { if (i > 300) throw new Error('knitd did not start'); await sleep(100); }
    await knitctl('network', 'create', '-d', 'overlay', '--subnet', SUBNET, '--ip-range', '10.250.1.0/24', 'app');
    const conflist = path.join(confDir, 'knit-app.conflist');
    for (let i = 0; !fs.existsSync(conflist); i++) { if (i > 300) throw new Error('no conflist'); await sleep(100); }
    await sleep(500);
    const cl = JSON.parse(fs.readFileSync(conflist, 'utf8'));
    const pod = await lab.pod('client');
    const add = await lab.runPlugin(host, path.join(ROOT, 'dist/bin/knit-l2overlay'), {
      command: 'ADD', containerId: 'client', netns: pod.path, ifName: 'eth0', path: [path.join(ROOT, 'dist/bin')],
      conf: { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0] }, args: 'K8S_POD_NAME=client', env: { KNIT_CNI_SOCKET_DIR: path.join(tmp, 'no-agent') },
    });
    if (add.code !== 0) throw new Error(`ADD: ${add.stdout} ${add.stderr}`);
    // `ip netns exec` execs knitd's launcher, which execs node: the same pid, unless a shell stayed in between.
    let knitdPid = knitd.pid!;
    try { knitdPid = Number(execFileSync('pgrep', ['-P', String(knitd.pid)]).toString().trim().split('\n')[0]) || knitdPid; } catch { /* no child: knitd itself */ }
    const r = await lab.exec(host, process.execPath, ['--import', 'tsx', __filename, '--inner', '--endpoint', ep, '--pod', pod.name, '--knitd-pid', String(knitdPid),
      '--names', arg('names', '200'), '--churn', arg('churn', '200'), '--qps', arg('qps', '5000'), '--seconds', arg('seconds', '10')], { timeoutMs: 900_000, env: { NODE_EXTRA_CA_CERTS: undefined } });
    res = JSON.parse(r.stdout) as Result;
  } finally {
    knitd?.kill('SIGKILL');
    await etcd?.stop();
    await lab.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const med = (server: string, k: 'p50' | 'p99'): number => q(res.rounds.filter((x) => x.server === server).map((x) => x[k]), 0.5);
  const f = (x: number): string => x.toFixed(2);
  const md = [
    '# knitd\'s resolver beside dnsmasq', '',
    `${new Date().toISOString()} · ${os.hostname()} · ${os.cpus().length} CPUs · load ${os.loadavg()[0]!.toFixed(2)} · dnsmasq ${/version (\S+)/.exec(execFileSync('dnsmasq', ['--version']).toString())?.[1] ?? '?'}`, '',
    `One knitd in a lab host, one overlay network with ${res.names} names (records of another host, put into etcd as the plugin's ADD does).`,
    '"visible": the record put to the name answering on this host\'s gateway; "gone": its delete to NXDOMAIN (polled every 2 ms).',
    `"churn": lookups of a stable name at 500/s from a pod while ${res.churn} names were added and removed. "answers": a pod querying`,
    `one name at ${res.qps}/s for ${res.seconds} s, query to answer; knitd and dnsmasq (same names from a hosts file, on another address of`,
    'the same bridge) interleaved, two rounds each. Goals: visible and gone p99 < 500 ms, 0 failed lookups, answers p99 < 2 ms.', '',
    '| | p50 (ms) | p99 (ms) | max (ms) |', '|---|---:|---:|---:|',
    `| visible after ADD | ${f(res.visibleP50)} | ${f(res.visibleP99)} | ${f(res.visibleMax)} |`,
    `| gone after DEL | ${f(res.goneP50)} | ${f(res.goneP99)} | ${f(res.goneMax)} |`, '',
    `Churn: ${res.churnLookups} lookups, ${res.churnFailed} failed, ${res.churnLost} unanswered.`, '',
    '| round | server | sent | lost | failed | p50 (ms) | p99 (ms) | max (ms) |', '|---|---|---:|---:|---:|---:|---:|---:|',
    ...res.rounds.map((x, i) => `| ${(i >> 1) + 1} | ${x.server} | ${x.sent} | ${x.lost} | ${x.failed} | ${f(x.p50)} | ${f(x.p99)} | ${f(x.max)} |`), '',
    `Ratio knitd/dnsmasq (median of rounds): p50 ${(med('knitd', 'p50') / med('dnsmasq', 'p50')).toFixed(2)}x, p99 ${(med('knitd', 'p99') / med('dnsmasq', 'p99')).toFixed(2)}x.`,
    `knitd after the run: ${res.knitdCpuS.toFixed(1)} s CPU, RSS ${res.knitdRssMiB.toFixed(0)} MiB.`, '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'dns.json'), JSON.stringify({ ...res }, null, 2) + '\n');
  fs.writeFileSync(path.join(out, 'dns.md'), md);
  console.log(md);
}

if (process.argv.includes('--inner')) inner().catch((e) => { console.error(e); process.exit(1); });
else outer().catch((e) => { console.error(e); process.exit(1); });
