// knit-etcd-ipam config and the pieces that need no etcd: key layout, release transactions
// (knitctl's arguments: knitctl-cli.test.ts).
import assert from 'node:assert/strict';
import { CniError } from '../../pkg/cni/errors';
import { prefixEnd } from '../../pkg/etcd';
import { EtcdKeys, releaseOps } from '../../pkg/ipam/etcd-allocator';
import { parseEtcdIpamConfig } from '../../pkg/ipam/etcd-config';

const conf = (ipam: object): any => ({ name: 'n', ipam: { type: 'knit-etcd-ipam', etcd: { endpoints: ['http://127.0.0.1:2379'] }, ranges: [[{ subnet: '10.1.0.0/16' }]], ...ipam } });

function throws7(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => e instanceof CniError && e.code === 7 && parts.every((p) => e.message.includes(p)));
}

describe('knit-etcd-ipam config', () => {
  it('defaults: node name from the host, /26 and /122 blocks, prefix /knit, 5 s', () => {
    const c = parseEtcdIpamConfig(conf({}), () => 'host-1');
    assert.equal(c.nodeName, 'host-1');
    assert.equal(c.blockSize, 26);
    assert.equal(c.blockSize6, 122);
    assert.deepEqual({ p: c.etcd.prefix, t: c.etcd.timeoutMs }, { p: '/knit', t: 5000 });
    assert.equal(c.rangeSets[0]!.ranges[0]!.subnet, '10.1.0.0/16');
  });

  it('validates each key, naming it', () => {
    throws7(() => parseEtcdIpamConfig(conf({ blockSize: 15 })), 'ipam.blockSize', '16 to 30');
    throws7(() => parseEtcdIpamConfig(conf({ blockSize6: 127 })), 'ipam.blockSize6');
    throws7(() => parseEtcdIpamConfig(conf({ nodeName: 'x y' })), 'ipam.nodeName');
    throws7(() => parseEtcdIpamConfig(conf({ etcd: undefined })), 'ipam.etcd', 'required');
    throws7(() => parseEtcdIpamConfig(conf({ etcd: { endpoints: [] } })), 'ipam.etcd.endpoints');
    throws7(() => parseEtcdIpamConfig(conf({ etcd: { endpoints: ['http://u:p@h:1'] } })), 'ipam.etcd.endpoints[0]', 'username/password');
    throws7(() => parseEtcdIpamConfig(conf({ etcd: { endpoints: ['http://h:1'], prefix: 'knit' } })), 'ipam.etcd.prefix');
    throws7(() => parseEtcdIpamConfig(conf({ etcd: { endpoints: ['http://h:1'], tls: { key: '/k' } } })), 'ipam.etcd.tls', 'cert and key');
    throws7(() => parseEtcdIpamConfig(conf({ etcd: { endpoints: ['http://h:1'], password: 'pw' } })), 'ipam.etcd.username');
    throws7(() => parseEtcdIpamConfig(conf({ ranges: [[{ subnet: '10.1.0.0/16', rangestart: '10.1.0.9' }]] })), 'rangestart');
  });

  it('keys sort by address inside a family, so a block is one key range', () => {
    const k = new EtcdKeys('/knit', 'net');
    assert.equal(k.ip(4, 0x0a010203n), '/knit/ipam/net/ips/4/0a010203');
    assert.equal(k.ip(6, 1n), '/knit/ipam/net/ips/6/00000000000000000000000000000001');
    const [lo, end] = k.ipRange(4, 0x0a010200n, 0x0a01023fn);
    assert.ok(lo < k.ip(4, 0x0a010210n) && Buffer.from(k.ip(4, 0x0a01023fn)).compare(end) < 0 && Buffer.from(k.ip(4, 0x0a010240n)).compare(end) > 0);
    assert.deepEqual(prefixEnd('/a/'), Buffer.from('/a0'));
  });

  it('a release compares the owner and returns the block only when empty and not the node\'s last', () => {
    const k = new EtcdKeys('/knit', 'net');
    const ops = releaseOps(k, 'n1', { containerId: 'c', ifName: 'eth0' }, { ips: [{ ip: '10.1.0.70', block: '10.1.0.64/26', blockNode: 'n1' }] });
    const t = (ops[0] as any).txn;
    assert.equal(t.compare[0].target, 'VALUE');
    assert.equal(String(t.compare[0].value), '{"ip":"10.1.0.70","node":"n1","containerID":"c","ifname":"eth0"}');
    const [del, a, b] = t.success;
    assert.equal(String(del.del.key), '/knit/ipam/net/ips/4/0a010046');
    for (const x of [a, b]) {
      assert.deepEqual(x.txn.success.map((o: any) => String(o.del.key)), ['/knit/ipam/net/blocks/4/0a010040', '/knit/ipam/net/nodes/n1/4/0a010040']);
      assert.equal(x.txn.compare.at(-1).result, 'GREATER', 'another block of the node');
    }
  });
});
