// The kill -9 suite's engine (issue 14 item 2): ADD and DEL of every main plugin, with knit's
// file IPAM and with knit-etcd-ipam on real etcd, exec'd (dist/bin/*) and under knitd, killed
// with SIGKILL at random moments — after a random delay of up to a typical call's time, or at a
// named step (KNIT_FAILPOINT=<step>!, which makes whoever runs the plugin kill itself there; under
// knitd that is knitd, restarted after). After each kill: DEL with the same config must exit 0 and
// leave the host, the pod and the IPAM exactly as before the run (0 residue, 0 orphaned
// reservations); a re-ADD must succeed with an address no other live pod has (0 duplicates);
// a final DEL must again leave everything as before.
//
// Everything lives in lab namespaces (test/lab/lab.ts): a host netns on an underlay switch (its
// eth0 is the macvlan master), etcd inside the host netns, knitd on a socket directory of its own,
// pods as further netns. One steady pod per network stays attached all along, so the bridges'
// gateways, the NAT table and the macvlan parent's records are "needed" and must not change.
// Used by scripts/chaos.ts (`npm run chaos -- --runs N --seed S`) and test/integration/chaos.test.ts.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, type Host, type Netns } from './lab';
import { EtcdCluster } from './etcd';
import { Netlink, addrList, linkList } from '../../pkg/netlink';
import { writeLeaseFile } from '../../pkg/agent/lease-file';
import { prng } from './prng';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'dist/bin');

export type PluginName = 'bridge' | 'macvlan' | 'overlay';
export type IpamName = 'host-local' | 'etcd';
export type Mode = 'exec' | 'knitd';
export const PLUGINS: readonly PluginName[] = ['bridge', 'macvlan', 'overlay'];
export const IPAMS: readonly IpamName[] = ['host-local', 'etcd'];
export const MODES: readonly Mode[] = ['exec', 'knitd'];

/** The named steps of each plugin's ADD (KNIT_FAILPOINT), in the order they are reached. */
export const FAILPOINTS: Record<PluginName, readonly string[]> = {
  bridge: ['bridge', 'reserved', 'veth', 'port', 'address', 'route', 'gateway', 'forward', 'masq', 'result'],
  macvlan: ['record', 'parent', 'macvlan', 'rename', 'reserved', 'address', 'route', 'result'],
  overlay: ['bridge', 'reserved', 'veth', 'port', 'address', 'route', 'gateway', 'forward', 'result'],
};
/** Steps that exist only with one IPAM. */
const IPAM_ONLY: Record<string, IpamName> = { reserved: 'host-local' };

export { prng };

export interface ComboStats { runs: number; kills: number; residue: number; duplicates: number; orphans: number; failed: number }

export interface ChaosReport {
  seed: number;
  runs: number;
  passed: number;
  failed: number;
  ms: number;
  /** Per "plugin/ipam/mode". */
  combos: Map<string, ComboStats>;
  /** One line per failed run: what was done and what was wrong. */
  failures: string[];
  /** Messages of CNI errors "unexpected failure" seen in any answer (the suites fail on any). */
  unexpected: number;
}

export interface ChaosOptions {
  runs: number;
  seed: number;
  /** Only combos matching (e.g. /macvlan/). */
  only?: RegExp;
  log?: (line: string) => void;
  /** Print each run. */
  verbose?: boolean;
}

interface Net {
  key: string;
  plugin: PluginName;
  ipam: IpamName;
  conf: Record<string, unknown>;
  dataDir: string | null;
  /** The steady pod's netns and the run pod's. */
  steady: Netns;
  pod: Netns;
  /** Typical ADD and DEL times (ms) per mode, measured at setup. */
  addMs: Record<Mode, number>;
  delMs: Record<Mode, number>;
}

interface Out { code: number | null; signal: string | null; stdout: string; stderr: string; json: any }

/** How one run kills: the verb, a named step (KNIT_FAILPOINT=<step>!) or a delay, and whom. */
export interface Plan {
  verb: 'ADD' | 'DEL';
  step: string | null;
  delay: number;
  target: 'plugin' | 'knitd' | 'client';
  /** Part of the container id. */
  tag: string;
}

export interface RunResult {
  what: string;
  killed: boolean;
  problems: string[];
  leftByKill: string[];
  residue: boolean;
  orphans: boolean;
  duplicates: boolean;
}

interface Knitd { proc: ChildProcess; log: string; exited: boolean }

/** What the oracle compares: everything a run could leave behind, as sorted text lines. */
type Snapshot = Map<string, string[]>;

const SUBNETS = { bridgeHl: '10.252.0.0/24', bridgeEtcd: '10.252.1.0/24', underlay: '10.250.0.0/24', cluster: '10.251.0.0/16', lease: '10.251.3.0/24' };

export class Chaos {
  private lab = new Lab();
  private tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-chaos-'));
  private sockDir = path.join(this.tmp, 'cni');
  private noSock = path.join(this.tmp, 'no-knitd');
  private mvRun = path.join(this.tmp, 'mvrun');
  private ovRun = path.join(this.tmp, 'ovrun');
  private host!: Host;
  private etcd!: EtcdCluster;
  private knitd: Knitd | null = null;
  private nets: Net[] = [];
  private baseline: Snapshot = new Map();
  private cidSeq = 0;
  unexpected = 0;

  constructor(private readonly log: (line: string) => void = () => undefined) {}

  /** Builds dist/ (unless build is false: another run uses it), then the lab, etcd, knitd and the steady pods. */
  async setup(build = true): Promise<void> {
    if (build) execFileSync(process.execPath, ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'ignore' });
    for (const f of ['knit-bridge', 'knit-macvlan', 'knit-overlay', 'knitd']) {
      if (!fs.existsSync(path.join(BIN, f))) throw new Error(`dist/bin/${f} missing: npm run build`);
    }
    const sw = await this.lab.switch('chsw');
    this.host = await this.lab.host('chhost', sw, { address: '10.250.0.1/24' });
    this.etcd = await EtcdCluster.start({ netns: this.host });
    writeLeaseFile(this.ovRun, { network: SUBNETS.cluster, subnet: SUBNETS.lease, mtu: 1450, nodeName: 'chaos', backend: 'vxlan' });
    const hlDir = path.join(this.tmp, 'ipam');
    const etcdIpam = (ranges: object[]): Record<string, unknown> => ({
      type: 'knit-etcd-ipam', nodeName: 'chaos', etcd: { endpoints: this.etcd.endpoints, timeoutMs: 3000 }, ranges: [ranges],
    });
    const hl = (ranges: object[]): Record<string, unknown> => ({ type: 'knit-host-local', dataDir: hlDir, ranges: [ranges] });
    const confs: Array<[PluginName, IpamName, Record<string, unknown>]> = [
      ['bridge', 'host-local', { type: 'knit-bridge', bridge: 'kchbr0', isGateway: true, ipMasq: true, ipam: hl([{ subnet: SUBNETS.bridgeHl }]) }],
      ['bridge', 'etcd', { type: 'knit-bridge', bridge: 'kchbr1', isGateway: true, ipMasq: true, ipam: etcdIpam([{ subnet: SUBNETS.bridgeEtcd }]) }],
      ['macvlan', 'host-local', { type: 'knit-macvlan', master: 'eth0', runDir: this.mvRun, ipam: hl([{ subnet: SUBNETS.underlay, rangeStart: '10.250.0.10', rangeEnd: '10.250.0.99' }]) }],
      ['macvlan', 'etcd', { type: 'knit-macvlan', master: 'eth0', promisc: true, runDir: this.mvRun, ipam: etcdIpam([{ subnet: SUBNETS.underlay, rangeStart: '10.250.0.100', rangeEnd: '10.250.0.199' }]) }],
      ['overlay', 'host-local', { type: 'knit-overlay', runDir: this.ovRun, ipam: hl([{ subnet: SUBNETS.lease, rangeStart: '10.251.3.10', rangeEnd: '10.251.3.120' }]) }],
      ['overlay', 'etcd', { type: 'knit-overlay', runDir: this.ovRun, ipam: etcdIpam([{ subnet: SUBNETS.lease, rangeStart: '10.251.3.130', rangeEnd: '10.251.3.250' }]) }],
    ];
    await this.startKnitd();
    for (const [plugin, ipam, c] of confs) {
      const key = `${plugin}/${ipam}`;
      const name = `ch-${plugin.slice(0, 2)}-${ipam === 'etcd' ? 'e' : 'h'}`;
      const net: Net = {
        key, plugin, ipam, conf: { cniVersion: '1.1.0', name, ...c }, dataDir: ipam === 'host-local' ? hlDir : null,
        steady: await this.lab.pod(`st-${name}`), pod: await this.lab.pod(`p-${name}`), addMs: { exec: 0, knitd: 0 }, delMs: { exec: 0, knitd: 0 },
      };
      this.nets.push(net);
      await this.must(net, 'exec', 'ADD', `steady-${name}`, net.steady, {}, 'steady ADD');
      // Typical times: the second of two ADD/DEL pairs per mode on the run pod (the first warms caches).
      for (const mode of MODES) {
        const adds: number[] = [], dels: number[] = [];
        for (let i = 0; i < 2; i++) {
          const cid = `warm-${mode}-${i}`;
          let t = Date.now();
          await this.must(net, mode, 'ADD', cid, net.pod, {}, 'warm-up ADD');
          adds.push(Date.now() - t);
          t = Date.now();
          await this.must(net, mode, 'DEL', cid, net.pod, {}, 'warm-up DEL');
          dels.push(Date.now() - t);
        }
        net.addMs[mode] = adds[1]!;
        net.delMs[mode] = dels[1]!;
      }
      this.log(`  ${key}: typical ADD ${net.addMs.exec} ms exec'd, ${net.addMs.knitd} ms via knitd; DEL ${net.delMs.exec} / ${net.delMs.knitd} ms`);
    }
    this.baseline = this.snapshot();
  }

  async teardown(): Promise<void> {
    try {
      for (const net of this.nets) await this.call(net, 'exec', 'DEL', `steady-${net.conf.name}`, net.steady, {});
    } catch { /* best effort */ }
    if (this.knitd && !this.knitd.exited) this.knitd.proc.kill('SIGKILL');
    await this.etcd?.stop().catch(() => undefined);
    await this.lab.cleanup();
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }

  // ---- processes --------------------------------------------------------------------------

  private async startKnitd(): Promise<void> {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_OPTIONS;
    const proc = spawn('ip', ['netns', 'exec', this.host.name, path.join(BIN, 'knitd'), '--cni-socket-dir', this.sockDir, '--log-level', 'info'],
      { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const k: Knitd = { proc, log: '', exited: false };
    proc.stderr!.on('data', (d: Buffer) => { k.log = (k.log + d.toString()).slice(-20_000); });
    proc.on('exit', () => { k.exited = true; });
    this.knitd = k;
    const end = Date.now() + 15_000;
    while (!k.log.includes('serving ')) {
      if (k.exited || Date.now() > end) throw new Error(`knitd did not start: ${k.log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Starts a plugin call: exec'd (no knitd socket directory) or through knitd's client. */
  private start(net: Net, mode: Mode, command: 'ADD' | 'DEL', cid: string, pod: Netns, extra: Record<string, string>): { child: ChildProcess; done: Promise<Out> } {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_OPTIONS;
    Object.assign(env, {
      CNI_COMMAND: command, CNI_CONTAINERID: cid, CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: BIN,
      KNIT_CNI_SOCKET_DIR: mode === 'knitd' ? this.sockDir : this.noSock, ...extra,
    });
    const child = spawn('ip', ['netns', 'exec', this.host.name, path.join(BIN, `knit-${net.plugin}`)], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(JSON.stringify(net.conf));
    const done = new Promise<Out>((resolve) => child.on('close', (code, signal) => {
      let json: any;
      try { json = stdout.trim() ? JSON.parse(stdout) : undefined; } catch { json = undefined; }
      if (/unexpected failure/i.test(stdout + stderr)) this.unexpected++;
      resolve({ code, signal, stdout, stderr, json });
    }));
    return { child, done };
  }

  private call(net: Net, mode: Mode, command: 'ADD' | 'DEL', cid: string, pod: Netns, extra: Record<string, string>): Promise<Out> {
    return this.start(net, mode, command, cid, pod, extra).done;
  }

  private async must(net: Net, mode: Mode, command: 'ADD' | 'DEL', cid: string, pod: Netns, extra: Record<string, string>, what: string): Promise<Out> {
    const o = await this.call(net, mode, command, cid, pod, extra);
    if (o.code !== 0) throw new Error(`${net.key} ${mode} ${what} (${cid}) exited ${o.code ?? o.signal}: ${o.stdout} ${o.stderr.slice(-2000)}`);
    return o;
  }

  // ---- the oracle ---------------------------------------------------------------------------

  private netnsLinks(ns: Netns): { links: string[]; addrs: string[] } {
    const nl = Netlink.open(ns.path);
    try {
      const ls = linkList(nl);
      const names = new Map(ls.map((l) => [l.index, l.name]));
      return {
        links: ls.map((l) => `${l.name} ${l.kind ?? '-'} ${l.alias ?? ''}`.trim()).sort(),
        addrs: addrList(nl).filter((a) => a.scope === 0).map((a) => `${names.get(a.index)} ${a.cidr}`).sort(),
      };
    } finally {
      nl.close();
    }
  }

  private files(dir: string, skip: RegExp = /^$/): string[] {
    const out: string[] = [];
    const walk = (d: string, rel: string): void => {
      let ents: fs.Dirent[];
      try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
      for (const e of ents) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (skip.test(r)) continue;
        if (e.isDirectory()) walk(path.join(d, e.name), r);
        else {
          let text = '';
          try { text = fs.readFileSync(path.join(d, e.name), 'utf8').replace(/\n/g, ' ').trim().slice(0, 200); } catch { /* gone */ }
          out.push(`${r} ${text}`);
        }
      }
    };
    walk(dir, '');
    return out.sort();
  }

  /**
   * Residue: links, addresses and nftables of the host; links of every pod; macvlan parent
   * records and lock files. Orphans: host-local files (reservations, indexes, temp files) and
   * etcd reservation and attachment keys.
   */
  private snapshot(): Snapshot {
    const s: Snapshot = new Map();
    const h = this.netnsLinks(this.host);
    s.set('residue: host links', h.links);
    s.set('residue: host addresses', h.addrs);
    const nft = execFileSync('ip', ['netns', 'exec', this.host.name, 'nft', 'list', 'ruleset'], { encoding: 'utf8' });
    s.set('residue: host nftables', nft.split('\n').map((l) => l.trim()).filter(Boolean));
    s.set('residue: macvlan parent records and locks', this.files(path.join(this.mvRun, 'macvlan')));
    for (const net of this.nets) {
      for (const pod of [net.steady, net.pod]) {
        const p = this.netnsLinks(pod);
        s.set(`residue: pod ${pod.name}`, [...p.links, ...p.addrs]);
      }
    }
    const hl = path.join(this.tmp, 'ipam');
    s.set('orphans: host-local files', this.files(hl, /(^|\/)last-reserved\.\d+$/));
    const keys = [...this.etcd.dump('/knit/ipam/').entries()].filter(([k]) => /\/(ips|attach)\//.test(k)).map(([k, v]) => `${k} ${v}`);
    s.set('orphans: etcd keys', keys.sort());
    return s;
  }

  /** Differences to the baseline, one line per kind (empty: none). */
  private diff(now: Snapshot): string[] {
    const out: string[] = [];
    for (const [k, base] of this.baseline) {
      const cur = now.get(k) ?? [];
      const extra = cur.filter((x) => !base.includes(x));
      const missing = base.filter((x) => !cur.includes(x));
      if (extra.length || missing.length) out.push(`${k}: ${extra.length ? `left ${JSON.stringify(extra)}` : ''}${missing.length ? ` lost ${JSON.stringify(missing)}` : ''}`);
    }
    return out;
  }

  /** Global addresses held by more than one live pod. */
  private duplicates(): string[] {
    const seen = new Map<string, string>();
    const dup: string[] = [];
    for (const net of this.nets) {
      for (const pod of [net.steady, net.pod]) {
        for (const a of this.netnsLinks(pod).addrs) {
          const ip = a.split(' ')[1]!.split('/')[0]!;
          const prev = seen.get(ip);
          if (prev) dup.push(`${ip} in ${prev} and ${pod.name}`);
          else seen.set(ip, pod.name);
        }
      }
    }
    return dup;
  }

  // ---- one run ------------------------------------------------------------------------------

  combos(only?: RegExp): Array<{ net: Net; mode: Mode }> {
    const out: Array<{ net: Net; mode: Mode }> = [];
    for (const net of this.nets) for (const mode of MODES) if (!only || only.test(`${net.key}/${mode}`)) out.push({ net, mode });
    return out;
  }

  /** A random plan for one run. */
  plan(net: Net, mode: Mode, rnd: () => number): Plan {
    const verb: 'ADD' | 'DEL' = rnd() < 0.75 ? 'ADD' : 'DEL';
    const steps = FAILPOINTS[net.plugin].filter((f) => !IPAM_ONLY[f] || IPAM_ONLY[f] === net.ipam);
    const byStep = verb === 'ADD' && rnd() < 0.5;
    const step = byStep ? steps[Math.floor(rnd() * steps.length)]! : null;
    const delay = Math.floor(rnd() * (verb === 'ADD' ? net.addMs[mode] : net.delMs[mode]));
    // Under knitd, a delayed kill hits knitd (mostly) or only the client.
    const target: Plan['target'] = mode === 'knitd' ? (byStep || rnd() < 0.8 ? 'knitd' : 'client') : 'plugin';
    return { verb, step, delay, target, tag: Math.floor(rnd() * 1e6).toString(36) };
  }

  net(key: string): Net {
    const n = this.nets.find((x) => x.key === key);
    if (!n) throw new Error(`no network ${key}`);
    return n;
  }

  /**
   * One run: a killed call (ADD, or DEL of a finished ADD), DEL, the oracle, a re-ADD, the
   * duplicate check, a final DEL and the oracle again. Returns what went wrong (empty: passed),
   * whether a process died, and what the kill itself left (the difference to the baseline
   * before the DEL: how regression tests show there was something to find).
   */
  async run(net: Net, mode: Mode, p: Plan): Promise<RunResult> {
    const cid = `ch${(this.cidSeq++).toString(36)}-${p.tag}`;
    const problems: string[] = [];
    const { verb, step, delay, target } = p;
    const byStep = step !== null;
    const what = `${net.key}/${mode} ${verb} ${cid} killed ${byStep ? `at step ${step}` : `after ${delay} ms (${target})`}`;
    if (verb === 'DEL') {
      const o = await this.call(net, mode, 'ADD', cid, net.pod, {});
      if (o.code !== 0) problems.push(`ADD before the killed DEL exited ${o.code}: ${o.stdout.trim()}`);
    }
    let killed = false;
    const { child, done } = this.start(net, mode, verb, cid, net.pod, byStep ? { KNIT_FAILPOINT: `${step}!` } : {});
    let timer: NodeJS.Timeout | undefined;
    if (!byStep) {
      const k = this.knitd!;
      timer = setTimeout(() => {
        if (target === 'knitd') { if (!k.exited) k.proc.kill('SIGKILL'); } else if (child.exitCode === null) child.kill('SIGKILL');
      }, delay);
    }
    const first = await done;
    if (timer) clearTimeout(timer);
    if (mode === 'knitd') {
      // Wait for a dying knitd to be gone (its exit may trail the client's).
      for (let i = 0; i < 50 && !this.knitd!.exited && first.code !== 0 && target === 'knitd'; i++) await new Promise((r) => setTimeout(r, 10));
      killed = this.knitd!.exited || first.signal === 'SIGKILL';
      if (this.knitd!.exited) await this.startKnitd();
    } else {
      killed = first.signal === 'SIGKILL';
    }
    const leftByKill = this.diff(this.snapshot());
    if (!killed && first.code !== 0) problems.push(`the ${verb} exited ${first.code} without being killed: ${first.stdout.trim()} ${first.stderr.slice(-500)}`);

    const del1 = await this.call(net, mode, 'DEL', cid, net.pod, {});
    if (del1.code !== 0) problems.push(`DEL after the kill exited ${del1.code ?? del1.signal}: ${del1.stdout.trim()} ${del1.stderr.slice(-500)}`);
    const d1 = this.diff(this.snapshot());
    problems.push(...d1.map((d) => `after the DEL that followed the kill: ${d}`));

    const add = await this.call(net, mode, 'ADD', cid, net.pod, {});
    if (add.code !== 0) problems.push(`re-ADD exited ${add.code ?? add.signal}: ${add.stdout.trim()} ${add.stderr.slice(-500)}`);
    const dups = this.duplicates();
    problems.push(...dups.map((d) => `duplicate address after the re-ADD: ${d}`));

    const del2 = await this.call(net, mode, 'DEL', cid, net.pod, {});
    if (del2.code !== 0) problems.push(`final DEL exited ${del2.code ?? del2.signal}: ${del2.stdout.trim()}`);
    const d2 = this.diff(this.snapshot());
    problems.push(...d2.map((d) => `after the final DEL: ${d}`));
    const all = [...d1, ...d2];
    if (problems.length) this.baseline = this.snapshot(); // count a leftover once, not in every later run
    return {
      what, killed, problems, leftByKill,
      residue: all.some((d) => d.startsWith('residue')),
      orphans: all.some((d) => d.startsWith('orphans')),
      duplicates: dups.length > 0,
    };
  }
}

/** The whole suite: setup, `runs` seeded runs spread over every combo, teardown (or on `lab`, set up by the caller). */
export async function runChaos(opts: ChaosOptions, lab?: Chaos): Promise<ChaosReport> {
  const log = opts.log ?? (() => undefined);
  const t0 = Date.now();
  const rnd = prng(opts.seed);
  const chaos = lab ?? new Chaos(log);
  const unexpected0 = chaos.unexpected;
  const report: ChaosReport = { seed: opts.seed, runs: 0, passed: 0, failed: 0, ms: 0, combos: new Map(), failures: [], unexpected: 0 };
  try {
    log(`chaos: seed ${opts.seed}, ${opts.runs} runs; setting up`);
    if (!lab) await chaos.setup();
    const combos = chaos.combos(opts.only);
    if (!combos.length) throw new Error(`no combo matches ${opts.only}`);
    for (const c of combos) report.combos.set(`${c.net.key}/${c.mode}`, { runs: 0, kills: 0, residue: 0, duplicates: 0, orphans: 0, failed: 0 });
    for (let i = 0; i < opts.runs; i++) {
      // Every combo in turn (so a short run covers all), the kill itself random.
      const { net, mode } = combos[i % combos.length]!;
      const r = await chaos.run(net, mode, chaos.plan(net, mode, rnd));
      const st = report.combos.get(`${net.key}/${mode}`)!;
      st.runs++;
      report.runs++;
      if (r.killed) st.kills++;
      if (r.residue) st.residue++;
      if (r.orphans) st.orphans++;
      if (r.duplicates) st.duplicates++;
      if (r.problems.length) {
        st.failed++;
        report.failed++;
        const line = `run ${i + 1}: ${r.what}${r.killed ? '' : ' (finished before the kill)'}:\n    ${r.problems.join('\n    ')}`;
        report.failures.push(line);
        log(`FAIL ${line}`);
      } else {
        report.passed++;
        if (opts.verbose) log(`ok   run ${i + 1}: ${r.what}${r.killed ? '' : ' (finished before the kill)'}`);
      }
      if (!opts.verbose && (i + 1) % 100 === 0) log(`  ${i + 1} runs, ${report.failed} failed`);
    }
  } finally {
    report.unexpected = chaos.unexpected - unexpected0;
    if (!lab) await chaos.teardown();
    report.ms = Date.now() - t0;
  }
  return report;
}

/** The report as printed by scripts/chaos.ts: seed, per combo counts, and the closing line. */
export function formatReport(r: ChaosReport): string {
  const lines = [`seed ${r.seed}, ${r.runs} runs in ${(r.ms / 1000).toFixed(1)} s`];
  lines.push(`${'plugin/ipam/mode'.padEnd(26)} ${['runs', 'kills', 'residue', 'duplicates', 'orphans', 'failed'].map((h) => h.padStart(11)).join('')}`);
  for (const [k, s] of r.combos) {
    lines.push(`${k.padEnd(26)} ${[s.runs, s.kills, s.residue, s.duplicates, s.orphans, s.failed].map((n) => String(n).padStart(11)).join('')}`);
  }
  lines.push(`"unexpected failure" answers: ${r.unexpected}`);
  lines.push(`${r.passed} passed, ${r.failed} failed`);
  return lines.join('\n');
}
