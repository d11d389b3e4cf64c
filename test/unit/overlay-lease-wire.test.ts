// The lease's wire formats across the backend registry: before it, a lease had a first-class
// vtepMac field (etcd JSON "vtepMac", Node annotation knit.dev/vtep-mac); now a backend publishes
// opaque backendData that the datastores carry without reading. Both formats must stay readable
// both ways, so that old and new knitd run side by side during a rolling upgrade: what today's
// code writes is read into backendData, and what the new code writes is what the old code read.
import assert from 'node:assert/strict';
import { KubeApiServer } from '../lab/kube-api';
import { leaseValue, parseLeaseValue } from '../../pkg/datastore/etcd-overlay';
import { backendDataAnnotation, backendDataKey, KubernetesDatastore, leaseOfNode } from '../../pkg/datastore/kubernetes';
import type { SubnetLease } from '../../pkg/datastore/datastore';
import { VTEP_MAC_KEY } from '../../pkg/agent/backend/vxlan';

const KEY = '/knit/subnets/10.216.7.0-24';
const MAC = '0e:12:34:56:78:9a';

// The code before the registry (commit 9fcd755), verbatim where it touched the wire:
//   write: const { leaseId: _l, revision: _r, ...rec } = lease; JSON.stringify(rec)
//          with lease = { ...me, subnet } and me = { nodeName, underlayAddr, backend, vtepMac }
//   read:  { ...JSON.parse(value), subnet, revision }, then lease.vtepMac
const OLD_VXLAN_VALUE = `{"nodeName":"h1","underlayAddr":"192.168.1.1","backend":"vxlan","vtepMac":"${MAC}","subnet":"10.216.7.0/24"}`;
const OLD_HOSTGW_VALUE = '{"nodeName":"h2","underlayAddr":"192.168.1.2","backend":"host-gw","subnet":"10.216.8.0/24"}';
const oldRead = (value: string): { nodeName: string; vtepMac?: string; backend?: string } => JSON.parse(value);

describe('overlay lease wire format: etcd', () => {
  it('reads the lease JSON of before the registry: vtepMac into backendData', () => {
    assert.deepEqual(parseLeaseValue(KEY, OLD_VXLAN_VALUE, 7), {
      nodeName: 'h1', subnet: '10.216.7.0/24', underlayAddr: '192.168.1.1', backend: 'vxlan', backendData: { vtepMac: MAC }, revision: 7,
    });
    const hg = parseLeaseValue('/knit/subnets/10.216.8.0-24', OLD_HOSTGW_VALUE)!;
    assert.deepEqual(hg, { nodeName: 'h2', subnet: '10.216.8.0/24', underlayAddr: '192.168.1.2', backend: 'host-gw' });
    assert.equal('backendData' in hg, false);
    // What bench/overlay-scale.ts and older tools put (no subnet field, no backend) still reads.
    assert.deepEqual(parseLeaseValue(KEY, `{"nodeName":"s","underlayAddr":"172.16.0.1","vtepMac":"${MAC}"}`)!.backendData, { vtepMac: MAC });
  });

  it('writes what the code of before the registry reads (vtepMac a top-level field), and reads it back', () => {
    const lease: SubnetLease = {
      nodeName: 'h1', subnet: '10.216.7.0/24', underlayAddr: '192.168.1.1', backend: 'vxlan', backendData: { [VTEP_MAC_KEY]: MAC },
      leaseId: '123', revision: 9,
    };
    const v = leaseValue(lease);
    assert.deepEqual(JSON.parse(v), JSON.parse(OLD_VXLAN_VALUE), 'the same record as before');
    assert.equal(oldRead(v).vtepMac, MAC);
    const { leaseId: _l, revision: _r, ...rest } = lease;
    assert.deepEqual(parseLeaseValue(KEY, v), rest);
    // Other backends' data goes the same way; non-string fields are not backend data.
    assert.deepEqual(parseLeaseValue(KEY, leaseValue({ ...rest, backend: 'wg', backendData: { publicKey: 'abc=' } }))!.backendData, { publicKey: 'abc=' });
    assert.equal(parseLeaseValue(KEY, '{"nodeName":"a","underlayAddr":"1.2.3.4","extra":5}')!.backendData, undefined);
  });

  it('refuses backend data that would collide with the lease fields or is not a camelCase word', () => {
    const base: SubnetLease = { nodeName: 'h1', subnet: '10.216.7.0/24', underlayAddr: '192.168.1.1' };
    assert.throws(() => leaseValue({ ...base, backendData: { nodeName: 'x' } }), /backend data key "nodeName"/);
    assert.throws(() => leaseValue({ ...base, backendData: { 'vtep-mac': 'x' } }), /backend data key "vtep-mac": a camelCase word/);
    assert.throws(() => leaseValue({ ...base, backendData: { mac: 5 as unknown as string } }), /backend data mac 5: a string/);
  });
});

describe('overlay lease wire format: Kubernetes annotations', () => {
  it('maps backend data keys to knit.dev/ annotations and back; the VTEP MAC keeps knit.dev/vtep-mac', () => {
    assert.equal(backendDataAnnotation(VTEP_MAC_KEY), 'knit.dev/vtep-mac');
    assert.equal(backendDataAnnotation('publicKey'), 'knit.dev/public-key');
    assert.equal(backendDataKey('knit.dev/vtep-mac'), 'vtepMac');
    assert.equal(backendDataKey('knit.dev/public-key'), 'publicKey');
    for (const k of ['vtepMac', 'publicKey', 'a', 'x9Y']) assert.equal(backendDataKey(backendDataAnnotation(k)), k);
    // The lease's own annotations and foreign ones are not backend data.
    for (const a of ['knit.dev/public-ip', 'knit.dev/backend', 'flannel.alpha.coreos.com/public-ip', 'knit.dev/Bad_Name']) assert.equal(backendDataKey(a), null, a);
  });

  it('reads the annotations of before the registry (knit.dev/vtep-mac) into backendData', () => {
    const node = {
      metadata: { name: 'k1', annotations: { 'knit.dev/public-ip': '192.0.2.1', 'knit.dev/vtep-mac': MAC, 'knit.dev/backend': 'vxlan', other: 'x' } },
      spec: { podCIDR: '10.244.1.0/24' },
    };
    assert.deepEqual(leaseOfNode(node as never), { nodeName: 'k1', subnet: '10.244.1.0/24', underlayAddr: '192.0.2.1', backend: 'vxlan', backendData: { vtepMac: MAC } });
    const hg = { metadata: { name: 'k2', annotations: { 'knit.dev/public-ip': '192.0.2.2', 'knit.dev/backend': 'host-gw' } }, spec: { podCIDR: '10.244.2.0/24' } };
    assert.deepEqual(leaseOfNode(hg as never), { nodeName: 'k2', subnet: '10.244.2.0/24', underlayAddr: '192.0.2.2', backend: 'host-gw' });
  });

  describe('through the API', () => {
    let srv: KubeApiServer;
    let store: KubernetesDatastore | undefined;
    beforeEach(async () => { srv = new KubeApiServer(); await srv.start(); });
    afterEach(async () => { store?.close(); await srv.close(); });

    it('publishes the annotations the code of before the registry wrote and read; a backend change drops the old data', async () => {
      srv.addNode('k1', { podCIDR: '10.244.1.0/24', annotations: { other: 'kept' } });
      store = new KubernetesDatastore({ nodeName: 'k1', kubeconfigYaml: srv.kubeconfig(), networkConfig: '{}' });
      const me = { nodeName: 'k1', subnet: '10.244.1.0/24', underlayAddr: '192.0.2.1' };
      assert.deepEqual(await store.claim({ ...me, backend: 'vxlan', backendData: { [VTEP_MAC_KEY]: MAC } }, 30), { ok: true });
      assert.deepEqual(srv.node('k1')!.metadata.annotations, {
        other: 'kept', 'knit.dev/public-ip': '192.0.2.1', 'knit.dev/vtep-mac': MAC, 'knit.dev/backend': 'vxlan',
      });
      assert.equal(await store.keepAlive(), true);
      // The node turns host-gw: its VTEP MAC annotation goes (as before: vtep-mac set to null).
      assert.deepEqual(await store.claim({ ...me, backend: 'host-gw' }, 30), { ok: true });
      assert.deepEqual(srv.node('k1')!.metadata.annotations, { other: 'kept', 'knit.dev/public-ip': '192.0.2.1', 'knit.dev/backend': 'host-gw' });
      // Another backend's data: one annotation per key, and keepAlive notices it taken away.
      assert.deepEqual(await store.claim({ ...me, backend: 'wg', backendData: { publicKey: 'abc=' } }, 30), { ok: true });
      assert.equal(srv.node('k1')!.metadata.annotations!['knit.dev/public-key'], 'abc=');
      assert.equal(await store.keepAlive(), true);
      srv.modifyNode('k1', (n) => { delete n.metadata.annotations!['knit.dev/public-key']; });
      const t0 = Date.now();
      while (await store.keepAlive()) {
        assert.ok(Date.now() - t0 < 5000, 'keepAlive notices the removed backend data');
        await new Promise((r) => setTimeout(r, 20));
      }
    });
  });
});
