// The test Kubernetes API server (test/lab/kube-api.ts) through the REAL @kubernetes/client-node:
// list, get, merge patch, watch with resourceVersion and bookmarks, 410 Gone, and the informer.
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { KubeApiServer, mergePatch } from '../lab/kube-api';

const until = async (cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('test kube API server (through @kubernetes/client-node)', () => {
  let srv: KubeApiServer;
  let kc: k8s.KubeConfig;
  let api: k8s.CoreV1Api;

  beforeEach(async () => {
    srv = new KubeApiServer();
    await srv.start();
    kc = new k8s.KubeConfig();
    kc.loadFromString(srv.kubeconfig());
    api = kc.makeApiClient(k8s.CoreV1Api);
  });
  afterEach(async () => { await srv.close(); });

  it('merge patch follows RFC 7386', () => {
    assert.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] }), { a: 1, b: { d: 3, e: 4 }, f: [1] });
  });

  it('lists and gets nodes with monotonic resourceVersions', async () => {
    srv.addNode('n1', { podCIDR: '10.244.1.0/24' });
    srv.addNode('n2');
    const l = await api.listNode();
    assert.equal(l.items.length, 2);
    assert.equal(l.metadata?.resourceVersion, String(srv.resourceVersion));
    const n1 = await api.readNode({ name: 'n1' });
    assert.equal(n1.spec?.podCIDR, '10.244.1.0/24');
    assert.deepEqual(n1.spec?.podCIDRs, ['10.244.1.0/24']);
    assert.ok(Number(l.items[1]!.metadata!.resourceVersion) > Number(l.items[0]!.metadata!.resourceVersion));
    await assert.rejects(api.readNode({ name: 'nope' }), (e: { code?: number }) => e.code === 404);
  });

  it('patches annotations with merge patch and strategic merge patch; refuses JSON patch', async () => {
    srv.addNode('n1', { annotations: { keep: 'x', drop: 'y' } });
    const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
    const n = await api.patchNode({ name: 'n1', body: { metadata: { annotations: { 'knit.dev/a': '1', drop: null } } } }, merge);
    assert.deepEqual(n.metadata?.annotations, { keep: 'x', 'knit.dev/a': '1' });
    const smp = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
    await api.patchNode({ name: 'n1', body: { metadata: { annotations: { 'knit.dev/b': '2' } } } }, smp);
    assert.equal(srv.node('n1')!.metadata.annotations!['knit.dev/b'], '2');
    const jp = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch);
    await assert.rejects(api.patchNode({ name: 'n1', body: [{ op: 'add', path: '/metadata/labels', value: {} }] }, jp), (e: { code?: number }) => e.code === 415);
  });

  it('watches from a resourceVersion, with bookmarks, and answers 410 for a compacted one', async () => {
    srv.addNode('n1');
    const rv = String(srv.resourceVersion);
    srv.addNode('n2');
    const events: string[] = [];
    let done: unknown = 'open';
    const w = new k8s.Watch(kc);
    const ctl = await w.watch('/api/v1/nodes', { resourceVersion: rv, allowWatchBookmarks: true },
      (type: string, obj: k8s.V1Node) => events.push(`${type} ${obj.metadata?.name ?? ''} ${obj.metadata?.resourceVersion}`), (err: unknown) => { done = err; });
    await until(() => events.length === 1, 5000, 'the replayed ADDED');
    assert.match(events[0]!, /^ADDED n2 /);
    srv.modifyNode('n1', (n) => { n.metadata.labels = { a: 'b' }; });
    srv.deleteNode('n2');
    srv.bookmark();
    await until(() => events.length === 4, 5000, 'live events');
    assert.match(events[1]!, /^MODIFIED n1 /);
    assert.match(events[2]!, /^DELETED n2 /);
    assert.equal(events[3], `BOOKMARK  ${srv.resourceVersion}`);
    ctl.abort();

    srv.compact();
    const errs: Array<{ type: string; code?: number }> = [];
    await w.watch('/api/v1/nodes', { resourceVersion: rv }, (type: string, obj: { code?: number }) => errs.push({ type, code: obj.code }), (err: unknown) => { done = err; });
    await until(() => done !== 'open' && errs.length === 1, 5000, 'the 410 ERROR event');
    assert.deepEqual(errs[0], { type: 'ERROR', code: 410 });

    srv.goneAsHttp = true;
    done = 'open';
    await w.watch('/api/v1/nodes', { resourceVersion: rv }, () => undefined, (err: unknown) => { done = err; });
    await until(() => done !== 'open', 5000, 'the HTTP 410');
    assert.equal((done as { statusCode?: number }).statusCode, 410);
  });

  it('feeds an informer: add, update, delete, and a relist after 410 Gone', async () => {
    srv.addNode('n1');
    const inf = k8s.makeInformer(kc, '/api/v1/nodes', () => api.listNode());
    const seen: string[] = [];
    inf.on('add', (n) => seen.push(`add ${n.metadata?.name}`));
    inf.on('update', (n) => seen.push(`update ${n.metadata?.name}`));
    inf.on('delete', (n) => seen.push(`delete ${n.metadata?.name}`));
    await inf.start();
    try {
      await until(() => seen.length === 1 && srv.watchCount === 1, 5000, 'the first list and watch');
      srv.addNode('n2');
      srv.modifyNode('n1', (n) => { n.metadata.annotations = { x: 'y' }; });
      await until(() => seen.length === 3, 5000, 'watched events');
      // The watch expires and, meanwhile, n2 goes: the relist must delete it from the cache.
      const lists = srv.requests.filter((r) => r === 'GET /api/v1/nodes').length;
      srv.expireWatches();
      srv.deleteNode('n2');
      await until(() => seen.includes('delete n2'), 5000, 'the relist');
      assert.equal(srv.requests.filter((r) => r === 'GET /api/v1/nodes').length, lists + 1);
      assert.deepEqual(inf.list().map((n) => n.metadata?.name), ['n1']);
    } finally {
      await inf.stop();
    }
  });

  it('lists pods across namespaces, by node (fieldSelector), in pages that keep one snapshot', async () => {
    srv.addPod('a', 'p1', { nodeName: 'n1' });
    srv.addPod('b', 'p2', { nodeName: 'n2', podIPs: ['10.0.0.2', 'fd00::2'] });
    srv.addPod('b', 'p3', { nodeName: 'n1', phase: 'Succeeded' });
    const all = await api.listPodForAllNamespaces();
    assert.deepEqual(all.items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`), ['a/p1', 'b/p2', 'b/p3']);
    const p2 = all.items[1]!;
    assert.equal(p2.status?.podIP, '10.0.0.2');
    assert.deepEqual(p2.status?.podIPs?.map((x) => x.ip), ['10.0.0.2', 'fd00::2']);
    assert.equal(all.items[0]!.status?.phase, 'Pending');
    assert.ok(all.items[0]!.metadata?.uid !== p2.metadata?.uid);
    const n1 = await api.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=n1' });
    assert.deepEqual(n1.items.map((p) => p.metadata?.name), ['p1', 'p3']);
    assert.deepEqual((await api.listNamespacedPod({ namespace: 'b' })).items.map((p) => p.metadata?.name), ['p2', 'p3']);
    await assert.rejects(api.listPodForAllNamespaces({ fieldSelector: 'status.phase=Running' }), (e: { code?: number }) => e.code === 400);
    const page1 = await api.listPodForAllNamespaces({ limit: 2 });
    assert.equal(page1.items.length, 2);
    assert.ok(page1.metadata?._continue);
    srv.deletePod('a', 'p1'); // after the first page: the continued list is the same snapshot
    const page2 = await api.listPodForAllNamespaces({ limit: 2, _continue: page1.metadata!._continue! });
    assert.deepEqual(page2.items.map((p) => p.metadata?.name), ['p3']);
    assert.equal(page2.metadata?._continue, undefined);
    assert.equal(page2.metadata?.resourceVersion, page1.metadata?.resourceVersion);
    await assert.rejects(api.listPodForAllNamespaces({ limit: 2, _continue: page1.metadata!._continue! }), (e: { code?: number }) => e.code === 410);
  });
});
