// The knit-etcd-ipam pod GC at scale: N attachments in real etcd (made by the allocator with pod
// refs, over 8 simulated nodes), N pods on the test API server read through the real
// @kubernetes/client-node in pages of 500, 10 % of the pods deleted. Measures per N the cluster-wide
// pass as `knitctl ipam gc --pods` runs it: the first look (etcd read + pod list + judgement) and
// the second (the same + releasing the stale), plus the pod list alone. No reference to compare
// with: the reference plugins have no pod GC.
//   node --import tsx scripts/bench/pod-gc.ts [--n 1000,5000] [--out bench/results]
// etcd and the API server listen on loopback only.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster } from '../../test/lab/etcd';
import { KubeApiServer } from '../../test/lab/kube-api';
import { EtcdClient } from '../../pkg/etcd';
import { EtcdAllocator, EtcdKeys } from '../../pkg/ipam/etcd-allocator';
import { parseEtcdIpamConfig } from '../../pkg/ipam/etcd-config';
import { podGcPass, StaleTracker } from '../../pkg/ipam/pod-gc';
import { kubeClient, listPods } from '../../pkg/kube';
import { arg } from './script';

const NODES = 8;

interface Row { n: number; listMs: number; firstMs: number; secondMs: number; released: number; kept: number }

async function measure(etcd: EtcdCluster, n: number): Promise<Row> {
  const api = new KubeApiServer();
  await api.start();
  const client = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 30_000 });
  const network = `gc${n}`;
  try {
    // Seed: NODES allocators in parallel, each its share of the pods.
    await Promise.all(Array.from({ length: NODES }, async (_, node) => {
      const cfg = parseEtcdIpamConfig({ name: network, ipam: { type: 'knit-etcd-ipam', nodeName: `n${node}`, etcd: { endpoints: etcd.endpoints }, ranges: [[{ subnet: '10.0.0.0/16' }]] } } as never);
      const a = new EtcdAllocator(cfg, client);
      for (let i = node; i < n; i += NODES) {
        const pod = api.addPod(`ns${i % 20}`, `pod-${i}`, { nodeName: `n${node}` });
        await a.allocate({ containerId: `sandbox-${i}`, ifName: 'eth0' }, [], { namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid });
      }
    }));
    for (let i = 0; i < n; i += 10) api.deletePod(`ns${i % 20}`, `pod-${i}`);
    const kube = kubeClient({ kubeconfigYaml: api.kubeconfig() });
    const list = () => listPods(kube.api);
    let t = performance.now();
    await list();
    const listMs = performance.now() - t;
    const keys = new EtcdKeys('/knit', network);
    const tracker = new StaleTracker(0);
    t = performance.now();
    await podGcPass(client, keys, list, tracker, { now: 0 });
    const firstMs = performance.now() - t;
    t = performance.now();
    const second = await podGcPass(client, keys, list, tracker, { now: 1 });
    const secondMs = performance.now() - t;
    return { n, listMs, firstMs, secondMs, released: second.report?.released.length ?? 0, kept: second.judged.length - second.confirmed.length };
  } finally {
    client.close();
    await api.close();
  }
}

async function main(): Promise<void> {
  delete process.env.NODE_EXTRA_CA_CERTS;
  const ns = arg('n', '1000,5000').split(',').map(Number);
  const out = arg('out', path.resolve(__dirname, '../../bench/results'));
  const etcd = await EtcdCluster.start();
  const rows: Row[] = [];
  try {
    for (const n of ns) {
      const r = await measure(etcd, n);
      rows.push(r);
      console.log(`${n} attachments: pod list ${r.listMs.toFixed(0)} ms, first look ${r.firstMs.toFixed(0)} ms, second look + release ${r.secondMs.toFixed(0)} ms (${r.released} released, ${r.kept} kept)`);
    }
  } finally {
    await etcd.stop();
  }
  const md = [
    '## pod-gc: knit-etcd-ipam pod GC, one cluster-wide pass (as knitctl ipam gc --pods)',
    '',
    `${new Date().toISOString()} · ${os.cpus().length} CPUs · load ${os.loadavg()[0]!.toFixed(1)} · node ${process.version} · etcd 1 member on loopback · test API server through @kubernetes/client-node, pages of 500`,
    '',
    '| attachments (= pods, 10 % deleted) | pod list ms | first look ms | second look + release ms | released | kept |',
    '|--:|--:|--:|--:|--:|--:|',
    ...rows.map((r) => `| ${r.n} | ${r.listMs.toFixed(0)} | ${r.firstMs.toFixed(0)} | ${r.secondMs.toFixed(0)} | ${r.released} | ${r.kept} |`),
    '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'pod-gc.md'), md);
  console.log(`\n${md}`);
}

void main().catch((e) => { console.error(e); process.exit(1); });
