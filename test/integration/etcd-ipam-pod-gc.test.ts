// The pod GC of knit-etcd-ipam (pkg/ipam/pod-gc.ts) end to end: addresses reserved by the bundled
// knit-etcd-ipam executable with kubelet's CNI_ARGS (K8S_POD_NAMESPACE/NAME/UID) in real etcd,
// pods served by the test Kubernetes API server, read through the real @kubernetes/client-node by
// knitctl (`ipam gc --pods`) and by knitd's periodic GC (pkg/agent/ipam-gc.ts). What must be
// freed is freed (pod deleted, recreated, finished, an earlier sandbox) and nothing else: not a pod
// whose status has no address yet (status lags ADD), not an ADD that lands between the two looks,
// not an attachment re-made between them, not an attachment without a pod.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildKnit, execJson, type ExecOut, type KnitBuild } from '../lab/cni';
import { EtcdCluster, requireEtcd } from '../lab/etcd';
import { KubeApiServer } from '../lab/kube-api';
import { run as knitctlRun } from '../../cmd/knitctl/main';
import { IpamGc, etcdIpamNetworks } from '../../pkg/agent/ipam-gc';
import { KubernetesDatastore } from '../../pkg/datastore/kubernetes';
import { renderMetrics } from '../../pkg/agent/metrics';
import { createLogger } from '../../pkg/cni/log';

type Out = ExecOut;

let knit: KnitBuild;

const ok = (o: Out, what: string): Out => { assert.equal(o.code, 0, `${what}: exit ${o.code}: ${o.stdout} ${o.stderr}`); return o; };

describe('knit-etcd-ipam GC against the pods that exist', function () {
  this.timeout(60_000);
  let etcd: EtcdCluster;
  let api: KubeApiServer;
  let tmp: string;
  let kubeconfig: string;
  let net = 0;

  before(async function () {
    requireEtcd(this);
    knit = await buildKnit(['knit-etcd-ipam', 'knitctl']);
    etcd = await EtcdCluster.start();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-podgc-'));
  });
  after(async () => {
    await etcd?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });
  beforeEach(async () => {
    api = new KubeApiServer();
    await api.start();
    kubeconfig = path.join(tmp, `kubeconfig-${++net}`);
    fs.writeFileSync(kubeconfig, api.kubeconfig());
  });
  afterEach(async () => { await api?.close(); });

  /** A fresh network per test: its name isolates its keys. */
  const conf = (node = 'n1'): Record<string, any> => ({
    cniVersion: '1.1.0', name: `podgc${net}`, type: 'bridge',
    ipam: { type: 'knit-etcd-ipam', nodeName: node, etcd: { endpoints: etcd.endpoints, timeoutMs: 3000 }, blockSize: 28, ranges: [[{ subnet: '10.240.0.0/24' }]] },
  });

  /** ADD as kubelet (through containerd) calls it: the pod named in CNI_ARGS. */
  async function add(c: Record<string, any>, cid: string, pod?: { ns: string; name: string; uid?: string }): Promise<string> {
    const args = pod ? `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.ns};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${cid}${pod.uid ? `;K8S_POD_UID=${pod.uid}` : ''}` : undefined;
    const o = ok(await execJson(knit.bin('knit-etcd-ipam'), [], {
      CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none', CNI_PATH: knit.binDir, CNI_ARGS: args,
    }, JSON.stringify(c)), `ADD ${cid}`);
    return String(o.json.ips[0].address).split('/')[0]!;
  }

  async function del(c: Record<string, any>, cid: string): Promise<void> {
    ok(await execJson(knit.bin('knit-etcd-ipam'), [], { CNI_COMMAND: 'DEL', CNI_CONTAINERID: cid, CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none', CNI_PATH: knit.binDir }, JSON.stringify(c)), `DEL ${cid}`);
  }

  /** Who holds what in etcd: container id → address. */
  function holders(c: Record<string, any>): Map<string, string> {
    const out = new Map<string, string>();
    for (const v of etcd.dump(`/knit/ipam/${c.name}/ips/`).values()) out.set(JSON.parse(v).containerID, JSON.parse(v).ip);
    assert.equal(etcd.dump(`/knit/ipam/${c.name}/attach/`).size, out.size, 'one index per holder');
    return out;
  }

  /**
   * The cluster of the scenarios: pods in every state the GC must tell apart, and their
   * attachments on node n1. Returns the addresses by container id.
   */
  async function scenario(c: Record<string, any>): Promise<Map<string, string>> {
    const ips = new Map<string, string>();
    const running = api.addPod('default', 'web', { nodeName: 'n1' });
    ips.set('c-web', await add(c, 'c-web', { ns: 'default', name: 'web', uid: running.metadata.uid }));
    api.setPodIPs('default', 'web', [ips.get('c-web')!]);
    // Status lags the ADD: the kubelet has not reported the address yet.
    const pending = api.addPod('default', 'starting', { nodeName: 'n1' });
    ips.set('c-starting', await add(c, 'c-starting', { ns: 'default', name: 'starting', uid: pending.metadata.uid }));
    // Deleted without a DEL (the node lost it, the runtime crashed).
    const gone = api.addPod('default', 'gone', { nodeName: 'n1' });
    ips.set('c-gone', await add(c, 'c-gone', { ns: 'default', name: 'gone', uid: gone.metadata.uid }));
    api.deletePod('default', 'gone');
    // A StatefulSet pod recreated under the same name: a new uid, a new sandbox elsewhere.
    const old = api.addPod('db', 'db-0', { nodeName: 'n1' });
    ips.set('c-db-old', await add(c, 'c-db-old', { ns: 'db', name: 'db-0', uid: old.metadata.uid }));
    api.deletePod('db', 'db-0');
    api.addPod('db', 'db-0', { nodeName: 'n2', podIPs: ['10.240.9.9'] });
    // A finished Job pod whose sandbox teardown failed.
    const job = api.addPod('batch', 'job-1', { nodeName: 'n1' });
    ips.set('c-job', await add(c, 'c-job', { ns: 'batch', name: 'job-1', uid: job.metadata.uid }));
    api.setPodIPs('batch', 'job-1', [ips.get('c-job')!], 'Succeeded');
    // A pod whose first sandbox was replaced (its DEL failed); status shows the new one.
    const re = api.addPod('default', 'resandboxed', { nodeName: 'n1' });
    ips.set('c-re-1', await add(c, 'c-re-1', { ns: 'default', name: 'resandboxed', uid: re.metadata.uid }));
    ips.set('c-re-2', await add(c, 'c-re-2', { ns: 'default', name: 'resandboxed', uid: re.metadata.uid }));
    api.setPodIPs('default', 'resandboxed', [ips.get('c-re-2')!]);
    // Not a Kubernetes attachment at all (podman, cnitool): no K8S_POD_* in CNI_ARGS.
    ips.set('c-plain', await add(c, 'c-plain'));
    // A pod without K8S_POD_UID (older runtimes): judged by name.
    api.addPod('default', 'nouid', { nodeName: 'n1' });
    ips.set('c-nouid', await add(c, 'c-nouid', { ns: 'default', name: 'nouid' }));
    return ips;
  }

  const STALE = ['c-gone', 'c-db-old', 'c-job', 'c-re-1'];

  it('knitctl ipam gc --pods frees the attachments of pods that are gone, after two looks; nothing else', async () => {
    const c = conf();
    const ips = await scenario(c);
    const ls = ok(await execJson(knit.bin('knitctl'), ['ipam', 'ls', '--network', c.name, '--etcd-endpoints', etcd.endpoints.join(',')], {}), 'ipam ls');
    assert.match(ls.stdout, /POD/);
    assert.match(ls.stdout, new RegExp(`${ips.get('c-web')!.replace(/\./g, '\\.')}\\s+c-web\\s+eth0\\s+default/web`), ls.stdout);
    assert.match(ls.stdout, /c-plain\s+eth0\s+-\s/, 'no pod recorded for a plain CNI attachment');

    const dry = ok(await execJson(knit.bin('knitctl'), ['ipam', 'gc', '--pods', '--grace', '0', '--dry-run', '--json', '--network', c.name, '--etcd-endpoints', etcd.endpoints.join(',')], { KUBECONFIG: kubeconfig }), 'dry run');
    assert.deepEqual(dry.json[0].released.map((r: { containerId: string }) => r.containerId).sort(), [...STALE].sort());
    assert.equal(dry.json[0].dryRun, true);
    assert.equal(holders(c).size, ips.size, 'a dry run frees nothing');

    const t0 = Date.now();
    const gc = ok(await execJson(knit.bin('knitctl'), ['ipam', 'gc', '--pods', '--grace', '1', '--network', c.name, '--etcd-endpoints', etcd.endpoints.join(','), '--kubeconfig', kubeconfig], {}), 'gc --pods');
    assert.ok(Date.now() - t0 >= 1000, 'the second look waits --grace');
    assert.match(gc.stdout, /released 4 addresses \(stale at both looks, 1 s apart\)/);
    assert.match(gc.stdout, /c-gone\s+eth0\s+default\/gone\s+pod default\/gone no longer exists/);
    assert.match(gc.stdout, /c-db-old\s+eth0\s+db\/db-0\s+pod db\/db-0 was recreated \(uid pod-uid-\d+, now pod-uid-\d+\)/);
    assert.match(gc.stdout, /c-job\s+eth0\s+batch\/job-1\s+pod batch\/job-1 has finished \(Succeeded\)/);
    assert.match(gc.stdout, new RegExp(`c-re-1\\s+eth0\\s+default/resandboxed\\s+an earlier sandbox of pod default/resandboxed \\(the pod's addresses are now ${ips.get('c-re-2')!.replace(/\./g, '\\.')}\\)`));
    const left = holders(c);
    assert.deepEqual([...left.keys()].sort(), [...ips.keys()].filter((k) => !STALE.includes(k)).sort());
    for (const [cid, ip] of left) assert.equal(ip, ips.get(cid), `${cid} keeps its address`);
    // The pod list is one consistent snapshot, read in pages (limit) across every namespace.
    assert.ok(api.requests.some((r) => r.startsWith('GET /api/v1/pods?') && r.includes('limit=500')), api.requests.join('\n'));
    // Nothing left to release: a second run says so without waiting.
    const again = ok(await execJson(knit.bin('knitctl'), ['ipam', 'gc', '--pods', '--grace', '30', '--network', c.name, '--etcd-endpoints', etcd.endpoints.join(',')], { KUBECONFIG: kubeconfig }), 'gc again');
    assert.match(again.stdout, /nothing to release/);
    // The freed addresses are allocatable again; the ones kept are not handed out twice.
    const next = api.addPod('default', 'next', { nodeName: 'n1' });
    const fresh = await add(c, 'c-next', { ns: 'default', name: 'next', uid: next.metadata.uid });
    assert.ok(![...left.values()].includes(fresh), `${fresh} is not an address in use`);
  });

  it('safe against lag: an ADD between the two looks, a re-made attachment and a pod deleted late are kept', async () => {
    const c = conf();
    const ips = await scenario(c);
    let between = 0;
    const r = await knitctlRun(['ipam', 'gc', '--pods', '--json', '--grace', '5', '--network', c.name, '--etcd-endpoints', etcd.endpoints.join(','), '--kubeconfig', kubeconfig], async (ms) => {
      between++;
      assert.equal(ms, 5000, 'waits --grace between the looks');
      // An ADD in flight: its pod was created after the first look's list, its attachment
      // appears only in the second look.
      api.addPod('default', 'late', { nodeName: 'n1' });
      ips.set('c-late', await add(c, 'c-late', { ns: 'default', name: 'late', uid: api.pod('default', 'late')!.metadata.uid }));
      api.deletePod('default', 'late'); // even if its pod is gone by then: seen once, not released
      // The runtime re-made c-gone's attachment (DEL + ADD, a new index revision) between the looks.
      await del(c, 'c-gone');
      ips.set('c-gone', await add(c, 'c-gone', { ns: 'default', name: 'gone' }));
      // Deleted only now: stale at the second look only.
      api.deletePod('default', 'web');
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(between, 1, 'exactly one wait');
    const rep = JSON.parse(r.out)[0];
    assert.deepEqual(rep.released.map((x: { containerId: string }) => x.containerId).sort(), ['c-db-old', 'c-job', 'c-re-1']);
    const left = holders(c);
    for (const cid of ['c-late', 'c-gone', 'c-web', 'c-starting', 'c-plain', 'c-nouid', 'c-re-2']) assert.equal(left.get(cid), ips.get(cid), `${cid} kept`);
    assert.equal(left.size, 7);
  });

  it('knitd: GC of its own node every interval, for the knit-etcd-ipam networks of the CNI config dir', async () => {
    const c1 = conf('n1');
    const ips = await scenario(c1);
    // Another node's attachment of a deleted pod: not this knitd's business.
    api.addPod('default', 'elsewhere', { nodeName: 'n2' });
    await add(conf('n2'), 'c-n2', { ns: 'default', name: 'elsewhere', uid: api.pod('default', 'elsewhere')!.metadata.uid });
    api.deletePod('default', 'elsewhere');
    const dir = fs.mkdtempSync(path.join(tmp, 'net.d-'));
    fs.writeFileSync(path.join(dir, '10-pods.conflist'), JSON.stringify({ cniVersion: '1.1.0', name: c1.name, plugins: [{ type: 'bridge', bridge: 'x', ipam: c1.ipam }, { type: 'portmap' }] }));
    fs.writeFileSync(path.join(dir, '20-local.conf'), JSON.stringify({ cniVersion: '1.1.0', name: 'other', type: 'bridge', ipam: { type: 'host-local', subnet: '10.1.0.0/24' } }));
    fs.writeFileSync(path.join(dir, '30-broken.conflist'), '{ not json');
    const warnings: string[] = [];
    assert.deepEqual(etcdIpamNetworks(dir, (m) => warnings.push(m)).map((n) => [path.basename(n.file), n.cfg.network, n.cfg.nodeName]), [['10-pods.conflist', c1.name, 'n1']]);
    assert.match(warnings.join('\n'), /30-broken\.conflist: .*skipped/);

    const store = new KubernetesDatastore({ nodeName: 'n1', kubeconfigYaml: api.kubeconfig() });
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', fields: { component: 'ipam-gc' }, stderr: (s) => lines.push(s), env: {} });
    const gc = new IpamGc({ confDir: dir, nodeName: 'n1', intervalSec: 300, graceSec: 300, listPods: (n) => store.listPods(n), log });
    try {
      await gc.runOnce(1_000_000);
      assert.equal(holders(c1).size, ips.size + 1, 'the first pass only notes what is stale');
      assert.equal(gc.stats.pending, STALE.length);
      await gc.runOnce(1_000_000 + 299_000);
      assert.equal(holders(c1).size, ips.size + 1, 'not before the grace period');
      await gc.runOnce(1_000_000 + 300_000);
      const left = holders(c1);
      assert.deepEqual(STALE.filter((cid) => left.has(cid)), [], 'the stale ones are released');
      assert.ok(left.has('c-n2'), "another node's attachment is left to that node's knitd");
      assert.equal(left.size, ips.size + 1 - STALE.length);
      assert.deepEqual(gc.stats, { passes: 3, released: STALE.length, errors: 0, pending: 0 });
      assert.ok(api.requests.some((r) => r.includes('fieldSelector=spec.nodeName%3Dn1')), 'lists only its node\'s pods');
      assert.match(lines.join(''), /released 10\.240\.0\.\d+ of c-gone \(eth0\): pod default\/gone no longer exists on node n1/);
      const m = renderMetrics({ status: () => null, resyncSec: 60, ipamGc: () => gc.stats });
      assert.match(m, /^knit_ipam_gc_released_total 4$/m);
      assert.match(m, /^knit_ipam_gc_passes_total 3$/m);
      // etcd unreachable: the pass fails for that network, counted, and the next one goes on.
      fs.writeFileSync(path.join(dir, '10-pods.conflist'), JSON.stringify({ cniVersion: '1.1.0', name: c1.name, plugins: [{ type: 'bridge', ipam: { ...c1.ipam, etcd: { endpoints: ['http://127.0.0.1:1'], timeoutMs: 300 } } }] }));
      await gc.runOnce(2_000_000);
      assert.equal(gc.stats.errors, 1);
      assert.match(lines.join(''), new RegExp(`ipam gc: network ${c1.name}: .*127\\.0\\.0\\.1:1`));
    } finally {
      gc.stop();
      store.close();
    }
  });
});
