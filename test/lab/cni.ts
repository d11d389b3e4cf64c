// Shared helpers for tests that run knit's CNI executables in the netns lab: a private build of
// the plugins (so other executables' work in progress in dist/ cannot break a suite), and
// oracles that look at a lab host from the outside (links by attachment alias, nftables state,
// host-local reservation files).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import { chainName, NAT_TABLE } from '../../pkg/nat/masq';
import { ISOLATION_TABLE } from '../../pkg/nat/isolation';
import { run, type Lab, type Netns } from './lab';

const ROOT = path.resolve(__dirname, '../..');
const BANNER = ['#!/bin/sh', `':' //; unset NODE_EXTRA_CA_CERTS; exec "\${KNIT_NODE:-node}" "$0" "$@"`].join('\n');

export interface ExecOut { code: number; stdout: string; stderr: string; json: any; ms: number }

/**
 * Runs an executable in this namespace (no lab netns: IPAM plugins, knitctl) with `env` over this
 * process's (undefined removes a variable; NODE_EXTRA_CA_CERTS and NODE_OPTIONS are never passed)
 * and `input` on stdin. stdout is parsed as JSON when it is JSON.
 */
export function execJson(file: string, args: string[], env: Record<string, string | undefined>, input = ''): Promise<ExecOut> {
  return new Promise((resolve, reject) => {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete e.NODE_EXTRA_CA_CERTS;
    delete e.NODE_OPTIONS;
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete e[k];
    const t0 = Date.now();
    const child = spawn(file, args, { env: e, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: any;
      try { json = stdout.trim() ? JSON.parse(stdout) : undefined; } catch { json = undefined; }
      resolve({ code: code ?? -1, stdout, stderr, json, ms: Date.now() - t0 });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** The reference plugins (Debian containernetworking-plugins). */
export const REF_CNI_DIR = '/usr/lib/cni';

export interface KnitBuild {
  /** Directory holding the executables (put it on CNI_PATH). */
  binDir: string;
  /** Absolute path of one executable. */
  bin(name: string): string;
}

const builds = new Map<string, Promise<KnitBuild>>();
const tmpRoots: string[] = [];
let exitHooked = false;

/**
 * Bundles cmd/<name>/main.ts for each name into a temp <dir>/bin, the way `npm run build` does,
 * with the native addon in <dir>/lib where the bundles look for it. Built once per process.
 */
export function buildKnit(names: readonly string[] = ['knit-bridge', 'knit-host-local']): Promise<KnitBuild> {
  const key = [...names].sort().join(',');
  let p = builds.get(key);
  if (!p) {
    p = doBuild(names);
    builds.set(key, p);
    p.catch(() => builds.delete(key));
  }
  return p;
}

async function doBuild(names: readonly string[]): Promise<KnitBuild> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-plugins-'));
  tmpRoots.push(root);
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => { for (const r of tmpRoots) fs.rmSync(r, { recursive: true, force: true }); });
  }
  const binDir = path.join(root, 'bin');
  fs.mkdirSync(binDir, { recursive: true });
  fs.mkdirSync(path.join(root, 'lib'), { recursive: true });
  const addon = [path.join(ROOT, 'build/Release/knit_netlink.node'), path.join(ROOT, 'dist/lib/knit_netlink.node')].find((f) => fs.existsSync(f));
  if (!addon) throw new Error('knit_netlink.node not found in build/Release or dist/lib: run npm install');
  fs.copyFileSync(addon, path.join(root, 'lib/knit_netlink.node'));
  fs.writeFileSync(path.join(root, 'package.json'), '{"type":"commonjs"}\n');
  await Promise.all(names.map(async (name) => {
    const out = path.join(binDir, name);
    await build({
      entryPoints: [path.join(ROOT, 'cmd', name, 'main.ts')], outfile: out, bundle: true, platform: 'node',
      target: 'node20', format: 'cjs', banner: { js: BANNER }, external: ['*.node', '@kubernetes/client-node'], logLevel: 'warning',
    });
    fs.chmodSync(out, 0o755);
  }));
  // As esbuild.config.mjs: the Kubernetes client beside knitd and knitctl, loaded only when they talk to the API.
  if (names.includes('knitd') || names.includes('knitctl')) {
    await build({
      stdin: { contents: "module.exports = require('@kubernetes/client-node');", resolveDir: ROOT, loader: 'js' },
      outfile: path.join(root, 'lib/kube-client.js'), bundle: true, platform: 'node', target: 'node20', format: 'cjs', logLevel: 'warning',
    });
  }
  return { binDir, bin: (name) => path.join(binDir, name) };
}

// ---- oracles -----------------------------------------------------------------------------

export interface IpLink {
  ifname: string;
  ifindex: number;
  ifalias?: string;
  master?: string;
  mtu: number;
  address: string;
  link_type?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_slave_data?: Record<string, unknown>; info_data?: Record<string, unknown> };
  operstate?: string;
  flags?: string[];
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string }>;
}

/** `ip -d -json link show` in ns (details include linkinfo and bridge-port flags). */
export async function links(lab: Lab, ns: Netns): Promise<IpLink[]> {
  return lab.ipJson<IpLink[]>(ns, ['-d', 'link', 'show']);
}

/** Host links whose ifalias names an attachment of `network` (optionally one container). */
export async function attachmentLinks(lab: Lab, host: Netns, network: string, containerId?: string): Promise<IpLink[]> {
  const prefix = `knit:${network}:${containerId !== undefined ? `${containerId}:` : ''}`;
  return (await links(lab, host)).filter((l) => l.ifalias?.startsWith(prefix));
}

/** `ip -json addr show` for one device (undefined when it does not exist). */
export async function linkAddrs(lab: Lab, ns: Netns, dev: string): Promise<IpLink | undefined> {
  const res = await lab.exec(null, 'ip', ['-n', ns.name, '-json', 'addr', 'show', 'dev', dev], { allowFail: true });
  if (res.code !== 0) return undefined;
  return (JSON.parse(res.stdout) as IpLink[])[0];
}

export interface NatState {
  /** Whether table inet knit-nat exists at all. */
  table: boolean;
  /** Subnets in masq4/masq6 jumping to the network's chain. */
  subnets: string[];
  /** Whether the network's chain exists. */
  chain: boolean;
  /** Masquerade rules in the network's chain, per family ('ip' / 'ip6'). */
  rules: { ip: number; ip6: number };
}

/** What table inet knit-nat holds for `network` inside a lab host (the oracle for pkg/nat/masq). */
export async function natState(lab: Lab, host: Netns, network: string): Promise<NatState> {
  const res = await lab.exec(host, 'nft', ['-j', 'list', 'table', 'inet', NAT_TABLE], { allowFail: true });
  const state: NatState = { table: false, subnets: [], chain: false, rules: { ip: 0, ip6: 0 } };
  if (res.code !== 0) return state;
  state.table = true;
  const chain = chainName(network);
  for (const item of (JSON.parse(res.stdout) as { nftables: Array<Record<string, any>> }).nftables) {
    if (item.map && (item.map.name === 'masq4' || item.map.name === 'masq6')) {
      for (const el of item.map.elem ?? []) {
        const [k, v] = Array.isArray(el) ? el : [];
        if (v?.jump?.target !== chain) continue;
        state.subnets.push(typeof k === 'string' ? k : k?.prefix ? `${k.prefix.addr}/${k.prefix.len}` : JSON.stringify(k));
      }
    }
    if (item.chain?.name === chain) state.chain = true;
    if (item.rule?.chain === chain) {
      const text = JSON.stringify(item.rule.expr ?? []);
      if (text.includes('"masquerade"')) {
        if (text.includes('"protocol":"ip6"')) state.rules.ip6++;
        else if (text.includes('"protocol":"ip"')) state.rules.ip++;
      }
    }
  }
  return state;
}

/** Whether natState holds anything for the network. */
export function natEmpty(s: NatState): boolean {
  return !s.chain && s.subnets.length === 0;
}

export interface IsolationOracle {
  /** Whether table inet knit-isolation exists at all. */
  table: boolean;
  /** The network's record (set n_<net>): its bridge(s); empty when it is not isolated. */
  interfaces: string[];
  /** Every element of set bridges (all isolated networks of the host). */
  bridges: string[];
  /** Every element of set same, as "a . b". */
  same: string[];
  /** Drop rules in chain forward (the one shared rule: 1 whenever anything is isolated). */
  dropRules: number;
}

/** What table inet knit-isolation holds inside a lab host (the oracle for pkg/nat/isolation). */
export async function isolationState(lab: Lab, host: Netns, network: string): Promise<IsolationOracle> {
  const res = await lab.exec(host, 'nft', ['-j', 'list', 'table', 'inet', ISOLATION_TABLE], { allowFail: true });
  const state: IsolationOracle = { table: false, interfaces: [], bridges: [], same: [], dropRules: 0 };
  if (res.code !== 0) return state;
  state.table = true;
  const record = chainName(network);
  const str = (e: any): string => (typeof e === 'string' ? e : JSON.stringify(e));
  for (const item of (JSON.parse(res.stdout) as { nftables: Array<Record<string, any>> }).nftables) {
    const set = item.set;
    if (set?.name === record) state.interfaces = (set.elem ?? []).map(str);
    if (set?.name === 'bridges') state.bridges = (set.elem ?? []).map(str);
    if (set?.name === 'same') state.same = (set.elem ?? []).map((e: any) => (e?.concat ? e.concat.join(' . ') : str(e)));
    if (item.rule?.chain === 'forward' && JSON.stringify(item.rule.expr ?? []).includes('"drop"')) state.dropRules++;
  }
  return state;
}

/** Reservation files of host-local (knit's or the reference's: same layout, `<dir>/<network>/<ip>`). */
export function reservations(dataDir: string, network: string): Array<{ ip: string; owner: string }> {
  const knit = path.join(dataDir, network, 'ips');
  const ref = path.join(dataDir, network);
  const dir = fs.existsSync(knit) ? knit : ref;
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .filter((f) => /^[0-9a-f.:]+$/i.test(f) && (f.includes('.') || f.includes(':')))
    .map((f) => ({ ip: f, owner: fs.readFileSync(path.join(dir, f), 'utf8').split(/\r?\n/)[0]! }));
}

/** Reservations of one container. */
export function reservationsOf(dataDir: string, network: string, containerId: string): string[] {
  return reservations(dataDir, network).filter((r) => r.owner === containerId).map((r) => r.ip);
}

/** Waits until `probe` returns true (or throws after timeoutMs). */
export async function eventually(probe: () => Promise<boolean> | boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs `ip netns exec ns sh -c script`, failing loudly. */
export function sh(ns: Netns, script: string): Promise<string> {
  return run('ip', ['netns', 'exec', ns.name, 'sh', '-c', script]).then((r) => r.stdout);
}
