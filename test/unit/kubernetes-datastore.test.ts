// The overlay datastore on the Kubernetes API (pkg/datastore/kubernetes.ts) against the test API
// server (test/lab/kube-api.ts), through the real @kubernetes/client-node.
import assert from 'node:assert/strict';
import { KubeApiServer } from '../lab/kube-api';
import { ANNOTATIONS, KubernetesDatastore, leaseOfNode } from '../../pkg/datastore/kubernetes';
import { acquireSubnet } from '../../pkg/agent/lease';
import { parseNetworkConfig } from '../../pkg/agent/network-config';
import { overlayFlags } from '../../cmd/knitd/overlay';
import type { LeaseEvent } from '../../pkg/datastore/datastore';

/** The vxlan backend's VTEP MAC as a Node annotation (its backend data key vtepMac), as knitd has always written it. */
const VTEP_MAC = 'knit.dev/vtep-mac';

const until = async (cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const peerAnn = (ip: string, mac = '0e:00:00:00:00:01'): Record<string, string> =>
  ({ [ANNOTATIONS.publicIp]: ip, [VTEP_MAC]: mac, [ANNOTATIONS.backend]: 'vxlan' });

describe('kubernetes datastore', () => {
  let srv: KubeApiServer;
  const stores: KubernetesDatastore[] = [];
  const store = (nodeName: string, resyncSec = 300): KubernetesDatastore => {
    const s = new KubernetesDatastore({ nodeName, kubeconfigYaml: srv.kubeconfig(), resyncSec, networkConfig: '{"network":"10.244.0.0/16","subnetLen":24}' });
    stores.push(s);
    return s;
  };
  const cfg = parseNetworkConfig('{"network":"10.244.0.0/16","subnetLen":24}');
  const me = (nodeName: string) => ({ nodeName, underlayAddr: '192.0.2.1', backend: 'vxlan', backendData: { vtepMac: '0e:aa:bb:cc:dd:ee' } });

  beforeEach(async () => {
    srv = new KubeApiServer();
    await srv.start();
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) s.close();
    await srv.close();
  });

  it('maps a Node to a lease only with a podCIDR and knit.dev/public-ip', () => {
    const n = srv.addNode('a', { podCIDR: '10.244.1.0/24', annotations: peerAnn('192.0.2.10') });
    assert.deepEqual(leaseOfNode(n as never), { nodeName: 'a', subnet: '10.244.1.0/24', underlayAddr: '192.0.2.10', backendData: { vtepMac: '0e:00:00:00:00:01' }, backend: 'vxlan' });
    assert.equal(leaseOfNode(srv.addNode('b', { annotations: peerAnn('192.0.2.11') }) as never), null);
    assert.equal(leaseOfNode(srv.addNode('c', { podCIDR: '10.244.3.0/24' }) as never), null);
    // Dual stack: the IPv4 one.
    const d = srv.modifyNode('c', (x) => { x.spec = { podCIDR: 'fd00::/64', podCIDRs: ['fd00::/64', '10.244.3.0/24'] }; x.metadata.annotations = peerAnn('192.0.2.12'); });
    assert.equal(leaseOfNode(d as never)!.subnet, '10.244.3.0/24');
  });

  it('takes the subnet from podCIDR and publishes the annotations', async () => {
    srv.addNode('me', { podCIDR: '10.244.7.0/24', annotations: { other: 'kept' } });
    const s = store('me');
    assert.equal(await acquireSubnet({ store: s, cfg, me: me('me'), ttlSec: 30 }), '10.244.7.0/24');
    assert.deepEqual(srv.node('me')!.metadata.annotations, {
      other: 'kept', [ANNOTATIONS.publicIp]: '192.0.2.1', [VTEP_MAC]: '0e:aa:bb:cc:dd:ee', [ANNOTATIONS.backend]: 'vxlan',
    });
    const patches = srv.requests.filter((r) => r.startsWith('PATCH')).length;
    assert.equal(patches, 1);
    // Claiming again with nothing changed patches nothing; keepAlive holds.
    assert.equal(await acquireSubnet({ store: s, cfg, me: me('me'), ttlSec: 30 }), '10.244.7.0/24');
    assert.equal(srv.requests.filter((r) => r.startsWith('PATCH')).length, 1);
    assert.equal(await s.keepAlive(), true);
    // Our annotations removed behind our back: keepAlive says so (the agent re-claims).
    srv.modifyNode('me', (n) => { n.metadata.annotations = { other: 'kept' }; });
    await until(() => !s['leases'].has('me'), 5000, 'the watched modification');
    assert.equal(await s.keepAlive(), false);
  });

  it('refuses with a clear error while podCIDR is unassigned, and a podCIDR outside the network', async () => {
    srv.addNode('me');
    const s = store('me');
    await assert.rejects(acquireSubnet({ store: s, cfg, me: me('me'), ttlSec: 30 }), /node me has no podCIDR assigned yet .*--allocate-node-cidrs/);
    assert.equal(srv.requests.filter((r) => r.startsWith('PATCH')).length, 0);
    srv.setPodCIDR('me', '10.99.0.0/24');
    await until(() => s['nodes'].get('me')?.spec?.podCIDR === '10.99.0.0/24', 5000, 'the watched podCIDR');
    await assert.rejects(acquireSubnet({ store: s, cfg, me: me('me'), ttlSec: 30 }), /10\.99\.0\.0\/24 is not a \/24 of the network 10\.244\.0\.0\/16/);
    srv.setPodCIDR('me', '10.244.9.0/24');
    await until(() => s['nodes'].get('me')?.spec?.podCIDR === '10.244.9.0/24', 5000, 'the watched podCIDR');
    assert.equal(await acquireSubnet({ store: s, cfg, me: me('me'), ttlSec: 30 }), '10.244.9.0/24');
    await assert.rejects(store('ghost').assignedSubnet('ghost'), /node ghost does not exist/);
  });

  it('lists peers and watches them being added, modified and deleted', async () => {
    srv.addNode('me', { podCIDR: '10.244.1.0/24' });
    srv.addNode('p1', { podCIDR: '10.244.2.0/24', annotations: peerAnn('192.0.2.2') });
    srv.addNode('bare', { podCIDR: '10.244.4.0/24' });
    const s = store('me');
    const { leases, revision } = await s.listLeases();
    assert.deepEqual(leases.map((l) => `${l.nodeName} ${l.subnet} ${l.underlayAddr}`), ['p1 10.244.2.0/24 192.0.2.2']);
    const events: LeaseEvent[] = [];
    const errs: Error[] = [];
    const w = s.watchLeases(revision, (e) => events.push(e), (e) => errs.push(e));
    srv.addNode('p2', { podCIDR: '10.244.3.0/24', annotations: peerAnn('192.0.2.3') });
    srv.modifyNode('p1', (n) => { n.metadata.annotations![ANNOTATIONS.publicIp] = '192.0.2.22'; });
    srv.modifyNode('p1', (n) => { n.metadata.labels = { unrelated: 'x' }; });
    srv.modifyNode('bare', (n) => { n.metadata.annotations = peerAnn('192.0.2.4'); });
    srv.deleteNode('p2');
    const str = (e: LeaseEvent): string => (e.type === 'put' ? `put ${e.lease.nodeName} ${e.lease.subnet} ${e.lease.underlayAddr}` : `del ${e.subnet}`);
    await until(() => events.length === 4, 5000, 'four lease events');
    assert.deepEqual(events.map(str), ['put p2 10.244.3.0/24 192.0.2.3', 'put p1 10.244.2.0/24 192.0.2.22', 'put bare 10.244.4.0/24 192.0.2.4', 'del 10.244.3.0/24']);
    // A peer's podCIDR changing is a del of the old subnet and a put of the new.
    srv.setPodCIDR('bare', '10.244.5.0/24');
    await until(() => events.length === 6, 5000, 'the podCIDR change');
    assert.deepEqual(events.slice(4).map(str), ['del 10.244.4.0/24', 'put bare 10.244.5.0/24 192.0.2.4']);
    assert.deepEqual(errs, []);
    w.close();
    // A later watch from the old revision replays what happened since.
    const replay: LeaseEvent[] = [];
    s.watchLeases(revision, (e) => replay.push(e), () => undefined).close();
    assert.deepEqual(replay.map(str), events.map(str));
    // releaseNode removes the knit annotations: the peer is gone.
    assert.equal(await s.releaseNode('p1'), 1);
    assert.equal(await s.releaseNode('p1'), 0);
    assert.deepEqual((await s.listLeases()).leases.map((l) => l.nodeName), ['bare']);
  });

  it('re-lists after 410 Gone (ERROR event or HTTP 410) and does not lose a deletion', async () => {
    srv.addNode('me', { podCIDR: '10.244.1.0/24' });
    srv.addNode('p1', { podCIDR: '10.244.2.0/24', annotations: peerAnn('192.0.2.2') });
    srv.addNode('p2', { podCIDR: '10.244.3.0/24', annotations: peerAnn('192.0.2.3') });
    const s = store('me');
    const { revision } = await s.listLeases();
    const events: LeaseEvent[] = [];
    s.watchLeases(revision, (e) => events.push(e), () => undefined);
    await until(() => srv.watchCount === 1, 5000, 'the watch');
    const lists = (): number => srv.requests.filter((r) => r === 'GET /api/v1/nodes').length;
    const before = lists();
    // The watch expires; while it is down p2 goes and p3 comes; the history is compacted.
    srv.expireWatches();
    srv.deleteNode('p2');
    srv.addNode('p3', { podCIDR: '10.244.6.0/24', annotations: peerAnn('192.0.2.6') });
    srv.compact();
    await until(() => events.length === 2, 5000, 'the relist diff');
    assert.ok(lists() > before, 'relisted');
    assert.deepEqual(new Set(events.map((e) => (e.type === 'del' ? `del ${e.subnet}` : `put ${e.lease.nodeName}`))), new Set(['del 10.244.3.0/24', 'put p3']));
    // The same through an HTTP 410 on the watch's restart.
    await until(() => srv.watchCount === 1, 5000, 'the new watch');
    srv.goneAsHttp = true;
    srv.compact();
    srv.closeWatches();
    srv.deleteNode('p3');
    await until(() => events.length === 3, 5000, 'the deletion after HTTP 410');
    assert.deepEqual(events[2], { type: 'del', subnet: '10.244.6.0/24' });
    assert.deepEqual((await s.listLeases()).leases.map((l) => l.nodeName), ['p1']);
  });

  it('asks for bookmarks and resumes from a bookmark without a relist', async () => {
    srv.addNode('me', { podCIDR: '10.244.1.0/24' });
    const s = store('me');
    await s.listLeases();
    await until(() => srv.watchCount === 1, 5000, 'the watch');
    assert.ok(srv.requests.some((r) => r.includes('watch=true') && r.includes('allowWatchBookmarks=true')), srv.requests.join('\n'));
    // Changes the watch is not told about (another resource, say) move the resourceVersion on; a
    // bookmark carries it; then the history before it is compacted and the watch restarts.
    srv.addNode('x');
    srv.deleteNode('x');
    srv.bookmark();
    await new Promise((r) => setTimeout(r, 100));
    srv.compact();
    const lists = srv.requests.filter((r) => r === 'GET /api/v1/nodes').length;
    srv.closeWatches();
    await until(() => srv.watchCount === 1, 5000, 'the resumed watch');
    const last = srv.requests.filter((r) => r.includes('watch=true')).pop()!;
    assert.match(last, new RegExp(`resourceVersion=${srv.resourceVersion}`));
    assert.equal(srv.requests.filter((r) => r === 'GET /api/v1/nodes').length, lists, 'no relist');
  });

  it('periodic resync re-lists the Nodes', async () => {
    srv.addNode('me', { podCIDR: '10.244.1.0/24' });
    const s = store('me', 1);
    await s.listLeases();
    const n = srv.requests.filter((r) => r === 'GET /api/v1/nodes').length;
    await until(() => srv.requests.filter((r) => r === 'GET /api/v1/nodes').length > n, 3000, 'a resync list');
  });

  it('knitd flags: --datastore kubernetes, --kubeconfig, --net-conf, the IPAM GC', () => {
    const gcDefaults = { confDir: '/etc/cni/net.d', intervalSec: 300, graceSec: 300 };
    assert.deepEqual(overlayFlags({ datastore: 'kubernetes', 'node-name': 'n1', kubeconfig: '/k' }, {}), {
      kubernetes: { kubeconfig: '/k', netConf: '/etc/knit/net-conf.json', ipamGc: gcDefaults }, endpoints: [], prefix: '/knit', nodeName: 'n1',
      runDir: '/run/knit', stateDir: '/var/lib/knit', confDir: '/etc/cni/net.d', ttlSec: 300, resyncSec: 60, dns: { on: true, resolvConf: '/etc/resolv.conf' },
    });
    assert.equal(overlayFlags({ 'etcd-endpoints': 'http://x:2379', 'cni-conf-dir': '/n' }, {})!.confDir, '/n', 'etcd: where named networks\' conflists go');
    assert.deepEqual(overlayFlags({ 'net-conf': '/c' }, { KNIT_DATASTORE: 'kubernetes', KNIT_NODE_NAME: 'n' })!.kubernetes, { netConf: '/c', ipamGc: gcDefaults });
    assert.deepEqual(overlayFlags({ datastore: 'kubernetes', 'node-name': 'n', 'cni-conf-dir': '/d', 'ipam-gc-interval': '0', 'ipam-gc-grace': '60' }, {})!.kubernetes!.ipamGc,
      { confDir: '/d', intervalSec: 0, graceSec: 60 });
    assert.throws(() => overlayFlags({ datastore: 'kubernetes', 'node-name': 'n', 'ipam-gc-grace': '-1' }, {}), /invalid --ipam-gc-grace -1: a whole number of seconds ≥ 0/);
    assert.throws(() => overlayFlags({ 'etcd-endpoints': 'http://x:2379', 'ipam-gc-interval': '60' }, {}), /--ipam-gc-interval is for --datastore kubernetes/);
    assert.throws(() => overlayFlags({ datastore: 'consul' }, {}), /--datastore consul/);
    assert.throws(() => overlayFlags({ datastore: 'etcd' }, {}), /needs --etcd-endpoints/);
    assert.throws(() => overlayFlags({ datastore: 'kubernetes', 'etcd-endpoints': 'http://x' }, {}), /do not go together/);
  });
});
