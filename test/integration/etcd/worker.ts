// A simulated node for the etcd IPAM concurrency tests: `count` ADDs for containers
// <node>-c<i>, `parallel` at a time, each with its own client and allocator (as separate plugin
// processes on one node would be), or with `shared` one allocator for all (as knitd serves a
// node's ADDs: their transactions are batched). An ADD that fails with code 11 (etcd
// unavailable) is retried as a runtime would. Prints one JSON line per ADD: {cid, ips, tries,
// codes}, and with `shared` a last line {batch: {requests, transactions}}.
//   node --import tsx worker.ts '<json: {conf, node, count, parallel, shared?}>'
import { EtcdClient } from '../../../pkg/etcd';
import { EtcdAllocator, etcdCniError } from '../../../pkg/ipam/etcd-allocator';
import { parseEtcdIpamConfig } from '../../../pkg/ipam/etcd-config';
import { CniError } from '../../../pkg/cni/errors';

const job = JSON.parse(process.argv[2]!) as { conf: any; node: string; count: number; parallel: number; deadlineMs?: number; shared?: boolean };
const cfg = parseEtcdIpamConfig({ ...job.conf, ipam: { ...job.conf.ipam, nodeName: job.node } });
const sharedClient = job.shared ? new EtcdClient(cfg.etcd) : null;
const shared = sharedClient ? new EtcdAllocator(cfg, sharedClient) : null;
const deadline = Date.now() + (job.deadlineMs ?? 60_000);
let next = 0;

async function one(i: number): Promise<void> {
  const cid = `${job.node}-c${i}`;
  const codes: number[] = [];
  for (let tries = 1; ; tries++) {
    const client = sharedClient ?? new EtcdClient(cfg.etcd);
    try {
      const t0 = Date.now();
      const alloc = shared ?? new EtcdAllocator(cfg, client);
      const allocs = await alloc.allocate({ containerId: cid, ifName: 'eth0' });
      process.stdout.write(JSON.stringify({ cid, ips: allocs.map((a) => a.ip), tries, codes, conflicts: alloc.conflicts, ms: Date.now() - t0 }) + '\n');
      return;
    } catch (e) {
      const ce = etcdCniError(e);
      const code = ce instanceof CniError ? ce.code : -1;
      codes.push(code);
      if (code !== 11 || Date.now() > deadline) {
        process.stdout.write(JSON.stringify({ cid, error: (ce as Error).message, code, tries, codes }) + '\n');
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      if (!shared) client.close();
    }
  }
}

async function lane(): Promise<void> {
  while (next < job.count) await one(next++);
}

Promise.all(Array.from({ length: job.parallel }, lane)).then(() => {
  if (shared) process.stdout.write(JSON.stringify({ batch: shared.writer.stats }) + '\n');
  process.exit(0);
}, (e) => { console.error(e); process.exit(1); });
