// Named networks (issue 12): ADD+DEL of a container on an overlay network (knit-l2overlay, from the
// conflist knitd rendered) beside knit-bridge with knit-etcd-ipam, both served by the same knitd,
// interleaved. Goal: the overlay no slower than the bridge baseline.
// Set-up: a lab underlay switch with etcd in its own lab host and one lab host running knitd with
// --etcd-endpoints (so it builds the network's bridge knb<vni> and VXLAN knv<vni> and writes
// node.json) and --cni-conf-dir/--cni-socket-dir in a temp dir; the network is made with
// `knitctl network create` inside that host. A run is ADD then DEL of one pod (both timed, summed); each call
// is `nsenter --net=<lab host> <plugin>` with KNIT_CNI_SOCKET_DIR at knitd's socket dir, so the
// launcher hands the request to knitd. ADD and DEL medians per side go to the notes.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Host, type Netns } from '../../../test/lab/lab';
import { EtcdCluster } from '../../../test/lab/etcd';
import { conflistFile } from '../../../pkg/network/conflist';
import { cleanEnv } from '../runner';
import { startKnitd, type BenchKnitd } from '../knitd';
import { quantile } from '../stats';
import type { BenchCase, Suite, SuiteOptions } from '../types';

const PREFIX = '/knb';
const NODE = 'bn1';

let lab: Lab | undefined;
let etcd: EtcdCluster | undefined;
let knitd: BenchKnitd | undefined;
let dataDir = '';
const notes: string[] = [];
const split: Record<string, { add: number[]; del: number[] }> = {};

interface Side {
  label: string;
  conf: Record<string, unknown>;
  pods: Netns[];
  next: number;
}

function call(host: Host, plugin: string, binDir: string, socketDir: string, command: 'ADD' | 'DEL', pod: Netns, conf: Record<string, unknown>): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('nsenter', [`--net=${host.path}`, plugin], {
      env: { ...cleanEnv(), KNIT_CNI_SOCKET_DIR: socketDir, CNI_COMMAND: command, CNI_CONTAINERID: `n-${pod.name}`, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: binDir,
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${pod.name}` },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { out += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) reject(new Error(`${String(conf.type)} ${command} ${pod.name}: ${signal ? `killed by ${signal}` : `exit ${code}`}: ${out}`));
      else resolve(ms);
    });
    child.stdin.on('error', () => { /* early exit; the code tells */ });
    child.stdin.end(JSON.stringify(conf));
  });
}

async function setup(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  try {
    return await build(opts);
  } catch (e) {
    // runSuite only tears down after a successful set-up: clean up here.
    await cleanup();
    throw e;
  }
}

async function build(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  lab = new Lab();
  dataDir = mkdtempSync(join(tmpdir(), 'knit-bench-nets-'));
  const binDir = join(opts.root, 'dist/bin');
  const sw = await lab.switch('nsw');
  const etcdHost = await lab.host('netcd', sw, { address: '192.168.74.100/24' });
  etcd = await EtcdCluster.start({ netns: etcdHost, host: '192.168.74.100' });
  const endpoint = etcd.endpoints[0]!;
  const host = await lab.host(NODE, sw, { address: '192.168.74.1/24' });
  const runDir = join(dataDir, 'run');
  const confDir = join(dataDir, 'net.d');
  const socketDir = join(runDir, 'cni');
  knitd = await startKnitd(opts.root, host, ['--log-level', 'info', '--cni-socket-dir', socketDir, '--etcd-endpoints', endpoint, '--etcd-prefix', PREFIX,
    '--node-name', NODE, '--iface', 'eth0', '--run-dir', runDir, '--state-dir', join(dataDir, 'state'), '--cni-conf-dir', confDir]);
  const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
    for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 100));
    if (!ok()) throw new Error(`networks bench: ${what} did not appear within 30 s`);
  };
  await waitFor('node.json', () => existsSync(join(runDir, 'networks', 'node.json')));
  // knitctl network create, run inside the lab host (the root netns has no route to the lab's etcd).
  const made = await lab.exec(host, join(binDir, 'knitctl'), ['--etcd-endpoints', endpoint, '--etcd-prefix', PREFIX, 'network', 'create', '-d', 'overlay', '--subnet', '10.77.0.0/16', 'benchov'],
    { allowFail: true, env: cleanEnv() });
  if (made.code !== 0) throw new Error(`knitctl network create benchov: ${made.stderr}${made.stdout}`);
  const clPath = join(confDir, conflistFile('benchov'));
  await waitFor(`conflist ${clPath}`, () => existsSync(clPath));
  const cl = JSON.parse(readFileSync(clPath, 'utf8')) as { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> };
  const ovConf: Record<string, unknown> = { cniVersion: cl.cniVersion, name: cl.name, ...cl.plugins[0]! };
  // Wait until knitd built the datapath (knv<vni>), so no run races the agent's first render.
  const vni = (ovConf as { vni?: number }).vni;
  for (let i = 0; i < 300; i++) {
    const r = await lab.exec(host, 'ip', ['link', 'show', `knv${vni}`], { allowFail: true });
    if (r.code === 0) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const ipam = ovConf.ipam as Record<string, unknown>;
  const brConf = {
    cniVersion: cl.cniVersion, name: 'benchbr', type: 'knit-bridge', bridge: 'kbb0', isGateway: true, isDefaultGateway: true, ipMasq: true, mtu: ovConf.mtu,
    ipam: { type: 'knit-etcd-ipam', nodeName: NODE, etcd: ipam.etcd, ranges: [[{ subnet: '10.78.0.0/16', gateway: '10.78.0.1' }]], routes: [{ dst: '0.0.0.0/0' }] },
  };
  const count = opts.runs + 10;
  const mk = async (p: string): Promise<Netns[]> => { const out: Netns[] = []; for (let i = 0; i < count; i++) out.push(await lab!.pod(`${p}${i}`)); return out; };
  const ov: Side = { label: 'knit-l2overlay (knitd)', conf: ovConf, pods: await mk('o'), next: 0 };
  const br: Side = { label: 'knit-bridge + knit-etcd-ipam (knitd)', conf: brConf, pods: await mk('b'), next: 0 };
  const run = (s: Side) => async (): Promise<number> => {
    const pod = s.pods[s.next++ % s.pods.length]!;
    const plugin = join(binDir, String(s.conf.type));
    const a = await call(host, plugin, binDir, socketDir, 'ADD', pod, s.conf);
    const d = await call(host, plugin, binDir, socketDir, 'DEL', pod, s.conf);
    const st = (split[s.label] ??= { add: [], del: [] });
    st.add.push(a);
    st.del.push(d);
    return a + d;
  };
  notes.splice(0, notes.length,
    `etcd 3.4 (Debian) in a lab host on the underlay switch; knitd in lab host ${NODE} with --etcd-endpoints, rendering the overlay network benchov (VNI ${vni}) to a temp --cni-conf-dir`,
    'both sides: `nsenter --net=<lab host> <plugin>`, KNIT_CNI_SOCKET_DIR at knitd\'s socket dir (the launcher execs knit-client, knitd serves the request); a run is ADD then DEL of one pod, both timed and summed',
    'overlay conf: plugins[0] of the rendered conflist (knit-l2overlay on knb<vni>, knit-etcd-ipam, endpoint record in etcd); baseline: knit-bridge doing the same job (gateway, default route, masquerade, isolation) on its own bridge with knit-etcd-ipam on the same etcd and knitd',
    'goal (issue 12): overlay no slower than the baseline (knit/ref ≤ 1.00 within noise)',
  );
  return {
    cases: [{ name: 'ADD+DEL overlay network (knitd)', knit: run(ov), knitLabel: ov.label, reference: run(br), referenceLabel: br.label }],
    notes,
  };
}

export const suite: Suite = {
  name: 'networks',
  description: 'named overlay network (knit-l2overlay under knitd) vs knit-bridge + knit-etcd-ipam under the same knitd: ADD+DEL',
  setup,
  async teardown() {
    for (const [label, s] of Object.entries(split)) {
      const med = (xs: number[]): string => quantile([...xs].sort((a, b) => a - b), 0.5).toFixed(1);
      notes.push(`${label}: ADD median ${med(s.add)} ms, DEL median ${med(s.del)} ms (warm-up runs included)`);
    }
    const { loadavg } = await import('node:os');
    notes.push(`load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(' ')} (2 cores)`);
    await cleanup();
  },
};

async function cleanup(): Promise<void> {
    try { await knitd?.stop(); } finally {
      knitd = undefined;
      try { await etcd?.stop(); } finally {
        etcd = undefined;
        await lab?.cleanup();
        lab = undefined;
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      }
    }
}
