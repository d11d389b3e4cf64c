// Subnet leases against real etcd (loopback, in-process): distinct subnets under concurrency, the
// same subnet after a restart, the persisted subnet reused when free, and never a subnet another
// node holds — not even for a node back from a partition whose lease expired and was taken.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster, makeTls, requireEtcd } from '../lab/etcd';
import { EtcdDatastore } from '../../pkg/datastore/etcd-overlay';
import { acquireSubnet, savePersisted } from '../../pkg/agent/lease';
import { parseNetworkConfig } from '../../pkg/agent/network-config';
import type { LeaseEvent } from '../../pkg/datastore/datastore';

describe('overlay subnet leases in etcd', function () {
  this.timeout(60_000);
  let etcd: EtcdCluster;
  let tmp: string;
  const stores: EtcdDatastore[] = [];
  const cfg = parseNetworkConfig({ network: '10.216.0.0/16', subnetLen: 24 });
  let n = 0;
  const store = (): EtcdDatastore => { const s = new EtcdDatastore({ endpoints: etcd.endpoints, prefix: `/t${n}` }); stores.push(s); return s; };
  const me = (name: string) => ({ nodeName: name, underlayAddr: '192.168.1.1', backend: 'vxlan', backendData: { vtepMac: '02:00:00:00:00:01' } });

  before(async function () {
    requireEtcd(this);
    etcd = await EtcdCluster.start();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-lease-'));
  });
  beforeEach(() => { n++; });
  after(async () => {
    for (const s of stores) s.close();
    await etcd?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('20 nodes claiming at once get 20 distinct subnets', async () => {
    const got = await Promise.all(Array.from({ length: 20 }, (_, i) => acquireSubnet({ store: store(), cfg, me: me(`n${i}`), ttlSec: 30 })));
    assert.equal(new Set(got).size, 20);
    const { leases } = await stores[stores.length - 1]!.listLeases();
    assert.equal(leases.length, 20);
  });

  it('a restarted agent takes over its own subnet; the old etcd lease is revoked', async () => {
    const a = store();
    const s1 = await acquireSubnet({ store: a, cfg, me: me('a'), ttlSec: 30 });
    const oldLease = a.lease!;
    const b = store(); // the restarted agent: a new client, a new etcd lease
    const s2 = await acquireSubnet({ store: b, cfg, me: me('a'), ttlSec: 30 });
    assert.equal(s2, s1);
    assert.notEqual(b.lease, oldLease);
    assert.equal(await a.keepAlive(), false, 'the previous agent lease is gone');
    assert.equal((await b.listLeases()).leases.length, 1);
  });

  it('reuses the persisted subnet when free; never one another node holds, even after a partition', async () => {
    const dir = path.join(tmp, `s${n}`);
    savePersisted(dir, { nodeName: 'a', network: cfg.network, subnet: '10.216.42.0/24' });
    const a = store();
    assert.equal(await acquireSubnet({ store: a, cfg, me: me('a'), ttlSec: 2, stateDir: dir }), '10.216.42.0/24');
    // a is partitioned away: no keepalive; its lease expires and b takes the subnet.
    const b = store();
    // etcd may round a 2 s TTL up to its minimum: wait for the expiry rather than a fixed time.
    for (let i = 0; i < 100 && (await b.listLeases()).leases.length; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await b.listLeases()).leases.length, 0, 'expired');
    assert.deepEqual(await b.claim({ ...me('b'), subnet: '10.216.42.0/24' }, 30), { ok: true });
    // a comes back: its keepalive fails, it claims again and must not get 10.216.42.0/24.
    assert.equal(await a.keepAlive(), false);
    assert.deepEqual(await a.claim({ ...me('a'), subnet: '10.216.42.0/24' }, 30), { ok: false, holder: 'b' });
    const again = await acquireSubnet({ store: a, cfg, me: me('a'), ttlSec: 30, stateDir: dir });
    assert.notEqual(again, '10.216.42.0/24');
    const { leases } = await a.listLeases();
    assert.deepEqual(leases.map((l) => `${l.nodeName} ${l.subnet}`).sort(), [`a ${again}`, 'b 10.216.42.0/24'].sort());
  });

  it('watches puts and deletes after a revision; releaseNode deletes a node\'s leases', async () => {
    const a = store();
    const { revision } = await a.listLeases();
    const events: LeaseEvent[] = [];
    const w = a.watchLeases(revision, (e) => events.push(e), (err) => assert.fail(err));
    try {
      await new Promise((r) => setTimeout(r, 300));
      const s = await acquireSubnet({ store: a, cfg, me: me('w'), ttlSec: 30 });
      assert.equal(await a.releaseNode('w'), 1);
      for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(events.map((e) => (e.type === 'put' ? `put ${e.lease.nodeName} ${e.lease.subnet}` : `del ${e.subnet}`)), [`put w ${s}`, `del ${s}`]);
    } finally {
      w.close();
    }
  });

  it('works over TLS with client certificates and a user limited to the prefix (claim, keepalive, watch, revoke)', async () => {
    const tls = makeTls();
    const sec = await EtcdCluster.start({ tls, clientCertAuth: true });
    try {
      sec.enableAuth({ rootPw: 'root-pw-knit', user: 'knit', pw: 'pw-knit', prefix: '/knit/' });
      const s = new EtcdDatastore({ endpoints: sec.endpoints, prefix: '/knit', tls: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey }, username: 'knit', password: 'pw-knit' });
      stores.push(s);
      await s.putNetworkConfig(JSON.stringify(cfg));
      assert.deepEqual(JSON.parse((await s.getNetworkConfig())!), cfg);
      const { revision } = await s.listLeases();
      const events: LeaseEvent[] = [];
      const errors: Error[] = [];
      const w = s.watchLeases(revision, (e) => events.push(e), (err) => errors.push(err));
      try {
        await new Promise((r) => setTimeout(r, 500));
        const sub = await acquireSubnet({ store: s, cfg, me: me('tls'), ttlSec: 30 });
        assert.equal(await s.keepAlive(), true);
        for (let i = 0; i < 50 && !events.length && !errors.length; i++) await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(errors.map((e) => e.message), []);
        assert.deepEqual(events.map((e) => (e.type === 'put' ? e.lease.subnet : '')), [sub]);
        await s.revoke();
        assert.equal((await s.listLeases()).leases.length, 0, 'revoking the lease deletes the key');
      } finally {
        w.close();
      }
    } finally {
      await sec.stop();
    }
  });
});
