// knit-macvlan + knit-host-local (in-process) beside the reference macvlan + host-local, on a lab
// node (a netns whose eth0 is a veth to an underlay switch) with one pod netns per run: ADD and
// DEL, interleaved. Each call runs as `nsenter --net=<node> <plugin>`, the same wrapper on both
// sides; only the plugin process is timed. knit runs exec'd (a Node start per call: the launcher's
// knitd path points at a socket directory that does not exist) and served by knitd (running in the
// node netns; the launcher hands each call to it through knit-client).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../../../test/lab/lab';
import { cleanEnv } from '../runner';
import { startKnitd, type BenchKnitd } from '../knitd';
import type { BenchCase, Suite, SuiteOptions } from '../types';

const REF = '/usr/lib/cni';

interface Side {
  label: string;
  plugin: string;
  path: string;
  env: Record<string, string>;
  conf: Record<string, unknown>;
  pods: Netns[];
}

let lab: Lab | undefined;
let tmp = '';
let knitd: BenchKnitd | undefined;
let node: Netns;

function call(side: Side, command: 'ADD' | 'DEL', pod: Netns): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('nsenter', [`--net=${node.path}`, side.plugin], {
      env: { ...cleanEnv(), ...side.env, CNI_COMMAND: command, CNI_CONTAINERID: `b-${pod.name}`, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: side.path },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { out += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) reject(new Error(`${side.label} ${command} ${pod.name}: exit ${code}: ${out}`));
      else resolve(ms);
    });
    child.stdin.on('error', () => { /* its exit code tells */ });
    child.stdin.end(JSON.stringify(side.conf));
  });
}

/** One timed verb per run, cycling through the side's pods in order (ADD runs before DEL). */
function verb(side: Side, command: 'ADD' | 'DEL'): () => Promise<number> {
  let i = 0;
  return () => call(side, command, side.pods[i++ % side.pods.length]!);
}

async function setup(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  lab = new Lab();
  tmp = mkdtempSync(join(tmpdir(), 'knit-bench-macvlan-'));
  const sw = await lab.switch('sw');
  node = await lab.host('node', sw, { address: '10.30.0.1/16' });
  const count = opts.runs + 10; // covers the runner's warm-up runs
  const knitBin = join(opts.root, 'dist/bin');
  const mk = async (p: string): Promise<Netns[]> => {
    const pods: Netns[] = [];
    for (let i = 0; i < count; i++) pods.push(await lab!.pod(`${p}${i}`));
    return pods;
  };
  const ipam = (type: string, third: number): Record<string, unknown> => ({
    type, dataDir: join(tmp, type), ranges: [[{ subnet: '10.30.0.0/16', rangeStart: `10.30.${third}.1`, rangeEnd: `10.30.${third}.250` }]],
  });
  const k: Side = {
    label: 'knit-macvlan + knit-host-local', plugin: join(knitBin, 'knit-macvlan'), path: knitBin,
    env: { KNIT_CNI_SOCKET_DIR: '/nonexistent/knit-bench' }, pods: await mk('k'),
    conf: { cniVersion: '1.0.0', name: 'bench-kmv', type: 'knit-macvlan', master: 'eth0', mode: 'bridge', runDir: join(tmp, 'run'), ipam: ipam('knit-host-local', 1) },
  };
  const r: Side = {
    label: 'macvlan + host-local', plugin: join(REF, 'macvlan'), path: REF, env: {}, pods: await mk('r'),
    conf: { cniVersion: '1.0.0', name: 'bench-rmv', type: 'macvlan', master: 'eth0', mode: 'bridge', ipam: ipam('host-local', 2) },
  };
  const sockDir = join(tmp, 'sock');
  const kd: Side = {
    ...k, label: 'knit-macvlan + knit-host-local (knitd)', env: { KNIT_CNI_SOCKET_DIR: sockDir }, pods: await mk('d'),
    conf: { ...k.conf, name: 'bench-kmvd', ipam: ipam('knit-host-local', 3) },
  };
  knitd = await startKnitd(opts.root, node, ['--cni-socket-dir', sockDir]);
  const cases: BenchCase[] = [];
  for (const side of [k, kd]) {
    for (const command of ['ADD', 'DEL'] as const) {
      cases.push({ name: `${command}${side === kd ? ' (knitd)' : ''}`, knit: verb(side, command), knitLabel: side.label, reference: verb(r, command), referenceLabel: r.label });
    }
  }
  return {
    cases,
    notes: [
      `each call is \`nsenter --net=<lab node> <plugin>\` on both sides, master eth0 (a veth to a lab switch); ${count} pod namespaces per side, one pod per run`,
      'knit runs its IPAM in-process; the reference macvlan execs host-local (a second process)',
      'knit also takes the parent\'s flock and writes the attachment record (the reference count behind vlan/promisc)',
    ],
  };
}

export const suite: Suite = {
  name: 'macvlan',
  description: 'knit-macvlan vs the reference macvlan: ADD and DEL with host-local IPAM',
  setup,
  async teardown() {
    await knitd?.stop();
    await lab?.cleanup();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  },
};
