// Who uses a shared parent link, and what knit did to it: the reference count behind "create the
// VLAN sub-interface when missing, remove it on the last DEL only if knit created it" and "restore
// promiscuous mode when knit set it and no child remains".
//
// Layout, one directory per parent link per network namespace (the namespace where the parent
// lives: the host's, or the container's with linkInContainer):
//
//   <base>/ns<inode of that netns>/<parent>/lock        flock(2) target
//   <base>/ns<inode>/<parent>/att/<network>:<cid>:<if>  one JSON record per attachment
//   <base>/ns<inode>/<parent>/created                   {"ifindex": n}: knit created the parent
//   <base>/ns<inode>/<parent>/promisc                   knit switched promiscuous mode on
//
// Why it survives crashes and races: every decision ("is this the last one?") and the change it
// leads to happen under the lock, which the kernel releases when a holder dies; records are
// written before the link they stand for is made (a crash leaves at worst a record without a
// link, which the next decision prunes after looking into its namespace) and files are replaced
// by rename, never half-written. /run is a tmpfs: after a reboot the links and the records are
// gone together. The namespace inode in the path keeps two namespaces' "eth0.100" apart (test
// labs run many hosts on one kernel).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { removeHeldLock, withFileLock } from './lock';

export interface AttachmentRecord {
  network: string;
  containerId: string;
  ifName: string;
  /** The pod netns path given to ADD (how DEL without CNI_NETNS and GC find the child link). */
  netns: string;
  /**
   * Where the parent lives when that is not the plugin's own namespace (linkInContainer: the pod
   * netns); null for the plugin's own. Lets DEL and GC tell a directory of this host from one of
   * another namespace (leave it) or of a namespace that is gone (only files left to clean).
   */
  parentNetns: string | null;
}

export interface CreatedMark {
  /** The parent's ifindex once made; null while being made (a crash in between is adopted). */
  ifindex: number | null;
}

export const DEFAULT_RUN_DIR = '/run/knit';

/** "ns<inode>" of a netns path, or of our own namespace for null. Throws ENOENT when it is gone. */
export function nsKeyOf(netnsPath: string | null): string {
  return `ns${fs.statSync(netnsPath || '/proc/self/ns/net').ino}`;
}

const enc = (s: string): string => encodeURIComponent(s);
/** A file name holds 255 bytes and writeAtomic appends ".tmp<pid>": longer names are hashed. */
export const MAX_RECORD_NAME = 200;
const fnv = (s: string, seed: number): string => {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
};
/**
 * The record's file name: "<network>:<containerId>:<ifName>" (URI-encoded, so ASCII). When that
 * is longer than MAX_RECORD_NAME (a 200-character network and a 200-character ID; issue 14: it
 * was ENAMETOOLONG on ADD and on every DEL), its first 150 bytes then "~" and a 64-bit hash of the
 * whole: still one name per attachment; records are read from their contents, not their names.
 */
export const recordName = (r: { network: string; containerId: string; ifName: string }): string => {
  const full = `${enc(r.network)}:${enc(r.containerId)}:${enc(r.ifName)}`;
  return full.length <= MAX_RECORD_NAME ? full : `${full.slice(0, 150)}~${fnv(full, 0x811c9dc5)}${fnv(full, 0x01000193)}`;
};

function writeAtomic(file: string, data: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp${process.pid}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (e instanceof SyntaxError) return null; // unreadable: as good as absent
    throw e;
  }
}

function processAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

function rmFile(file: string): boolean {
  try {
    fs.unlinkSync(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export class ParentRefs {
  readonly dir: string;

  constructor(readonly base: string, readonly nsKey: string, readonly parent: string) {
    this.dir = path.join(base, nsKey, parent);
  }

  /** Every parent directory under base (for DEL without a usable config, and GC). */
  static scan(base: string): ParentRefs[] {
    const out: ParentRefs[] = [];
    let nss: string[];
    try { nss = fs.readdirSync(base); } catch { return out; }
    for (const ns of nss.filter((n) => /^ns\d+$/.test(n))) {
      let parents: string[] = [];
      try { parents = fs.readdirSync(path.join(base, ns)); } catch { /* raced away */ }
      for (const p of parents) out.push(new ParentRefs(base, ns, p));
    }
    return out;
  }

  private get attDir(): string { return path.join(this.dir, 'att'); }

  /** Runs fn holding this parent's lock. fn must be synchronous (see lock.ts). */
  locked<T>(fn: () => T): T {
    return withFileLock(path.join(this.dir, 'lock'), fn);
  }

  /**
   * Under locked(): when no record and no mark is left, removes the directory, lock file
   * included, so nothing of a parent outlives its last attachment (waiters start over, see
   * withFileLock).
   */
  removeIfUnused(): void {
    if (this.list().length || this.created() || this.promiscSet()) return;
    try { fs.rmdirSync(this.attDir); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return; }
    removeHeldLock(path.join(this.dir, 'lock'));
    for (const d of [this.dir, path.dirname(this.dir)]) {
      try { fs.rmdirSync(d); } catch { return; } // a newcomer's lock file, or another parent: keep
    }
  }

  // ---- attachments (call under locked(), except the read-only has/get) ----

  has(id: { network: string; containerId: string; ifName: string }): boolean {
    return fs.existsSync(path.join(this.attDir, recordName(id)));
  }

  get(id: { network: string; containerId: string; ifName: string }): AttachmentRecord | null {
    return readJson<AttachmentRecord>(path.join(this.attDir, recordName(id)));
  }

  add(rec: AttachmentRecord): void {
    fs.mkdirSync(this.attDir, { recursive: true, mode: 0o700 });
    writeAtomic(path.join(this.attDir, recordName(rec)), JSON.stringify(rec) + '\n');
  }

  remove(id: { network: string; containerId: string; ifName: string }): boolean {
    this.removeStray(id);
    return rmFile(path.join(this.attDir, recordName(id)));
  }

  /**
   * A writer killed between its temp file and the rename (kill -9 during ADD) left
   * `<record>.tmp<pid>`: removed once that process is gone. DEL calls it even when the record itself
   * was never renamed into place.
   */
  removeStray(id: { network: string; containerId: string; ifName: string }): number {
    const prefix = `${recordName(id)}.tmp`;
    let names: string[];
    try { names = fs.readdirSync(this.attDir); } catch { return 0; }
    let removed = 0;
    for (const n of names) {
      const pid = n.startsWith(prefix) ? Number(n.slice(prefix.length)) : NaN;
      if (Number.isInteger(pid) && pid > 0 && !processAlive(pid) && rmFile(path.join(this.attDir, n))) removed++;
    }
    return removed;
  }

  list(): AttachmentRecord[] {
    let names: string[];
    try { names = fs.readdirSync(this.attDir); } catch { return []; }
    const out: AttachmentRecord[] = [];
    for (const n of names) {
      if (n.includes('.tmp')) continue;
      const r = readJson<AttachmentRecord>(path.join(this.attDir, n));
      if (r && typeof r.network === 'string') out.push(r);
    }
    return out;
  }

  // ---- what knit did to the parent ----

  created(): CreatedMark | null {
    return readJson<CreatedMark>(path.join(this.dir, 'created'));
  }

  markCreated(ifindex: number | null): void {
    writeAtomic(path.join(this.dir, 'created'), JSON.stringify({ ifindex }) + '\n');
  }

  clearCreated(): void {
    rmFile(path.join(this.dir, 'created'));
  }

  promiscSet(): boolean {
    return fs.existsSync(path.join(this.dir, 'promisc'));
  }

  markPromisc(): void {
    writeAtomic(path.join(this.dir, 'promisc'), '{}\n');
  }

  clearPromisc(): void {
    rmFile(path.join(this.dir, 'promisc'));
  }
}
