// The netns lab: test topologies built from network namespaces only. An underlay "switch"
// is a bridge inside its own netns; "hosts" hang off it by veth; pods are further netns.
// Every object carries the per-run prefix and is removed in cleanup(), on process exit and
// on SIGINT/SIGTERM, so a failing test leaves nothing; scripts/lab-clean removes leftovers.
// Nothing here touches the root namespace: veth pairs are created inside a lab netns with
// their peer placed directly in another lab netns.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** All lab namespaces match /^knt[0-9a-f]{4}-/; scripts/lab-clean relies on this. */
export const LAB_MARK = 'knt';
export const RUN_PREFIX: string = process.env.KNIT_LAB_PREFIX ?? LAB_MARK + randomBytes(2).toString('hex');

export interface Netns {
  /** Name under /run/netns. */
  name: string;
  /** Path to hand to CNI_NETNS or the netlink addon. */
  path: string;
}

export interface Switch extends Netns {
  bridge: string;
}

export interface Host extends Netns {
  /** The host's underlay interface (inside the host netns). */
  ifName: string;
  /** The host's underlay address without prefix, when one was given. */
  address?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ExecOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  timeoutMs?: number;
  /** When false (default), a non-zero exit throws. */
  allowFail?: boolean;
}

export interface PluginCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  path?: string[];
  conf: object | string;
  env?: Record<string, string | undefined>;
  /** Kill it after this long (default exec's 30 s; the kernel lane under load needs more). */
  timeoutMs?: number;
}

export interface PluginOutput extends ExecResult {
  /** stdout parsed as JSON, or undefined when empty or not JSON. */
  json: any;
}

const live = new Set<string>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', removeAllSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => { removeAllSync(); process.exit(130); });
  }
}

/** Synchronous last-resort cleanup: kill what runs in our namespaces, then delete them. */
export function removeAllSync(): void {
  for (const name of [...live]) removeNetnsSync(name);
}

function removeNetnsSync(name: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    }
  } catch { /* netns already gone */ }
  try { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }); } catch { /* already gone */ }
  live.delete(name);
}

export function run(file: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (v === undefined) delete env[k]; else env[k] = v;
    }
    const child = execFile(file, args, { env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        const res = { stdout, stderr, code };
        if (code !== 0 && !opts.allowFail) {
          reject(new Error(`${file} ${args.join(' ')} exited ${code}: ${stderr.trim() || stdout.trim()}`));
        } else resolve(res);
      });
    if (opts.input !== undefined) child.stdin?.end(opts.input); else child.stdin?.end();
  });
}

let labCount = 0;

export class Lab {
  readonly prefix: string;
  private readonly mine: string[] = [];

  constructor() {
    this.prefix = `${RUN_PREFIX}-${labCount++}`;
    hookExit();
  }

  /** A fresh netns named <prefix>-<name>, loopback up. */
  async netns(name: string): Promise<Netns> {
    const full = `${this.prefix}-${name}`;
    await run('ip', ['netns', 'add', full]);
    live.add(full);
    this.mine.push(full);
    await run('ip', ['-n', full, 'link', 'set', 'lo', 'up']);
    return { name: full, path: `/run/netns/${full}` };
  }

  /** An underlay switch: a netns holding bridge br0, up. */
  async switch(name = 'sw'): Promise<Switch> {
    const ns = await this.netns(name);
    await run('ip', ['-n', ns.name, 'link', 'add', 'br0', 'type', 'bridge']);
    await run('ip', ['-n', ns.name, 'link', 'set', 'br0', 'up']);
    return { ...ns, bridge: 'br0' };
  }

  /** A host netns attached to the switch by a veth (eth0 inside the host), optionally addressed. */
  async host(name: string, sw: Switch, opts: { address?: string; mtu?: number; ifName?: string } = {}): Promise<Host> {
    const ns = await this.netns(name);
    const ifName = opts.ifName ?? 'eth0';
    const port = `p-${name}`.slice(0, 15);
    // Created inside the switch netns with the peer placed straight into the host netns.
    await run('ip', ['-n', sw.name, 'link', 'add', port, ...(opts.mtu ? ['mtu', String(opts.mtu)] : []),
      'type', 'veth', 'peer', 'name', ifName, 'netns', ns.name]);
    await run('ip', ['-n', sw.name, 'link', 'set', port, 'master', sw.bridge, 'up']);
    if (opts.mtu) await run('ip', ['-n', ns.name, 'link', 'set', ifName, 'mtu', String(opts.mtu)]);
    await run('ip', ['-n', ns.name, 'link', 'set', ifName, 'up']);
    const host: Host = { ...ns, ifName };
    if (opts.address) {
      await run('ip', ['-n', ns.name, 'addr', 'add', opts.address, 'dev', ifName]);
      host.address = opts.address.split('/')[0]!;
    }
    return host;
  }

  /** A pod: an empty netns with loopback up, for a plugin to wire. */
  pod(name: string): Promise<Netns> {
    return this.netns(name);
  }

  /** Runs a command inside a lab netns (ip netns exec), or in the test's own namespace when ns is null. */
  exec(ns: Netns | null, file: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return ns ? run('ip', ['netns', 'exec', ns.name, file, ...args], opts) : run(file, args, opts);
  }

  async ip(ns: Netns, args: string[]): Promise<string> {
    return (await run('ip', ['-n', ns.name, ...args])).stdout;
  }

  /** `ip -json` inside ns, parsed: the oracle the netlink tests compare against. */
  async ipJson<T = any>(ns: Netns, args: string[]): Promise<T> {
    const out = await this.ip(ns, ['-json', ...args]);
    return (out.trim() ? JSON.parse(out) : []) as T;
  }

  /** Runs a CNI executable "on" a host: inside its netns, with the CNI_* environment. */
  async runPlugin(host: Netns | null, plugin: string, call: PluginCall): Promise<PluginOutput> {
    const env: Record<string, string | undefined> = {
      NODE_EXTRA_CA_CERTS: undefined,
      CNI_COMMAND: call.command,
      CNI_CONTAINERID: call.containerId,
      CNI_NETNS: call.netns,
      CNI_IFNAME: call.ifName,
      CNI_ARGS: call.args,
      CNI_PATH: call.path?.join(':'),
      ...call.env,
    };
    const input = typeof call.conf === 'string' ? call.conf : JSON.stringify(call.conf);
    const res = await this.exec(host, plugin, [], { env, input, allowFail: true, ...(call.timeoutMs ? { timeoutMs: call.timeoutMs } : {}) });
    let json: any;
    try { json = res.stdout.trim() ? JSON.parse(res.stdout) : undefined; } catch { json = undefined; }
    return { ...res, json };
  }

  /** True when `count` pings from ns to addr all get an answer. */
  async ping(from: Netns, addr: string, count = 1): Promise<boolean> {
    const v6 = addr.includes(':');
    const res = await this.exec(from, 'ping', [...(v6 ? ['-6'] : []), '-c', String(count), '-i', '0.2', '-W', '1', addr],
      { allowFail: true, timeoutMs: 10_000 });
    return res.code === 0;
  }

  /** Removes every namespace this lab made (and whatever runs in them). */
  async cleanup(): Promise<void> {
    for (const name of this.mine.splice(0).reverse()) removeNetnsSync(name);
  }
}

/** Mocha: skip (saying why) unless we are root with iproute2; lab tests need both. */
export function requireRoot(ctx: Mocha.Context): void {
  if (process.getuid?.() !== 0) {
    console.log(`      skipped: ${ctx.test?.parent?.title ?? 'suite'} needs root for network namespaces`);
    ctx.skip();
  }
}

/** The lab's own namespaces that exist right now (for leak assertions). */
export function listLabNetns(prefix: string = RUN_PREFIX): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out.split('\n').map((l) => l.split(' ')[0]!).filter((n) => n && n.startsWith(prefix));
}
