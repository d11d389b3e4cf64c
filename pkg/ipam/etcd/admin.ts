// knit-etcd-ipam's cluster-wide administration, for knitctl (ipam ls, ipam gc --node) and the pod
// GC (pod-gc.ts): listings of the whole network, and releases of another node's or a gone pod's
// attachments. Every removal is a transaction comparing what was read, so a concurrent ADD or DEL
// is never undone; independent removals travel as nested transactions, TXN_CHUNK per round trip.
import { cmp, prefixEnd, type Compare, type KeyValue, type Op, type TxnResult } from '../../etcd/client';
import { boundsOf, contains, parseCIDR, parseIP } from '../../ip/ip';
import type { GcReport } from '../backend';
import { Owner, ownerKey } from '../store';
import { EtcdKeys, blockValue, parseAttach, parseJson, type AttachRecord, type KvClient, type PodRef } from './keys';
import { releaseOps, releaseOutcome } from './release';

/** Nested transactions per etcd transaction (etcd's --max-txn-ops defaults to 128). */
const TXN_CHUNK = 32;

export interface EtcdGcReport extends GcReport {
  /** Blocks of the node returned to the pool (empty). */
  blocksReturned: string[];
}

export function emptyGcReport(): EtcdGcReport {
  return { released: [], indexesRemoved: 0, indexesRepaired: 0, tempRemoved: 0, blocksReturned: [] };
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

/** An attachment index as read: whose, on which node, what it holds, and its mod_revision. */
export interface AttachmentRow {
  node: string;
  owner: Owner;
  rec: AttachRecord;
  modRevision: number;
}

/** Every block, reservation and attachment of the network (knitctl ipam ls). */
export async function listNetwork(client: KvClient, keys: EtcdKeys): Promise<NetworkListing> {
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
    const b = blocks.find((b) => { const net = parseCIDR(b.cidr); return net !== null && contains(net, ip); });
    if (b) { row.block = b.cidr; row.blockNode = b.node; b.used++; }
  }
  const attachments = attachmentRows(keys, kvs(2)).map((a) => ({
    node: a.node, containerId: a.owner.containerId, ifName: a.owner.ifName, ips: a.rec.ips.map((x) => x.ip), ...(a.rec.pod ? { pod: a.rec.pod } : {}),
  }));
  return { network: keys.network, blocks, ips, attachments };
}

/**
 * GC of one node's state (the plugin's GC for itself; knitctl for a node that left): attachments
 * not in `valid`, orphaned reservations, and the node's empty blocks. Each removal is a
 * transaction comparing what was read, so a concurrent ADD or DEL is never undone.
 */
export async function gcNode(client: KvClient, keys: EtcdKeys, node: string, valid: Owner[] | null, opts: { keepOneBlock?: boolean } = {}): Promise<EtcdGcReport> {
  const report = emptyGcReport();
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
    const { lo, hi } = boundsOf(net);
    const [k, e] = keys.ipRange(fam, lo, hi);
    blockOps.push({
      compare: [cmp.absent(k, e), cmp.value(keys.block(fam, lo), blockValue(cidr, node))],
      success: [{ del: { key: keys.block(fam, lo) } }, { del: { key: kv.key } }],
      onDone: (r) => { if (r.succeeded) report.blocksReturned.push(cidr); },
    });
  }
  await runNested(client, blockOps);
  return report;
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
export async function readAttachments(client: KvClient, keys: EtcdKeys, node?: string): Promise<AttachmentRow[]> {
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
export async function releaseAttachments(client: KvClient, keys: EtcdKeys, rows: AttachmentRow[], reason: (r: AttachmentRow) => string): Promise<EtcdGcReport> {
  const report = emptyGcReport();
  await runNested(client, releaseAttachmentOps(keys, rows, report, reason));
  return report;
}

/** Runs independent conditional transactions as nested transactions, TXN_CHUNK per round trip. */
async function runNested(client: KvClient, ops: NestedOp[]): Promise<void> {
  for (let i = 0; i < ops.length; i += TXN_CHUNK) {
    const chunk = ops.slice(i, i + TXN_CHUNK);
    const r = await client.txn({ compare: [], success: chunk.map((o) => ({ txn: { compare: o.compare, success: o.success } })) });
    chunk.forEach((o, j) => {
      const x = r.responses[j];
      o.onDone(x?.kind === 'txn' ? x.txn : { revision: 0, succeeded: false, responses: [] });
    });
  }
}
