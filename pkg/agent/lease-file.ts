// The node's lease as knit-overlay reads it: <runDir>/lease.json, written by knitd atomically
// (a temporary file in the same directory, fsync'd, then renamed over the old one), so a plugin
// sees either the previous lease or the new one, never half of one. Read without any
// dependency: it is on every knit-overlay ADD's path.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DEFAULT_RUN_DIR = '/run/knit';
export const LEASE_FILE = 'lease.json';
export const DEFAULT_OVERLAY_BRIDGE = 'knit-ov0';

export interface NodeLeaseFile {
  /** The cluster network, e.g. "10.216.0.0/16". */
  network: string;
  /** This node's subnet, e.g. "10.216.3.0/24". */
  subnet: string;
  /** The MTU pods must use (vxlan: underlay − 50). */
  mtu: number;
  /** The node's overlay bridge; default knit-ov0. */
  bridge?: string;
  nodeName?: string;
  /** vxlan or host-gw. */
  backend?: string;
  /** When knitd wrote it (RFC 3339). */
  updated?: string;
}

export function leaseFilePath(runDir: string = DEFAULT_RUN_DIR): string {
  return path.join(runDir, LEASE_FILE);
}

const CIDR4 = /^(\d{1,3})(\.\d{1,3}){3}\/\d{1,2}$/;

/** Why v is not a valid lease file, or null. */
export function leaseProblem(v: unknown): string | null {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return 'not a JSON object';
  const l = v as Record<string, unknown>;
  if (typeof l.network !== 'string' || !CIDR4.test(l.network)) return `network ${JSON.stringify(l.network)} is not an IPv4 CIDR`;
  if (typeof l.subnet !== 'string' || !CIDR4.test(l.subnet)) return `subnet ${JSON.stringify(l.subnet)} is not an IPv4 CIDR`;
  if (typeof l.mtu !== 'number' || !Number.isInteger(l.mtu) || l.mtu < 68 || l.mtu > 65535) return `mtu ${JSON.stringify(l.mtu)} is not 68-65535`;
  if (l.bridge !== undefined && (typeof l.bridge !== 'string' || !l.bridge || l.bridge.length > 15)) return `bridge ${JSON.stringify(l.bridge)} is not an interface name`;
  return null;
}

/** The lease, or null when there is none (knitd has not written it yet). Throws on a corrupt file. */
export function readLeaseFile(runDir: string = DEFAULT_RUN_DIR): NodeLeaseFile | null {
  const file = leaseFilePath(runDir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw e;
  }
  let v: unknown;
  try { v = JSON.parse(text); } catch (e) { throw new Error(`${file}: invalid JSON: ${(e as Error).message}`); }
  const problem = leaseProblem(v);
  if (problem) throw new Error(`${file}: ${problem}`);
  return v as NodeLeaseFile;
}

/** Writes the lease atomically: temp file + fsync + rename. */
export function writeLeaseFile(runDir: string, lease: NodeLeaseFile): void {
  const problem = leaseProblem(lease);
  if (problem) throw new Error(`refusing to write an invalid lease: ${problem}`);
  fs.mkdirSync(runDir, { recursive: true, mode: 0o755 });
  const file = leaseFilePath(runDir);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    fs.writeSync(fd, `${JSON.stringify(lease, null, 2)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Removes the lease (the node was decommissioned): plugins then answer "knitd is not ready". */
export function removeLeaseFile(runDir: string): void {
  fs.rmSync(leaseFilePath(runDir), { force: true });
}

/**
 * Why knitd refuses to run the pod network on this node (e.g. encryption asked on a kernel
 * without ESP): <runDir>/refused.json, {code, msg}. knit-overlay answers ADD and STATUS with it
 * instead of "not ready", so the runtime sees the cause; removed once the agent starts.
 */
export const REFUSED_FILE = 'refused.json';

export interface Refusal { code: number; msg: string }

export function writeRefusal(runDir: string, r: Refusal): void {
  fs.mkdirSync(runDir, { recursive: true, mode: 0o755 });
  const file = path.join(runDir, REFUSED_FILE);
  fs.writeFileSync(`${file}.${process.pid}.tmp`, `${JSON.stringify(r)}\n`, { mode: 0o644 });
  fs.renameSync(`${file}.${process.pid}.tmp`, file);
}

export function clearRefusal(runDir: string): void {
  fs.rmSync(path.join(runDir, REFUSED_FILE), { force: true });
}

/** The refusal, or null (none, or unreadable: then the usual "not ready" applies). */
export function readRefusal(runDir: string = DEFAULT_RUN_DIR): Refusal | null {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(runDir, REFUSED_FILE), 'utf8')) as Refusal;
    return typeof v.code === 'number' && typeof v.msg === 'string' ? v : null;
  } catch {
    return null;
  }
}
