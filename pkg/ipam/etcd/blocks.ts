// knit-etcd-ipam's block picking: where a node looks for a dynamic address. Blocks only decide
// where a node looks first (uniqueness rests on the ADD transaction, allocator.ts): inside its own
// blocks, else a free block it claims in the transaction of its first address there, else a free
// address borrowed from another node's block. This class also keeps what the node knows of its
// own blocks (a cache: the transaction compares every block it relies on).
import { CniError, Code } from '../../cni/errors';
import type { KeyValue, Op } from '../../etcd/client';
import { fnv1a32 } from '../../hash';
import { Family, blockOf, boundsOf, parseCIDR, parseIP, ipToBigInt } from '../../ip/ip';
import type { Range, RangeSet } from '../config';
import type { EtcdIpamConfig } from '../etcd-config';
import { exhaustedMessage, freeBetween, ipText } from '../range';
import { Owner, ownerKey } from '../store';
import { EtcdKeys, nOfKey, parseJson, type KvClient } from './keys';

export interface Block {
  family: Family;
  lo: bigint;
  hi: bigint;
  cidr: string;
  set: RangeSet;
  range: Range;
}

export interface OwnBlock {
  block: Block;
  /** create_revision of the block key when we saw it: the transaction checks it is unchanged. */
  rev: number;
  /** Reserved addresses of the block as last seen; null until read. */
  used: Set<bigint> | null;
}

/** Where an address of the ADD comes from, and what its transaction must compare. */
export type Candidate =
  | { kind: 'static'; set: RangeSet; range: Range; n: bigint }
  | { kind: 'own'; set: RangeSet; range: Range; n: bigint; own: OwnBlock }
  | { kind: 'claim'; set: RangeSet; range: Range; n: bigint; block: Block }
  | { kind: 'borrow'; set: RangeSet; range: Range; n: bigint; block: Block; rev: number; node: string };

/** The block a dynamic candidate lies in (null for a static request). */
export function blockOfCandidate(c: Candidate): Block | null {
  return c.kind === 'own' ? c.own.block : c.kind === 'claim' || c.kind === 'borrow' ? c.block : null;
}

export class BlockPicker {
  /** This node's blocks by block key; null until read. */
  own: Map<string, OwnBlock> | null = null;

  constructor(readonly cfg: EtcdIpamConfig, readonly keys: EtcdKeys, readonly node: string, readonly client: KvClient) {}

  private blockPrefix(r: Range): number {
    const size = r.family === 4 ? this.cfg.blockSize : this.cfg.blockSize6;
    return Math.max(size, r.prefix);
  }

  /** The block of range r holding address n. */
  blockAt(set: RangeSet, r: Range, n: bigint): Block {
    const p = this.blockPrefix(r);
    const { lo, hi } = blockOf(n, p, r.family);
    return { family: r.family, lo, hi, cidr: `${ipText(lo, r.family)}/${p}`, set, range: r };
  }

  /** A stored block CIDR mapped onto the config (null when no range of this config overlaps it). */
  blockFromCidr(cidr: string): Block | null {
    const net = parseCIDR(cidr);
    if (!net) return null;
    const family = net.ip.family;
    const { lo, hi } = boundsOf(net);
    for (const set of this.cfg.rangeSets) {
      if (set.family !== family) continue;
      for (const range of set.ranges) if (lo <= range.end && hi >= range.start) return { family, lo, hi, cidr, set, range };
    }
    return null;
  }

  /** The block keys [first, end) of a range. */
  blockKeysOf(set: RangeSet, r: Range): [string, Buffer] {
    return this.keys.blockRange(r.family, this.blockAt(set, r, r.start).lo, this.blockAt(set, r, r.end).lo);
  }

  /** Up to `limit` free allocatable addresses of block b (inside its range's start..end). */
  private freeIn(b: Block, used: Set<bigint>, taken: Set<bigint>, limit: number): bigint[] {
    return freeBetween(b.range, b.lo, b.hi, limit, (n) => !used.has(n) && !taken.has(n));
  }

  /** Spreads concurrent ADDs that see the same free addresses over different ones. */
  private choose<T>(list: T[], owner: Owner, attempt: number): T {
    return list[fnv1a32(`${ownerKey(owner)}#${attempt}#${process.pid}`) % list.length]!;
  }

  /** Replaces what we know of our blocks with the node index read (keeping addresses seen). */
  setOwn(kvs: KeyValue[], keepUsed: boolean): Map<string, OwnBlock> {
    const own = new Map<string, OwnBlock>();
    for (const kv of kvs) {
      const b = this.blockFromCidr(String(parseJson(kv.value)?.cidr ?? ''));
      if (!b) continue;
      const key = this.keys.block(b.family, b.lo);
      own.set(key, { block: b, rev: kv.createRevision, used: keepUsed ? this.own?.get(key)?.used ?? null : null });
    }
    return (this.own = own);
  }

  private async loadOwn(serializable: boolean): Promise<Map<string, OwnBlock>> {
    return this.setOwn(await this.client.prefix(this.keys.nodeBlocks(this.node), { serializable }), true);
  }

  /** A dynamic address for `set`: own block, else a newly claimed block, else a borrowed one. */
  async pickDynamic(set: RangeSet, owner: Owner, attempt: number, taken: Set<bigint>, serializable: boolean): Promise<Candidate> {
    const own = this.own ?? (await this.loadOwn(serializable));
    const mine = [...own.values()].filter((o) => o.block.set.index === set.index).sort((a, b) => (a.block.lo < b.block.lo ? -1 : 1));
    // A block whose addresses we have not read yet is tried blind: a random address of it is
    // free with the odds of the block's free share, and a lost race returns the block's
    // reservations in the same round trip. So a fresh process needs no read of the block.
    for (const o of mine) {
      const free = this.freeIn(o.block, o.used ?? new Set(), taken, o.used ? 64 : 256);
      if (free.length) return { kind: 'own', set, range: o.block.range, n: this.choose(free, owner, attempt), own: o };
    }
    // Claim: the free blocks of the set, in address order; pick one of the first few at random.
    const claimed = await this.client.txn({
      compare: [],
      success: set.ranges.map((r) => {
        const [k, e] = this.blockKeysOf(set, r);
        return { range: { key: k, rangeEnd: e, serializable, keysOnly: true } };
      }),
    });
    const claimedLo = new Set<bigint>();
    for (const res of claimed.responses) if (res.kind === 'range') for (const kv of res.range.kvs) claimedLo.add(nOfKey(kv.key));
    const freeBlocks: Block[] = [];
    for (const r of set.ranges) {
      let b = this.blockAt(set, r, r.start);
      const step = b.hi - b.lo + 1n;
      let walked = 0;
      while (b.lo <= r.end && freeBlocks.length < 16 && walked++ < claimedLo.size + 4096) {
        if (!claimedLo.has(b.lo) && this.freeIn(b, new Set(), taken, 1).length) freeBlocks.push(b);
        b = this.blockAt(set, r, b.lo + step);
      }
      // Ranges in the order given, as Docker fills a network's subnets: the next only when this is full.
      if (freeBlocks.length) break;
    }
    if (freeBlocks.length) {
      const block = this.choose(freeBlocks, owner, attempt);
      const free = this.freeIn(block, new Set(), taken, 64);
      return { kind: 'claim', set, range: block.range, n: this.choose(free, owner, attempt), block };
    }
    return this.pickBorrow(set, owner, attempt, taken);
  }

  /** The pool has no free block: a free address in any claimed block of the set. */
  private async pickBorrow(set: RangeSet, owner: Owner, attempt: number, taken: Set<bigint>): Promise<Candidate> {
    const ops: Op[] = [];
    for (const r of set.ranges) {
      const [bk, be] = this.blockKeysOf(set, r);
      ops.push({ range: { key: bk, rangeEnd: be } });
      const [ik, ie] = this.keys.ipRange(r.family, this.blockAt(set, r, r.start).lo, this.blockAt(set, r, r.end).hi);
      ops.push({ range: { key: ik, rangeEnd: ie, keysOnly: true } });
    }
    const res = await this.client.txn({ compare: [], success: ops });
    const used = new Set<bigint>();
    const blocks: Array<{ block: Block; rev: number; node: string }> = [];
    res.responses.forEach((x, i) => {
      if (x.kind !== 'range') return;
      if (i % 2 === 1) { for (const kv of x.range.kvs) used.add(nOfKey(kv.key)); return; }
      for (const kv of x.range.kvs) {
        const v = parseJson(kv.value);
        const b = this.blockFromCidr(String(v?.cidr ?? ''));
        if (b && b.set.index === set.index) blocks.push({ block: b, rev: kv.createRevision, node: String(v?.node ?? '') });
      }
    });
    const withFree = blocks.map((b) => ({ ...b, free: this.freeIn(b.block, used, taken, 64) })).filter((b) => b.free.length);
    if (!withFree.length) throw new CniError(Code.AddressUnavailable, exhaustedMessage(set, this.cfg.network));
    const b = this.choose(withFree, owner, attempt);
    return { kind: 'borrow', set, range: b.block.range, n: this.choose(b.free, owner, attempt), block: b.block, rev: b.rev, node: b.node };
  }

  // ---- what the node learns from its transactions ------------------------------------------

  /** After a successful ADD: the addresses are used, a claimed block is ours. */
  allocated(cands: Candidate[], revision: number): void {
    for (const c of cands) {
      if (c.kind === 'own') c.own.used?.add(c.n);
      if (c.kind === 'claim' && this.own) this.own.set(this.keys.block(c.block.family, c.block.lo), { block: c.block, rev: revision, used: new Set([c.n]) });
    }
  }

  /** After a lost ADD: a block as it is now (its key-value, null when free) and its used addresses. */
  observed(b: Block, bkv: KeyValue | undefined, used: Set<bigint>): void {
    if (!this.own) return;
    const bkey = this.keys.block(b.family, b.lo);
    if (bkv && String(parseJson(bkv.value)?.node ?? '') === this.node) this.own.set(bkey, { block: b, rev: bkv.createRevision, used });
    else this.own.delete(bkey);
  }

  /** A released address is free again in what we know of its block. */
  released(ip: string): void {
    const p = parseIP(ip);
    if (!p || !this.own) return;
    const n = ipToBigInt(p);
    for (const o of this.own.values()) if (n >= o.block.lo && n <= o.block.hi) o.used?.delete(n);
  }

  /** Blocks a release returned to the pool are ours no more. */
  returned(cidrs: string[]): void {
    for (const c of cidrs) {
      const b = this.blockFromCidr(c);
      if (b) this.own?.delete(this.keys.block(b.family, b.lo));
    }
  }
}
