// The host-local store: one directory per network, one file per reserved address.
//
//   <dataDir>/<network>/            0700
//     ips/<address>                 reservation: "containerID\nifname\npid\n"   (0600)
//     attachments/<cid>:<ifname>    index: {"containerId","ifName","ips":[...]} (0600)
//     last-reserved.<rangeSet>      round-robin hint
//     tmp/<pid>.<n>                 content being written
//
// No lock anywhere. A reservation is made by writing the owner to a temp file once and then
// link(2)ing it to ips/<address>: link fails with EEXIST atomically when the address is held, so
// two processes can never both own it, and the file is complete before it has its name. Every
// other file is written to tmp/ and rename(2)d into place. Writes are not fsync'ed: after a power
// loss the containers are gone too, and an unreadable file is treated as an orphan that GC reclaims.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CniError, Code } from '../cni/errors';
import { formatIP, parseIP } from '../ip/ip';
import { AttachmentRecord, Owner, Reservation, Store, checkOwner, ownerKey } from './store';

export interface FileStoreOptions {
  /** A reservation or temp file younger than this may belong to a running ADD. */
  graceMs?: number;
  /** ...unless its writer's pid is gone and it is at least this old. */
  deadPidMinAgeMs?: number;
  /** Test hook: runs as an index is about to be written (KNIT_FAILPOINT "reserved"). */
  beforeIndex?: () => void;
}

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
/** NAME_MAX: an attachment index is named "<containerID>:<ifname>". */
const MAX_NAME_BYTES = 255;

function checkIP(ip: string): void {
  const parsed = parseIP(ip);
  if (!parsed || formatIP(parsed) !== ip) throw new CniError(Code.IOFailure, `internal: ${JSON.stringify(ip)} is not a canonical IP address`);
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

function ioError(op: string, file: string, e: unknown): CniError {
  return new CniError(Code.IOFailure, `host-local store: ${op} ${file}: ${(e as Error).message ?? e}`);
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === 'EPERM';
  }
}

let tmpCounter = 0;

export class FileStore implements Store {
  readonly dir: string;
  private readonly graceMs: number;
  private readonly deadPidMinAgeMs: number;
  private readonly beforeIndex: (() => void) | undefined;
  /** The owner temp file of this invocation, linked for every address it reserves. */
  private ownerTmp: { key: string; file: string } | null = null;
  private dirsMade = false;

  constructor(dataDir: string, network: string, opts: FileStoreOptions = {}) {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/.test(network)) throw new CniError(Code.InvalidConfig, `invalid network name ${JSON.stringify(network)}`);
    this.dir = path.join(dataDir, network);
    this.graceMs = opts.graceMs ?? 60_000;
    this.deadPidMinAgeMs = opts.deadPidMinAgeMs ?? 2_000;
    this.beforeIndex = opts.beforeIndex;
  }

  private p(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  private ipFile(ip: string): string {
    checkIP(ip);
    return this.p('ips', ip);
  }

  private indexFile(o: Owner): string {
    checkOwner(o);
    const name = ownerKey(o);
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
      throw new CniError(Code.InvalidEnvironment, `invalid CNI_CONTAINERID ${JSON.stringify(o.containerId)}: too long for knit-host-local, whose index file "<containerID>:<ifname>" must fit ${MAX_NAME_BYTES} bytes`);
    }
    return this.p('attachments', name);
  }

  /** Creates the directories; called only after an ENOENT so a warm ADD pays no mkdir. */
  private makeDirs(): void {
    if (this.dirsMade) return;
    try {
      for (const sub of ['ips', 'attachments', 'tmp']) fs.mkdirSync(this.p(sub), { recursive: true, mode: DIR_MODE });
      this.dirsMade = true;
    } catch (e) {
      throw ioError('mkdir', this.dir, e);
    }
  }

  /** Runs fn, creating the directories and retrying once when a directory is missing. */
  private withDirs<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (errno(e) !== 'ENOENT' || this.dirsMade) throw e;
      this.makeDirs();
      return fn();
    }
  }

  /** Writes content to a fresh temp file and returns its path. */
  private writeTemp(content: string): string {
    const file = this.p('tmp', `${process.pid}.${++tmpCounter}.${Math.random().toString(36).slice(2, 8)}`);
    this.withDirs(() => fs.writeFileSync(file, content, { flag: 'wx', mode: FILE_MODE }));
    return file;
  }

  private writeAtomic(target: string, content: string): void {
    const tmp = this.writeTemp(content);
    try {
      fs.renameSync(tmp, target);
    } catch (e) {
      try { fs.unlinkSync(tmp); } catch { /* already gone */ }
      throw ioError('rename to', target, e);
    }
  }

  private readOptional(file: string): { text: string; mtimeMs: number } | null {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      if (errno(e) === 'ENOENT') return null;
      throw ioError('open', file, e);
    }
    try {
      const st = fs.fstatSync(fd);
      const buf = Buffer.alloc(Math.min(st.size, 64 * 1024));
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      return { text: buf.toString('utf8', 0, n), mtimeMs: st.mtimeMs };
    } catch (e) {
      throw ioError('read', file, e);
    } finally {
      fs.closeSync(fd);
    }
  }

  private inFlight(pid: number | null, mtimeMs: number): boolean {
    const age = Date.now() - mtimeMs;
    if (age >= this.graceMs) return false;
    if (pid !== null && !pidAlive(pid) && age >= this.deadPidMinAgeMs) return false;
    return true;
  }

  async reserve(ip: string, owner: Owner): Promise<boolean> {
    const target = this.ipFile(ip);
    checkOwner(owner);
    const key = ownerKey(owner);
    if (!this.ownerTmp || this.ownerTmp.key !== key) {
      this.dropOwnerTmp();
      this.ownerTmp = { key, file: this.writeTemp(`${owner.containerId}\n${owner.ifName}\n${process.pid}\n`) };
    }
    const tmp = this.ownerTmp.file;
    try {
      this.withDirs(() => fs.linkSync(tmp, target));
      return true;
    } catch (e) {
      if (errno(e) === 'EEXIST') return false;
      throw ioError('link', target, e);
    }
  }

  private parseReservation(ip: string, text: string, mtimeMs: number): Reservation {
    const [containerId = '', ifName = '', pidText = ''] = text.split('\n');
    const pid = /^\d+$/.test(pidText) ? Number(pidText) : null;
    return { ip, owner: { containerId, ifName }, maybeInFlight: this.inFlight(pid, mtimeMs) };
  }

  async get(ip: string): Promise<Reservation | null> {
    const r = this.readOptional(this.ipFile(ip));
    return r && this.parseReservation(ip, r.text, r.mtimeMs);
  }

  async release(ip: string, owner: Owner): Promise<boolean> {
    const file = this.ipFile(ip);
    const r = this.readOptional(file);
    if (!r) return false;
    const cur = this.parseReservation(ip, r.text, r.mtimeMs).owner;
    // Only the owner's files: a stale index must never free an address someone else got since.
    if (cur.containerId !== owner.containerId || cur.ifName !== owner.ifName) return false;
    return this.unlinkQuiet(file);
  }

  private unlinkQuiet(file: string): boolean {
    try {
      fs.unlinkSync(file);
      return true;
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw ioError('unlink', file, e);
    }
  }

  private parseIndex(text: string, mtimeMs: number): AttachmentRecord | null {
    try {
      const j = JSON.parse(text) as { containerId?: unknown; ifName?: unknown; ips?: unknown };
      if (typeof j.containerId !== 'string' || typeof j.ifName !== 'string' || !Array.isArray(j.ips)) return null;
      return {
        owner: { containerId: j.containerId, ifName: j.ifName },
        ips: j.ips.filter((x): x is string => typeof x === 'string'),
        maybeInFlight: Date.now() - mtimeMs < this.graceMs,
      };
    } catch {
      return null;
    }
  }

  async getAttachment(owner: Owner): Promise<AttachmentRecord | null> {
    const r = this.readOptional(this.indexFile(owner));
    if (!r) return null;
    // An unreadable index is treated as absent: its reservations become orphans for GC.
    return this.parseIndex(r.text, r.mtimeMs);
  }

  async putAttachment(owner: Owner, ips: string[]): Promise<void> {
    ips.forEach(checkIP);
    this.beforeIndex?.();
    this.writeAtomic(this.indexFile(owner), JSON.stringify({ containerId: owner.containerId, ifName: owner.ifName, ips }) + '\n');
  }

  async deleteAttachment(owner: Owner): Promise<void> {
    this.unlinkQuiet(this.indexFile(owner));
  }

  private lastFile(rangeSet: number): string {
    return this.p(`last-reserved.${rangeSet | 0}`);
  }

  async getLastReserved(rangeSet: number): Promise<string | null> {
    const r = this.readOptional(this.lastFile(rangeSet));
    const ip = r?.text.trim();
    return ip && parseIP(ip) ? ip : null;
  }

  async setLastReserved(rangeSet: number, ip: string): Promise<void> {
    checkIP(ip);
    this.writeAtomic(this.lastFile(rangeSet), ip);
  }

  private listDir(sub: string): string[] {
    try {
      return fs.readdirSync(this.p(sub));
    } catch (e) {
      if (errno(e) === 'ENOENT') return [];
      throw ioError('readdir', this.p(sub), e);
    }
  }

  async listReservations(): Promise<Reservation[]> {
    const out: Reservation[] = [];
    for (const name of await this.reservedIps()) {
      const r = this.readOptional(this.p('ips', name));
      if (r) out.push(this.parseReservation(name, r.text, r.mtimeMs));
    }
    return out;
  }

  async reservedIps(): Promise<string[]> {
    return this.listDir('ips').filter((name) => { const ip = parseIP(name); return ip !== null && formatIP(ip) === name; });
  }

  async listAttachments(): Promise<AttachmentRecord[]> {
    const out: AttachmentRecord[] = [];
    for (const name of this.listDir('attachments')) {
      const file = this.p('attachments', name);
      const r = this.readOptional(file);
      if (!r) continue;
      const rec = this.parseIndex(r.text, r.mtimeMs);
      if (rec && ownerKey(rec.owner) === name) out.push(rec);
      else if (Date.now() - r.mtimeMs >= this.graceMs) this.unlinkQuiet(file); // garbage, not an index
    }
    return out;
  }

  async sweepTemp(): Promise<number> {
    let n = 0;
    for (const name of this.listDir('tmp')) {
      const pid = Number(name.split('.')[0]);
      if (pid === process.pid) continue;
      const file = this.p('tmp', name);
      let st: fs.Stats;
      try { st = fs.statSync(file); } catch { continue; }
      if (!this.inFlight(Number.isInteger(pid) ? pid : null, st.mtimeMs) && this.unlinkQuiet(file)) n++;
    }
    return n;
  }

  /**
   * A killed ADD leaves its owner temp file ("cid\nifname\npid\n", linked to each address it
   * reserved) or a half-written index in tmp/. When one names `owner`, the reservations of
   * `owner` are looked up (the slow path, only after a kill) and freed, then those temp files
   * removed (in this order: a DEL killed in between is finished by the next one).
   */
  async releaseStray(owner: Owner): Promise<string[]> {
    checkOwner(owner);
    const mine: string[] = [];
    for (const name of this.listDir('tmp')) {
      // Only a dead writer's: a live one's ADD is still running (and may be this process's).
      if (pidAlive(Number(name.split('.')[0]))) continue;
      const file = this.p('tmp', name);
      const r = this.readOptional(file);
      if (!r) continue;
      const [cid, ifName] = r.text.split('\n');
      let named = cid === owner.containerId && ifName === owner.ifName;
      if (!named && r.text.startsWith('{')) {
        try { const j = JSON.parse(r.text) as Owner; named = j.containerId === owner.containerId && j.ifName === owner.ifName; } catch { /* not an index */ }
      }
      if (named) mine.push(file);
    }
    if (!mine.length) return [];
    const freed: string[] = [];
    for (const r of await this.listReservations()) {
      if (r.owner.containerId === owner.containerId && r.owner.ifName === owner.ifName && (await this.release(r.ip, owner))) freed.push(r.ip);
    }
    for (const f of mine) this.unlinkQuiet(f);
    return freed;
  }

  private dropOwnerTmp(): void {
    if (!this.ownerTmp) return;
    this.unlinkQuiet(this.ownerTmp.file);
    this.ownerTmp = null;
  }

  async close(): Promise<void> {
    this.dropOwnerTmp();
  }
}
