// knit-etcd-ipam's allocator: cluster-wide addresses in etcd, per-node blocks, no lock.
//
// Keys (P = etcd.prefix, N = network name, F = 4 or 6, HEX = the address as fixed-width hex so
// that the addresses of a block are one contiguous key range):
//   P/ipam/N/ips/F/HEX                 {"ip","node","containerID","ifname"}  the reservation
//   P/ipam/N/blocks/F/HEX              {"cidr","node"}                       block claimed by node
//   P/ipam/N/nodes/NODE/F/HEX          {"cidr"}                              the node's block index
//   P/ipam/N/attach/NODE/CID:IFNAME    {"ips":[{ip, block, blockNode}],     the attachment index
//                                       "pod":{namespace, name, uid?}}       (pod: from CNI_ARGS K8S_POD_*)
//
// Uniqueness rests on one rule: an address is handed out only by a transaction that creates its
// ips/ key (compare create_revision == 0), and that same transaction writes the attachment index,
// so there is never a reservation without its index nor an index without its reservations, and
// no address ever has two owners, whatever interleaves. Blocks only decide where a node looks
// first: a node allocates inside its own blocks (the transaction also checks the block is still
// the one it saw), claims a free block in the transaction of its first address there, borrows a
// free address from another node's block when no block is free, and a block whose last address is
// released goes back to the pool in the release transaction itself (compare: no other address key
// in the block's key range). ADD is one write transaction; DEL is one read and one transaction.
import { CniError, Code } from '../cni/errors';
import { EtcdClient, EtcdError, KeyValue, Op, Compare, TxnResult, cmp, prefixEnd } from '../etcd';
import { TxnBatcher } from '../etcd';
import { Family, IPAddr, bigIntToIP, bitsOf, formatIP, ipToBigInt, parseCIDR, parseIP } from '../ip/ip';
import { Allocation, Allocator, GcReport, RangeStatus, allocatableCount } from './allocator';
import { Range, RangeSet, blockedAt } from './config';
import type { EtcdIpamConfig } from './etcd-config';
import { Owner, ownerKey, sameOwner } from './store';

/** Attempts of the ADD transaction before giving up with code 11 (only under heavy contention). */
const MAX_ATTEMPTS = 40;
/** Attachment indexes an allocator remembers (knitd keeps one allocator per network). */
const KNOWN_MAX = 4096;
/** Nested transactions per etcd transaction (etcd's --max-txn-ops defaults to 128). */
const TXN_CHUNK = 32;

export interface AttachIp {
  ip: string;
  /** The block (CIDR) the address lies in and who owned it when allocated; null for static requests. */
  block: string | null;
  blockNode: string | null;
}

/** The Kubernetes pod an attachment was made for (CNI_ARGS K8S_POD_NAMESPACE/NAME/UID). */
export interface PodRef {
  namespace: string;
  name: string;
  uid?: string;
}

export interface AttachRecord {
  ips: AttachIp[];
  /** Recorded when the runtime names the pod: the pod GC (pod-gc.ts) judges the attachment by it. */
  pod?: PodRef;
}

export interface Block {
  family: Family;
  lo: bigint;
  hi: bigint;
  cidr: string;
  set: RangeSet;
  range: Range;
}

interface OwnBlock {
  block: Block;
  /** create_revision of the block key when we saw it: the transaction checks it is unchanged. */
  rev: number;
  /** Reserved addresses of the block as last seen; null until read. */
  used: Set<bigint> | null;
}

type Candidate =
  | { kind: 'static'; set: RangeSet; range: Range; n: bigint }
  | { kind: 'own'; set: RangeSet; range: Range; n: bigint; own: OwnBlock }
  | { kind: 'claim'; set: RangeSet; range: Range; n: bigint; block: Block }
  | { kind: 'borrow'; set: RangeSet; range: Range; n: bigint; block: Block; rev: number; node: string };

export interface EtcdGcReport extends GcReport {
  /** Blocks of the node returned to the pool (empty). */
  blocksReturned: string[];
}

export interface HolderRow {
  ip: string;
  node: string;
  containerId: string;
  ifName: string;
  block: string | null;
  blockNode: string | null;
}

export interface NetworkListing {
  network: string;
  blocks: Array<{ cidr: string; node: string; used: number }>;
  ips: HolderRow[];
  attachments: Array<{ node: string; containerId: string; ifName: string; ips: string[]; pod?: PodRef }>;
}

function hexOf(n: bigint, family: Family): string {
  return n.toString(16).padStart(family === 4 ? 8 : 32, '0');
}

function ipText(n: bigint, family: Family): string {
  return formatIP(bigIntToIP(n, family));
}

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function who(o: Owner): string {
  return `container ${o.containerId} (${o.ifName})`;
}

/** The key layout of one network. */
export class EtcdKeys {
  readonly base: string;
  constructor(prefix: string, readonly network: string) {
    this.base = `${prefix}/ipam/${network}/`;
  }
  ip(family: Family, n: bigint): string { return `${this.base}ips/${family}/${hexOf(n, family)}`; }
  /** [first, end) of the address keys lo..hi. */
  ipRange(family: Family, lo: bigint, hi: bigint): [string, Buffer] {
    return [this.ip(family, lo), Buffer.concat([Buffer.from(this.ip(family, hi)), Buffer.from([0])])];
  }
  ips(): string { return `${this.base}ips/`; }
  block(family: Family, lo: bigint): string { return `${this.base}blocks/${family}/${hexOf(lo, family)}`; }
  blocks(): string { return `${this.base}blocks/`; }
  blockRange(family: Family, lo: bigint, hi: bigint): [string, Buffer] {
    return [this.block(family, lo), Buffer.concat([Buffer.from(this.block(family, hi)), Buffer.from([0])])];
  }
  nodeBlock(node: string, family: Family, lo: bigint): string { return `${this.base}nodes/${node}/${family}/${hexOf(lo, family)}`; }
  nodeBlocks(node: string): string { return `${this.base}nodes/${node}/`; }
  attach(node: string, o: Owner): string { return `${this.base}attach/${node}/${o.containerId}:${o.ifName}`; }
  attachments(node?: string): string { return node ? `${this.base}attach/${node}/` : `${this.base}attach/`; }
}

// Values are written deterministically: release compares them byte for byte.
export function ipValue(ip: string, node: string, o: Owner): string {
  return JSON.stringify({ ip, node, containerID: o.containerId, ifname: o.ifName });
}
export function blockValue(cidr: string, node: string): string {
  return JSON.stringify({ cidr, node });
}

function parseJson(v: Buffer): any {
  try { return JSON.parse(v.toString()); } catch { return null; }
}

function parseAttach(kv: KeyValue): AttachRecord {
  const v = parseJson(kv.value);
  const ips = Array.isArray(v?.ips) ? (v.ips as unknown[]).filter((x): x is AttachIp => typeof (x as AttachIp)?.ip === 'string') : [];
  const pod = v?.pod;
  return {
    ips: ips.map((x) => ({ ip: x.ip, block: typeof x.block === 'string' ? x.block : null, blockNode: typeof x.blockNode === 'string' ? x.blockNode : null })),
    ...(typeof pod?.namespace === 'string' && typeof pod?.name === 'string'
      ? { pod: { namespace: pod.namespace, name: pod.name, ...(typeof pod.uid === 'string' ? { uid: pod.uid } : {}) } }
      : {}),
  };
}

/** etcd failures as CNI errors: unreachable is code 11 (try again later). */
export function etcdCniError(e: unknown): unknown {
  if (!(e instanceof EtcdError)) return e;
  switch (e.kind) {
    case 'unavailable': return new CniError(Code.TryAgainLater, e.message);
    case 'auth': return new CniError(Code.InvalidConfig, `${e.message} (ipam.etcd.username / password)`);
    default: return new CniError(Code.IOFailure, e.message);
  }
}

/**
 * Ops that free the addresses of an attachment index: per address a nested transaction that
 * deletes it only while it still names this owner. When no other address key lies in the
 * block's key range (compares are evaluated before the delete, so "no other") and the block's
 * node holds another block of the family, the block goes back to the pool in the same transaction: the two
 * sibling transactions test "another block before this one" and "another block after it" in the
 * node's index. A node's last block of a family stays with it (no claim/return churn as pods come and go);
 * GC by knitctl for a node that left returns every block.
 */
export function releaseOps(keys: EtcdKeys, node: string, owner: Owner, rec: AttachRecord): Op[] {
  const ops: Op[] = [];
  for (const a of rec.ips) {
    const ip = parseIP(a.ip);
    if (!ip) {
      ops.push({ txn: { compare: [cmp.absent(keys.base + 'never')], success: [] } }); // keeps indexes aligned
      continue;
    }
    const n = ipToBigInt(ip);
    const key = keys.ip(ip.family, n);
    const inner: Op[] = [{ del: { key } }];
    const net = a.block && a.blockNode ? parseCIDR(a.block) : null;
    if (net && net.ip.family === ip.family) {
      const mask = (1n << BigInt(bitsOf(ip.family) - net.prefix)) - 1n;
      const lo = ipToBigInt(net.ip) & ~mask;
      const [, end] = keys.ipRange(ip.family, lo, lo | mask);
      const empty: Compare[] = [cmp.value(keys.block(ip.family, lo), blockValue(a.block!, a.blockNode!))];
      if (n > lo) empty.push(cmp.absent(keys.ip(ip.family, lo), key));
      empty.push(cmp.absent(Buffer.concat([Buffer.from(key), Buffer.from([0])]), end));
      const nodeKey = keys.nodeBlock(a.blockNode!, ip.family, lo);
      const nodeAll = `${keys.nodeBlocks(a.blockNode!)}${ip.family}/`; // the node's blocks of this family
      const ret: Op[] = [{ del: { key: keys.block(ip.family, lo) } }, { del: { key: nodeKey } }];
      const nonEmpty = (k: Buffer | string, e: Buffer | string): Compare => ({ key: k, rangeEnd: e, target: 'CREATE', result: 'GREATER', value: 0 });
      inner.push(
        { txn: { compare: [...empty, nonEmpty(nodeAll, nodeKey)], success: ret } },
        { txn: { compare: [...empty, nonEmpty(Buffer.concat([Buffer.from(nodeKey), Buffer.from([0])]), prefixEnd(nodeAll))], success: ret } },
      );
    }
    ops.push({ txn: { compare: [cmp.value(key, ipValue(a.ip, node, owner))], success: inner } });
  }
  return ops;
}

/** What release ops did: the addresses freed and the blocks returned to the pool. */
export function releaseOutcome(rec: AttachRecord, responses: TxnResult['responses'], offset: number): { freed: string[]; blocks: string[] } {
  const out = { freed: [] as string[], blocks: [] as string[] };
  rec.ips.forEach((a, i) => {
    const r = responses[offset + i];
    if (r?.kind !== 'txn' || !r.txn.succeeded) return;
    out.freed.push(a.ip);
    if (r.txn.responses.slice(1).some((x) => x.kind === 'txn' && x.txn.succeeded) && a.block) out.blocks.push(a.block);
  });
  return out;
}

export class EtcdAllocator {
  readonly keys: EtcdKeys;
  readonly node: string;
  /** Range logic shared with knit-host-local (static requests, blocked addresses, results). */
  private readonly core: Allocator;
  private own: Map<string, OwnBlock> | null = null;
  /** Attachment indexes this instance wrote or read: a DEL then needs no read. */
  private readonly known = new Map<string, { rev: number; rec: AttachRecord }>();
  /** Transactions that lost a race (for tests and benchmarks). */
  conflicts = 0;
  /** ADD transactions of concurrent allocations (knitd serving a node's ADDs) go to etcd together. */
  readonly writer: TxnBatcher;

  constructor(readonly cfg: EtcdIpamConfig, readonly client: EtcdClient) {
    this.writer = new TxnBatcher(client);
    this.keys = new EtcdKeys(cfg.etcd.prefix, cfg.network);
    this.node = cfg.nodeName;
    this.core = new Allocator(cfg, null as never);
  }

  // ---- blocks ----------------------------------------------------------------------------

  private blockPrefix(r: Range): number {
    const size = r.family === 4 ? this.cfg.blockSize : this.cfg.blockSize6;
    return Math.max(size, r.prefix);
  }

  /** The block of range r holding address n. */
  blockAt(set: RangeSet, r: Range, n: bigint): Block {
    const p = this.blockPrefix(r);
    const mask = (1n << BigInt(bitsOf(r.family) - p)) - 1n;
    const lo = n & ~mask;
    return { family: r.family, lo, hi: lo | mask, cidr: `${ipText(lo, r.family)}/${p}`, set, range: r };
  }

  /** A stored block CIDR mapped onto the config (null when no range of this config overlaps it). */
  private blockFromCidr(cidr: string): Block | null {
    const net = parseCIDR(cidr);
    if (!net) return null;
    const family = net.ip.family;
    const mask = (1n << BigInt(bitsOf(family) - net.prefix)) - 1n;
    const lo = ipToBigInt(net.ip) & ~mask;
    const hi = lo | mask;
    for (const set of this.cfg.rangeSets) {
      if (set.family !== family) continue;
      for (const range of set.ranges) if (lo <= range.end && hi >= range.start) return { family, lo, hi, cidr, set, range };
    }
    return null;
  }

  /** Up to `limit` free allocatable addresses of block b (inside its range's start..end). */
  private freeIn(b: Block, used: Set<bigint>, taken: Set<bigint>, limit: number): bigint[] {
    const out: bigint[] = [];
    const r = b.range;
    let n = b.lo > r.start ? b.lo : r.start;
    const hi = b.hi < r.end ? b.hi : r.end;
    while (n <= hi && out.length < limit) {
      const bl = blockedAt(r, n);
      if (bl) { n = bl.hi + 1n; continue; }
      if (!used.has(n) && !taken.has(n)) out.push(n);
      n++;
    }
    return out;
  }

  /** Spreads concurrent ADDs that see the same free addresses over different ones. */
  private choose<T>(list: T[], owner: Owner, attempt: number): T {
    return list[fnv(`${ownerKey(owner)}#${attempt}#${process.pid}`) % list.length]!;
  }

  private async loadOwn(serializable: boolean): Promise<Map<string, OwnBlock>> {
    const kvs = await this.client.prefix(this.keys.nodeBlocks(this.node), { serializable });
    const own = new Map<string, OwnBlock>();
    for (const kv of kvs) {
      const b = this.blockFromCidr(String(parseJson(kv.value)?.cidr ?? ''));
      if (b) own.set(this.keys.block(b.family, b.lo), { block: b, rev: kv.createRevision, used: this.own?.get(this.keys.block(b.family, b.lo))?.used ?? null });
    }
    return (this.own = own);
  }

  private nOfKey(key: Buffer): bigint {
    const s = key.toString();
    return BigInt('0x' + s.slice(s.lastIndexOf('/') + 1));
  }

  /** A dynamic address for `set`: own block, else a newly claimed block, else a borrowed one. */
  private async pickDynamic(set: RangeSet, owner: Owner, attempt: number, taken: Set<bigint>, serializable: boolean): Promise<Candidate> {
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
        const [k, e] = this.keys.blockRange(r.family, this.blockAt(set, r, r.start).lo, this.blockAt(set, r, r.end).lo);
        return { range: { key: k, rangeEnd: e, serializable, keysOnly: true } };
      }),
    });
    const claimedLo = new Set<bigint>();
    for (const res of claimed.responses) if (res.kind === 'range') for (const kv of res.range.kvs) claimedLo.add(this.nOfKey(kv.key));
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
      const [bk, be] = this.keys.blockRange(r.family, this.blockAt(set, r, r.start).lo, this.blockAt(set, r, r.end).lo);
      ops.push({ range: { key: bk, rangeEnd: be } });
      const [ik, ie] = this.keys.ipRange(r.family, this.blockAt(set, r, r.start).lo, this.blockAt(set, r, r.end).hi);
      ops.push({ range: { key: ik, rangeEnd: ie, keysOnly: true } });
    }
    const res = await this.client.txn({ compare: [], success: ops });
    const used = new Set<bigint>();
    const blocks: Array<{ block: Block; rev: number; node: string }> = [];
    res.responses.forEach((x, i) => {
      if (x.kind !== 'range') return;
      if (i % 2 === 1) { for (const kv of x.range.kvs) used.add(this.nOfKey(kv.key)); return; }
      for (const kv of x.range.kvs) {
        const v = parseJson(kv.value);
        const b = this.blockFromCidr(String(v?.cidr ?? ''));
        if (b && b.set.index === set.index) blocks.push({ block: b, rev: kv.createRevision, node: String(v?.node ?? '') });
      }
    });
    const withFree = blocks.map((b) => ({ ...b, free: this.freeIn(b.block, used, taken, 64) })).filter((b) => b.free.length);
    if (!withFree.length) {
      throw new CniError(Code.AddressUnavailable, `no free address in range set ${set.index} (${set.ranges.map((r) => `${r.subnet} ${ipText(r.start, r.family)}-${ipText(r.end, r.family)}`).join(', ')}) of network ${this.cfg.network}: all are reserved`);
    }
    const b = this.choose(withFree, owner, attempt);
    return { kind: 'borrow', set, range: b.block.range, n: this.choose(b.free, owner, attempt), block: b.block, rev: b.rev, node: b.node };
  }

  // ---- release ---------------------------------------------------------------------------

  /** See releaseOps below. */
  releaseOps(node: string, owner: Owner, rec: AttachRecord): Op[] {
    return releaseOps(this.keys, node, owner, rec);
  }

  // ---- verbs -----------------------------------------------------------------------------

  /**
   * ADD: one address per range set. A repeated ADD returns what the attachment holds; the
   * addresses, the claimed block and the attachment index are written by one transaction.
   */
  async allocate(owner: Owner, requests: IPAddr[] = [], pod?: PodRef): Promise<Allocation[]> {
    const wanted = this.core.placeRequests(requests);
    const attachKey = this.keys.attach(this.node, owner);
    let cur: { rev: number; rec: AttachRecord } | null | undefined = this.known.get(ownerKey(owner));
    let serializable = true;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (cur === undefined) {
        // One read: the attachment index (a repeated ADD) and, first time, this node's blocks.
        const ops: Op[] = [{ range: { key: attachKey, serializable } }];
        if (!this.own) ops.push({ range: { key: this.keys.nodeBlocks(this.node), rangeEnd: prefixEnd(this.keys.nodeBlocks(this.node)), serializable } });
        const r = await this.client.txn({ compare: [], success: ops });
        const a = r.responses[0]?.kind === 'range' ? r.responses[0].range.kvs[0] : undefined;
        cur = a ? { rev: a.modRevision, rec: parseAttach(a) } : null;
        if (r.responses[1]?.kind === 'range') {
          this.own = new Map();
          for (const kv of r.responses[1].range.kvs) {
            const b = this.blockFromCidr(String(parseJson(kv.value)?.cidr ?? ''));
            if (b) this.own.set(this.keys.block(b.family, b.lo), { block: b, rev: kv.createRevision, used: null });
          }
        }
      }
      // What the attachment keeps: addresses that still fit the config and the requests.
      const result = new Map<number, Allocation>();
      const kept: AttachIp[] = [];
      const dropped: AttachIp[] = [];
      for (const a of cur?.rec.ips ?? []) {
        const ip = parseIP(a.ip);
        const hit = ip && this.core.locate(ip);
        const n = ip ? ipToBigInt(ip) : 0n;
        const req = hit ? wanted.get(hit.set.index) : undefined;
        if (ip && hit && !result.has(hit.set.index) && (!req || req.n === n) && !this.core.blockedReason(hit.range, n)) {
          result.set(hit.set.index, this.core.allocation(hit.set, hit.range, n));
          kept.push(a);
        } else dropped.push(a);
      }
      const cands: Candidate[] = [];
      const taken = new Set<bigint>(dropped.map((a) => { const ip = parseIP(a.ip); return ip ? ipToBigInt(ip) : -1n; }));
      for (const set of this.cfg.rangeSets) {
        if (result.has(set.index)) continue;
        const req = wanted.get(set.index);
        const c: Candidate = req ? { kind: 'static', set, range: req.range, n: req.n } : await this.pickDynamic(set, owner, attempt, taken, serializable);
        taken.add(c.n);
        cands.push(c);
        result.set(set.index, this.core.allocation(set, c.range, c.n));
      }
      const all = this.cfg.rangeSets.map((s) => result.get(s.index)!);
      const podRef = pod ?? cur?.rec.pod;
      const rec: AttachRecord = {
        ips: [...kept, ...cands.map((c): AttachIp => ({
          ip: ipText(c.n, c.range.family),
          block: c.kind === 'own' ? c.own.block.cidr : c.kind === 'claim' || c.kind === 'borrow' ? c.block.cidr : null,
          blockNode: c.kind === 'own' || c.kind === 'claim' ? this.node : c.kind === 'borrow' ? c.node : null,
        }))],
        ...(podRef ? { pod: podRef } : {}),
      };
      // The transaction: the attachment index is what we read; kept addresses are still ours;
      // new addresses are free and their blocks are what we saw (or free, for a claim).
      const compare: Compare[] = [cur ? cmp.modified(attachKey, cur.rev) : cmp.absent(attachKey)];
      for (const a of kept) {
        const ip = parseIP(a.ip)!;
        compare.push(cmp.value(this.keys.ip(ip.family, ipToBigInt(ip)), ipValue(a.ip, this.node, owner)));
      }
      const success: Op[] = [];
      const failure: Op[] = [{ range: { key: attachKey } }];
      for (const c of cands) {
        const key = this.keys.ip(c.range.family, c.n);
        compare.push(cmp.absent(key));
        success.push({ put: { key, value: ipValue(ipText(c.n, c.range.family), this.node, owner) } });
        if (c.kind === 'static') continue;
        const b = c.kind === 'own' ? c.own.block : c.block;
        const bkey = this.keys.block(b.family, b.lo);
        if (c.kind === 'own') compare.push(cmp.created(bkey, c.own.rev));
        else if (c.kind === 'borrow') compare.push(cmp.created(bkey, c.rev));
        else {
          compare.push(cmp.absent(bkey));
          success.push({ put: { key: bkey, value: blockValue(b.cidr, this.node) } }, { put: { key: this.keys.nodeBlock(this.node, b.family, b.lo), value: JSON.stringify({ cidr: b.cidr }) } });
        }
        const [k, e] = this.keys.ipRange(b.family, b.lo, b.hi);
        failure.push({ range: { key: k, rangeEnd: e, keysOnly: true } }, { range: { key: bkey } });
      }
      const changed = cands.length > 0 || dropped.length > 0 || !cur || JSON.stringify(podRef) !== JSON.stringify(cur.rec.pod);
      if (changed) success.push({ put: { key: attachKey, value: JSON.stringify(rec) } });
      const relOffset = success.length;
      if (dropped.length) success.push(...this.releaseOps(this.node, owner, { ips: dropped }));
      const res = await this.writer.txn({ compare, success, failure });
      if (res.succeeded) {
        // A repeated ADD that changed nothing keeps the index revision it compared.
        // A cache: bounded, for a knitd that lives long and sees DELs on other paths.
        if (this.known.size >= KNOWN_MAX) this.known.clear();
        this.known.set(ownerKey(owner), { rev: changed ? res.revision : cur!.rev, rec });
        for (const c of cands) {
          if (c.kind === 'own') c.own.used?.add(c.n);
          if (c.kind === 'claim' && this.own) this.own.set(this.keys.block(c.block.family, c.block.lo), { block: c.block, rev: res.revision, used: new Set([c.n]) });
        }
        if (dropped.length) this.forget(releaseOutcome({ ips: dropped }, res.responses, relOffset).blocks);
        return all;
      }
      // Lost a race: learn what changed from the failure branch and try again.
      this.conflicts++;
      serializable = false;
      const att = res.responses[0]?.kind === 'range' ? res.responses[0].range.kvs[0] : undefined;
      const nowRec = att ? { rev: att.modRevision, rec: parseAttach(att) } : null;
      if ((nowRec?.rev ?? 0) !== (cur?.rev ?? 0)) {
        cur = nowRec;
        if (cur) this.known.set(ownerKey(owner), cur); else this.known.delete(ownerKey(owner));
      } else if (cur && kept.length) {
        cur = undefined; // a kept address is no longer ours: read everything again
        this.known.delete(ownerKey(owner));
      }
      let i = 1;
      for (const c of cands) {
        if (c.kind === 'static') {
          if (await this.staticTaken(c, owner)) {
            throw new CniError(Code.AddressUnavailable, `requested address ${ipText(c.n, c.range.family)} is already reserved on network ${this.cfg.network}`);
          }
          continue;
        }
        const usedRes = res.responses[i++];
        const blockRes = res.responses[i++];
        const used = new Set(usedRes?.kind === 'range' ? usedRes.range.kvs.map((kv) => this.nOfKey(kv.key)) : []);
        const bkv = blockRes?.kind === 'range' ? blockRes.range.kvs[0] : undefined;
        const b = c.kind === 'own' ? c.own.block : c.block;
        const bkey = this.keys.block(b.family, b.lo);
        const owner2 = bkv ? String(parseJson(bkv.value)?.node ?? '') : null;
        if (this.own) {
          if (bkv && owner2 === this.node) this.own.set(bkey, { block: b, rev: bkv.createRevision, used });
          else this.own.delete(bkey);
        }
      }
    }
    throw new CniError(Code.TryAgainLater, `network ${this.cfg.network}: ${MAX_ATTEMPTS} allocation attempts lost races to other allocators; try again`);
  }

  /** A static request lost its transaction: taken by someone else (true), or by an earlier ADD of ours. */
  private async staticTaken(c: Candidate, owner: Owner): Promise<boolean> {
    const kv = await this.client.get(this.keys.ip(c.range.family, c.n));
    if (!kv) return false;
    const v = parseJson(kv.value);
    return !(v?.node === this.node && sameOwner({ containerId: v?.containerID, ifName: v?.ifname }, owner));
  }

  /** DEL: frees the attachment's addresses and its index in one transaction; nothing to free is success. */
  async release(owner: Owner): Promise<string[]> {
    const attachKey = this.keys.attach(this.node, owner);
    let cur = this.known.get(ownerKey(owner)) ?? null;
    let fresh = false;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (!cur) {
        if (fresh) return [];
        const kv = await this.client.get(attachKey);
        fresh = true;
        if (!kv) return [];
        cur = { rev: kv.modRevision, rec: parseAttach(kv) };
      }
      const res = await this.client.txn({
        compare: [cmp.modified(attachKey, cur.rev)],
        success: [{ del: { key: attachKey } }, ...this.releaseOps(this.node, owner, cur.rec)],
        failure: [{ range: { key: attachKey } }],
      });
      if (res.succeeded) {
        this.known.delete(ownerKey(owner));
        const out = releaseOutcome(cur.rec, res.responses, 1);
        for (const ip of out.freed) this.forgetUsed(ip);
        this.forget(out.blocks);
        return out.freed;
      }
      this.conflicts++;
      const kv = res.responses[0]?.kind === 'range' ? res.responses[0].range.kvs[0] : undefined;
      fresh = true;
      cur = kv ? { rev: kv.modRevision, rec: parseAttach(kv) } : null;
      if (!cur) { this.known.delete(ownerKey(owner)); return []; }
    }
    throw new CniError(Code.TryAgainLater, `network ${this.cfg.network}: the index of ${who(owner)} kept changing during DEL; try again`);
  }

  private forgetUsed(ip: string): void {
    const p = parseIP(ip);
    if (!p || !this.own) return;
    const n = ipToBigInt(p);
    for (const o of this.own.values()) if (n >= o.block.lo && n <= o.block.hi) o.used?.delete(n);
  }

  /** Blocks a release returned to the pool are ours no more. */
  private forget(cidrs: string[]): void {
    for (const c of cidrs) {
      const b = this.blockFromCidr(c);
      if (b) this.own?.delete(this.keys.block(b.family, b.lo));
    }
  }

  /** CHECK: the attachment holds one reservation per range set, and they match prevResult's. */
  async check(owner: Owner, prevIps?: string[]): Promise<Allocation[]> {
    const kv = await this.client.get(this.keys.attach(this.node, owner));
    if (!kv) throw new CniError(Code.UnknownContainer, `no address is reserved for ${who(owner)} on network ${this.cfg.network} (node ${this.node})`);
    const rec = parseAttach(kv);
    const hits = rec.ips.map((a) => {
      const ip = parseIP(a.ip);
      const hit = ip && this.core.locate(ip);
      if (!ip || !hit) throw new CniError(Code.Conflict, `address ${a.ip} of ${who(owner)} is outside every range of network ${this.cfg.network} (config changed?)`);
      return { a, ip, hit };
    });
    const r = hits.length ? await this.client.txn({ compare: [], success: hits.map((h) => ({ range: { key: this.keys.ip(h.ip.family, ipToBigInt(h.ip)) } })) }) : null;
    const out: Allocation[] = [];
    hits.forEach((h, i) => {
      const res = r!.responses[i];
      const cur = res?.kind === 'range' ? res.range.kvs[0] : undefined;
      if (!cur || cur.value.toString() !== ipValue(h.a.ip, this.node, owner)) {
        const v = cur ? parseJson(cur.value) : null;
        throw new CniError(Code.Conflict, `address ${h.a.ip} of ${who(owner)} is ${v ? `reserved by container ${v.containerID} (${v.ifname}) on node ${v.node}` : 'not reserved any more'}`);
      }
      out.push(this.core.allocation(h.hit.set, h.hit.range, ipToBigInt(h.ip)));
    });
    const missing = this.cfg.rangeSets.filter((s) => !out.some((a) => a.rangeSet === s.index));
    if (missing.length) throw new CniError(Code.Conflict, `${who(owner)} holds no address in range set ${missing.map((s) => s.index).join(', ')}`);
    if (prevIps) {
      const prev = new Set(prevIps.map((a) => { const ip = parseIP(a.split('/')[0]!); return ip ? formatIP(ip) : a; }));
      for (const a of out) if (!prev.has(a.ip)) throw new CniError(Code.Conflict, `address ${a.ip} of ${who(owner)} is missing from prevResult`);
      for (const p of prev) {
        const ip = parseIP(p);
        if (ip && this.core.locate(ip) && !out.some((a) => a.ip === p)) throw new CniError(Code.Conflict, `prevResult address ${p} is not reserved for ${who(owner)}`);
      }
    }
    return out;
  }

  /** STATUS: per range, allocatable and free counts, from count-only reads (one round trip). */
  async status(): Promise<Array<RangeStatus & { blocks: number; ownBlocks: number }>> {
    const ranges = this.cfg.rangeSets.flatMap((set) => set.ranges.map((r) => ({ set, r })));
    const ops: Op[] = [];
    for (const { set, r } of ranges) {
      const [ik, ie] = this.keys.ipRange(r.family, r.start, r.end);
      const [bk, be] = this.keys.blockRange(r.family, this.blockAt(set, r, r.start).lo, this.blockAt(set, r, r.end).lo);
      ops.push({ range: { key: ik, rangeEnd: ie, countOnly: true } }, { range: { key: bk, rangeEnd: be, keysOnly: true } });
    }
    ops.push({ range: { key: this.keys.nodeBlocks(this.node), rangeEnd: prefixEnd(this.keys.nodeBlocks(this.node)), keysOnly: true } });
    const res = await this.client.txn({ compare: [], success: ops });
    const last = res.responses[ops.length - 1];
    const mine = new Set(last?.kind === 'range' ? last.range.kvs.map((kv) => kv.key.toString().split('/').slice(-2).join('/')) : []);
    return ranges.map(({ set, r }, i) => {
      const used = res.responses[2 * i]?.kind === 'range' ? BigInt((res.responses[2 * i] as { range: { count: number } }).range.count) : 0n;
      const bres = res.responses[2 * i + 1];
      const bkeys = bres?.kind === 'range' ? bres.range.kvs.map((kv) => kv.key.toString().split('/').slice(-2).join('/')) : [];
      const size = allocatableCount(r);
      return { rangeSet: set.index, subnet: r.subnet, size: String(size), free: String(size > used ? size - used : 0n), blocks: bkeys.length, ownBlocks: bkeys.filter((k) => mine.has(k)).length };
    });
  }

  /**
   * GC: frees this node's attachments not in `valid` (null: keep all), reservations of this node
   * with no index listing them, and returns this node's empty blocks to the pool.
   */
  async gc(valid: Owner[] | null): Promise<EtcdGcReport> {
    this.own = null;
    return gcNode(this.client, this.keys, this.node, valid, { keepOneBlock: true });
  }

  /** Every block, reservation and attachment of the network (knitctl ipam ls). */
  static async list(client: EtcdClient, keys: EtcdKeys): Promise<NetworkListing> {
    const r = await client.txn({
      compare: [],
      success: [keys.blocks(), keys.ips(), keys.attachments()].map((p) => ({ range: { key: p, rangeEnd: prefixEnd(p) } })),
    });
    const kvs = (i: number): KeyValue[] => (r.responses[i]?.kind === 'range' ? (r.responses[i] as { range: { kvs: KeyValue[] } }).range.kvs : []);
    const ips: HolderRow[] = kvs(1).map((kv) => {
      const v = parseJson(kv.value) ?? {};
      return { ip: String(v.ip), node: String(v.node), containerId: String(v.containerID), ifName: String(v.ifname), block: null, blockNode: null };
    });
    const blocks = kvs(0).map((kv) => {
      const v = parseJson(kv.value) ?? {};
      return { cidr: String(v.cidr), node: String(v.node), used: 0 };
    });
    for (const row of ips) {
      const ip = parseIP(row.ip);
      if (!ip) continue;
      const b = blocks.find((b) => { const net = parseCIDR(b.cidr); if (!net || net.ip.family !== ip.family) return false; const m = (1n << BigInt(bitsOf(ip.family) - net.prefix)) - 1n; return (ipToBigInt(ip) & ~m) === (ipToBigInt(net.ip) & ~m); });
      if (b) { row.block = b.cidr; row.blockNode = b.node; b.used++; }
    }
    const attachments = attachmentRows(keys, kvs(2)).map((a) => ({
      node: a.node, containerId: a.owner.containerId, ifName: a.owner.ifName, ips: a.rec.ips.map((x) => x.ip), ...(a.rec.pod ? { pod: a.rec.pod } : {}),
    }));
    return { network: keys.network, blocks, ips, attachments };
  }
}

/**
 * GC of one node's state (the plugin's GC for itself; knitctl for a node that left): attachments
 * not in `valid`, orphaned reservations, and the node's empty blocks. Each removal is a
 * transaction comparing what was read, so a concurrent ADD or DEL is never undone.
 */
export async function gcNode(client: EtcdClient, keys: EtcdKeys, node: string, valid: Owner[] | null, opts: { keepOneBlock?: boolean } = {}): Promise<EtcdGcReport> {
  const report: EtcdGcReport = { released: [], indexesRemoved: 0, indexesRepaired: 0, tempRemoved: 0, blocksReturned: [] };
  const validKeys = valid ? new Set(valid.map(ownerKey)) : null;
  const listing = await client.txn({
    compare: [],
    success: [keys.attachments(node), keys.ips()].map((p) => ({ range: { key: p, rangeEnd: prefixEnd(p) } })),
  });
  const atts = attachmentRows(keys, listing.responses[0]?.kind === 'range' ? listing.responses[0].range.kvs : []);
  const ipsKvs = listing.responses[1]?.kind === 'range' ? listing.responses[1].range.kvs : [];
  const listed = new Map(atts.map((a) => [ownerKey(a.owner), a]));
  const txnOps: NestedOp[] = releaseAttachmentOps(keys, atts.filter((a) => validKeys && !validKeys.has(ownerKey(a.owner))), report, () => 'not-valid');
  // Orphans: reservations of this node that no index lists (none arise from knit's own
  // transactions; they come from hand edits or a changed index).
  for (const kv of ipsKvs) {
    const v = parseJson(kv.value);
    if (v?.node !== node) continue;
    const owner = { containerId: String(v.containerID), ifName: String(v.ifname) };
    const l = listed.get(ownerKey(owner));
    if (l && l.rec.ips.some((a) => a.ip === v.ip)) continue;
    const akey = keys.attach(node, owner);
    txnOps.push({
      compare: [cmp.value(kv.key, kv.value), l ? cmp.modified(akey, l.modRevision) : cmp.absent(akey)],
      success: [{ del: { key: kv.key } }],
      onDone: (r) => { if (r.succeeded) report.released.push({ ip: String(v.ip), owner, reason: 'orphan' }); },
    });
  }
  await runNested(client, txnOps);
  // Empty blocks of this node go back to the pool (or, for a node that left, every block whose
  // addresses are gone; borrowed addresses of other nodes keep a block in place).
  const own = await client.prefix(keys.nodeBlocks(node));
  const blockOps: NestedOp[] = [];
  // A node that stays keeps its first block (as a release does), so pods coming back need no claim.
  for (const kv of opts.keepOneBlock ? own.slice(1) : own) {
    const cidr = String(parseJson(kv.value)?.cidr ?? '');
    const net = parseCIDR(cidr);
    if (!net) continue;
    const fam = net.ip.family;
    const mask = (1n << BigInt(bitsOf(fam) - net.prefix)) - 1n;
    const lo = ipToBigInt(net.ip) & ~mask;
    const [k, e] = keys.ipRange(fam, lo, lo | mask);
    blockOps.push({
      compare: [cmp.absent(k, e), cmp.value(keys.block(fam, lo), blockValue(cidr, node))],
      success: [{ del: { key: keys.block(fam, lo) } }, { del: { key: kv.key } }],
      onDone: (r) => { if (r.succeeded) report.blocksReturned.push(cidr); },
    });
  }
  await runNested(client, blockOps);
  return report;
}

/** An attachment index as read: whose, on which node, what it holds, and its mod_revision. */
export interface AttachmentRow {
  node: string;
  owner: Owner;
  rec: AttachRecord;
  modRevision: number;
}

function attachmentRows(keys: EtcdKeys, kvs: KeyValue[]): AttachmentRow[] {
  const base = keys.attachments();
  return kvs.map((kv) => {
    const rest = kv.key.toString().slice(base.length);
    const node = rest.slice(0, rest.indexOf('/'));
    const id = rest.slice(rest.indexOf('/') + 1);
    return { node, owner: { containerId: id.slice(0, id.lastIndexOf(':')), ifName: id.slice(id.lastIndexOf(':') + 1) }, rec: parseAttach(kv), modRevision: kv.modRevision };
  });
}

/** Every attachment index of the network (of one node when given), in one linearizable read. */
export async function readAttachments(client: EtcdClient, keys: EtcdKeys, node?: string): Promise<AttachmentRow[]> {
  return attachmentRows(keys, await client.prefix(keys.attachments(node)));
}

type NestedOp = { compare: Compare[]; success: Op[]; onDone: (r: TxnResult) => void };

/** Release of each row's index and addresses, only while the index is still the one read. */
function releaseAttachmentOps(keys: EtcdKeys, rows: AttachmentRow[], report: EtcdGcReport, reason: (r: AttachmentRow) => string): NestedOp[] {
  return rows.map((a) => ({
    compare: [cmp.modified(keys.attach(a.node, a.owner), a.modRevision)],
    success: [{ del: { key: keys.attach(a.node, a.owner) } }, ...releaseOps(keys, a.node, a.owner, a.rec)],
    onDone: (r: TxnResult) => {
      if (!r.succeeded) return;
      report.indexesRemoved++;
      const out = releaseOutcome(a.rec, r.responses, 1);
      for (const ip of out.freed) report.released.push({ ip, owner: a.owner, reason: reason(a) });
      report.blocksReturned.push(...out.blocks);
    },
  }));
}

/**
 * Frees attachments judged stale elsewhere (the pod GC): each index with its addresses, in
 * transactions that compare the mod_revision read, so an attachment written again since (a
 * repeated ADD) is left alone. `reason` labels each release in the report.
 */
export async function releaseAttachments(client: EtcdClient, keys: EtcdKeys, rows: AttachmentRow[], reason: (r: AttachmentRow) => string): Promise<EtcdGcReport> {
  const report: EtcdGcReport = { released: [], indexesRemoved: 0, indexesRepaired: 0, tempRemoved: 0, blocksReturned: [] };
  await runNested(client, releaseAttachmentOps(keys, rows, report, reason));
  return report;
}

/** Runs independent conditional transactions as nested transactions, TXN_CHUNK per round trip. */
async function runNested(client: EtcdClient, ops: NestedOp[]): Promise<void> {
  for (let i = 0; i < ops.length; i += TXN_CHUNK) {
    const chunk = ops.slice(i, i + TXN_CHUNK);
    const r = await client.txn({ compare: [], success: chunk.map((o) => ({ txn: { compare: o.compare, success: o.success } })) });
    chunk.forEach((o, j) => {
      const x = r.responses[j];
      o.onDone(x?.kind === 'txn' ? x.txn : { revision: 0, succeeded: false, responses: [] });
    });
  }
}
