// Sets up the fuzz lab and runs the worker in it: a lab host netns (a dummy macvlan master, etcd
// on its loopback), a pod netns, a sandbox directory holding every path a config may name, and
// files that exist but are not network namespaces. The worker runs as
// `ip netns exec HOST sh -c 'mount tmpfs on /var/lib/knit and /run/knit; exec node worker'`,
// so knit's default directories are private to the run. Everything is removed afterwards.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, run, type Netns } from '../lab/lab';
import { EtcdCluster, haveEtcd } from '../lab/etcd';
import { buildNetwork } from '../../pkg/network/spec';
import { overlayBridgeName, renderConflist } from '../../pkg/network/conflist';
import { NETNS_CLASS_FIXED, type Fixtures, type L2Fixtures, type PluginName } from './cases';
import type { Report, WorkerSpec } from './worker';

const ROOT = path.resolve(__dirname, '../..');

export interface FuzzOptions {
  seed: number;
  runs: number;
  execRuns: number;
  timeoutMs?: number;
  verbose?: boolean;
  progress?: boolean;
  /** "in-process:N" or "exec:N": print that one case and its answer instead of a run. */
  replay?: string;
  /** Only these plugins (default: all). */
  plugins?: PluginName[];
}

export async function runFuzz(opts: FuzzOptions): Promise<Report | null> {
  if (!haveEtcd()) throw new Error('the fuzz suite needs /usr/bin/etcd (scripts/bootstrap installs it)');
  const binDir = path.join(ROOT, 'dist/bin');
  for (const p of ['knit-bridge', 'knit-macvlan', 'knit-overlay', 'knit-l2overlay', 'knit-host-local', 'knit-etcd-ipam']) {
    if (!fs.existsSync(path.join(binDir, p))) throw new Error(`${binDir}/${p} missing: run npm run build`);
  }
  const lab = new Lab();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-fuzz-'));
  let etcd: EtcdCluster | undefined;
  try {
    const host = await lab.netns('fzhost');
    const pod = await lab.pod('fzpod');
    await lab.ip(host, ['link', 'add', 'fzmaster0', 'type', 'veth', 'peer', 'name', 'fzmasterp']); // no dummy module on every host
    await lab.ip(host, ['link', 'set', 'fzmasterp', 'up']);
    await lab.ip(host, ['link', 'set', 'fzmaster0', 'up']);
    etcd = await EtcdCluster.start({ netns: host });
    const sub = (n: string): string => { const d = path.join(dir, n); fs.mkdirSync(d, { recursive: true }); return d; };
    const etcdEndpoint = etcd.endpoints[0]!, etcdPrefix = '/knit-fz';
    const l2 = await l2Fixtures(lab, host, sub, { endpoints: [etcdEndpoint], prefix: etcdPrefix, timeoutMs: 3000 });
    const fx: Fixtures = {
      dir, dataDir: sub('data'), runDir: sub('run'), overlayRunDir: sub('overlay'),
      podNetns: pod.path, hostNetns: host.path, master: 'fzmaster0',
      etcdEndpoint, etcdPrefix, l2,
      notNetns: {
        file: path.join(dir, 'regular-file'), dir: sub('a-directory'), fifo: path.join(dir, 'a-fifo'), dev: '/dev/null',
        unmounted: path.join(dir, 'unmounted-netns'),
        slash: `${pod.path}/`, // ENOTDIR
      },
    };
    fs.writeFileSync(fx.notNetns.file, 'not a namespace\n');
    fs.writeFileSync(fx.notNetns.unmounted, '');
    await run('mkfifo', [fx.notNetns.fifo]);
    fs.writeFileSync(path.join(fx.overlayRunDir, 'lease.json'),
      JSON.stringify({ network: '10.79.0.0/16', subnet: '10.79.1.0/24', mtu: 1450, bridge: 'fzov0', nodeName: 'fz1', backend: 'vxlan' }));
    const report = path.join(dir, 'report.json');
    const spec: WorkerSpec = {
      seed: opts.seed, runs: opts.runs, execRuns: opts.execRuns, fixtures: fx, binDir, report,
      timeoutMs: opts.timeoutMs ?? 20_000, verbose: opts.verbose, plugins: opts.plugins,
    };
    for (const d of ['/var/lib/knit', '/run/knit']) fs.mkdirSync(d, { recursive: true });
    const script = 'mount -t tmpfs fuzz /var/lib/knit && mount -t tmpfs fuzz /run/knit && exec "$@"';
    const env: NodeJS.ProcessEnv = { ...process.env, FUZZ_SPEC: JSON.stringify(spec), ...(opts.progress ? { FUZZ_PROGRESS: '1' } : {}), ...(opts.replay ? { FUZZ_REPLAY: opts.replay } : {}) };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.KNIT_LOG_FILE;
    delete env.KNIT_LOG_LEVEL;
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', host.name, 'sh', '-c', script, 'fuzz', process.execPath, '--import', 'tsx', path.join(__dirname, 'worker.ts')],
        { env, stdio: ['ignore', 'inherit', 'inherit'], cwd: ROOT });
      child.on('error', reject);
      child.on('close', (c) => resolve(c ?? 2));
    });
    if (opts.replay) return null;
    if (code !== 0 || !fs.existsSync(report)) throw new Error(`fuzz worker exited ${code} without a report`);
    return JSON.parse(fs.readFileSync(report, 'utf8')) as Report;
  } finally {
    await etcd?.stop();
    await lab.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * knit-l2overlay's network as knitd makes it on a node: the conf rendered by pkg/network/conflist.ts
 * for an overlay network built by pkg/network/spec.ts, and its bridge knb<vni> (a plain bridge with
 * the MTU knitd gives it, VXLAN overhead off a 1500 underlay; the VXLAN port plays no part in an
 * attachment). The node files need an etcd lease: the worker writes them, from inside the lab.
 */
async function l2Fixtures(lab: Lab, host: Netns, sub: (n: string) => string,
  etcd: { endpoints: string[]; prefix: string; timeoutMs: number }): Promise<L2Fixtures> {
  const vni = 4242, nodeName = 'fz1';
  const runDir = sub('l2run');
  const net = buildNetwork({ name: 'fzl2', driver: 'overlay', subnets: ['10.82.0.0/24'], opts: [`vni=${vni}`] }, [], new Date(0), 'f'.repeat(64));
  const list = renderConflist(net, { nodeName, etcd, runDir });
  const { plugins, cniVersion: _v, ...top } = list as { plugins: Array<Record<string, unknown>>; cniVersion: string };
  const br = overlayBridgeName(vni);
  await lab.ip(host, ['link', 'add', br, 'mtu', '1450', 'type', 'bridge']);
  await lab.ip(host, ['link', 'set', br, 'up']);
  return {
    conf: { ...top, ...plugins[0]! }, vni, nodeName, runDir,
    otherNodeRunDir: sub('l2run-other'), deadLeaseRunDir: sub('l2run-deadlease'), corruptRunDir: sub('l2run-corrupt'), noNodeRunDir: sub('l2run-none'),
  };
}

/** The report as printed by `npm run fuzz` (ends with the "N passed, N failed" line). */
export function formatReport(r: Report): string {
  const lines: string[] = [];
  lines.push(`seed ${r.seed}: ${r.cases} cases (${r.inProcess} in-process, ${r.exec} exec'd) in ${(r.ms / 1000).toFixed(1)} s`);
  lines.push(`ADDs answered exit 0: ${Object.entries(r.addsOk ?? {}).map(([p, n]) => `${p} ${n}`).join(', ') || 'none'}`);
  lines.push(`crashes ${r.crashes}, wrong answers ${r.wrong}, leaks ${r.leaks}, residue ${r.residue}, hangs ${r.hangs}`);
  // Only when the CNI_NETNS class is bucketed apart (NETNS_CLASS_FIXED false): otherwise it counts like any case.
  if (!NETNS_CLASS_FIXED) lines.push(`netns class, bucketed apart (NETNS_CLASS_FIXED is false): ${r.netnsClass}`);
  const netns = r.failures.filter((f) => f.verdict === 'netns');
  const real = r.failures.filter((f) => f.verdict !== 'netns');
  for (const f of real) lines.push(`  FAIL ${f.verdict} [${f.mode} #${f.index}] ${f.plugin} ${f.verb} ${f.label}: ${f.why}\n       ${f.out.replace(/\n/g, ' ')}`);
  for (const f of netns.slice(0, 10)) lines.push(`  netns-class [${f.mode} #${f.index}] ${f.plugin} ${f.verb} ${f.label}: ${f.why}`);
  if (real.length) lines.push(`replay one: npm run fuzz -- --seed ${r.seed} --replay exec:N (or in-process:N) with the same --runs/--exec-runs`);
  lines.push(`${r.passed} passed, ${r.failed} failed`);
  return lines.join('\n');
}
