// Real etcd for tests (Debian's etcd-server, docs/design.md D7): one member or a cluster of
// three on loopback (or on a lab namespace's address) with random free ports and temporary data
// directories, optionally with TLS (a throw-away CA and certificates made with openssl) and with
// auth enabled (root user and a role limited to a prefix). Every member is killed and every
// directory removed on stop(), on process exit and on SIGINT/SIGTERM.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Netns } from './lab';

export const ETCD_BIN = '/usr/bin/etcd';
export const ETCDCTL_BIN = '/usr/bin/etcdctl';

export function haveEtcd(): boolean {
  return fs.existsSync(ETCD_BIN) && fs.existsSync(ETCDCTL_BIN);
}

/** Mocha: skip (saying why) when Debian's etcd is not installed. */
export function requireEtcd(ctx: Mocha.Context): void {
  if (!haveEtcd()) {
    console.log(`      skipped: ${ctx.test?.parent?.title ?? 'suite'} needs ${ETCD_BIN} (Debian etcd-server; scripts/bootstrap installs it)`);
    ctx.skip();
  }
}

export interface TlsFiles {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for `ips` and a client certificate (CN "root"), in a temp dir. */
export function makeTls(ips: string[] = ['127.0.0.1']): TlsFiles {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-etcd-tls-'));
  tmpDirs.add(dir);
  hookExit();
  const f = (n: string): string => path.join(dir, n);
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { stdio: 'ignore', cwd: dir }); };
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=knit-test-ca', '-keyout', f('ca.key'), '-out', f('ca.crt'));
  const leaf = (name: string, cn: string, ext: string): void => {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', cn ? `/CN=${cn}` : '/O=knit-client', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    fs.writeFileSync(f(`${name}.ext`), ext);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.crt`));
  };
  leaf('server', 'etcd', `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  // No CommonName: with auth enabled, etcd 3.4's JSON gateway refuses client certificates that
  // carry one ("CommonName of client sending a request against gateway will be ignored").
  leaf('client', '', 'extendedKeyUsage=clientAuth\nsubjectAltName=DNS:knit-client\n');
  return { dir, ca: f('ca.crt'), serverCert: f('server.crt'), serverKey: f('server.key'), clientCert: f('client.crt'), clientKey: f('client.key') };
}

export interface EtcdOptions {
  members?: number;
  /** Address to listen on (default 127.0.0.1); with `netns`, an address of that namespace. */
  host?: string;
  /** Run the members inside this lab namespace (its own loopback). */
  netns?: Netns;
  /** Serve clients over TLS with these files; clientCertAuth requires client certificates. */
  tls?: TlsFiles;
  clientCertAuth?: boolean;
  /** How long start() waits for every member to answer (default 20 s; the kernel lane is slower). */
  readyTimeoutMs?: number;
}

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc: ChildProcess | null;
  log: string[];
}

const tmpDirs = new Set<string>();
const procs = new Set<ChildProcess>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const p of procs) { try { p.kill('SIGKILL'); } catch { /* gone */ } }
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
}

/** Ports the kernel says are free now (bound to port 0 and closed). */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: net.Server[] = [];
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.createServer();
    await new Promise<void>((res, rej) => { s.once('error', rej); s.listen(0, host, () => res()); });
    servers.push(s);
    ports.push((s.address() as net.AddressInfo).port);
  }
  await Promise.all(servers.map((s) => new Promise((res) => s.close(res))));
  return ports;
}

export class EtcdCluster {
  readonly host: string;
  readonly scheme: 'http' | 'https';
  readonly members: Member[] = [];
  private readonly root: string;

  private constructor(readonly opts: EtcdOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.scheme = opts.tls ? 'https' : 'http';
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-etcd-'));
    tmpDirs.add(this.root);
    hookExit();
  }

  /** Starts the members and waits until the cluster answers. */
  static async start(opts: EtcdOptions = {}): Promise<EtcdCluster> {
    const c = new EtcdCluster(opts);
    const n = opts.members ?? 1;
    // Inside a lab netns no other process competes for ports; loopback of the root netns: ask.
    const ports = opts.netns ? Array.from({ length: 2 * n }, (_, i) => 23790 + i) : await freePorts(2 * n);
    for (let i = 0; i < n; i++) {
      c.members.push({ name: `m${i}`, clientPort: ports[2 * i]!, peerPort: ports[2 * i + 1]!, dataDir: path.join(c.root, `m${i}`), proc: null, log: [] });
    }
    for (const m of c.members) c.spawn(m, 'new');
    await c.waitReady(c.members, opts.readyTimeoutMs);
    return c;
  }

  get endpoints(): string[] {
    return this.members.map((m) => this.endpoint(m));
  }

  endpoint(m: Member): string {
    return `${this.scheme}://${this.host}:${m.clientPort}`;
  }

  private spawn(m: Member, state: 'new' | 'existing'): void {
    const t = this.opts.tls;
    const cluster = this.members.map((x) => `${x.name}=http://${this.host}:${x.peerPort}`).join(',');
    const args = [
      '--name', m.name, '--data-dir', m.dataDir,
      '--listen-client-urls', this.endpoint(m), '--advertise-client-urls', this.endpoint(m),
      '--listen-peer-urls', `http://${this.host}:${m.peerPort}`, '--initial-advertise-peer-urls', `http://${this.host}:${m.peerPort}`,
      '--initial-cluster', cluster, '--initial-cluster-state', state, '--initial-cluster-token', path.basename(this.root),
      '--heartbeat-interval', '50', '--election-timeout', '500', '--log-level', 'warn', '--logger', 'zap',
      ...(t ? ['--cert-file', t.serverCert, '--key-file', t.serverKey, '--trusted-ca-file', t.ca] : []),
      ...(t && this.opts.clientCertAuth ? ['--client-cert-auth'] : []),
    ];
    const env = { ...process.env };
    const proc = this.opts.netns
      ? spawn('ip', ['netns', 'exec', this.opts.netns.name, ETCD_BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(ETCD_BIN, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    m.proc = proc;
    procs.add(proc);
    proc.stderr!.on('data', (d: Buffer) => { m.log.push(d.toString()); if (m.log.length > 200) m.log.shift(); });
    proc.on('exit', () => { procs.delete(proc); if (m.proc === proc) m.proc = null; });
  }

  /** Kills member i (SIGKILL: a crash, not a clean stop) and waits until it is gone. */
  async kill(i: number): Promise<void> {
    const m = this.members[i]!;
    const p = m.proc;
    if (!p) return;
    const gone = new Promise((res) => p.once('exit', res));
    p.kill('SIGKILL');
    await gone;
  }

  /** SIGSTOP / SIGCONT: the member keeps its sockets but answers nothing (a blackholed member). */
  freeze(i: number, frozen: boolean): void {
    this.members[i]!.proc?.kill(frozen ? 'SIGSTOP' : 'SIGCONT');
  }

  /** Restarts a killed member with its data and waits until the cluster answers through it. */
  async restart(i: number): Promise<void> {
    const m = this.members[i]!;
    if (m.proc) return;
    this.spawn(m, 'existing');
    await this.waitReady([m]);
  }

  /** Waits until each given member (default all) answers a linearizable read. */
  async waitReady(members: Member[] = this.members, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of members) {
      for (;;) {
        if (await this.probe(m)) break;
        if (Date.now() > deadline) throw new Error(`etcd ${m.name} (${this.endpoint(m)}) not ready after ${timeoutMs} ms:\n${m.log.join('').slice(-2000)}`);
        if (!m.proc) throw new Error(`etcd ${m.name} exited:\n${m.log.join('').slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private probe(m: Member): Promise<boolean> {
    if (this.opts.netns) {
      // The member lives in another netns: ask from there.
      try {
        execFileSync('ip', ['netns', 'exec', this.opts.netns.name, ETCDCTL_BIN, ...this.ctlArgs(m), 'get', 'probe'], { stdio: 'ignore', timeout: 3000 });
        return Promise.resolve(true);
      } catch { return Promise.resolve(false); }
    }
    const t = this.opts.tls;
    const mod = t ? https : http;
    return new Promise((resolve) => {
      const req = mod.request(`${this.endpoint(m)}/v3/kv/range`, {
        method: 'POST', timeout: 1000,
        ...(t ? { ca: fs.readFileSync(t.ca), cert: fs.readFileSync(t.clientCert), key: fs.readFileSync(t.clientKey) } : {}),
      }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        // An auth-enabled cluster answers "user name is empty": still a live cluster.
        res.on('end', () => resolve(res.statusCode === 200 || /user name is empty|invalid auth token/.test(body)));
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => { req.destroy(); resolve(false); });
      req.end(JSON.stringify({ key: Buffer.from('probe').toString('base64') }));
    });
  }

  private ctlArgs(m?: Member): string[] {
    const t = this.opts.tls;
    return [
      '--endpoints', m ? this.endpoint(m) : this.endpoints.join(','), '--command-timeout', '5s',
      ...(t ? ['--cacert', t.ca, '--cert', t.clientCert, '--key', t.clientKey] : []),
    ];
  }

  /** etcdctl against the cluster (ETCDCTL_API=3); throws on failure. */
  ctl(args: string[], user?: string): string {
    const full = [...this.ctlArgs(), ...(user ? ['--user', user] : []), ...args];
    const env = { ...process.env, ETCDCTL_API: '3' };
    return this.opts.netns
      ? execFileSync('ip', ['netns', 'exec', this.opts.netns.name, ETCDCTL_BIN, ...full], { encoding: 'utf8', env })
      : execFileSync(ETCDCTL_BIN, full, { encoding: 'utf8', env });
  }

  /** Every key under prefix with its value (for oracles). */
  dump(prefix: string, user?: string): Map<string, string> {
    const out = this.ctl(['get', '--prefix', prefix, '-w', 'json'], user);
    const kvs = (JSON.parse(out).kvs ?? []) as Array<{ key: string; value?: string }>;
    return new Map(kvs.map((kv) => [Buffer.from(kv.key, 'base64').toString(), Buffer.from(kv.value ?? '', 'base64').toString()]));
  }

  /**
   * Auth: root (password rootPw) and user `user` (password pw) whose role may read and write
   * keys under `prefix` only; then auth enable.
   */
  enableAuth(opts: { rootPw: string; user: string; pw: string; prefix: string }): void {
    this.ctl(['user', 'add', `root:${opts.rootPw}`]);
    this.ctl(['role', 'add', 'root']);
    this.ctl(['user', 'grant-role', 'root', 'root']);
    this.ctl(['role', 'add', 'knit']);
    this.ctl(['role', 'grant-permission', 'knit', '--prefix=true', 'readwrite', opts.prefix]);
    this.ctl(['user', 'add', `${opts.user}:${opts.pw}`]);
    this.ctl(['user', 'grant-role', opts.user, 'knit']);
    this.ctl(['auth', 'enable']);
  }

  /** Kills every member and removes the data directories. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((_, i) => { this.freeze(i, false); return this.kill(i); }));
    fs.rmSync(this.root, { recursive: true, force: true });
    tmpDirs.delete(this.root);
  }
}
