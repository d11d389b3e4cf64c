// Allocation over a Store: one address per range set per attachment, round-robin from the last
// reserved address of each range set, static requests anywhere in a subnet, and the sweeps that
// reclaim what crashed writers left. No locks: every claim is store.reserve(), an atomic create,
// and losing a race just means probing the next address.
import { CniError, Code } from '../cni/errors';
import { IPAddr, ipToBigInt, parseIP } from '../ip/ip';
import type { GcReport, IpamBackend, RangeStatus } from './backend';
import type { IpamConfig, Range, RangeSet } from './config';
import {
  Allocation, Placed, allocatableCount, allocationOf, blockedAt, candidates, checkAllSets, exhaustedMessage, ipText, keepable, locate, placeRequests, who,
} from './range';
import { AttachmentRecord, Owner, Store, ownerKey, sameOwner } from './store';

export type { Allocation } from './range';
export type { GcReport, RangeStatus } from './backend';

/** Linear probes before listing the reserved names once and skipping those. */
const PROBE_LIMIT = 64;

export class Allocator implements IpamBackend {
  constructor(readonly cfg: IpamConfig, readonly store: Store) {}

  /**
   * ADD: the attachment's addresses, one per range set. A repeated ADD for the same attachment
   * returns what it already holds (as long as it still fits the config and the requests).
   */
  async allocate(owner: Owner, requests: IPAddr[] = []): Promise<Allocation[]> {
    const wanted = placeRequests(this.cfg, requests);
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
  private async adoptPrior(owner: Owner, prior: AttachmentRecord, wanted: Map<number, Placed>, result: Map<number, Allocation>): Promise<void> {
    for (const text of prior.ips) {
      const hit = keepable(this.cfg.rangeSets, text, result, wanted);
      let keep = false;
      if (hit) {
        const cur = await this.store.get(text);
        keep = cur !== null && sameOwner(cur.owner, owner);
        if (!keep && cur === null) keep = await this.store.reserve(text, owner); // index without reservation: take it back if free
        if (keep) result.set(hit.set.index, allocationOf(hit.set, hit.range, hit.n));
      }
      if (!keep) await this.store.release(text, owner);
    }
  }

  private async reserveRequested(owner: Owner, set: RangeSet, r: Range, n: bigint): Promise<Allocation> {
    const ip = ipText(n, r.family);
    if (await this.store.reserve(ip, owner)) return allocationOf(set, r, n);
    const cur = await this.store.get(ip);
    // Ours already (a crashed earlier ADD of this attachment): adopt it.
    if (cur && sameOwner(cur.owner, owner)) return allocationOf(set, r, n);
    if (cur === null && (await this.store.reserve(ip, owner))) return allocationOf(set, r, n);
    throw new CniError(Code.AddressUnavailable, `requested address ${ip} is already reserved${cur ? ` by ${who(cur.owner)}` : ''} on network ${this.cfg.network}`);
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
        if (await this.store.reserve(ip, owner)) return allocationOf(set, range, n);
      }
      // Exhausted: reclaim what crashed writers left, then try once more.
      if (attempt === 0 && (await this.reclaimOrphans()).released.length === 0) break;
    }
    throw new CniError(Code.AddressUnavailable, exhaustedMessage(set, this.cfg.network));
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

  /** CHECK: the attachment holds one reservation per range set (prevResult: see range.ts matchPrevResult). */
  async check(owner: Owner): Promise<Allocation[]> {
    const idx = await this.store.getAttachment(owner);
    if (!idx || idx.ips.length === 0) throw new CniError(Code.UnknownContainer, `no address is reserved for ${who(owner)} on network ${this.cfg.network}`);
    const out: Allocation[] = [];
    for (const text of idx.ips) {
      const ip = parseIP(text);
      const hit = ip && locate(this.cfg.rangeSets, ip);
      if (!ip || !hit) throw new CniError(Code.Conflict, `address ${text} of ${who(owner)} is outside every range of network ${this.cfg.network} (config changed?)`);
      const cur = await this.store.get(text);
      if (!cur || !sameOwner(cur.owner, owner)) {
        throw new CniError(Code.Conflict, `address ${text} of ${who(owner)} is ${cur ? `reserved by ${who(cur.owner)}` : 'not reserved any more'}`);
      }
      out.push(allocationOf(hit.set, hit.range, ipToBigInt(ip)));
    }
    checkAllSets(this.cfg.rangeSets, owner, out);
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
    return dry.filter((i) => !orphans.some((o) => { const ip = parseIP(o.ip); return ip && locate(this.cfg.rangeSets, ip)?.set.index === i; }));
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
