// The pod GC's judgement and its two-sightings rule (pkg/ipam/pod-gc.ts), without etcd: the
// end-to-end cases are in test/integration/etcd-ipam-pod-gc.test.ts.
import assert from 'node:assert/strict';
import type { AttachmentRow, PodRef } from '../../pkg/ipam/etcd-allocator';
import { judge, StaleTracker } from '../../pkg/ipam/pod-gc';
import type { PodInfo } from '../../pkg/kube/pods';

const row = (cid: string, ip: string, pod: PodRef | undefined, modRevision = 10, ifName = 'eth0'): AttachmentRow => ({
  node: 'n1', owner: { containerId: cid, ifName }, modRevision,
  rec: { ips: [{ ip, block: '10.0.0.0/26', blockNode: 'n1' }], ...(pod ? { pod } : {}) },
});
const pod = (namespace: string, name: string, uid: string, o: Partial<PodInfo> = {}): PodInfo => ({ namespace, name, uid, podIPs: [], nodeName: 'n1', phase: 'Running', ...o });
const verdicts = (rows: AttachmentRow[], pods: PodInfo[], node?: string): Record<string, string> =>
  Object.fromEntries(judge(rows, pods, node).map((j) => [j.row.owner.containerId, `${j.stale ? 'stale' : 'keep'}: ${j.reason}`]));

describe('ipam pod GC: judgement', () => {
  it('keeps an existing pod whatever its status says (no address yet, Pending, Unknown)', () => {
    const v = verdicts(
      [row('a', '10.0.0.2', { namespace: 'd', name: 'a', uid: 'u1' }), row('b', '10.0.0.3', { namespace: 'd', name: 'b', uid: 'u2' }), row('c', '10.0.0.4', { namespace: 'd', name: 'c', uid: 'u3' })],
      [pod('d', 'a', 'u1', { phase: 'Pending' }), pod('d', 'b', 'u2', { podIPs: ['10.0.0.99'] }), pod('d', 'c', 'u3', { phase: 'Unknown' })],
    );
    assert.deepEqual(v, { a: 'keep: pod d/a exists', b: 'keep: pod d/b exists', c: 'keep: pod d/c exists' });
  });

  it('stale: pod gone, recreated (uid), finished; without a uid, judged by name', () => {
    const v = verdicts(
      [row('gone', '10.0.0.2', { namespace: 'd', name: 'gone', uid: 'u1' }), row('re', '10.0.0.3', { namespace: 'd', name: 're', uid: 'old' }),
        row('ok', '10.0.0.4', { namespace: 'd', name: 'ok', uid: 'u3' }), row('fail', '10.0.0.5', { namespace: 'd', name: 'fail', uid: 'u4' }),
        row('nouid', '10.0.0.6', { namespace: 'd', name: 're' })],
      [pod('d', 're', 'new'), pod('d', 'ok', 'u3', { phase: 'Succeeded' }), pod('d', 'fail', 'u4', { phase: 'Failed' })],
      'n1',
    );
    assert.deepEqual(v, {
      gone: 'stale: pod d/gone no longer exists on node n1',
      re: 'stale: pod d/re was recreated (uid old, now new)',
      ok: 'stale: pod d/ok has finished (Succeeded)',
      fail: 'stale: pod d/fail has finished (Failed)',
      nouid: 'keep: pod d/re exists',
    });
  });

  it('never touches an attachment without a pod', () => {
    assert.deepEqual(verdicts([row('p', '10.0.0.2', undefined)], []), { p: 'keep: no pod recorded (the runtime sent no K8S_POD_NAME)' });
  });

  it('an earlier sandbox is stale only when status lists the newer one\'s address and none of its own', () => {
    const ref = { namespace: 'd', name: 's', uid: 'u' };
    const rows = [row('s1', '10.0.0.2', ref, 10), row('s2', '10.0.0.3', ref, 20)];
    assert.equal(verdicts(rows, [pod('d', 's', 'u')]).s1, 'keep: pod d/s exists', 'status not written yet: keep both');
    assert.equal(verdicts(rows, [pod('d', 's', 'u', { podIPs: ['10.0.0.2'] })]).s1, 'keep: pod d/s exists', 'status still shows the old sandbox');
    assert.equal(verdicts(rows, [pod('d', 's', 'u', { podIPs: ['10.0.0.7'] })]).s1, 'keep: pod d/s exists', 'status names neither');
    const v = verdicts(rows, [pod('d', 's', 'u', { podIPs: ['10.0.0.3'] })]);
    assert.equal(v.s1, "stale: an earlier sandbox of pod d/s (the pod's addresses are now 10.0.0.3)");
    assert.equal(v.s2, 'keep: pod d/s exists');
    // Another interface of the same pod (a second network attachment) is not a sandbox of eth0.
    const multi = [row('s1', '10.0.0.2', ref, 10, 'net1'), row('s2', '10.0.0.3', ref, 20)];
    assert.equal(verdicts(multi, [pod('d', 's', 'u', { podIPs: ['10.0.0.3'] })]).s1, 'keep: pod d/s exists');
  });
});

describe('ipam pod GC: two sightings', () => {
  const stale = (cid: string, rev = 10) => ({ row: row(cid, '10.0.0.2', { namespace: 'd', name: cid }, rev), stale: true, reason: 'gone' });

  it('confirms only what was stale, unchanged, at least graceMs apart', () => {
    const t = new StaleTracker(1000);
    assert.deepEqual(t.confirm([stale('a'), stale('b')], 0), [], 'the first sighting confirms nothing');
    assert.equal(t.pending, 2);
    assert.deepEqual(t.confirm([stale('a'), stale('b')], 999), [], 'not before graceMs');
    const c = t.confirm([stale('a'), stale('b', 11)], 1000);
    assert.deepEqual(c.map((j) => j.row.owner.containerId), ['a'], 'b changed (a new index): it starts over');
    assert.equal(t.pending, 1, 'a is forgotten once confirmed');
    assert.deepEqual(t.confirm([stale('b', 11)], 2000).map((j) => j.row.owner.containerId), ['b']);
  });

  it('forgets what is no longer stale: a later sighting starts over', () => {
    const t = new StaleTracker(0);
    t.confirm([stale('a')], 0);
    t.confirm([], 1);
    assert.deepEqual(t.confirm([stale('a')], 2), []);
    assert.equal(t.confirm([stale('a')], 3).length, 1);
  });
});
