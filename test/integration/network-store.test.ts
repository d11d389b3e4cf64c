// Named networks in a real etcd (pkg/network/store.ts): create/list/get/remove, races between
// admins resolved by one compare over the whole network range, removal refused while endpoints
// exist, and endpoints that die with their node's lease.
import assert from 'node:assert/strict';
import { EtcdClient } from '../../pkg/etcd/client';
import { leaseGrant, leaseRevoke } from '../../pkg/etcd/lease';
import { EtcdKeys } from '../../pkg/ipam/etcd/keys';
import { NetworkStore, type Endpoint } from '../../pkg/network/store';
import { EtcdCluster, haveEtcd } from '../lab/etcd';

describe('named network store (etcd)', function () {
  this.timeout(60_000);
  let etcd: EtcdCluster;
  let client: EtcdClient;
  let store: NetworkStore;

  before(async function () {
    if (!haveEtcd()) { console.log('    (skipped: no /usr/bin/etcd; scripts/bootstrap installs etcd-server)'); this.skip(); }
    etcd = await EtcdCluster.start();
    client = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 5000 });
    store = new NetworkStore(client, '/knt');
  });

  after(async () => {
    client?.close();
    await etcd?.stop();
  });

  const endpoint = (network: string, cid: string, node = 'n1'): Endpoint => ({
    network, containerId: cid, ifName: 'eth0', node, nodeIp: '192.0.2.1', mac: '0a:58:00:00:00:01', ips: ['10.91.0.5/24'], name: `c-${cid}`, created: new Date().toISOString(),
  });

  it('creates the Docker example once, lists and reads it back; a second create of the name is refused', async () => {
    const n = await store.create({
      name: 'myoverlaynet', driver: 'overlay', subnets: ['192.168.0.0/16', '192.170.0.0/16'], gateways: ['192.168.0.100', '192.170.0.100'],
      ipRanges: ['192.168.1.0/24'], auxAddresses: ['my-router=192.168.1.5', 'my-switch=192.168.1.16'],
    });
    assert.match(n.id, /^[0-9a-f]{64}$/);
    assert.deepEqual(await store.get('myoverlaynet'), n);
    assert.deepEqual((await store.list()).networks.map((x) => x.name), ['myoverlaynet']);
    await assert.rejects(store.create({ name: 'myoverlaynet', subnets: ['10.99.0.0/24'] }), /already exists/);
    await assert.rejects(store.create({ name: 'other', subnets: ['192.168.7.0/24'] }), /overlap 192.168.0.0\/16 of network myoverlaynet/);
  });

  it('of ten admins racing for overlapping subnets and the same VNI, exactly one wins', async () => {
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) =>
      new NetworkStore(new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 5000 }), '/knt')
        .create({ name: `race${i}`, driver: 'overlay', subnets: [`10.77.${i}.0/24`, '10.78.0.0/16'], opts: ['vni=777'] })));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, results.map((r) => r.status === 'rejected' ? (r.reason as Error).message : 'ok').join('\n'));
  });

  it('refuses rm while containers are attached, naming them; endpoints go with their node lease', async () => {
    await store.create({ name: 'app', driver: 'overlay', subnets: ['10.91.0.0/24'] });
    const lease = await leaseGrant(client, 30);
    await store.putEndpoint(endpoint('app', 'aaaa1111'), lease);
    await store.putEndpoint(endpoint('app', 'bbbb2222', 'n2'), lease);
    assert.equal((await store.endpoints('app')).endpoints.length, 2);
    await assert.rejects(store.remove('app'), /network app has 2 containers attached \(c-aaaa1111 on n1, c-bbbb2222 on n2\)/);
    await store.deleteEndpoint(endpoint('app', 'aaaa1111'));
    await leaseRevoke(client, lease); // the node "died": its lease is gone
    assert.deepEqual((await store.endpoints('app')).endpoints, []);
    await store.remove('app');
    assert.equal(await store.get('app'), null);
    await assert.rejects(store.remove('app'), /no network named app/);
  });

  it('refuses rm of a bridge or macvlan network while a container holds an address (no endpoint records there); rm clears its address records', async () => {
    await store.create({ name: 'mv', driver: 'macvlan', subnets: ['10.92.0.0/24'], opts: ['parent=eth0'] });
    const keys = new EtcdKeys('/knt', 'mv');
    // What knit-etcd-ipam leaves for one container on node n3: its block and the attachment index.
    await client.put(keys.block(4, 0x0a5c0000n), JSON.stringify({ cidr: '10.92.0.0/28', node: 'n3' }));
    await client.put(keys.attach('n3', { containerId: 'cafe0123456789ab', ifName: 'eth0' }), JSON.stringify({ ips: [] }));
    await assert.rejects(store.remove('mv'), /network mv has 1 container attached \(cafe01234567 on n3\)/);
    assert.ok(await store.get('mv'), 'the refused rm kept the network');
    await client.delete(keys.attach('n3', { containerId: 'cafe0123456789ab', ifName: 'eth0' }));
    await store.remove('mv');
    assert.equal(await store.get('mv'), null);
    assert.deepEqual((await client.prefix(keys.base)).map((kv) => kv.key.toString()), [], 'the network\'s address records are gone');
  });
});
