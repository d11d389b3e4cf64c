// In-memory stand-ins for the IPAM backends' persistence, for fast unit tests of both allocators
// (no root, no files, no etcd): MemoryStore is a Store for the file allocator (allocator.ts);
// MemoryEtcd answers the etcd requests the etcd allocator (etcd/) sends, with etcd's transaction
// semantics (every compare of a request, nested ones included, is evaluated against the state
// before it; one revision per request that writes; a compare on a missing key sees
// create/mod/version 0 and a VALUE compare on it fails; a range compare holds when every key of
// the range satisfies it).
import type { Compare, KeyValue, Op, OpResult, RangeRequest, RangeResult, TxnRequest, TxnResult } from '../etcd/client';
import type { KvClient } from './etcd/keys';
import { AttachmentRecord, Owner, Reservation, Store, ownerKey, sameOwner } from './store';

export class MemoryStore implements Store {
  readonly ips = new Map<string, Owner>();
  readonly attachments = new Map<string, { owner: Owner; ips: string[] }>();
  readonly last = new Map<number, string>();
  /** What maybeInFlight reports for every record (a test makes fresh writes look in flight). */
  inFlight = false;

  async reserve(ip: string, owner: Owner): Promise<boolean> {
    if (this.ips.has(ip)) return false;
    this.ips.set(ip, { ...owner });
    return true;
  }
  async get(ip: string): Promise<Reservation | null> {
    const o = this.ips.get(ip);
    return o ? { ip, owner: { ...o }, maybeInFlight: this.inFlight } : null;
  }
  async release(ip: string, owner: Owner): Promise<boolean> {
    const o = this.ips.get(ip);
    if (!o || !sameOwner(o, owner)) return false;
    this.ips.delete(ip);
    return true;
  }
  async getAttachment(owner: Owner): Promise<AttachmentRecord | null> {
    const a = this.attachments.get(ownerKey(owner));
    return a ? { owner: { ...a.owner }, ips: [...a.ips], maybeInFlight: this.inFlight } : null;
  }
  async putAttachment(owner: Owner, ips: string[]): Promise<void> {
    this.attachments.set(ownerKey(owner), { owner: { ...owner }, ips: [...ips] });
  }
  async deleteAttachment(owner: Owner): Promise<void> {
    this.attachments.delete(ownerKey(owner));
  }
  async getLastReserved(rangeSet: number): Promise<string | null> {
    return this.last.get(rangeSet) ?? null;
  }
  async setLastReserved(rangeSet: number, ip: string): Promise<void> {
    this.last.set(rangeSet, ip);
  }
  async reservedIps(): Promise<string[]> {
    return [...this.ips.keys()];
  }
  async listReservations(): Promise<Reservation[]> {
    return [...this.ips].map(([ip, owner]) => ({ ip, owner: { ...owner }, maybeInFlight: this.inFlight }));
  }
  async listAttachments(): Promise<AttachmentRecord[]> {
    return [...this.attachments.values()].map((a) => ({ owner: { ...a.owner }, ips: [...a.ips], maybeInFlight: this.inFlight }));
  }
  async sweepTemp(): Promise<number> {
    return 0;
  }
  async close(): Promise<void> {}
}

interface Entry { value: Buffer; createRevision: number; modRevision: number; version: number }

/** Byte order of keys, as etcd sorts them: latin1 strings compare by byte. */
const k = (b: Buffer | string): string => Buffer.from(b).toString('latin1');

/** Which branch each transaction of a request takes, decided before any write (etcd's compareToPath). */
interface Path { succeeded: boolean; nested: Map<number, Path> }

export class MemoryEtcd implements KvClient {
  private readonly kvs = new Map<string, Entry>();
  revision = 1;
  /** Requests answered (tests count round trips). */
  requests = 0;

  private keysIn(key: Buffer | string, rangeEnd?: Buffer | string): string[] {
    const lo = k(key);
    if (rangeEnd === undefined) return this.kvs.has(lo) ? [lo] : [];
    const hi = k(rangeEnd);
    const toEnd = hi === '\0';
    return [...this.kvs.keys()].filter((x) => x >= lo && (toEnd || x < hi)).sort();
  }

  private kv(key: string, valueToo = true): KeyValue {
    const e = this.kvs.get(key)!;
    return { key: Buffer.from(key, 'latin1'), value: valueToo ? Buffer.from(e.value) : Buffer.alloc(0), createRevision: e.createRevision, modRevision: e.modRevision, version: e.version };
  }

  private compare(c: Compare): boolean {
    const keys = this.keysIn(c.key, c.rangeEnd);
    const test = (e: Entry | undefined): boolean => {
      let d: number;
      if (c.target === 'VALUE') {
        if (!e) return false;
        d = Buffer.compare(e.value, Buffer.from(c.value as Buffer | string));
      } else {
        const have = !e ? 0 : c.target === 'CREATE' ? e.createRevision : c.target === 'MOD' ? e.modRevision : e.version;
        d = Math.sign(have - Number(c.value));
      }
      switch (c.result) {
        case 'EQUAL': return d === 0;
        case 'NOT_EQUAL': return d !== 0;
        case 'GREATER': return d > 0;
        case 'LESS': return d < 0;
      }
    };
    if (keys.length === 0) return test(undefined);
    return keys.every((x) => test(this.kvs.get(x)));
  }

  private path(t: TxnRequest): Path {
    const succeeded = t.compare.every((c) => this.compare(c));
    const nested = new Map<number, Path>();
    (succeeded ? t.success : t.failure ?? []).forEach((op, i) => { if ('txn' in op) nested.set(i, this.path(op.txn)); });
    return { succeeded, nested };
  }

  private rangeNow(r: RangeRequest): RangeResult {
    let keys = this.keysIn(r.key, r.rangeEnd);
    const count = keys.length;
    if (r.limit) keys = keys.slice(0, r.limit);
    return { revision: this.revision, kvs: r.countOnly ? [] : keys.map((x) => this.kv(x, !r.keysOnly)), count, more: keys.length < count };
  }

  private exec(t: TxnRequest, p: Path, rev: number): OpResult[] {
    const ops: Op[] = p.succeeded ? t.success : t.failure ?? [];
    return ops.map((op, i): OpResult => {
      if ('range' in op) return { kind: 'range', range: this.rangeNow(op.range) };
      if ('put' in op) {
        const key = k(op.put.key);
        const e = this.kvs.get(key);
        this.kvs.set(key, { value: Buffer.from(op.put.value), createRevision: e?.createRevision ?? rev, modRevision: rev, version: (e?.version ?? 0) + 1 });
        return { kind: 'put' };
      }
      if ('del' in op) {
        const keys = this.keysIn(op.del.key, op.del.rangeEnd);
        for (const x of keys) this.kvs.delete(x);
        return { kind: 'del', deleted: keys.length };
      }
      const np = p.nested.get(i)!;
      return { kind: 'txn', txn: { revision: rev, succeeded: np.succeeded, responses: this.exec(op.txn, np, rev) } };
    });
  }

  private writes(t: TxnRequest, p: Path): boolean {
    return (p.succeeded ? t.success : t.failure ?? []).some((op, i) => 'put' in op || 'del' in op || ('txn' in op && this.writes(op.txn, p.nested.get(i)!)));
  }

  async txn(t: TxnRequest): Promise<TxnResult> {
    await Promise.resolve(); // a request is asynchronous: concurrent callers interleave here
    this.requests++;
    const p = this.path(t);
    const rev = this.writes(t, p) ? this.revision + 1 : this.revision;
    const responses = this.exec(t, p, rev);
    this.revision = rev;
    return { revision: rev, succeeded: p.succeeded, responses };
  }

  async get(key: Buffer | string): Promise<KeyValue | null> {
    const r = await this.txn({ compare: [], success: [{ range: { key } }] });
    return r.responses[0]?.kind === 'range' ? r.responses[0].range.kvs[0] ?? null : null;
  }

  async prefix(prefix: Buffer | string, opts: { keysOnly?: boolean } = {}): Promise<KeyValue[]> {
    const end = Buffer.from(prefix);
    let i = end.length - 1;
    while (i >= 0 && end[i] === 0xff) i--;
    const rangeEnd = i < 0 ? Buffer.from([0]) : Buffer.concat([end.subarray(0, i), Buffer.from([end[i]! + 1])]);
    const r = await this.txn({ compare: [], success: [{ range: { key: prefix, rangeEnd, ...(opts.keysOnly ? { keysOnly: true } : {}) } }] });
    return r.responses[0]?.kind === 'range' ? r.responses[0].range.kvs : [];
  }

  /** Every key (as text) with its value, sorted: for assertions. */
  dump(prefix = ''): Array<[string, string]> {
    return [...this.kvs.keys()].filter((x) => x.startsWith(prefix)).sort().map((x) => [Buffer.from(x, 'latin1').toString(), this.kvs.get(x)!.value.toString()]);
  }

  close(): void {}
}
