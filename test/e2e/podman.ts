// A podman "host" for the e2e suite: real podman (Debian 4.3, CNI backend) configured entirely
// through temp files, running inside a lab network namespace so that the bridge, the host veths,
// the masquerade and portmap's DNAT all land there and never in the root namespace.
//
// What podman 4.3 needs on these machines (see docs/podman.md, "In the test lab"):
//   containers.conf (CONTAINERS_CONF): network_backend="cni", cni_plugin_dirs, network_config_dir,
//     runtime="runc" (crun fails on this cgroup layout), cgroup_manager="cgroupfs",
//     default_ulimits nofile/nproc, events_logger="file", tmp_dir in the temp dir (else /run/libpod)
//   storage.conf (CONTAINERS_STORAGE_CONF): driver "vfs", graphroot/runroot in the temp dir
//   `--rootfs <busybox-static tree>` (no image is ever pulled) and `--network <conflist name>`.
// podman is entered into the lab netns with `nsenter --net=/run/netns/<ns>`, NOT `ip netns exec`:
// the latter also unshares the mount namespace and remounts /sys, which hides /sys/fs/cgroup,
// and runc then fails with "no cgroup mount found in mountinfo".
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { run, type ExecResult, type Lab, type Netns, type Switch } from '../lab/lab';
import { REF_CNI_DIR, type KnitBuild } from '../lab/cni';

export const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'ping', 'httpd', 'wget', 'ip', 'sleep', 'cat', 'ifconfig', 'ls', 'true', 'nslookup'];
/** The libcni result cache podman uses: <dir>/<network>-<containerId>-<ifName>. */
const CNI_RESULTS = '/var/lib/cni/results';

/** Why podman cannot run containers here (null when it can): missing tools only. */
export function podmanMissing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const [what, args] of [['podman', ['--version']], ['runc', ['--version']], ['nsenter', ['--version']], ['nft', ['--version']]] as const) {
    try { execFileSync(what, args, { stdio: 'ignore' }); } catch { return `${what} is not usable (not installed?)`; }
  }
  if (!fs.existsSync(BUSYBOX)) return `${BUSYBOX} is missing (Debian package busybox-static)`;
  if (!fs.existsSync(path.join(REF_CNI_DIR, 'portmap'))) return `${REF_CNI_DIR}/portmap is missing (containernetworking-plugins)`;
  return null;
}

/** A minimal root filesystem: busybox-static, its applets as symlinks, passwd/group, a web root. */
export function buildRootfs(dir: string): void {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'www', 'root']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(dir, 'bin/busybox'));
  fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
  fs.writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:\nnobody:x:65534:\n');
}

export interface PodmanNetwork {
  name: string;
  bridge: string;
  subnet: string;
  dataDir: string;
}

/** A podman host of its own name, optionally a lab host on an underlay switch (for multi-host suites). */
export interface HostOptions {
  name?: string;
  sw?: Switch;
  /** CIDR of the host's eth0 on sw. */
  address?: string;
}

export interface PodmanOptions {
  timeoutMs?: number;
  allowFail?: boolean;
}

export class PodmanHost {
  /** Temp root holding every file podman and the plugins write (except /var/lib/cni and /run/netns). */
  readonly dir: string;
  readonly rootfs: string;
  readonly binDir: string;
  readonly netDir: string;
  readonly env: Record<string, string>;
  readonly networks: PodmanNetwork[] = [];
  /** Container netns paths podman reported (SandboxKey), to remove if podman leaves one behind. */
  private readonly sandboxes = new Set<string>();

  private constructor(readonly lab: Lab, readonly ns: Netns, dir: string) {
    this.dir = dir;
    this.rootfs = path.join(dir, 'rootfs');
    this.binDir = path.join(dir, 'bin');
    this.netDir = path.join(dir, 'net');
    this.env = { CONTAINERS_CONF: path.join(dir, 'containers.conf'), CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf') };
  }

  /**
   * A lab netns "<prefix>-podman" and a temp dir with the configuration, a plugin directory
   * (symlinks to knit's executables and to the reference plugins named in refPlugins), and the rootfs.
   */
  static async create(lab: Lab, knit: KnitBuild, refPlugins: string[] = ['portmap'], o: HostOptions = {}): Promise<PodmanHost> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${lab.prefix}-podman-`));
    let ns: Netns;
    try {
      ns = o.sw ? await lab.host(o.name ?? 'podman', o.sw, { address: o.address! }) : await lab.netns(o.name ?? 'podman');
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    const h = new PodmanHost(lab, ns, dir);
    for (const d of ['bin', 'net', 'graph', 'run', 'tmp', 'data', 'rootfs']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    for (const name of fs.readdirSync(knit.binDir)) fs.symlinkSync(knit.bin(name), path.join(h.binDir, name));
    for (const name of refPlugins) fs.symlinkSync(path.join(REF_CNI_DIR, name), path.join(h.binDir, name));
    fs.writeFileSync(h.env.CONTAINERS_CONF!, [
      '[containers]',
      'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
      'pids_limit = 0',
      '[network]',
      'network_backend = "cni"',
      `cni_plugin_dirs = [${JSON.stringify(h.binDir)}]`,
      `network_config_dir = ${JSON.stringify(h.netDir)}`,
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `tmp_dir = ${JSON.stringify(path.join(dir, 'tmp'))}`,
      '',
    ].join('\n'));
    fs.writeFileSync(h.env.CONTAINERS_STORAGE_CONF!, [
      '[storage]',
      'driver = "vfs"',
      `graphroot = ${JSON.stringify(path.join(dir, 'graph'))}`,
      `runroot = ${JSON.stringify(path.join(dir, 'run'))}`,
      '',
    ].join('\n'));
    buildRootfs(h.rootfs);
    return h;
  }

  /** podman inside the lab netns (see the header for why nsenter). */
  podman(args: string[], opts: PodmanOptions = {}): Promise<ExecResult> {
    return run('nsenter', [`--net=${this.ns.path}`, 'podman', ...args], {
      env: { ...this.env, NODE_EXTRA_CA_CERTS: undefined },
      timeoutMs: opts.timeoutMs ?? 60_000,
      allowFail: opts.allowFail ?? false,
    });
  }

  /** A command in the lab netns (the containers' "host"). */
  exec(file: string, args: string[], opts: PodmanOptions = {}): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.ns.name, file, ...args], { timeoutMs: opts.timeoutMs ?? 15_000, allowFail: opts.allowFail ?? false });
  }

  /** Writes a conflist into network_config_dir; `plugins` are the chain's entries. */
  addNetwork(net: PodmanNetwork, plugins: object[]): void {
    this.networks.push(net);
    fs.mkdirSync(net.dataDir, { recursive: true });
    fs.writeFileSync(path.join(this.netDir, `${net.name}.conflist`), JSON.stringify({ cniVersion: '1.0.0', name: net.name, plugins }, null, 2));
  }

  /** `podman inspect` of one container, parsed; records its netns for cleanup. */
  async inspect(name: string): Promise<any> {
    const info = JSON.parse((await this.podman(['inspect', name])).stdout)[0];
    const key = info?.NetworkSettings?.SandboxKey;
    if (typeof key === 'string' && key.startsWith('/run/netns/')) this.sandboxes.add(key);
    return info;
  }

  /** Removes every container and network, then the netns and the temp dir; never throws. */
  async cleanup(log: (msg: string) => void = (m) => console.error(`      podman cleanup: ${m}`)): Promise<void> {
    const ids = (await this.podman(['ps', '-aq', '--no-trunc'], { allowFail: true })).stdout.split(/\s+/).filter(Boolean);
    for (const id of ids) await this.inspect(id).catch(() => undefined);
    if (ids.length) {
      const r = await this.podman(['rm', '-f', '-t', '0', ...ids], { allowFail: true, timeoutMs: 60_000 });
      if (r.code !== 0) log(`podman rm: ${r.stderr.trim()}`);
    }
    for (const net of this.networks) {
      const r = await this.podman(['network', 'rm', '-f', net.name], { allowFail: true });
      if (r.code !== 0 && !/not found|unable to find/i.test(r.stderr)) log(`podman network rm ${net.name}: ${r.stderr.trim()}`);
      fs.rmSync(path.join(this.netDir, `${net.name}.conflist`), { force: true });
      // libcni's cache of results: podman removes it on DEL; leftovers of a failed DEL go here.
      try {
        for (const f of fs.readdirSync(CNI_RESULTS)) if (f.startsWith(`${net.name}-`)) fs.rmSync(path.join(CNI_RESULTS, f), { force: true });
      } catch { /* no cache dir */ }
    }
    for (const key of this.sandboxes) {
      if (!fs.existsSync(key)) continue;
      log(`container netns ${key} left behind; removing it`);
      try { execFileSync('umount', ['-l', key], { stdio: 'ignore' }); } catch { /* not mounted */ }
      fs.rmSync(key, { force: true });
    }
    await this.lab.cleanup();
    // Mounts podman may have left under the temp dir (shm, rootfs binds) would make rm fail.
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(this.dir + '/'));
    for (const m of mounts.sort().reverse()) {
      try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* gone */ }
    }
    try { fs.rmSync(this.dir, { recursive: true, force: true }); } catch (e) { log(`rm ${this.dir}: ${(e as Error).message}`); }
  }
}

/** Milliseconds a promise took, with its value. */
export async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await f();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

/** An HTTP GET from inside a netns (node's fetch: no curl or wget needed on the host). */
export async function httpGet(ns: Netns, url: string, timeoutMs = 5000): Promise<string> {
  const script = `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(${timeoutMs}) })` +
    '.then(async (r) => { if (!r.ok) throw new Error("HTTP " + r.status); process.stdout.write(await r.text()); })' +
    '.catch((e) => { console.error(String(e && e.cause || e)); process.exit(1); })';
  return (await run('ip', ['netns', 'exec', ns.name, process.execPath, '-e', script], { timeoutMs: timeoutMs + 5000, env: { NODE_EXTRA_CA_CERTS: undefined } })).stdout;
}
