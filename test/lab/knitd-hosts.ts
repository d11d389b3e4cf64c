// Lab hosts running knitd, one home for what the multi-host integration tests share: a host on the
// lab switch at <net>.<i>/24 with its own run, state, conf and IPAM directories under the run's
// temporary directory; knitd spawned in the host's namespace, in mesh mode (--datastore mesh,
// docs/mesh.md, with the shared password file) or on etcd, with its stderr kept (the tail printed
// when a test fails); stop, and SIGKILL of every knitd in after(). What each test asserts stays
// in the test.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, type Host, type Switch } from './lab';
import { buildKnit, eventually, type KnitBuild } from './cni';

export interface KnitdHost {
  name: string;
  addr: string;
  host: Host;
  runDir: string;
  stateDir: string;
  /** --cni-conf-dir: where knitd writes the named networks' conflists. */
  confDir: string;
  /** --cni-socket-dir: where knitd serves the plugins (KNIT_CNI_SOCKET_DIR to reach it). */
  sockDir: string;
  /** For knit-host-local's dataDir (pod network pods). */
  dataDir: string;
  knitd?: ChildProcess;
  log: string[];
}

export interface StartOptions {
  /** The password file (default the shared one: a wrong one for a refused knitd). */
  passwordFile?: string;
  /** --lease-ttl seconds (default 8: nodes gone leave within seconds). */
  ttlSec?: number;
  /** More knitd flags (--ipam-gc-interval, --mesh-fanout ...). */
  extra?: string[];
  /** Keep at most this many stderr chunks (the oldest half dropped): long runs. */
  logCap?: number;
  /** Also append stderr, each line timestamped, to this file. */
  logFile?: string | null;
}

export const MESH_PASSWORD = 'correct horse battery staple';

export class KnitdHosts {
  readonly nodes: KnitdHost[] = [];
  readonly pwFile: string;
  /** Every knitd started and not yet exited (killAll's list: hosts not in `nodes` too). */
  private readonly procs = new Set<ChildProcess>();

  /**
   * A build of `binaries` (knitd among them), a new lab with its switch and a temporary directory
   * `<tmpPrefix>XXXXXX`: what before() of a mesh suite needs; cleanup() undoes it all.
   */
  static async open(binaries: string[], net: string, tmpPrefix: string): Promise<KnitdHosts> {
    const knit = await buildKnit(binaries);
    const lab = new Lab();
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    return new KnitdHosts(lab, knit, await lab.switch(), tmp, net);
  }

  /** `net`: the hosts' /24 as three octets ("192.168.61"); `tmp`: the test's temporary directory. */
  constructor(readonly lab: Lab, readonly knit: KnitBuild, readonly sw: Switch, readonly tmp: string, private readonly net: string) {
    this.pwFile = path.join(tmp, 'mesh-password');
    fs.writeFileSync(this.pwFile, `${MESH_PASSWORD}\n`, { mode: 0o600 });
  }

  /** A lab host `name` at <net>.<i> with its directories; `more` is merged into it (a test's own fields). Not added to `nodes`. */
  async make<T extends object = object>(name: string, i: number, more?: T): Promise<KnitdHost & T> {
    const addr = `${this.net}.${i}`;
    const host = await this.lab.host(name, this.sw, { address: `${addr}/24` });
    const d = fs.mkdtempSync(path.join(this.tmp, `${name}-`));
    const runDir = path.join(d, 'run');
    const h: KnitdHost = {
      name, addr, host, runDir, stateDir: path.join(d, 'state'), confDir: path.join(d, 'net.d'), sockDir: path.join(runDir, 'cni'), dataDir: path.join(d, 'ipam'), log: [],
    };
    return Object.assign(h, more ?? {}) as KnitdHost & T;
  }

  /**
   * `count` hosts h1..hN at <net>.1..N, added to `nodes`; returns `nodes` itself (typed with the
   * test's fields), so hosts a test pushes later get their logs printed too.
   */
  async add<T extends object = object>(count: number, more?: () => T): Promise<Array<KnitdHost & T>> {
    for (let i = 1; i <= count; i++) this.nodes.push(await this.make(`h${i}`, i, more?.()));
    return this.nodes as Array<KnitdHost & T>;
  }

  /** knitd --datastore mesh on `n`, dialing `peers` first; its log starts empty. */
  start(n: KnitdHost, peers: KnitdHost[], o: StartOptions = {}): void {
    this.spawnKnitd(n, ['--datastore', 'mesh', ...(peers.length ? ['--peers', peers.map((p) => p.addr).join(',')] : []), '--mesh-password-file', o.passwordFile ?? this.pwFile], o);
  }

  /** knitd on etcd (`endpoint`, keys under `prefix`) on `n`; its log starts empty. */
  startOnEtcd(n: KnitdHost, endpoint: string, prefix: string, o: StartOptions = {}): void {
    this.spawnKnitd(n, ['--etcd-endpoints', endpoint, '--etcd-prefix', prefix], o);
  }

  private spawnKnitd(n: KnitdHost, datastore: string[], o: StartOptions): void {
    n.log = [];
    const proc = spawn('ip', ['netns', 'exec', n.host.name, this.knit.bin('knitd'), '--cni-socket-dir', n.sockDir, ...datastore,
      '--node-name', n.name, '--iface', 'eth0', '--run-dir', n.runDir, '--state-dir', n.stateDir, '--cni-conf-dir', n.confDir,
      '--lease-ttl', String(o.ttlSec ?? 8), '--resync-interval', '5', '--log-level', 'debug', ...(o.extra ?? [])],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    proc.stderr!.on('data', (d: Buffer) => {
      n.log.push(d.toString());
      if (o.logCap && n.log.length > o.logCap) n.log.splice(0, o.logCap / 2);
      if (o.logFile) fs.appendFileSync(o.logFile, d.toString().replace(/^(?=.)/gm, `${new Date().toISOString()} `));
    });
    this.procs.add(proc);
    proc.once('exit', () => this.procs.delete(proc));
    n.knitd = proc;
  }

  /** Each of `ns` (default all) started as a star around the first: each later one told only the first. */
  startAll(ns: KnitdHost[] = this.nodes, o: StartOptions = {}): void {
    for (const [i, n] of ns.entries()) this.start(n, i ? [ns[0]!] : [], o);
  }

  /** Stops n's knitd (SIGTERM unless told) and waits for it to exit. */
  async stop(n: KnitdHost, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = n.knitd;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
    n.knitd = undefined;
  }

  /** Whether n's knitd is running. */
  alive(n: KnitdHost): boolean {
    return !!n.knitd && n.knitd.exitCode === null && n.knitd.signalCode === null;
  }

  /** Until every one of `ns` (default all) serves knitctl on <runDir>/mesh.sock. */
  sockets(ns: KnitdHost[] = this.nodes, ms = 20_000): Promise<void> {
    return eventually(() => ns.every((n) => fs.existsSync(path.join(n.runDir, 'mesh.sock'))), ms, `control sockets of ${ns.map((n) => n.name).join(', ')}`);
  }

  /** knitctl on n's host against n's knitd (--run-dir appended), never throwing on its exit code. */
  ctl(n: KnitdHost, args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string; code: number }> {
    return this.lab.exec(n.host, this.knit.bin('knitctl'), [...args, '--run-dir', n.runDir],
      { env: { NODE_EXTRA_CA_CERTS: undefined, KNIT_ETCD_ENDPOINTS: undefined }, allowFail: true, ...(timeoutMs ? { timeoutMs } : {}) });
  }

  /** The last `lines` lines of n's log. */
  tail(n: KnitdHost, lines = 25): string {
    return n.log.join('').split('\n').slice(-lines).join('\n');
  }

  /** For afterEach: every knitd's log tail when the test failed. */
  printLogsIfFailed(state: string | undefined, lines = 25): void {
    if (state === 'failed') for (const n of this.nodes) console.log(`--- knitd ${n.name} log\n${this.tail(n, lines)}`);
  }

  /** For after(): SIGKILL every knitd started (also of hosts not in `nodes`). */
  killAll(): void {
    for (const p of this.procs) p.kill('SIGKILL');
  }

  /** For after() of a suite opened with open(): every knitd killed, the lab and the temporary directory removed. */
  async cleanup(): Promise<void> {
    this.killAll();
    await this.lab.cleanup();
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}
