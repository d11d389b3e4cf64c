// knit-bridge + knit-host-local (in-process) beside the reference bridge + host-local, on a lab
// node (a netns) with one pod netns per run: ADD, CHECK and DEL without and with ipMasq, and 50
// parallel ADDs. Each call runs as `nsenter --net=<node> <plugin>`, the same wrapper on both
// sides; only the plugin process is timed (set-up and clean-up around it are not).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../../../test/lab/lab';
import { cleanEnv } from '../runner';
import type { BenchCase, Suite, SuiteOptions } from '../types';

const REF = '/usr/lib/cni';
const PARALLEL = 50;

interface Side {
  label: string;
  plugin: string;
  path: string;
  conf: (masq: boolean) => Record<string, unknown>;
  pods: Netns[];
  results: Map<string, unknown>;
}

let lab: Lab | undefined;
let dataDir = '';
let node: Netns;

function call(side: Side, command: string, pod: Netns, ifName: string, masq: boolean, prevResult?: unknown): Promise<{ ms: number; out: string }> {
  const conf = { ...side.conf(masq), ...(prevResult ? { prevResult } : {}) };
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('nsenter', [`--net=${node.path}`, side.plugin], {
      env: { ...cleanEnv(), CNI_COMMAND: command, CNI_CONTAINERID: `b-${pod.name}-${ifName}`, CNI_NETNS: pod.path, CNI_IFNAME: ifName, CNI_PATH: side.path },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { err += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) reject(new Error(`${side.label} ${command} ${pod.name}/${ifName}: exit ${code}: ${out}${err}`));
      else resolve({ ms, out });
    });
    child.stdin.on('error', () => { /* a plugin that failed early; its exit code tells */ });
    child.stdin.end(JSON.stringify(conf));
  });
}

/** One timed verb per run, cycling through the side's pods in order. */
function verb(side: Side, command: 'ADD' | 'CHECK' | 'DEL', masq: boolean): () => Promise<number> {
  let i = 0;
  const ifName = masq ? 'eth1' : 'eth0';
  return async () => {
    const pod = side.pods[i++ % side.pods.length]!;
    const key = `${pod.name}/${ifName}`;
    const r = await call(side, command, pod, ifName, masq, command === 'CHECK' ? side.results.get(key) : undefined);
    if (command === 'ADD') side.results.set(key, JSON.parse(r.out));
    return r.ms;
  };
}

/** PARALLEL concurrent ADDs (timed until the last exits), then untimed DELs. */
function parallel(side: Side): () => Promise<number> {
  return async () => {
    const pods = side.pods.slice(0, PARALLEL);
    const start = process.hrtime.bigint();
    await Promise.all(pods.map((p) => call(side, 'ADD', p, 'eth2', false)));
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    await Promise.all(pods.map((p) => call(side, 'DEL', p, 'eth2', false)));
    return ms;
  };
}

async function setup(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  lab = new Lab();
  dataDir = mkdtempSync(join(tmpdir(), 'knit-bench-'));
  node = await lab.netns('node');
  const runsPerCase = opts.runs + 10; // covers the runner's warm-up runs
  const podCount = Math.max(runsPerCase, PARALLEL);
  const knitBin = join(opts.root, 'dist/bin');
  const sides: Side[] = [];
  for (const [label, plugin, path, ipamType, bridge, net] of [
    ['knit-bridge + knit-host-local', join(knitBin, 'knit-bridge'), knitBin, 'knit-host-local', 'kb0', 10],
    ['bridge + host-local', join(REF, 'bridge'), REF, 'host-local', 'rb0', 20],
  ] as const) {
    const pods: Netns[] = [];
    for (let i = 0; i < podCount; i++) pods.push(await lab.pod(`${label.startsWith('knit') ? 'k' : 'r'}${i}`));
    sides.push({
      label, plugin, path, pods, results: new Map(),
      conf: (masq) => ({
        cniVersion: '1.0.0', name: `bench-${bridge}${masq ? '-masq' : ''}`, type: label.split(' ')[0], bridge: masq ? `${bridge}m` : bridge,
        isGateway: true, ipMasq: masq,
        ipam: { type: ipamType, dataDir, ranges: [[{ subnet: `10.${net + (masq ? 1 : 0)}.0.0/16` }]], routes: [{ dst: '0.0.0.0/0' }] },
      }),
    });
  }
  const [k, r] = sides as [Side, Side];
  const cases: BenchCase[] = [];
  for (const masq of [false, true]) {
    for (const command of ['ADD', 'CHECK', 'DEL'] as const) {
      cases.push({
        name: `${command}${masq ? ' ipMasq' : ''}`,
        knit: verb(k, command, masq), knitLabel: k.label,
        reference: verb(r, command, masq), referenceLabel: r.label,
      });
    }
  }
  cases.push({ name: `${PARALLEL} parallel ADDs`, knit: parallel(k), knitLabel: k.label, reference: parallel(r), referenceLabel: r.label });
  return {
    cases,
    notes: [
      `each call is \`nsenter --net=<lab node> <plugin>\` on both sides; ${podCount} pod namespaces per side, one pod per run`,
      'knit runs its IPAM in-process; the reference bridge execs host-local (a second process)',
      'with ipMasq the reference adds an iptables chain per container; knit keeps one nftables entry per network',
    ],
  };
}

export const suite: Suite = {
  name: 'bridge',
  description: 'knit-bridge vs the reference bridge: ADD, CHECK, DEL (with and without ipMasq), 50 parallel ADDs',
  setup,
  async teardown() {
    await lab?.cleanup();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  },
};
