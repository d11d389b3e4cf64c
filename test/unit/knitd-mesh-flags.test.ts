// knitd's mesh topology flags (cmd/knitd/mesh.ts): --mesh-fanout and --mesh-full-size parsed and
// range-checked, each error naming the flag, the value and the range; absent, the topology's
// defaults; only with --datastore mesh. The integration check that they reach the node is in
// test/integration/mesh.test.ts (a sparse mesh of 5 with --mesh-full-size 2 --mesh-fanout 1).
import assert from 'node:assert/strict';
import { overlayFlags } from '../../cmd/knitd/overlay';
import { MESH_FANOUT_RANGE, MESH_FULL_SIZE_RANGE } from '../../cmd/knitd/mesh';
import { DEFAULT_FANOUT, DEFAULT_FULL_MESH } from '../../pkg/mesh/topology';
import { MeshNode } from '../../pkg/mesh/node';

const mesh = (extra: Record<string, string>) => overlayFlags({ datastore: 'mesh', 'node-name': 'n1', 'mesh-password': 'pw', ...extra }, {})!.mesh!;

describe('knitd --mesh-fanout / --mesh-full-size', () => {
  it('absent: left out, and the node takes the topology\'s defaults (8 and 64); given: the node takes them', () => {
    const m = mesh({});
    assert.equal('fanout' in m || 'fullMesh' in m, false, JSON.stringify(m));
    const node = (f: typeof m): MeshNode => new MeshNode({ name: 'n1', secret: f.secret, listen: f.listen, peers: f.peers, stateDir: null, ttlSec: 30, ...(f.fanout ? { fanout: f.fanout } : {}), ...(f.fullMesh ? { fullMesh: f.fullMesh } : {}) });
    const d = node(m);
    assert.deepEqual([d.fanout, d.fullMesh], [DEFAULT_FANOUT, DEFAULT_FULL_MESH]);
    assert.deepEqual([DEFAULT_FANOUT, DEFAULT_FULL_MESH], [8, 64]);
    const g = node(mesh({ 'mesh-fanout': '2', 'mesh-full-size': '5' }));
    assert.deepEqual([g.fanout, g.fullMesh], [2, 5]);
  });

  it('takes integers in range, the bounds included', () => {
    assert.deepEqual(['fanout', 'fullMesh'].map((k) => (mesh({ 'mesh-fanout': '3', 'mesh-full-size': '16' }) as any)[k]), [3, 16]);
    assert.equal(mesh({ 'mesh-fanout': String(MESH_FANOUT_RANGE.min) }).fanout, 1);
    assert.equal(mesh({ 'mesh-fanout': String(MESH_FANOUT_RANGE.max) }).fanout, 64);
    assert.equal(mesh({ 'mesh-full-size': String(MESH_FULL_SIZE_RANGE.min) }).fullMesh, 2);
    assert.equal(mesh({ 'mesh-full-size': String(MESH_FULL_SIZE_RANGE.max) }).fullMesh, 1000);
  });

  it('names the flag, the value and the range for anything else', () => {
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ 'mesh-fanout': '0' }, /invalid --mesh-fanout "0": the members each node connects to above --mesh-full-size, an integer from 1 to 64 \(default 8\)$/],
      [{ 'mesh-fanout': '65' }, /invalid --mesh-fanout "65": .*from 1 to 64/],
      [{ 'mesh-fanout': '2.5' }, /invalid --mesh-fanout "2.5": .*an integer from 1 to 64/],
      [{ 'mesh-fanout': '' }, /invalid --mesh-fanout "": /],
      [{ 'mesh-fanout': '-1' }, /invalid --mesh-fanout "-1": /],
      [{ 'mesh-fanout': 'eight' }, /invalid --mesh-fanout "eight": /],
      [{ 'mesh-fanout': '1e1' }, /invalid --mesh-fanout "1e1": /],
      [{ 'mesh-full-size': '1' }, /invalid --mesh-full-size "1": the live members up to which every pair connects, an integer from 2 to 1000 \(default 64\)$/],
      [{ 'mesh-full-size': '1001' }, /invalid --mesh-full-size "1001": .*from 2 to 1000/],
      [{ 'mesh-full-size': '0x10' }, /invalid --mesh-full-size "0x10": /],
    ];
    for (const [v, re] of bad) assert.throws(() => mesh(v), re, JSON.stringify(v));
  });

  it('only with --datastore mesh', () => {
    for (const f of ['mesh-fanout', 'mesh-full-size']) {
      assert.throws(() => overlayFlags({ 'etcd-endpoints': 'http://x:1', [f]: '4' }, {}), new RegExp(`--${f} is for --datastore mesh`));
    }
  });
});
