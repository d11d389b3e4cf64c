// knit-bridge + knit-host-local (in-process) beside the reference bridge + host-local, on a lab
// node (a netns) with one pod netns per run: ADD, CHECK and DEL without and with ipMasq, and 50
// parallel ADDs. Each call runs as `nsenter --net=<node> <plugin>`, the same wrapper on both
// sides; only the plugin process is timed (set-up and clean-up around it are not).
// knit runs in two modes: exec'd (a Node start per call) and served by knitd (started in a second
// lab node during set-up, so the launcher's knit-client reaches it); each beside its own
// reference runs. CPU per call (user+sys of every process involved, knitd's included) goes to the notes.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from '../../../test/lab/lab';
import { cleanEnv } from '../runner';
import { startKnitd, type BenchKnitd } from '../knitd';
import type { BenchCase, Suite, SuiteOptions } from '../types';

const REF = '/usr/lib/cni';
const PARALLEL = 50;

interface Side {
  label: string;
  plugin: string;
  path: string;
  /** The lab node the plugin runs on. */
  node: Netns;
  /** Extra environment (the exec side points the launcher at a socket directory that does not exist). */
  env: Record<string, string>;
  /** ifName per case kind, so two case sets can share the reference pods. */
  ifNames: { plain: string; masq: string; parallel: string };
  conf: (masq: boolean) => Record<string, unknown>;
  pods: Netns[];
  results: Map<string, unknown>;
}

let lab: Lab | undefined;
let dataDir = '';
let knitd: BenchKnitd | undefined;
/** CPU seconds (user+sys) per case: [cpu ms, calls], filled while the cases run. */
const cpu = new Map<string, { ms: number; calls: number }>();

/** user+sys CPU in ms of process `pid` (self and its waited-for children when pid is 'self'). */
function cpuMs(pid: number | 'self'): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const v = f.slice(f.lastIndexOf(')') + 2).split(' ').map(Number);
  // Fields 14-17 (utime stime cutime cstime) at index 11-14 after the command; 100 ticks/s.
  const ticks = pid === 'self' ? v[13]! + v[14]! : v[11]! + v[12]!;
  return ticks * 10;
}

/** Wraps a target to account the CPU of the plugin processes (our reaped children) and knitd. */
function metered(name: string, calls: number, withKnitd: boolean, target: () => Promise<number>): () => Promise<number> {
  return async () => {
    const before = cpuMs('self') + (withKnitd && knitd?.proc.pid ? cpuMs(knitd.proc.pid) : 0);
    const ms = await target();
    const after = cpuMs('self') + (withKnitd && knitd?.proc.pid ? cpuMs(knitd.proc.pid) : 0);
    const c = cpu.get(name) ?? { ms: 0, calls: 0 };
    c.ms += after - before;
    c.calls += calls;
    cpu.set(name, c);
    return ms;
  };
}

function call(side: Side, command: string, pod: Netns, ifName: string, masq: boolean, prevResult?: unknown): Promise<{ ms: number; out: string }> {
  const conf = { ...side.conf(masq), ...(prevResult ? { prevResult } : {}) };
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('nsenter', [`--net=${side.node.path}`, side.plugin], {
      env: { ...cleanEnv(), ...side.env, CNI_COMMAND: command, CNI_CONTAINERID: `b-${pod.name}-${ifName}`, CNI_NETNS: pod.path, CNI_IFNAME: ifName, CNI_PATH: side.path },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { err += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) reject(new Error(`${side.label} ${command} ${pod.name}/${ifName}: ${signal ? `killed by ${signal}` : `exit ${code}`}: ${out}${err}`));
      else resolve({ ms, out });
    });
    child.stdin.on('error', () => { /* a plugin that failed early; its exit code tells */ });
    child.stdin.end(JSON.stringify(conf));
  });
}

/** One timed verb per run, cycling through the side's pods in order. */
function verb(side: Side, command: 'ADD' | 'CHECK' | 'DEL', masq: boolean): () => Promise<number> {
  let i = 0;
  const ifName = masq ? side.ifNames.masq : side.ifNames.plain;
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
    await Promise.all(pods.map((p) => call(side, 'ADD', p, side.ifNames.parallel, false)));
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    await Promise.all(pods.map((p) => call(side, 'DEL', p, side.ifNames.parallel, false)));
    return ms;
  };
}

async function setup(opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  lab = new Lab();
  dataDir = mkdtempSync(join(tmpdir(), 'knit-bench-'));
  const node = await lab.netns('node');
  const agentNode = await lab.netns('node-d');
  const runsPerCase = opts.runs + 10; // covers the runner's warm-up runs
  const podCount = Math.max(runsPerCase, PARALLEL);
  const knitBin = join(opts.root, 'dist/bin');
  const mkPods = async (prefix: string): Promise<Netns[]> => {
    const pods: Netns[] = [];
    for (let i = 0; i < podCount; i++) pods.push(await lab!.pod(`${prefix}${i}`));
    return pods;
  };
  const confOf = (type: string, ipamType: string, bridge: string, net: number) => (masq: boolean): Record<string, unknown> => ({
    cniVersion: '1.0.0', name: `bench-${bridge}${masq ? '-masq' : ''}`, type, bridge: masq ? `${bridge}m` : bridge,
    isGateway: true, ipMasq: masq,
    ipam: { type: ipamType, dataDir, ranges: [[{ subnet: `10.${net + (masq ? 1 : 0)}.0.0/16` }]], routes: [{ dst: '0.0.0.0/0' }] },
  });
  const first = { plain: 'eth0', masq: 'eth1', parallel: 'eth2' };
  const second = { plain: 'eth3', masq: 'eth4', parallel: 'eth5' };
  const refPods = await mkPods('r');
  const k: Side = {
    label: 'knit-bridge + knit-host-local (exec)', plugin: join(knitBin, 'knit-bridge'), path: knitBin, node,
    env: { KNIT_CNI_SOCKET_DIR: '/nonexistent/knit-bench' }, ifNames: first, pods: await mkPods('k'), results: new Map(),
    conf: confOf('knit-bridge', 'knit-host-local', 'kb0', 10),
  };
  const kd: Side = {
    label: 'knit-bridge + knit-host-local (knitd)', plugin: join(knitBin, 'knit-bridge'), path: knitBin, node: agentNode,
    // A socket dir of its own, so the bench never creates /run/knit on the machine.
    env: { KNIT_CNI_SOCKET_DIR: join(dataDir, 'cni') }, ifNames: first, pods: await mkPods('d'), results: new Map(),
    conf: confOf('knit-bridge', 'knit-host-local', 'db0', 30),
  };
  const ref = (ifNames: Side['ifNames']): Side => ({
    label: 'bridge + host-local', plugin: join(REF, 'bridge'), path: REF, node, env: {}, ifNames, pods: refPods, results: new Map(),
    conf: confOf('bridge', 'host-local', 'rb0', 20),
  });
  const [r1, r2] = [ref(first), ref(second)];
  knitd = await startKnitd(opts.root, agentNode, ['--log-level', 'info', '--cni-socket-dir', join(dataDir, 'cni')]);

  const cases: BenchCase[] = [];
  for (const [side, r, suffix] of [[k, r1, ''], [kd, r2, ' (knitd)']] as const) {
    const viaKnitd = side === kd;
    for (const masq of [false, true]) {
      for (const command of ['ADD', 'CHECK', 'DEL'] as const) {
        const name = `${command}${masq ? ' ipMasq' : ''}${suffix}`;
        cases.push({
          name,
          knit: metered(name, 1, viaKnitd, verb(side, command, masq)), knitLabel: side.label,
          reference: metered(`${name} [reference]`, 1, false, verb(r, command, masq)), referenceLabel: r.label,
        });
      }
    }
    const name = `${PARALLEL} parallel ADDs${suffix}`;
    cases.push({
      name, knit: metered(name, 2 * PARALLEL, viaKnitd, parallel(side)), knitLabel: side.label,
      reference: metered(`${name} [reference]`, 2 * PARALLEL, false, parallel(r)), referenceLabel: r.label,
    });
  }
  notes.splice(0, notes.length,
    `each call is \`nsenter --net=<lab node> <plugin>\` on both sides; ${podCount} pod namespaces per side, one pod per run`,
    'knit runs its IPAM in-process; the reference bridge execs host-local (a second process)',
    'with ipMasq the reference adds an iptables chain per container; knit keeps one nftables entry per network',
    '(exec): the launcher starts Node per call (KNIT_CNI_SOCKET_DIR points nowhere, so not even knit-client runs); ' +
    '(knitd): knitd runs in its own lab node and the launcher execs knit-client, which sends the request to it',
  );
  return { cases, notes };
}

const notes: string[] = [];

/** CPU per call, from the accumulated user+sys time (10 ms ticks, so an average over many calls). */
function cpuNotes(): string[] {
  const out: string[] = [];
  for (const [name, c] of cpu) {
    if (name.endsWith('[reference]')) continue;
    const ref = cpu.get(`${name} [reference]`);
    const per = (x: { ms: number; calls: number }): string => (x.ms / Math.max(1, x.calls)).toFixed(1);
    out.push(`CPU per call, ${name}: knit ${per(c)} ms, reference ${ref ? per(ref) : '?'} ms (user+sys of all processes, knitd's included; parallel counts ADD and DEL)`);
  }
  return out;
}

export const suite: Suite = {
  name: 'bridge',
  description: 'knit-bridge (exec\'d and served by knitd) vs the reference bridge: ADD, CHECK, DEL (with and without ipMasq), 50 parallel ADDs',
  setup,
  async teardown() {
    notes.push(...cpuNotes());
    await knitd?.stop();
    knitd = undefined;
    await lab?.cleanup();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  },
};
