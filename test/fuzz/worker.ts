// The fuzz worker: runs inside the lab host's network namespace (and a private mount namespace
// whose /var/lib/knit and /run/knit are fresh tmpfs), started by runner.ts. It draws cases from
// cases.ts with a seed, runs them in-process through dispatch() (the config-validation space,
// thousands a second) and a smaller sample exec'd from dist/bin, judges every answer, runs a
// cleanup DEL with a good config after each case that may have created something and checks
// that the lab host and the pod are as they were. Writes a JSON report to FUZZ_REPORT.
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { dispatch, type Plugin } from '../../pkg/cni/skel';
import { loadAll } from '../../plugins/registry';
import { EtcdClient } from '../../pkg/etcd';
import { leaseGrant, leaseRevoke } from '../../pkg/etcd/lease';
import type { EtcdConnConfig } from '../../pkg/ipam/etcd-config';
import { nodeFilePath, writeNodeFile } from '../../pkg/network/node-file';
import { parseIP } from '../../pkg/ip/ip';
import { linkList, withNetlink } from '../../pkg/netlink';
import { MAIN_PLUGINS, NETNS_CLASS_FIXED, caseArb, resultProblem, type Case, type Fixtures, type PluginName } from './cases';

export interface WorkerSpec {
  seed: number;
  /** In-process cases. */
  runs: number;
  /** Exec'd cases. */
  execRuns: number;
  fixtures: Fixtures;
  binDir: string;
  report: string;
  /** Per exec'd process (ms). */
  timeoutMs: number;
  /** Print every failing case (else the first few per class). */
  verbose?: boolean;
  /** Only these plugins (default: all). */
  plugins?: PluginName[];
}

export type Verdict = 'pass' | 'crash' | 'wrong' | 'hang' | 'netns';
export interface Failure { mode: 'in-process' | 'exec'; index: number; verdict: Verdict | 'leak' | 'residue'; plugin: string; verb: string; label: string; why: string; out: string }
export interface Report {
  seed: number;
  cases: number;
  inProcess: number;
  exec: number;
  passed: number;
  failed: number;
  crashes: number;
  wrong: number;
  leaks: number;
  residue: number;
  hangs: number;
  /** CNI_NETNS-not-a-namespace answers that would fail, counted apart while NETNS_CLASS_FIXED is false. */
  netnsClass: number;
  failures: Failure[];
  /** ADDs answered exit 0, by plugin: the fixtures let a good ADD through (else the residue check proves little). */
  addsOk: Record<string, number>;
  ms: number;
}

interface Out { stdout: string; stderr: string; exitCode: number | null; signal?: string | null; hang?: boolean; ms: number }

// The plugins as knitd serves them (plugins/registry.ts); the cases name which of them they cover.
const ALL: ReadonlyMap<string, Plugin> = loadAll();
const STACK_RE = /\n\s+at .+[(:]\d+:\d+\)?|unexpected failure|^\s*at [\w.<>]+ \(/m;

async function runInProcess(c: Case, timeoutMs: number): Promise<Out> {
  const plugin = ALL.get(c.plugin)!;
  let stderr = '';
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'hang'>((res) => { timer = setTimeout(() => res('hang'), timeoutMs); });
  const r = await Promise.race([dispatch(plugin, { ...c.env }, c.stdin, { stderr: (l) => { stderr += l; } }), timeout]);
  clearTimeout(timer);
  if (r === 'hang') return { stdout: '', stderr, exitCode: null, hang: true, ms: Date.now() - t0 };
  return { stdout: r.stdout, stderr, exitCode: r.exitCode, ms: Date.now() - t0 };
}

function runExec(binDir: string, c: Case, timeoutMs: number): Promise<Out> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, KNIT_CNI_SOCKET_DIR: '/nonexistent-knit-socket-dir', ...c.env };
    const t0 = Date.now();
    const child = spawn(path.join(binDir, c.plugin), [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '', hang = false;
    const timer = setTimeout(() => { hang = true; child.kill('SIGKILL'); }, timeoutMs);
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { if (stderr.length < 1 << 20) stderr += d; });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ stdout, stderr, exitCode: code, signal, hang, ms: Date.now() - t0 }); });
    child.stdin.on('error', () => undefined);
    child.stdin.end(c.stdin);
  });
}

/** The oracle: pass, or which rule the answer broke and why. */
export function judge(c: Case, o: Out): { verdict: Verdict; why: string } {
  const e = c.expect;
  const fail = (verdict: Verdict, why: string): { verdict: Verdict; why: string } =>
    (e.netnsClass && !NETNS_CLASS_FIXED ? { verdict: 'netns', why: `${verdict}: ${why}` } : { verdict, why });
  if (o.hang) return fail('hang', `no answer within the timeout`);
  if (STACK_RE.test(o.stderr)) return fail('crash', `stderr has a stack trace or "unexpected failure": ${o.stderr.trim().slice(0, 300)}`);
  if (o.exitCode !== 0 && o.exitCode !== 1) return fail('crash', `exit ${o.exitCode}${o.signal ? ` signal ${o.signal}` : ''}`);
  if (o.exitCode === 0) {
    if (!e.ok) return fail('wrong', `exit 0, expected code ${e.codes.join('/')} (${e.why})`);
    if (c.verb === 'ADD') {
      let v = '1.0.0';
      try { v = JSON.parse(c.stdin.toString('utf8').replace(/^\ufeff/, '')).cniVersion; } catch { /* judged by the shape check */ }
      const p = resultProblem(o.stdout, v, MAIN_PLUGINS.has(c.plugin));
      if (p) return fail('wrong', `ADD result: ${p}`);
    } else if (c.verb === 'VERSION') {
      let r: any;
      try { r = JSON.parse(o.stdout); } catch { return fail('wrong', 'VERSION stdout is not JSON'); }
      if (typeof r?.cniVersion !== 'string' || !Array.isArray(r.supportedVersions)) return fail('wrong', 'VERSION answer without cniVersion/supportedVersions');
    } else if (o.stdout !== '') return fail('wrong', `${c.verb} exit 0 with stdout ${o.stdout.slice(0, 100)}`);
    return { verdict: 'pass', why: '' };
  }
  let err: any;
  try { err = JSON.parse(o.stdout); } catch { return fail('wrong', `exit 1 and stdout is not one JSON document: ${o.stdout.slice(0, 200)}`); }
  if (typeof err !== 'object' || err === null || typeof err.code !== 'number' || typeof err.msg !== 'string') return fail('wrong', `exit 1 without a CNI error: ${o.stdout.slice(0, 200)}`);
  // Documented code 5 (docs/errors.md): a delegate that is in no CNI_PATH directory, when the
  // input may have named one (an ipam.type that is not knit's); or 4 when CNI_PATH names no directory.
  const findPlugin = ((err.code === 5 && /^failed to find plugin /.test(err.msg)) || (err.code === 4 && /^CNI_PATH is empty: cannot find plugin /.test(err.msg)))
    && (e.ok || e.codes.includes(7));
  if (err.code === 5 && !findPlugin) return fail('crash', `code 5: ${err.msg}${err.details ? ` (${err.details})` : ''}`);
  if (!e.codes.includes(err.code) && !findPlugin) return fail('wrong', `code ${err.code} "${String(err.msg).slice(0, 200)}", expected ${e.ok ? 'exit 0 or ' : ''}code ${e.codes.join('/') || 'none'} (${e.why})`);
  if (e.mention && !e.mention.split('|').some((m) => String(err.msg).includes(m))) return fail('wrong', `code ${err.code} msg does not name ${e.mention}: ${String(err.msg).slice(0, 200)}`);
  return { verdict: 'pass', why: '' };
}

// ---- residue -------------------------------------------------------------------------------

const ifnameOk = (n: string | undefined): n is string => !!n && n !== '.' && n !== '..' && Buffer.byteLength(n) <= 15 && !/[/:\s]/.test(n);
const idOk = (n: string | undefined): n is string => !!n && /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(n) && n.length <= 200;

interface Snapshot { host: string[]; pod: string[]; nft: string[]; files: string[]; etcd: string[] }

class Host {
  private baseLinks = new Set<string>();
  private etcd: EtcdClient;
  constructor(private readonly fx: Fixtures, private readonly podName: string) {
    this.etcd = new EtcdClient({ endpoints: [fx.etcdEndpoint], timeoutMs: 3000 });
  }

  init(): void {
    for (const l of this.links(null)) this.baseLinks.add(l.ifname);
  }

  /** Links of the host (null) or a lab netns, through knit's netlink (an `ip` process costs ~40 ms here). */
  private links(ns: string | null): Array<{ ifname: string; kind?: string }> {
    return withNetlink(ns ? `/run/netns/${ns}` : null, (nl) => linkList(nl)).map((l) => ({ ifname: l.name, kind: l.kind }));
  }

  async snapshot(withEtcd: boolean): Promise<Snapshot> {
    const host = this.links(null).filter((l) => !this.baseLinks.has(l.ifname) && l.kind !== 'bridge').map((l) => `${l.ifname}(${l.kind ?? '?'})`);
    const pod = this.links(this.podName).filter((l) => l.ifname !== 'lo').map((l) => `${l.ifname}(${l.kind ?? '?'})`);
    const nft: string[] = [];
    try {
      const j = JSON.parse(execFileSync('nft', ['-j', 'list', 'ruleset'], { encoding: 'utf8' })).nftables as any[];
      for (const it of j) {
        if (it.chain && /^n_/.test(it.chain.name)) nft.push(`chain ${it.chain.table}/${it.chain.name}`);
        if (it.map && it.map.elem?.length) nft.push(`map ${it.map.table}/${it.map.name}: ${it.map.elem.length} elements`);
        if (it.set && it.set.elem?.length) nft.push(`set ${it.set.table}/${it.set.name}: ${it.set.elem.length} elements`);
      }
    } catch { /* nft missing: nothing to compare */ }
    const files: string[] = [];
    const walk = (d: string): void => {
      let ents: fs.Dirent[];
      try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
      for (const ent of ents) {
        const f = path.join(d, ent.name);
        if (ent.isDirectory()) walk(f);
        else if (parseIP(ent.name)) files.push(path.relative(this.fx.dataDir, f));
      }
    };
    walk(this.fx.dataDir);
    walk('/var/lib/knit');
    const etcd: string[] = [];
    if (withEtcd) {
      const r = await this.etcd.range({ key: Buffer.from([0]), rangeEnd: Buffer.from([0]), keysOnly: true } as any);
      for (const kv of r.kvs) {
        const k = kv.key.toString();
        // Reservations, and knit-l2overlay's endpoint records (<prefix>/endpoints/<network>/<node>/<id>/<if>).
        if (/\/ipam\/[^/]+\/(ips|attach)\/|\/endpoints\//.test(k)) etcd.push(k);
      }
    }
    return { host, pod, nft, files, etcd };
  }

  /** Removes whatever a failed case left, so the next starts clean. */
  async scrub(s: Snapshot): Promise<void> {
    for (const l of s.host) try { execFileSync('ip', ['link', 'del', l.replace(/\(.*$/, '')], { stdio: 'ignore' }); } catch { /* gone */ }
    for (const l of s.pod) try { execFileSync('ip', ['-n', this.podName, 'link', 'del', l.replace(/\(.*$/, '')], { stdio: 'ignore' }); } catch { /* gone */ }
    if (s.nft.length) try { execFileSync('nft', ['flush', 'ruleset'], { stdio: 'ignore' }); } catch { /* none */ }
    for (const f of s.files) fs.rmSync(path.join(this.fx.dataDir, f), { force: true });
    for (const k of s.etcd) await this.etcd.delete(k);
  }
}

function empty(s: Snapshot): boolean {
  return !s.host.length && !s.pod.length && !s.nft.length && !s.files.length && !s.etcd.length;
}
function describeSnap(s: Snapshot): string {
  return Object.entries(s).filter(([, v]) => v.length).map(([k, v]) => `${k}: ${(v as string[]).slice(0, 4).join(', ')}`).join('; ');
}

/** The good DEL that must undo whatever the case created. */
function cleanupCase(c: Case, added: boolean, fx: Fixtures): Case {
  // After a successful ADD its own stdin (valid, whatever its oddities) names what was made.
  const stdin = added ? c.stdin : Buffer.from(JSON.stringify(c.base));
  return {
    ...c, verb: 'DEL', label: 'cleanup DEL',
    env: {
      CNI_COMMAND: 'DEL', CNI_CONTAINERID: idOk(c.env.CNI_CONTAINERID) ? c.env.CNI_CONTAINERID : 'fuzzc0',
      CNI_IFNAME: ifnameOk(c.env.CNI_IFNAME) ? c.env.CNI_IFNAME : 'eth0', CNI_NETNS: fx.podNetns, CNI_PATH: '/nonexistent-cni-path',
      ...(c.env.CNI_ARGS !== undefined ? { CNI_ARGS: c.env.CNI_ARGS } : {}),
    },
    stdin,
    expect: { ok: true, codes: [], why: 'cleanup DEL' },
  };
}

/**
 * knitd's node files for knit-l2overlay (pkg/network/node-file.ts): this node's on a lease granted
 * here, inside the lab (the lab's etcd is reached from no other namespace), another node's, and a
 * corrupt one, and this node's on a lease revoked. The lease outlives any run (a day); etcd goes with the lab.
 */
async function writeNodeFiles(fx: Fixtures): Promise<void> {
  const etcd = (fx.l2.conf.ipam as { etcd: EtcdConnConfig }).etcd;
  const client = new EtcdClient(etcd);
  try {
    const lease = await leaseGrant(client, 24 * 3600);
    const file = (nodeName: string): Parameters<typeof writeNodeFile>[1] => ({ nodeName, nodeIp: '192.0.2.10', lease, etcd, updated: new Date().toISOString() });
    writeNodeFile(fx.l2.runDir, file(fx.l2.nodeName));
    writeNodeFile(fx.l2.otherNodeRunDir, file('fz-other'));
    const dead = await leaseGrant(client, 60);
    await leaseRevoke(client, dead);
    writeNodeFile(fx.l2.deadLeaseRunDir, { ...file(fx.l2.nodeName), lease: dead });
    fs.mkdirSync(path.dirname(nodeFilePath(fx.l2.corruptRunDir)), { recursive: true });
    fs.writeFileSync(nodeFilePath(fx.l2.corruptRunDir), '{"nodeName":"fz1","nodeIp":');
  } finally {
    client.close();
  }
}

export async function work(spec: WorkerSpec): Promise<Report> {
  const t0 = Date.now();
  const fx = spec.fixtures;
  await writeNodeFiles(fx);
  const podName = path.basename(fx.podNetns);
  const host = new Host(fx, podName);
  host.init();
  const rep: Report = { seed: spec.seed, cases: 0, inProcess: 0, exec: 0, passed: 0, failed: 0, crashes: 0, wrong: 0, leaks: 0, residue: 0, hangs: 0, netnsClass: 0, failures: [], addsOk: {}, ms: 0 };
  const shown = new Map<string, number>();
  const timing = { run: 0, snap: 0 };
  const record = (f: Failure): void => {
    const key = `${f.verdict}:${f.plugin}:${f.verb}:${f.why.slice(0, 60)}`;
    const n = shown.get(key) ?? 0;
    shown.set(key, n + 1);
    if (spec.verbose || (n === 0 && rep.failures.length < 200)) rep.failures.push(f);
  };

  const one = async (mode: 'in-process' | 'exec', index: number, c: Case): Promise<void> => {
    rep.cases++;
    if (mode === 'exec') rep.exec++; else rep.inProcess++;
    const run = (x: Case): Promise<Out> => (mode === 'exec' ? runExec(spec.binDir, x, spec.timeoutMs) : runInProcess(x, spec.timeoutMs));
    const o = await run(c);
    timing.run += o.ms;
    if (process.env.FUZZ_PROGRESS && o.ms > Number(process.env.FUZZ_SLOW_MS ?? 1000)) process.stderr.write(`  slow (${o.ms} ms): ${mode} #${index} ${c.plugin} ${c.verb} ${c.label}\n`);
    const v = judge(c, o);
    if (c.verb === 'ADD' && o.exitCode === 0) rep.addsOk[c.plugin] = (rep.addsOk[c.plugin] ?? 0) + 1;
    let bad = false;
    const base = { mode, index, plugin: c.plugin, verb: c.verb, label: c.label, out: `exit ${o.exitCode} ${o.stdout.slice(0, 300)}` };
    if (v.verdict === 'netns') { rep.netnsClass++; record({ ...base, verdict: 'netns', why: v.why }); }
    else if (v.verdict !== 'pass') {
      bad = true;
      if (v.verdict === 'crash') rep.crashes++; else if (v.verdict === 'wrong') rep.wrong++; else if (v.verdict === 'hang') rep.hangs++;
      record({ ...base, verdict: v.verdict, why: v.why });
    }
    if (c.mayCreate) {
      const del = cleanupCase(c, o.exitCode === 0, fx);
      const d = await run(del);
      const dv = judge(del, d);
      if (dv.verdict !== 'pass') {
        bad = true;
        rep.leaks++;
        record({ ...base, verdict: 'leak', why: `cleanup DEL failed: ${dv.why}`, out: `exit ${d.exitCode} ${d.stdout.slice(0, 300)}` });
      }
      const ts = Date.now();
      const s = await host.snapshot(c.plugin === 'knit-etcd-ipam' || c.plugin === 'knit-l2overlay');
      timing.snap += Date.now() - ts;
      if (!empty(s)) {
        bad = true;
        rep.residue++;
        record({ ...base, verdict: 'residue', why: `after the cleanup DEL: ${describeSnap(s)}` });
        await host.scrub(s);
      }
    }
    if (bad) rep.failed++; else rep.passed++;
  };

  // Baseline: a good ADD + DEL of every plugin makes the things that stay (bridges, the nat table).
  const inArb = caseArb(fx, { inProcess: true, plugins: spec.plugins });
  const inCases = spec.runs > 0 ? fc.sample(inArb, { seed: spec.seed, numRuns: spec.runs }) : [];
  for (let i = 0; i < inCases.length; i++) {
    await one('in-process', i, inCases[i]!);
    if (process.env.FUZZ_PROGRESS && i % 500 === 499) process.stderr.write(`  in-process ${i + 1}/${inCases.length}\n`);
  }
  const exArb = caseArb(fx, { plugins: spec.plugins });
  const exCases = spec.execRuns > 0 ? fc.sample(exArb, { seed: spec.seed + 1, numRuns: spec.execRuns }) : [];
  // Exec'd: a bounded number at once (2 CPUs shared), each case and its cleanup in order.
  for (let i = 0; i < exCases.length; i++) {
    const c = exCases[i]!;
    if (Object.values(c.env).some((v) => v.includes('\u0000'))) { rep.cases++; rep.exec++; rep.passed++; continue; } // no such environment can be exec'd
    await one('exec', i, c);
    if (process.env.FUZZ_PROGRESS && i % 50 === 49) process.stderr.write(`  exec ${i + 1}/${exCases.length}\n`);
  }
  rep.ms = Date.now() - t0;
  if (process.env.FUZZ_PROGRESS) process.stderr.write(`  time: answers ${timing.run} ms, residue checks ${timing.snap} ms, total ${rep.ms} ms\n`);
  return rep;
}

/** Replays one case by mode and index (for a failure report): prints it and its answer. */
export async function replay(spec: WorkerSpec, mode: 'in-process' | 'exec', index: number): Promise<void> {
  const fx = spec.fixtures;
  await writeNodeFiles(fx);
  const arb = caseArb(fx, { plugins: spec.plugins, ...(mode === 'in-process' ? { inProcess: true } : {}) });
  const c = fc.sample(arb, { seed: mode === 'in-process' ? spec.seed : spec.seed + 1, numRuns: index + 1 })[index]!;
  const o = mode === 'exec' ? await runExec(spec.binDir, c, spec.timeoutMs) : await runInProcess(c, spec.timeoutMs);
  console.log(JSON.stringify({ plugin: c.plugin, verb: c.verb, label: c.label, env: c.env, stdin: c.stdin.toString('utf8').slice(0, 2000), expect: c.expect, out: o, verdict: judge(c, o) }, null, 2));
}

if (require.main === module) {
  const spec = JSON.parse(process.env.FUZZ_SPEC!) as WorkerSpec;
  const rp = process.env.FUZZ_REPLAY;
  (rp ? replay(spec, rp.split(':')[0] as 'exec', Number(rp.split(':')[1])) : work(spec).then((r) => fs.writeFileSync(spec.report, JSON.stringify(r))))
    .then(() => process.exit(0), (e) => { console.error(e); process.exit(2); });
}
