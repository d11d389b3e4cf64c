// Both IPAM backends over in-memory persistence (pkg/ipam/memory-store.ts): the file allocator on
// a MemoryStore and the etcd allocator on a MemoryEtcd. One contract for both (backend.ts), then
// what only the etcd allocator does: blocks, borrowing, races between nodes and stale caches.
// No root, no files, no etcd.
import assert from 'node:assert/strict';
import { CniError, Code } from '../../pkg/cni/errors';
import { mustParseIP } from '../../pkg/ip/ip';
import { Allocator } from '../../pkg/ipam/allocator';
import type { IpamBackend } from '../../pkg/ipam/backend';
import { parseIpamConfig } from '../../pkg/ipam/config';
import { EtcdAllocator } from '../../pkg/ipam/etcd/allocator';
import { parseEtcdIpamConfig } from '../../pkg/ipam/etcd-config';
import { MemoryEtcd, MemoryStore } from '../../pkg/ipam/memory-store';
import { matchPrevResult } from '../../pkg/ipam/range';
import type { Owner } from '../../pkg/ipam/store';

const own = (i: number | string, ifName = 'eth0'): Owner => ({ containerId: `c${i}`, ifName });

function rejectsWith(code: number, ...parts: string[]) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof CniError, String(e));
    assert.equal(e.code, code, e.message);
    for (const p of parts) assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} should contain ${p}`);
    return true;
  };
}

function etcdCfg(ipam: Record<string, unknown>, node = 'n1') {
  return parseEtcdIpamConfig({ name: 'net', ipam: { type: 'knit-etcd-ipam', nodeName: node, etcd: { endpoints: ['http://127.0.0.1:1'] }, ...ipam } });
}

const backends: Array<{ name: string; make: (ipam: Record<string, unknown>) => IpamBackend & { cfg: { rangeSets: any[] } } }> = [
  { name: 'file allocator on a MemoryStore', make: (ipam) => new Allocator(parseIpamConfig({ name: 'net', ipam: { type: 'knit-host-local', ...ipam } }), new MemoryStore()) },
  { name: 'etcd allocator on a MemoryEtcd', make: (ipam) => new EtcdAllocator(etcdCfg({ blockSize: 28, ...ipam }), new MemoryEtcd()) },
];

for (const { name, make } of backends) {
  describe(`IpamBackend contract: ${name}`, () => {
    const dual = { ranges: [[{ subnet: '10.5.0.0/24' }], [{ subnet: 'fd05::/64' }]], exclude: ['10.5.0.2'] };

    it('ADD: one address per range set with prefix and gateway; a repeated ADD returns the same', async () => {
      const b = make(dual);
      const got = await b.allocate(own(1));
      assert.equal(got.length, 2);
      assert.deepEqual(got.map((a) => [a.rangeSet, a.family, a.prefix, a.gateway]), [[0, 4, 24, '10.5.0.1'], [1, 6, 64, 'fd05::1']]);
      assert.notEqual(got[0]!.ip, '10.5.0.2', 'excluded address handed out');
      assert.deepEqual(await b.allocate(own(1)), got);
      const other = await b.allocate(own(2));
      assert.ok(other.every((a, i) => a.ip !== got[i]!.ip), 'two attachments share an address');
    });

    it('static requests: placed in their set, blocked ones refused with the reason (code 102)', async () => {
      const b = make(dual);
      const got = await b.allocate(own(1), [mustParseIP('10.5.0.77')]);
      assert.equal(got[0]!.ip, '10.5.0.77');
      await assert.rejects(b.allocate(own(2), [mustParseIP('10.5.0.77')]), rejectsWith(Code.AddressUnavailable, '10.5.0.77', 'already reserved'));
      await assert.rejects(b.allocate(own(2), [mustParseIP('10.5.0.1')]), rejectsWith(Code.AddressUnavailable, 'gateway'));
      await assert.rejects(b.allocate(own(2), [mustParseIP('10.5.0.255')]), rejectsWith(Code.AddressUnavailable, 'broadcast'));
      await assert.rejects(b.allocate(own(2), [mustParseIP('10.5.0.2')]), rejectsWith(Code.AddressUnavailable, 'ipam.exclude'));
      await assert.rejects(b.allocate(own(2), [mustParseIP('10.6.0.9')]), rejectsWith(Code.AddressUnavailable, 'outside every range', '10.5.0.0/24'));
    });

    it('CHECK: held addresses, then prevResult compared by the shared rule', async () => {
      const b = make(dual);
      const got = await b.allocate(own(1));
      const held = await b.check(own(1));
      assert.deepEqual(held, got);
      matchPrevResult(b.cfg.rangeSets, own(1), held, got.map((a) => `${a.ip}/${a.prefix}`));
      assert.throws(() => matchPrevResult(b.cfg.rangeSets, own(1), held, [`${got[0]!.ip}/24`]), rejectsWith(Code.Conflict, 'missing from prevResult'));
      await assert.rejects(b.check(own(9)), rejectsWith(Code.UnknownContainer, 'c9'));
    });

    it('DEL frees; a second DEL is a no-op; the address is free again', async () => {
      const b = make({ ranges: [[{ subnet: '10.5.0.0/29' }]] });
      const got = await b.allocate(own(1), [mustParseIP('10.5.0.4')]);
      assert.deepEqual(await b.release(own(1)), [got[0]!.ip]);
      assert.deepEqual(await b.release(own(1)), []);
      assert.equal((await b.allocate(own(2), [mustParseIP('10.5.0.4')]))[0]!.ip, '10.5.0.4');
    });

    it('STATUS counts free addresses; a full set is exhausted and ADD answers 102', async () => {
      const b = make({ ranges: [[{ subnet: '10.5.0.0/29' }]] }); // .2-.6 allocatable (.1 gateway)
      let st = await b.status();
      assert.deepEqual(st.map((s) => [s.subnet, s.size, s.free]), [['10.5.0.0/29', '5', '5']]);
      for (let i = 0; i < 5; i++) await b.allocate(own(i));
      st = await b.status();
      assert.equal(st[0]!.free, '0');
      assert.deepEqual(await b.exhaustedSets(st), [0]);
      await assert.rejects(b.allocate(own(99)), rejectsWith(Code.AddressUnavailable, 'no free address in range set 0'));
    });

    it('GC frees every attachment not in the valid list, keeps the valid ones', async () => {
      const b = make({ ranges: [[{ subnet: '10.5.0.0/24' }]] });
      const keep = await b.allocate(own('keep'));
      await b.allocate(own('gone1'));
      await b.allocate(own('gone2'));
      const r = await b.gc([own('keep')]);
      assert.deepEqual(r.released.map((x) => x.owner.containerId).sort(), ['cgone1', 'cgone2']);
      assert.ok(r.released.every((x) => x.reason === 'not-valid'));
      assert.deepEqual(await b.check(own('keep')), keep);
      await assert.rejects(b.check(own('gone1')), rejectsWith(Code.UnknownContainer));
    });
  });
}

describe('etcd allocator on a MemoryEtcd', () => {
  it('claims a block for its first address, allocates inside it with one request per ADD, keeps its last block', async () => {
    const kv = new MemoryEtcd();
    const a = new EtcdAllocator(etcdCfg({ ranges: [[{ subnet: '10.7.0.0/24' }]], blockSize: 28 }), kv);
    const first = await a.allocate(own(1));
    assert.equal(first.length, 1);
    const blocks = kv.dump('/knit/ipam/net/blocks/');
    assert.equal(blocks.length, 1, 'one block claimed');
    const cidr = JSON.parse(blocks[0]![1]).cidr as string;
    const before = kv.requests;
    const second = await a.allocate(own(2));
    assert.equal(kv.requests - before, 2, 'a warm ADD is one read of the index and one transaction');
    const net = cidr.split('/')[0]!.split('.').map(Number);
    const lastOctet = Number(second[0]!.ip.split('.')[3]);
    assert.ok(lastOctet >= net[3]! && lastOctet < net[3]! + 16, `${second[0]!.ip} outside own block ${cidr}`);
    // DEL of both: the node's last block stays with it.
    await a.release(own(1));
    await a.release(own(2));
    assert.deepEqual(kv.dump('/knit/ipam/net/ips/'), []);
    assert.equal(kv.dump('/knit/ipam/net/blocks/').length, 1);
    assert.deepEqual(kv.dump('/knit/ipam/net/attach/'), []);
  });

  it('a second block of the node goes back to the pool in the DEL of its last address', async () => {
    const kv = new MemoryEtcd();
    const a = new EtcdAllocator(etcdCfg({ ranges: [[{ subnet: '10.7.0.0/24' }]], blockSize: 30 }), kv); // 4 addresses a block
    const owners = Array.from({ length: 6 }, (_, i) => own(i));
    for (const o of owners) await a.allocate(o);
    const claimed = kv.dump('/knit/ipam/net/blocks/').length;
    assert.ok(claimed >= 2, `six addresses in /30 blocks need two blocks or more, got ${claimed}`);
    for (const o of owners) await a.release(o);
    assert.equal(kv.dump('/knit/ipam/net/blocks/').length, 1, 'only the last block stays');
    assert.equal(kv.dump('/knit/ipam/net/nodes/n1/').length, 1, 'the node index agrees');
  });

  it('borrows from another node\'s block when the pool has no free block, and says when all are taken', async () => {
    const kv = new MemoryEtcd();
    const ipam = { ranges: [[{ subnet: '10.7.0.0/28', rangeStart: '10.7.0.2', rangeEnd: '10.7.0.14' }]], blockSize: 29 };
    const n1 = new EtcdAllocator(etcdCfg(ipam, 'n1'), kv);
    const n2 = new EtcdAllocator(etcdCfg(ipam, 'n2'), kv);
    await n1.allocate(own('a'));
    await n2.allocate(own('b'));
    // Two /29 blocks, both claimed: n1 fills its own, then borrows from n2's.
    const seen = new Set<string>();
    let err: unknown;
    for (let i = 0; i < 20 && !err; i++) {
      try {
        const got = await n1.allocate(own(`x${i}`));
        assert.ok(!seen.has(got[0]!.ip), `duplicate ${got[0]!.ip}`);
        seen.add(got[0]!.ip);
      } catch (e) { err = e; }
    }
    rejectsWith(Code.AddressUnavailable, 'no free address in range set 0', '10.7.0.0/28')(err);
    const ips = kv.dump('/knit/ipam/net/ips/').map(([, v]) => JSON.parse(v));
    assert.equal(ips.length, 13, 'rangeStart .2 to rangeEnd .14: 13 addresses, all handed out');
    const attach = kv.dump('/knit/ipam/net/attach/n1/').map(([, v]) => JSON.parse(v));
    assert.ok(attach.some((r) => r.ips[0].blockNode === 'n2'), 'some address borrowed from n2\'s block');
  });

  it('concurrent ADDs on three nodes, plus a second allocator with a stale cache: never a duplicate, every address indexed', async () => {
    const kv = new MemoryEtcd();
    const ipam = { ranges: [[{ subnet: '10.8.0.0/25' }], [{ subnet: 'fd08::/120' }]], blockSize: 28, blockSize6: 124 };
    const allocators = ['n1', 'n2', 'n3', 'n1'].map((n) => new EtcdAllocator(etcdCfg(ipam, n), kv));
    const jobs = allocators.flatMap((a, j) => Array.from({ length: 20 }, (_, i) => ({ a, o: own(`${j}-${i}`) })));
    const got = await Promise.all(jobs.map(({ a, o }) => a.allocate(o)));
    const v4 = got.map((g) => g[0]!.ip);
    const v6 = got.map((g) => g[1]!.ip);
    assert.equal(new Set(v4).size, jobs.length, 'IPv4 duplicate');
    assert.equal(new Set(v6).size, jobs.length, 'IPv6 duplicate');
    assert.ok(allocators.reduce((n, a) => n + a.conflicts, 0) > 0, 'the races were real: some transactions lost');
    // Every reservation is listed by exactly its attachment's index.
    const ips = kv.dump('/knit/ipam/net/ips/').map(([, v]) => JSON.parse(v));
    assert.equal(ips.length, 2 * jobs.length);
    const indexed = new Set(kv.dump('/knit/ipam/net/attach/').flatMap(([, v]) => JSON.parse(v).ips.map((x: { ip: string }) => x.ip)));
    for (const r of ips) assert.ok(indexed.has(r.ip), `${r.ip} has no index`);
    // All DELs, concurrently: nothing left but each node's last block(s).
    await Promise.all(jobs.map(({ a, o }) => a.release(o)));
    assert.deepEqual(kv.dump('/knit/ipam/net/ips/'), []);
    assert.deepEqual(kv.dump('/knit/ipam/net/attach/'), []);
    const nodesWithBlocks = new Set(kv.dump('/knit/ipam/net/blocks/').map(([, v]) => JSON.parse(v).node));
    assert.ok(kv.dump('/knit/ipam/net/blocks/').length <= 2 * nodesWithBlocks.size, 'at most one block per node and family remains');
  });

  it('a repeated ADD after the config dropped a range set keeps the rest and frees the dropped address in the same transaction', async () => {
    const kv = new MemoryEtcd();
    const dual = { ranges: [[{ subnet: '10.9.0.0/24' }], [{ subnet: 'fd09::/64' }]] };
    const a = new EtcdAllocator(etcdCfg(dual), kv);
    const got = await a.allocate(own(1));
    const b = new EtcdAllocator(etcdCfg({ ranges: [[{ subnet: '10.9.0.0/24' }]] }), kv);
    const again = await b.allocate(own(1));
    assert.deepEqual(again, [got[0]]);
    assert.deepEqual(kv.dump('/knit/ipam/net/ips/6/'), [], 'the IPv6 reservation is gone');
  });
});
