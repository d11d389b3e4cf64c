// Allocation over a Store: one address per range set per attachment, round-robin from the last
// reserved address of each range set, static requests anywhere in a subnet, and the sweeps that
// reclaim what crashed writers left. No locks: every claim is store.reserve(), an atomic create,
// and losing a race just means probing the next address.
import { CniError, Code } from '../cni/errors';
import { Family, IPAddr, bigIntToIP, formatIP, ipToBigInt, parseIP } from '../ip/ip';
import { IpamConfig, Range, RangeSet, blockedAt, rangeFor } from './config';
import { AttachmentRecord, Owner, Store, ownerKey, sameOwner } from './store';

/** One address handed to an attachment. */
export interface Allocation {
  rangeSet: number;
  ip: string;
  family: Family;
  prefix: number;
  gateway: string | null;
}

export interface RangeStatus {
  rangeSet: number;
  subnet: string;
  /** Allocatable addresses of rangeStart..rangeEnd, and how many of those are free (decimal text:
   *  IPv6 counts do not fit a number). */
  size: string;
  free: string;
}

export interface GcReport {
  /** Reservations freed, with why: 'not-valid' (GC's valid-attachments), 'orphan', or the pod GC's reason. */
  released: Array<{ ip: string; owner: Owner; reason: string }>;
  indexesRemoved: number;
  indexesRepaired: number;
  tempRemoved: number;
}

/** Linear probes before listing the reserved names once and skipping those. */
const PROBE_LIMIT = 64;

function unavailable(msg: string): CniError {
  return new CniError(Code.AddressUnavailable, msg);
}

function ipText(n: bigint, family: Family): string {
  return formatIP(bigIntToIP(n, family));
}

function who(o: Owner): string {
  return `container ${o.containerId} (${o.ifName})`;
}

export class Allocator {
  constructor(readonly cfg: IpamConfig, readonly store: Store) {}

  allocation(set: RangeSet, r: Range, n: bigint): Allocation {
    return { rangeSet: set.index, ip: ipText(n, r.family), family: r.family, prefix: r.prefix, gateway: r.gateway === null ? null : ipText(r.gateway, r.family) };
  }

  /** The range set and range an address belongs to (subnet match), or undefined. */
  locate(ip: IPAddr): { set: RangeSet; range: Range } | undefined {
    const n = ipToBigInt(ip);
    for (const set of this.cfg.rangeSets) {
      const range = rangeFor(set, ip.family, n);
      if (range) return { set, range };
    }
    return undefined;
  }

  private subnets(): string {
    return this.cfg.rangeSets.flatMap((s) => s.ranges.map((r) => r.subnet)).join(', ');
  }

  /** Why an address of the range's subnet is never handed out. */
  blockedReason(r: Range, n: bigint): string | null {
    if (!blockedAt(r, n)) return null;
    if (n === r.network) return r.family === 4 ? `the network address of ${r.subnet}` : `the subnet-router anycast address of ${r.subnet}`;
    if (r.family === 4 && n === r.last) return `the broadcast address of ${r.subnet}`;
    if (n === r.gateway) return `the gateway of ${r.subnet}`;
    return 'excluded by ipam.exclude';
  }

  /** Maps static requests to range sets; each must lie in a subnet and be allocatable. */
  placeRequests(requests: IPAddr[]): Map<number, { range: Range; n: bigint }> {
    const out = new Map<number, { range: Range; n: bigint }>();
    for (const ip of requests) {
      const text = formatIP(ip);
      const hit = this.locate(ip);
      if (!hit) throw unavailable(`requested address ${text} is outside every range of network ${this.cfg.network} (subnets ${this.subnets()})`);
      const n = ipToBigInt(ip);
      const why = this.blockedReason(hit.range, n);
      if (why) throw unavailable(`requested address ${text} cannot be handed out: it is ${why}`);
      const prev = out.get(hit.set.index);
      if (prev) {
        if (prev.n === n) continue;
        throw unavailable(`requested addresses ${ipText(prev.n, prev.range.family)} and ${text} fall in the same range set ${hit.set.index}: an attachment gets one address per range set`);
      }
      out.set(hit.set.index, { range: hit.range, n });
    }
    return out;
  }

  /**
   * ADD: the attachment's addresses, one per range set. A repeated ADD for the same attachment
   * returns what it already holds (as long as it still fits the config and the requests).
   */
  async allocate(owner: Owner, requests: IPAddr[] = []): Promise<Allocation[]> {
    const wanted = this.placeRequests(requests);
    const result = new Map<number, Allocation>();
    const fresh: Allocation[] = [];
    const prior = await this.store.getAttachment(owner);
    if (prior) await this.adoptPrior(owner, prior, wanted, result);
    try {
      for (const set of this.cfg.rangeSets) {
        if (result.has(set.index)) continue;
        const req = wanted.get(set.index);
        const a = req ? await this.reserveRequested(owner, set, req.range, req.n) : await this.reserveNext(owner, set);
        fresh.push(a);
        result.set(set.index, a);
      }
      const all = this.cfg.rangeSets.map((s) => result.get(s.index)!);
      // The index is written after the reservations: a crash in between leaves reservations
      // without an index, which GC (and an exhausted ADD) reclaims; never an index to a free address.
      if (!prior || fresh.length > 0 || prior.ips.length !== all.length) await this.store.putAttachment(owner, all.map((a) => a.ip));
      // The hint only serves fairness: failing to write it must not undo a finished allocation.
      for (const a of fresh) if (!wanted.has(a.rangeSet)) await this.store.setLastReserved(a.rangeSet, a.ip).catch(() => undefined);
      return all;
    } catch (e) {
      for (const a of fresh) await this.store.release(a.ip, owner).catch(() => undefined);
      throw e;
    }
  }

  /** Keeps the prior addresses that are still ours and still fit; frees the rest. */
  private async adoptPrior(owner: Owner, prior: AttachmentRecord, wanted: Map<number, { n: bigint }>, result: Map<number, Allocation>): Promise<void> {
    for (const text of prior.ips) {
      const ip = parseIP(text);
      const hit = ip && this.locate(ip);
      let keep = false;
      if (ip && hit && !result.has(hit.set.index)) {
        const n = ipToBigInt(ip);
        const req = wanted.get(hit.set.index);
        const cur = await this.store.get(text);
        keep = (!req || req.n === n) && !this.blockedReason(hit.range, n) && cur !== null && sameOwner(cur.owner, owner);
        if (!keep && cur === null && (!req || req.n === n) && !this.blockedReason(hit.range, n)) {
          keep = await this.store.reserve(text, owner); // index without reservation: take it back if free
        }
        if (keep) result.set(hit.set.index, this.allocation(hit.set, hit.range, n));
      }
      if (!keep) await this.store.release(text, owner);
    }
  }

  private async reserveRequested(owner: Owner, set: RangeSet, r: Range, n: bigint): Promise<Allocation> {
    const ip = ipText(n, r.family);
    if (await this.store.reserve(ip, owner)) return this.allocation(set, r, n);
    const cur = await this.store.get(ip);
    // Ours already (a crashed earlier ADD of this attachment): adopt it.
    if (cur && sameOwner(cur.owner, owner)) return this.allocation(set, r, n);
    if (cur === null && (await this.store.reserve(ip, owner))) return this.allocation(set, r, n);
    throw unavailable(`requested address ${ip} is already reserved${cur ? ` by ${who(cur.owner)}` : ''} on network ${this.cfg.network}`);
  }

  /** Round-robin: from after the last reserved address of this range set, wrapping once. */
  private async reserveNext(owner: Owner, set: RangeSet): Promise<Allocation> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const lastText = await this.store.getLastReserved(set.index);
      const last = lastText ? parseIP(lastText) : null;
      let probes = 0;
      let taken: Set<string> | null = null;
      for (const { range, n } of candidates(set, last)) {
        const ip = ipText(n, range.family);
        if (taken?.has(ip)) continue;
        // Many losers of races in a row: list the reserved names once instead of probing each.
        if (++probes === PROBE_LIMIT) taken = new Set(await this.store.reservedIps());
        if (taken?.has(ip)) continue;
        if (await this.store.reserve(ip, owner)) return this.allocation(set, range, n);
      }
      // Exhausted: reclaim what crashed writers left, then try once more.
      if (attempt === 0 && (await this.reclaimOrphans()).released.length === 0) break;
    }
    throw unavailable(`no free address in range set ${set.index} (${set.ranges.map((r) => `${r.subnet} ${ipText(r.start, r.family)}-${ipText(r.end, r.family)}`).join(', ')}) of network ${this.cfg.network}: all are reserved`);
  }

  /** DEL: frees the attachment's addresses by its index; nothing to free is success. */
  async release(owner: Owner): Promise<string[]> {
    const idx = await this.store.getAttachment(owner);
    // An ADD killed between its reservations and its index left them without an index: DEL
    // finds them too (from the killed process's temp files), not only GC.
    const freed: string[] = (await this.store.releaseStray?.(owner)) ?? [];
    if (!idx) return freed;
    for (const ip of idx.ips) if (await this.store.release(ip, owner)) freed.push(ip);
    // Addresses first, index last: a crash in between leaves an index that a repeated DEL finishes.
    await this.store.deleteAttachment(owner);
    return freed;
  }

  /** CHECK: the attachment holds one reservation per range set, and they match prevResult's. */
  async check(owner: Owner, prevIps?: string[]): Promise<Allocation[]> {
    const idx = await this.store.getAttachment(owner);
    if (!idx || idx.ips.length === 0) throw new CniError(Code.UnknownContainer, `no address is reserved for ${who(owner)} on network ${this.cfg.network}`);
    const out: Allocation[] = [];
    const seen = new Set<number>();
    for (const text of idx.ips) {
      const ip = parseIP(text);
      const hit = ip && this.locate(ip);
      if (!ip || !hit) throw new CniError(Code.Conflict, `address ${text} of ${who(owner)} is outside every range of network ${this.cfg.network} (config changed?)`);
      const cur = await this.store.get(text);
      if (!cur || !sameOwner(cur.owner, owner)) {
        throw new CniError(Code.Conflict, `address ${text} of ${who(owner)} is ${cur ? `reserved by ${who(cur.owner)}` : 'not reserved any more'}`);
      }
      seen.add(hit.set.index);
      out.push(this.allocation(hit.set, hit.range, ipToBigInt(ip)));
    }
    const missing = this.cfg.rangeSets.filter((s) => !seen.has(s.index));
    if (missing.length) throw new CniError(Code.Conflict, `${who(owner)} holds no address in range set ${missing.map((s) => s.index).join(', ')}`);
    if (prevIps) {
      const prev = new Set(prevIps.map((a) => a.split('/')[0]!).map((a) => { const ip = parseIP(a); return ip ? formatIP(ip) : a; }));
      for (const a of out) if (!prev.has(a.ip)) throw new CniError(Code.Conflict, `address ${a.ip} of ${who(owner)} is missing from prevResult`);
      for (const p of prev) {
        const ip = parseIP(p);
        if (ip && this.locate(ip) && !out.some((a) => a.ip === p)) throw new CniError(Code.Conflict, `prevResult address ${p} is not reserved for ${who(owner)}`);
      }
    }
    return out;
  }

  /** STATUS: allocatable and free counts of every range; ranges within a set pool together. */
  async status(): Promise<RangeStatus[]> {
    const reserved = (await this.store.reservedIps()).map(parseIP).filter((x): x is IPAddr => x !== null);
    const out: RangeStatus[] = [];
    for (const set of this.cfg.rangeSets) {
      for (const r of set.ranges) {
        const size = allocatableCount(r);
        let used = 0n;
        for (const ip of reserved) {
          if (ip.family !== r.family) continue;
          const n = ipToBigInt(ip);
          if (n >= r.start && n <= r.end && !blockedAt(r, n)) used++;
        }
        out.push({ rangeSet: set.index, subnet: r.subnet, size: String(size), free: String(size > used ? size - used : 0n) });
      }
    }
    return out;
  }

  /** Range sets without a free address (ADD would fail). Orphans count as free: ADD reclaims them. */
  async exhaustedSets(statuses: RangeStatus[]): Promise<number[]> {
    const free = new Map<number, bigint>();
    for (const s of statuses) free.set(s.rangeSet, (free.get(s.rangeSet) ?? 0n) + BigInt(s.free));
    const dry = [...free].filter(([, f]) => f === 0n).map(([i]) => i);
    if (dry.length === 0) return dry;
    const orphans = await this.findOrphans();
    return dry.filter((i) => !orphans.some((o) => { const ip = parseIP(o.ip); return ip && this.locate(ip)?.set.index === i; }));
  }

  /** Reservations whose owner has no index listing them, and not possibly mid-ADD. */
  private async findOrphans(): Promise<Array<{ ip: string; owner: Owner }>> {
    const listed = new Set<string>();
    for (const rec of await this.store.listAttachments()) for (const ip of rec.ips) listed.add(`${ownerKey(rec.owner)}|${ip}`);
    const out: Array<{ ip: string; owner: Owner }> = [];
    for (const res of await this.store.listReservations()) {
      if (!res.maybeInFlight && !listed.has(`${ownerKey(res.owner)}|${res.ip}`)) out.push({ ip: res.ip, owner: res.owner });
    }
    return out;
  }

  /** Frees orphaned reservations and temp files left by crashed writers. */
  async reclaimOrphans(): Promise<GcReport> {
    const report: GcReport = { released: [], indexesRemoved: 0, indexesRepaired: 0, tempRemoved: 0 };
    for (const o of await this.findOrphans()) {
      // Look again: the owner's ADD may have written its index since the listing.
      const idx = await this.store.getAttachment(o.owner).catch(() => null);
      if (idx?.ips.includes(o.ip)) continue;
      if (await this.store.release(o.ip, o.owner)) report.released.push({ ...o, reason: 'orphan' });
    }
    report.tempRemoved = await this.store.sweepTemp();
    return report;
  }

  /**
   * GC: with `valid` (the runtime's cni.dev/valid-attachments), frees every attachment not in it;
   * repairs indexes (drops addresses now held by others, re-reserves missing ones of valid
   * attachments); then reclaims orphans. Without `valid`, only repairs and orphans.
   */
  async gc(valid: Owner[] | null): Promise<GcReport> {
    const validKeys = valid ? new Set(valid.map(ownerKey)) : null;
    const report: GcReport = { released: [], indexesRemoved: 0, indexesRepaired: 0, tempRemoved: 0 };
    for (const rec of await this.store.listAttachments()) {
      if (validKeys && !validKeys.has(ownerKey(rec.owner))) {
        for (const ip of rec.ips) if (await this.store.release(ip, rec.owner)) report.released.push({ ip, owner: rec.owner, reason: 'not-valid' });
        await this.store.deleteAttachment(rec.owner);
        report.indexesRemoved++;
        continue;
      }
      const keep: string[] = [];
      for (const ip of rec.ips) {
        const cur = await this.store.get(ip);
        if (cur && sameOwner(cur.owner, rec.owner)) keep.push(ip);
        else if (!cur && validKeys && (await this.store.reserve(ip, rec.owner))) keep.push(ip);
      }
      if (keep.length === rec.ips.length) continue;
      if (keep.length === 0 && !rec.maybeInFlight) {
        await this.store.deleteAttachment(rec.owner);
        report.indexesRemoved++;
      } else if (keep.length > 0) {
        await this.store.putAttachment(rec.owner, keep);
        report.indexesRepaired++;
      }
    }
    const orphans = await this.reclaimOrphans();
    report.released.push(...orphans.released);
    report.tempRemoved = orphans.tempRemoved;
    return report;
  }
}

/** Addresses of rangeStart..rangeEnd that may be handed out. */
export function allocatableCount(r: Range): bigint {
  let n = r.end - r.start + 1n;
  for (const b of r.blocked) {
    const lo = b.lo > r.start ? b.lo : r.start;
    const hi = b.hi < r.end ? b.hi : r.end;
    if (lo <= hi) n -= hi - lo + 1n;
  }
  return n;
}

/**
 * Candidate addresses of a range set in round-robin order: after `last` to the end of its range,
 * then the following ranges, wrapping to the start of `last`'s range; blocked addresses skipped.
 */
export function* candidates(set: RangeSet, last: IPAddr | null): Generator<{ range: Range; n: bigint }> {
  const k = set.ranges.length;
  let first = 0;
  let from: bigint | null = null;
  if (last && last.family === set.family) {
    const n = ipToBigInt(last);
    const i = set.ranges.findIndex((r) => n >= r.start && n <= r.end);
    if (i >= 0) { first = i; from = n + 1n; }
  }
  const r0 = set.ranges[first]!;
  const segments: Array<[Range, bigint, bigint]> = [];
  segments.push([r0, from ?? r0.start, r0.end]);
  for (let j = 1; j < k; j++) { const r = set.ranges[(first + j) % k]!; segments.push([r, r.start, r.end]); }
  if (from !== null && from > r0.start) segments.push([r0, r0.start, from - 1n]);
  for (const [range, lo, hi] of segments) {
    let n = lo;
    while (n <= hi) {
      const b = blockedAt(range, n);
      if (b) { n = b.hi + 1n; continue; }
      yield { range, n };
      n++;
    }
  }
}
