// What `knitctl attach NETWORK TARGET` puts on the network: TARGET is a netns path, a PID, or a
// podman container (name or ID). Each resolves to the netns path the plugins get (CNI_NETNS) and a
// container ID that is the same every time for the same target, so detach finds the attachment:
// podman's container ID, else one derived from the netns inode (a path and the PID of a process in
// that netns name the same attachment).
import { Netlink, isNotNetns, linkList } from '../netlink';

export type TargetKind = 'netns' | 'pid' | 'podman';

export interface Target {
  kind: TargetKind;
  /** As given on the command line. */
  input: string;
  /** CNI_NETNS. */
  netns: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** For messages: `netns /run/netns/x`, `process 123`, `podman container web (3f2a...)`. */
  label: string;
  /** The container's name, passed as CNI_ARGS K8S_POD_NAME as podman does (shown by network inspect): podman's, or a named netns's. */
  name?: string;
}

export interface PodmanOptions {
  /** The podman executable (default: podman on $PATH). */
  bin?: string;
  /** podman --root / --runroot (a lab's or rootless storage). */
  root?: string;
  runroot?: string;
  env?: NodeJS.ProcessEnv;
}

/** A TARGET that names nothing usable: the message says what TARGET may be. */
export class TargetError extends Error {}

const VALID = 'a network namespace path (e.g. /run/netns/NAME), the PID of a running process, or a running podman container\'s name or ID';

/** The container ID of a netns without a runtime: from its inode (the kernel's name for it). */
export const netnsContainerId = (ino: bigint | number): string => `knit-ns-${ino}`;

function netnsIno(path: string): bigint {
  const fs = require('node:fs') as typeof import('node:fs');
  return fs.statSync(path, { bigint: true }).ino;
}

/** Fails unless `path` is a network namespace (the addon's own check: stat + statfs, no blocking open). */
function checkNetns(path: string, input: string): void {
  let nl: Netlink;
  try {
    nl = Netlink.open(path);
  } catch (e) {
    if (!isNotNetns(e)) throw e;
    const code = (e as { code?: string }).code;
    throw new TargetError(`invalid TARGET ${JSON.stringify(input)}: ${code === 'ENOENT' ? `no such file ${path}` : `${path} is not a network namespace`}; TARGET is ${VALID}`);
  }
  nl.close();
}

function byNetns(path: string, input: string): Target {
  checkNetns(path, input);
  const named = /^(?:\/var)?\/run\/netns\/([^/]+)$/.exec(path);
  return { kind: 'netns', input, netns: path, containerId: netnsContainerId(netnsIno(path)), label: `netns ${path}`, ...(named ? { name: named[1]! } : {}) };
}

function byPid(pid: string, input: string): Target {
  const fs = require('node:fs') as typeof import('node:fs');
  if (!fs.existsSync(`/proc/${pid}`)) throw new TargetError(`invalid TARGET ${JSON.stringify(input)}: no process ${pid}; TARGET is ${VALID}`);
  const path = `/proc/${pid}/ns/net`;
  checkNetns(path, input);
  return { kind: 'pid', input, netns: path, containerId: netnsContainerId(netnsIno(path)), label: `process ${pid}` };
}

interface PodmanInspect {
  Id?: string;
  Name?: string;
  State?: { Running?: boolean; Status?: string; Pid?: number };
  NetworkSettings?: { SandboxKey?: string };
}

/** `podman container inspect` of one container; TargetError when podman has none of that name. */
async function podmanInspect(name: string, o: PodmanOptions): Promise<PodmanInspect> {
  const { execFile } = require('node:child_process') as typeof import('node:child_process');
  const args = [...(o.root ? ['--root', o.root] : []), ...(o.runroot ? ['--runroot', o.runroot] : []), 'container', 'inspect', name];
  const bin = o.bin ?? 'podman';
  const r = await new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) => {
    execFile(bin, args, { env: o.env ?? process.env, timeout: 30_000, maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number | string }).code ?? 1) : 0, stdout, stderr });
    });
  });
  if (r.code === 'ENOENT') throw new TargetError(`invalid TARGET ${JSON.stringify(name)}: not a path, not a PID, and podman (${bin}) is not installed to look it up as a container; TARGET is ${VALID}`);
  if (r.code !== 0) {
    const why = r.stderr.trim().split('\n').pop()?.replace(/^Error: /, '') || `podman exited ${r.code}`;
    throw new TargetError(`invalid TARGET ${JSON.stringify(name)}: not a path, not a PID, and no podman container (${why}); TARGET is ${VALID}`);
  }
  try {
    const j = JSON.parse(r.stdout) as PodmanInspect[];
    if (Array.isArray(j) && j[0]) return j[0];
  } catch { /* below */ }
  throw new Error(`podman container inspect ${name}: unexpected output ${JSON.stringify(r.stdout.slice(0, 200))}`);
}

async function byPodman(name: string, o: PodmanOptions): Promise<Target> {
  const c = await podmanInspect(name, o);
  const id = c.Id ?? '';
  const label = `podman container ${c.Name ?? name} (${id.slice(0, 12)})`;
  if (!c.State?.Running || !c.State.Pid) {
    throw new TargetError(`invalid TARGET ${JSON.stringify(name)}: ${label} is not running (state ${c.State?.Status ?? 'unknown'}); start it first`);
  }
  // podman's own netns (the path its plugins got) when it has one; else the process's.
  const fs = require('node:fs') as typeof import('node:fs');
  const key = c.NetworkSettings?.SandboxKey;
  const netns = key && fs.existsSync(key) ? key : `/proc/${c.State.Pid}/ns/net`;
  checkNetns(netns, name);
  return { kind: 'podman', input: name, netns, containerId: id, label, ...(c.Name ? { name: c.Name } : {}) };
}

/** Resolves TARGET: a path (has a '/'), a PID (digits), else a podman container. */
export async function resolveTarget(input: string, podman: PodmanOptions = {}): Promise<Target> {
  if (!input) throw new TargetError(`invalid TARGET "": TARGET is ${VALID}`);
  if (input.includes('/')) return byNetns(input, input);
  if (/^[1-9]\d*$/.test(input)) return byPid(input, input);
  return byPodman(input, podman);
}

/** Interface names inside the target's netns. */
export function interfacesOf(netns: string): string[] {
  const nl = Netlink.open(netns);
  try {
    return linkList(nl).map((l) => l.name);
  } finally {
    nl.close();
  }
}

/** The first ethN (N = 0, 1, ...) that is not in `taken`. */
export function nextFreeIfName(taken: Iterable<string>, prefix = 'eth'): string {
  const t = new Set(taken);
  for (let i = 0; ; i++) if (!t.has(`${prefix}${i}`)) return `${prefix}${i}`;
}
