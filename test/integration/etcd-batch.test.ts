// Group commit of etcd transactions (pkg/etcd/batch.ts) against real etcd: concurrent
// independent transactions share requests and get the answers they would get alone; two that
// touch the same key never share one; a transaction with a range compare or a nested transaction
// goes alone; an error reaches every transaction of its request.
import assert from 'node:assert/strict';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { EtcdClient, cmp, type TxnRequest } from '../../pkg/etcd';
import { TxnBatcher } from '../../pkg/etcd';

describe('etcd group commit (TxnBatcher)', function () {
  this.timeout(30_000);
  let etcd: EtcdCluster;
  let client: EtcdClient;
  let run = 0;
  const k = (s: string): string => `/batch/${run}/${s}`;

  before(async function () {
    requireEtcd(this);
    etcd = await EtcdCluster.start();
    client = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 5000 });
  });
  after(async () => { client?.close(); await etcd?.stop(); });
  beforeEach(() => { run++; });

  const create = (key: string, value = 'v'): TxnRequest => ({ compare: [cmp.absent(key)], success: [{ put: { key, value } }], failure: [{ range: { key } }] });

  it('concurrent independent transactions share requests, each with its own answer and one revision per request', async () => {
    const b = new TxnBatcher(client);
    await client.put(k('taken'), 'someone');
    const txns = [...Array.from({ length: 20 }, (_, i) => create(k(`a${i}`), `v${i}`)), create(k('taken'))];
    const results = await Promise.all(txns.map((t) => b.txn(t)));
    assert.equal(b.stats.transactions, 21);
    assert.ok(b.stats.requests <= 3, `21 transactions in ${b.stats.requests} requests`);
    results.slice(0, 20).forEach((r, i) => assert.equal(r.succeeded, true, `a${i}`));
    const lost = results[20]!;
    assert.equal(lost.succeeded, false, 'the compare of an existing key fails');
    assert.equal(lost.responses[0]?.kind === 'range' && lost.responses[0].range.kvs[0]?.value.toString(), 'someone', 'and its failure branch answers');
    for (let i = 0; i < 20; i++) {
      const kv = await client.get(k(`a${i}`));
      assert.equal(kv?.value.toString(), `v${i}`);
      assert.equal(kv?.modRevision, results[i]!.revision, `a${i}'s revision is its request's`);
    }
  });

  it('never puts two transactions touching one key in the same request: the second sees the first', async () => {
    const b = new TxnBatcher(client);
    // The first goes alone; the rest queue behind it and would share a request if they could.
    const first = b.txn(create(k('warm')));
    const same = [b.txn(create(k('x'), 'one')), b.txn(create(k('x'), 'two')), b.txn(create(k('x'), 'three'))];
    // A transaction that compares a key another one writes must not be batched with it either.
    const reader = b.txn({ compare: [cmp.value(k('x'), 'one')], success: [{ put: { key: k('y'), value: 'after one' } }] });
    const r = await Promise.all([first, ...same, reader]);
    assert.deepEqual(r.slice(1, 4).map((x) => x.succeeded), [true, false, false], 'exactly the first create wins');
    assert.equal((await client.get(k('x')))?.value.toString(), 'one');
    assert.equal(r[4]!.succeeded, true, 'the compare saw the write of the transaction before it');
    assert.ok(b.stats.requests >= 4, `${b.stats.requests} requests: the clashing ones were split`);
  });

  it('a range compare or a nested transaction goes alone, straight away', async () => {
    const b = new TxnBatcher(client);
    const ranged: TxnRequest = { compare: [cmp.absent(k('r/'), k('r0'))], success: [{ put: { key: k('r/1'), value: 'v' } }] };
    const nested: TxnRequest = { compare: [], success: [{ txn: create(k('n')) }] };
    const r = await Promise.all([b.txn(ranged), b.txn(nested)]);
    assert.deepEqual(r.map((x) => x.succeeded), [true, true]);
    assert.equal(b.stats.requests, 2);
    assert.ok(await client.get(k('n')));
  });

  it('an etcd error reaches every transaction of the request', async () => {
    const dead = new EtcdClient({ endpoints: ['http://127.0.0.1:1'], timeoutMs: 300 });
    try {
      const b = new TxnBatcher(dead);
      const r = await Promise.allSettled([b.txn(create(k('e1'))), b.txn(create(k('e2'))), b.txn(create(k('e3')))]);
      assert.deepEqual(r.map((x) => x.status), ['rejected', 'rejected', 'rejected']);
      // The batcher is not stuck afterwards: the next transaction is sent too (and fails the same way).
      await assert.rejects(b.txn(create(k('e4'))));
    } finally {
      dead.close();
    }
  });
});
