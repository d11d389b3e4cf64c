// knit-etcd-ipam's allocator: cluster-wide addresses in etcd, per-node blocks, no lock. The key
// schema is in keys.ts, block picking in blocks.ts, release transactions in release.ts, and the
// cluster-wide administration (knitctl, the pod GC) in admin.ts.
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
import { CniError, Code } from '../../cni/errors';
import { EtcdClient, cmp, prefixEnd, type Compare, type Op, type TxnRequest, type TxnResult } from '../../etcd/client';
import { TxnBatcher } from '../../etcd/batch';
import { IPAddr, ipToBigInt, parseIP } from '../../ip/ip';
import type { IpamBackend, PodRef, RangeStatus } from '../backend';
import type { EtcdIpamConfig } from '../etcd-config';
import { Allocation, Placed, allocatableCount, allocationOf, checkAllSets, ipText, keepable, locate, placeRequests, who } from '../range';
import { Owner, ownerKey, sameOwner } from '../store';
import { EtcdGcReport, gcNode, listNetwork } from './admin';
import { BlockPicker, blockOfCandidate, type Candidate } from './blocks';
import { EtcdKeys, blockValue, ipValue, nOfKey, nodeBlockValue, parseAttach, parseJson, type AttachIp, type AttachRecord, type KvClient } from './keys';
import { releaseOps, releaseOutcome } from './release';

/** Attempts of the ADD transaction before giving up with code 11 (only under heavy contention). */
const MAX_ATTEMPTS = 40;
/** Attachment indexes an allocator remembers (knitd keeps one allocator per network). */
const KNOWN_MAX = 4096;

/** An attachment index as last seen: its mod_revision and content. */
type Known = { rev: number; rec: AttachRecord };

/** One attempt of an ADD: what the attachment keeps, what it gets, the index to write. */
interface Plan {
  kept: AttachIp[];
  dropped: AttachIp[];
  cands: Candidate[];
  all: Allocation[];
  rec: AttachRecord;
  /** The index must be written (else a repeated ADD that changed nothing). */
  changed: boolean;
}

export class EtcdAllocator implements IpamBackend {
  readonly keys: EtcdKeys;
  readonly node: string;
  readonly blocks: BlockPicker;
  /** Attachment indexes this instance wrote or read: a DEL then needs no read. */
  private readonly known = new Map<string, Known>();
  /** Transactions that lost a race (for tests and benchmarks). */
  conflicts = 0;
  /** ADD transactions of concurrent allocations (knitd serving a node's ADDs) go to etcd together. */
  readonly writer: TxnBatcher;

  constructor(readonly cfg: EtcdIpamConfig, readonly client: KvClient) {
    // The batcher only sends transactions (client.txn).
    this.writer = new TxnBatcher(client as EtcdClient);
    this.keys = new EtcdKeys(cfg.etcd.prefix, cfg.network);
    this.node = cfg.nodeName;
    this.blocks = new BlockPicker(cfg, this.keys, this.node, client);
  }

  /** Every block, reservation and attachment of the network (knitctl ipam ls); see admin.ts. */
  static readonly list = listNetwork;

  /** See release.ts. */
  releaseOps(node: string, owner: Owner, rec: AttachRecord): Op[] {
    return releaseOps(this.keys, node, owner, rec);
  }

  // ---- ADD -------------------------------------------------------------------------------

  /**
   * ADD: one address per range set. A repeated ADD returns what the attachment holds; the
   * addresses, the claimed block and the attachment index are written by one transaction. Each
   * attempt plans from what is known, sends the transaction, and on a lost race learns what
   * changed from the failure branch.
   */
  async allocate(owner: Owner, requests: IPAddr[] = [], pod?: PodRef): Promise<Allocation[]> {
    const wanted = placeRequests(this.cfg, requests);
    let cur: Known | null | undefined = this.known.get(ownerKey(owner));
    let serializable = true;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (cur === undefined) cur = await this.readAttachment(owner, serializable);
      const plan = await this.plan(owner, wanted, cur, pod, attempt, serializable);
      const { txn, relOffset } = this.transaction(owner, cur, plan);
      const res = await this.writer.txn(txn);
      if (res.succeeded) {
        this.committed(owner, cur, plan, res, relOffset);
        return plan.all;
      }
      this.conflicts++;
      serializable = false;
      cur = await this.learn(owner, cur, plan, res);
    }
    throw new CniError(Code.TryAgainLater, `network ${this.cfg.network}: ${MAX_ATTEMPTS} allocation attempts lost races to other allocators; try again`);
  }

  /** One read: the attachment index (a repeated ADD) and, first time, this node's blocks. */
  private async readAttachment(owner: Owner, serializable: boolean): Promise<Known | null> {
    const attachKey = this.keys.attach(this.node, owner);
    const ops: Op[] = [{ range: { key: attachKey, serializable } }];
    if (!this.blocks.own) ops.push({ range: { key: this.keys.nodeBlocks(this.node), rangeEnd: prefixEnd(this.keys.nodeBlocks(this.node)), serializable } });
    const r = await this.client.txn({ compare: [], success: ops });
    const a = r.responses[0]?.kind === 'range' ? r.responses[0].range.kvs[0] : undefined;
    if (r.responses[1]?.kind === 'range') this.blocks.setOwn(r.responses[1].range.kvs, false);
    return a ? { rev: a.modRevision, rec: parseAttach(a) } : null;
  }

  /** Plan: the addresses that still fit the config and the requests stay; the rest are picked. */
  private async plan(owner: Owner, wanted: Map<number, Placed>, cur: Known | null, pod: PodRef | undefined, attempt: number, serializable: boolean): Promise<Plan> {
    const result = new Map<number, Allocation>();
    const kept: AttachIp[] = [];
    const dropped: AttachIp[] = [];
    for (const a of cur?.rec.ips ?? []) {
      const hit = keepable(this.cfg.rangeSets, a.ip, result, wanted);
      if (hit) {
        result.set(hit.set.index, allocationOf(hit.set, hit.range, hit.n));
        kept.push(a);
      } else dropped.push(a);
    }
    const cands: Candidate[] = [];
    const taken = new Set<bigint>(dropped.map((a) => { const ip = parseIP(a.ip); return ip ? ipToBigInt(ip) : -1n; }));
    for (const set of this.cfg.rangeSets) {
      if (result.has(set.index)) continue;
      const req = wanted.get(set.index);
      const c: Candidate = req ? { kind: 'static', set, range: req.range, n: req.n } : await this.blocks.pickDynamic(set, owner, attempt, taken, serializable);
      taken.add(c.n);
      cands.push(c);
      result.set(set.index, allocationOf(set, c.range, c.n));
    }
    const podRef = pod ?? cur?.rec.pod;
    const rec: AttachRecord = {
      ips: [...kept, ...cands.map((c): AttachIp => ({
        ip: ipText(c.n, c.range.family),
        block: blockOfCandidate(c)?.cidr ?? null,
        blockNode: c.kind === 'own' || c.kind === 'claim' ? this.node : c.kind === 'borrow' ? c.node : null,
      }))],
      ...(podRef ? { pod: podRef } : {}),
    };
    const changed = cands.length > 0 || dropped.length > 0 || !cur || JSON.stringify(podRef) !== JSON.stringify(cur.rec.pod);
    return { kept, dropped, cands, all: this.cfg.rangeSets.map((s) => result.get(s.index)!), rec, changed };
  }

  /**
   * The transaction: the attachment index is what we read; kept addresses are still ours; new
   * addresses are free and their blocks are what we saw (or free, for a claim). Its failure branch
   * reads what the next attempt needs: the index, and per dynamic candidate its block's addresses
   * and the block key.
   */
  private transaction(owner: Owner, cur: Known | null, plan: Plan): { txn: TxnRequest; relOffset: number } {
    const attachKey = this.keys.attach(this.node, owner);
    const compare: Compare[] = [cur ? cmp.modified(attachKey, cur.rev) : cmp.absent(attachKey)];
    for (const a of plan.kept) {
      const ip = parseIP(a.ip)!;
      compare.push(cmp.value(this.keys.ip(ip.family, ipToBigInt(ip)), ipValue(a.ip, this.node, owner)));
    }
    const success: Op[] = [];
    const failure: Op[] = [{ range: { key: attachKey } }];
    for (const c of plan.cands) {
      const key = this.keys.ip(c.range.family, c.n);
      compare.push(cmp.absent(key));
      success.push({ put: { key, value: ipValue(ipText(c.n, c.range.family), this.node, owner) } });
      const b = blockOfCandidate(c);
      if (!b) continue;
      const bkey = this.keys.block(b.family, b.lo);
      if (c.kind === 'own') compare.push(cmp.created(bkey, c.own.rev));
      else if (c.kind === 'borrow') compare.push(cmp.created(bkey, c.rev));
      else {
        compare.push(cmp.absent(bkey));
        success.push({ put: { key: bkey, value: blockValue(b.cidr, this.node) } }, { put: { key: this.keys.nodeBlock(this.node, b.family, b.lo), value: nodeBlockValue(b.cidr) } });
      }
      const [k, e] = this.keys.ipRange(b.family, b.lo, b.hi);
      failure.push({ range: { key: k, rangeEnd: e, keysOnly: true } }, { range: { key: bkey } });
    }
    if (plan.changed) success.push({ put: { key: attachKey, value: JSON.stringify(plan.rec) } });
    const relOffset = success.length;
    if (plan.dropped.length) success.push(...this.releaseOps(this.node, owner, { ips: plan.dropped }));
    return { txn: { compare, success, failure }, relOffset };
  }

  /** The transaction succeeded: remember the index, the addresses used, blocks claimed or returned. */
  private committed(owner: Owner, cur: Known | null, plan: Plan, res: TxnResult, relOffset: number): void {
    // A repeated ADD that changed nothing keeps the index revision it compared.
    // A cache: bounded, for a knitd that lives long and sees DELs on other paths.
    if (this.known.size >= KNOWN_MAX) this.known.clear();
    this.known.set(ownerKey(owner), { rev: plan.changed ? res.revision : cur!.rev, rec: plan.rec });
    this.blocks.allocated(plan.cands, res.revision);
    if (plan.dropped.length) this.blocks.returned(releaseOutcome({ ips: plan.dropped }, res.responses, relOffset).blocks);
  }

  /**
   * Lost a race: learn what changed from the failure branch. Returns the index to plan from next
   * (undefined: read it again). A static request someone else holds is code 102.
   */
  private async learn(owner: Owner, cur: Known | null, plan: Plan, res: TxnResult): Promise<Known | null | undefined> {
    let next: Known | null | undefined = cur;
    const att = res.responses[0]?.kind === 'range' ? res.responses[0].range.kvs[0] : undefined;
    const nowRec = att ? { rev: att.modRevision, rec: parseAttach(att) } : null;
    if ((nowRec?.rev ?? 0) !== (cur?.rev ?? 0)) {
      next = nowRec;
      if (next) this.known.set(ownerKey(owner), next); else this.known.delete(ownerKey(owner));
    } else if (cur && plan.kept.length) {
      next = undefined; // a kept address is no longer ours: read everything again
      this.known.delete(ownerKey(owner));
    }
    let i = 1;
    for (const c of plan.cands) {
      const b = blockOfCandidate(c);
      if (!b) {
        if (await this.staticTaken(c, owner)) {
          throw new CniError(Code.AddressUnavailable, `requested address ${ipText(c.n, c.range.family)} is already reserved on network ${this.cfg.network}`);
        }
        continue;
      }
      const usedRes = res.responses[i++];
      const blockRes = res.responses[i++];
      const used = new Set(usedRes?.kind === 'range' ? usedRes.range.kvs.map((kv) => nOfKey(kv.key)) : []);
      this.blocks.observed(b, blockRes?.kind === 'range' ? blockRes.range.kvs[0] : undefined, used);
    }
    return next;
  }

  /** A static request lost its transaction: taken by someone else (true), or by an earlier ADD of ours. */
  private async staticTaken(c: Candidate, owner: Owner): Promise<boolean> {
    const kv = await this.client.get(this.keys.ip(c.range.family, c.n));
    if (!kv) return false;
    const v = parseJson(kv.value);
    return !(v?.node === this.node && sameOwner({ containerId: v?.containerID, ifName: v?.ifname }, owner));
  }

  // ---- DEL, CHECK, STATUS, GC ------------------------------------------------------------

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
        for (const ip of out.freed) this.blocks.released(ip);
        this.blocks.returned(out.blocks);
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

  /** CHECK: the attachment holds one reservation per range set (prevResult: range.ts matchPrevResult). */
  async check(owner: Owner): Promise<Allocation[]> {
    const kv = await this.client.get(this.keys.attach(this.node, owner));
    if (!kv) throw new CniError(Code.UnknownContainer, `no address is reserved for ${who(owner)} on network ${this.cfg.network} (node ${this.node})`);
    const rec = parseAttach(kv);
    const hits = rec.ips.map((a) => {
      const ip = parseIP(a.ip);
      const hit = ip && locate(this.cfg.rangeSets, ip);
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
      out.push(allocationOf(h.hit.set, h.hit.range, ipToBigInt(h.ip)));
    });
    checkAllSets(this.cfg.rangeSets, owner, out);
    return out;
  }

  /** STATUS: per range, allocatable and free counts, from count-only reads (one round trip). */
  async status(): Promise<Array<RangeStatus & { blocks: number; ownBlocks: number }>> {
    const ranges = this.cfg.rangeSets.flatMap((set) => set.ranges.map((r) => ({ set, r })));
    const ops: Op[] = [];
    for (const { set, r } of ranges) {
      const [ik, ie] = this.keys.ipRange(r.family, r.start, r.end);
      const [bk, be] = this.blocks.blockKeysOf(set, r);
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
      const blocks = bkeys.length;
      const ownBlocks = bkeys.filter((k) => mine.has(k)).length;
      return {
        rangeSet: set.index, subnet: r.subnet, size: String(size), free: String(size > used ? size - used : 0n), blocks, ownBlocks,
        note: `${blocks} blocks claimed (${ownBlocks} by ${this.node})`,
      };
    });
  }

  /** Range sets without a free address: every reservation is a live one here (no orphans to reclaim). */
  async exhaustedSets(ranges: RangeStatus[]): Promise<number[]> {
    const free = new Map<number, bigint>();
    for (const r of ranges) free.set(r.rangeSet, (free.get(r.rangeSet) ?? 0n) + BigInt(r.free));
    return [...free].filter(([, f]) => f === 0n).map(([i]) => i);
  }

  /**
   * GC: frees this node's attachments not in `valid` (null: keep all), reservations of this node
   * with no index listing them, and returns this node's empty blocks to the pool.
   */
  async gc(valid: Owner[] | null): Promise<EtcdGcReport> {
    this.blocks.own = null;
    return gcNode(this.client, this.keys, this.node, valid, { keepOneBlock: true });
  }
}
