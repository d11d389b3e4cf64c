// knit-etcd-ipam's release transactions: the ops that free an attachment's addresses (DEL, a
// repeated ADD dropping addresses, GC, the pod GC), returning a block to the pool in the same
// transaction when its last address goes.
import { cmp, prefixEnd, type Compare, type Op, type TxnResult } from '../../etcd/client';
import { boundsOf, ipToBigInt, parseCIDR, parseIP } from '../../ip/ip';
import type { Owner } from '../store';
import { EtcdKeys, blockValue, ipValue, type AttachRecord } from './keys';

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
      const { lo, hi } = boundsOf(net);
      const [, end] = keys.ipRange(ip.family, lo, hi);
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
