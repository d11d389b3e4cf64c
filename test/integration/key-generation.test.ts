// The encrypted overlay's key generation on each datastore (docs/encryption.md "Rotation"): etcd
// (<prefix>/keygen), the Kubernetes API (ConfigMap knit-keygen, test/lab/kube-api.ts through the
// real client) and the mesh (a replicated record, pkg/mesh/state.ts). On each: a bump is a
// compare-and-swap (a stale `expect` does not move it), a second datastore instance or node sees
// the new generation, and `knitctl key rotate` / `key show` work against it. Host only: no ESP
// needed (the datapath's rotation is tested in the kernel lane).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { KubeApiServer } from '../lab/kube-api';
import { EtcdDatastore } from '../../pkg/datastore/etcd-overlay';
import { KubernetesDatastore } from '../../pkg/datastore/kubernetes';
import { KEYGEN_CONFIGMAP } from '../../pkg/datastore/kube-keygen';
import { MeshDatastore } from '../../pkg/datastore/mesh';
import type { Datastore } from '../../pkg/datastore/datastore';
import { MeshNode } from '../../pkg/mesh/node';
import { MeshState, checkRecord, type KeyGenRecord } from '../../pkg/mesh/state';
import { startMesh } from '../../cmd/knitd/mesh';
import { nullLogger } from '../../pkg/cni/log';
import { run } from '../../cmd/knitctl/main';

const noSleep = async (): Promise<void> => { throw new Error('no wait expected'); };
const knitctl = (argv: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof run> => run(argv, noSleep, env);

async function eventually(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await fn())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The same contract on every datastore: CAS from null, a stale expect refused, the other instance sees it. */
async function casContract(a: Required<Pick<Datastore, 'getKeyGeneration' | 'bumpKeyGeneration'>>, b: typeof a, seen: (g: number) => Promise<void>): Promise<void> {
  assert.equal(await a.getKeyGeneration(), null, 'no record yet: generation 0');
  const g1 = await a.bumpKeyGeneration(null);
  assert.equal(g1.generation, 1);
  assert.ok(Math.abs(Date.parse(g1.at) - Date.now()) < 60_000, `at is now: ${g1.at}`);
  await seen(1);
  assert.equal((await b.getKeyGeneration())?.generation, 1, 'the second instance reads generation 1');
  // Two writers read 1; the first bump wins, the second's expect is stale and changes nothing.
  const g2 = await b.bumpKeyGeneration(1);
  assert.equal(g2.generation, 2);
  await seen(2);
  const stale = await a.bumpKeyGeneration(1);
  assert.equal(stale.generation, 2, 'a stale expect (1) does not bump: the record as it is');
  assert.equal((await a.getKeyGeneration())?.generation, 2);
  assert.equal((await a.bumpKeyGeneration(null)).generation, 2, 'expect null (no record) is stale too');
}

describe('key generation on each datastore (CAS, a second instance sees it, knitctl key rotate)', function () {
  this.timeout(60_000);

  describe('etcd', () => {
    let etcd: EtcdCluster;
    const stores: EtcdDatastore[] = [];
    before(async function () {
      requireEtcd(this);
      etcd = await EtcdCluster.start();
    });
    after(async () => { for (const s of stores) s.close(); await etcd?.stop(); });
    const store = (prefix: string): EtcdDatastore => { const s = new EtcdDatastore({ endpoints: etcd.endpoints, prefix }); stores.push(s); return s; };

    it('bump is a CAS on <prefix>/keygen; a second client sees it', async () => {
      await casContract(store('/kg1'), store('/kg1'), async () => undefined);
    });

    it('knitctl key rotate / key show', async () => {
      const flags = ['--etcd-endpoints', etcd.endpoints.join(','), '--etcd-prefix', '/kg2'];
      let r = await knitctl(['key', 'show', ...flags]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /key generation 0 \(never rotated\)/);
      r = await knitctl(['key', 'rotate', ...flags]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /key generation 1 \(was 0\) in \/kg2\/keygen/);
      assert.equal((await store('/kg2').getKeyGeneration())?.generation, 1);
      r = await knitctl(['key', 'show', '--json', ...flags]);
      assert.equal(JSON.parse(r.out).generation, 1);
    });
  });

  describe('kubernetes (ConfigMap knit-keygen)', () => {
    let srv: KubeApiServer;
    let tmp: string;
    const stores: KubernetesDatastore[] = [];
    beforeEach(async () => {
      srv = new KubeApiServer();
      await srv.start();
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-keygen-'));
    });
    afterEach(async () => {
      for (const s of stores.splice(0)) s.close();
      await srv.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    });
    const store = (nodeName: string, namespace?: string): KubernetesDatastore => {
      const s = new KubernetesDatastore({ nodeName, kubeconfigYaml: srv.kubeconfig(), networkConfig: '{"network":"10.244.0.0/16","subnetLen":24}', ...(namespace ? { namespace } : {}) });
      stores.push(s);
      return s;
    };

    it('bump is a CAS on the ConfigMap\'s resourceVersion; another node sees it', async () => {
      await casContract(store('a'), store('b'), async () => undefined);
      const cm = srv.configMap('knit-system', KEYGEN_CONFIGMAP)!;
      assert.equal(JSON.parse(cm.data!.keygen!).generation, 2);
      // Only create and a resourceVersion-conditioned patch ever wrote it.
      const writes = srv.requests.filter((q) => !q.startsWith('GET'));
      assert.deepEqual(writes.map((q) => q.split('?')[0]), [
        'POST /api/v1/namespaces/knit-system/configmaps',
        `PATCH /api/v1/namespaces/knit-system/configmaps/${KEYGEN_CONFIGMAP}`,
      ]);
    });

    it('a concurrent writer between read and patch: the patch gets 409 and nothing moves twice', async () => {
      const a = store('a', 'kube-system');
      await a.bumpKeyGeneration(null);
      const b = store('b', 'kube-system');
      await b.getKeyGeneration(); // the client loaded: both reads below land before either patch
      const rv0 = srv.resourceVersion;
      // Two bumps from the same read race: both patch, exactly one is applied (the other 409s and re-reads).
      const [x, y] = await Promise.all([a.bumpKeyGeneration(1), b.bumpKeyGeneration(1)]);
      assert.deepEqual([x.generation, y.generation], [2, 2]);
      assert.equal(srv.requests.filter((q) => q.startsWith('PATCH')).length, 2, 'both patched');
      assert.equal(srv.resourceVersion, rv0 + 1, 'one write applied: the stale resourceVersion was refused');
      assert.equal((await a.getKeyGeneration())?.generation, 2);
      assert.equal(srv.configMap('knit-system', KEYGEN_CONFIGMAP), undefined, 'the namespace option is honoured');
    });

    it('knitctl key rotate --datastore kubernetes', async () => {
      const kc = path.join(tmp, 'kubeconfig');
      fs.writeFileSync(kc, srv.kubeconfig());
      let r = await knitctl(['key', 'rotate', '--datastore', 'kubernetes', '--kubeconfig', kc]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /key generation 1 \(was 0\) in ConfigMap knit-system\/knit-keygen/);
      r = await knitctl(['key', 'rotate', '--datastore', 'kubernetes'], { KUBECONFIG: kc, POD_NAMESPACE: 'knit-system' });
      assert.match(r.out, /key generation 2 \(was 1\)/);
      assert.equal((await store('n').getKeyGeneration())?.generation, 2, 'knitd\'s datastore reads what knitctl wrote');
      r = await knitctl(['key', 'show', '--datastore', 'kubernetes', '--kubeconfig', kc, '--json']);
      assert.equal(JSON.parse(r.out).generation, 2);
      r = await knitctl(['key', 'show', '--kubeconfig', kc]);
      assert.equal(r.code, 2);
      assert.match(r.err, /--kubeconfig is for --datastore kubernetes/);
      r = await knitctl(['key', 'show', '--datastore', 'consul']);
      assert.match(r.err, /invalid --datastore consul: etcd, kubernetes or mesh/);
    });
  });

  describe('mesh (a replicated record)', () => {
    let tmp: string;
    const stops: Array<() => void> = [];
    before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-keygen-mesh-')); });
    afterEach(() => { for (const s of stops.splice(0)) s(); });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));
    const SECRET = Buffer.from('kg-secret');

    it('merge: the higher generation wins, then the writer; records and digests carry it', () => {
      const s = new MeshState('x');
      const rec = (generation: number, by: string): KeyGenRecord => ({ k: 'keygen', name: 'keygen', generation, at: new Date().toISOString(), by });
      assert.ok(s.apply({ rec: rec(3, 'b') }, 0));
      assert.equal(s.apply({ rec: rec(2, 'z') }, 0), null, 'older generation ignored');
      assert.equal(s.apply({ rec: rec(3, 'a') }, 0), null, 'same generation, lower writer ignored');
      assert.ok(s.apply({ rec: rec(3, 'c') }, 0), 'same generation, higher writer: the tie is broken the same way everywhere');
      assert.deepEqual(s.digest().g, [3, 'c']);
      assert.deepEqual(s.newerThan({ n: {}, r: {}, c: null, g: [3, 'c'] }, 0), []);
      assert.equal(s.newerThan({ n: {}, r: {}, c: null, g: [2, 'z'] }, 0).length, 1);
      assert.deepEqual(checkRecord({ rec: rec(4, 'n1') }).rec.k, 'keygen');
      assert.throws(() => checkRecord({ rec: { ...rec(4, 'n1'), generation: -1 } }), /keygen fields/);
    });

    it('bump is a CAS on the replica; the other node gets it; knitctl key rotate through the local knitd', async () => {
      const start = (name: string, peers: string[]): ReturnType<typeof startMesh> => {
        const m = startMesh({ nodeName: name, stateDir: path.join(tmp, name, 'state'), runDir: path.join(tmp, name, 'run'), ttlSec: 30 },
          { peers, listen: { host: '127.0.0.1', port: 0 }, secret: SECRET }, nullLogger);
        stops.push(() => m.stop());
        return m;
      };
      const a = start('n1', []);
      await eventually(() => a.node.listenPort > 0 && fs.existsSync(path.join(tmp, 'n1', 'run', 'mesh.sock')), 10_000, 'n1 listening');
      const b = start('n2', [`127.0.0.1:${a.node.listenPort}`]);
      await eventually(() => a.node.connected().includes('n2') && b.node.connected().includes('n1'), 10_000, 'n1 and n2 connected');
      await casContract(a.store, b.store, (g) => eventually(() => b.node.state.keygen?.generation === g, 10_000, `n2 sees generation ${g}`));

      const run1 = path.join(tmp, 'n1', 'run');
      await eventually(() => fs.existsSync(path.join(run1, 'mesh.sock')), 10_000, 'control socket');
      let r = await knitctl(['key', 'rotate', '--run-dir', run1]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /key generation 3 \(was 2\) in the mesh/);
      await eventually(async () => (await b.store.getKeyGeneration())?.generation === 3, 10_000, 'n2 sees knitctl\'s generation 3');
      r = await knitctl(['key', 'show', '--datastore', 'mesh', '--run-dir', path.join(tmp, 'n2', 'run'), '--json']);
      assert.equal(r.code, 0, r.err);
      assert.equal(JSON.parse(r.out).generation, 3, 'knitctl on the other node reads it');
    });

    it('a restarted node keeps the generation (persisted with the state) and a late joiner learns it', async () => {
      const n = (name: string, peers: MeshNode[]): MeshNode => {
        const m = new MeshNode({ name, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peers.map((p) => `127.0.0.1:${p.listenPort}`), stateDir: path.join(tmp, 'r', name), ttlSec: 30 });
        stops.push(() => m.stop());
        return m;
      };
      const a = n('r1', []);
      await a.start();
      const ds = new MeshDatastore(a);
      stops.push(() => ds.close());
      assert.equal((await ds.bumpKeyGeneration(null)).generation, 1);
      assert.equal((await ds.bumpKeyGeneration(1)).generation, 2);
      a.stop();
      const again = n('r1', []);
      assert.equal(again.state.keygen?.generation, 2, 'read back from state.json');
      await again.start();
      const late = n('r2', [again]);
      await late.start();
      await eventually(() => late.state.keygen?.generation === 2, 10_000, 'the late joiner has generation 2');
    });
  });
});
