// knit-etcd-ipam's allocator beside a naive one-key-per-address compare-and-swap allocator, on
// real etcd with 1 and 3 members, at 1, 8 and 32 concurrent allocators (each a simulated node).
// A run is one batch of allocations (timed, exec-to-last-answer) followed by releasing them all
// (timed separately); the table compares batch times, and the notes give allocations/s, p50/p99
// latency per allocation, releases/s, lost races and the duplicate count of every case.
//
// The knit side uses one long-lived EtcdAllocator per node (what knitd or a warm process sees:
// one transaction per allocation); the "cold" case makes a fresh allocator and client for every
// allocation, as a plugin process does (a read and a transaction). The "knitd, 4 ADDs at a time"
// case has each node serve 4 concurrent ADDs through its one allocator, as knitd does in a burst
// of pod starts: their transactions share etcd requests (pkg/etcd/batch.ts).
// The naive side is what a lock-free whereabouts would do: read every reserved key, take the
// lowest free address, create its key with compare create_revision == 0, re-read on a lost race.
import { EtcdCluster } from '../../../test/lab/etcd';
import { EtcdClient, cmp, prefixEnd } from '../../../pkg/etcd';
import { EtcdAllocator } from '../../../pkg/ipam/etcd-allocator';
import { parseEtcdIpamConfig } from '../../../pkg/ipam/etcd-config';
import { quantile } from '../stats';
import type { BenchCase, Suite, SuiteOptions } from '../types';

const SUBNET = '10.240.0.0/16';

interface Side {
  label: string;
  lat: number[];
  relLat: number[];
  allocs: number;
  allocMs: number;
  releases: number;
  releaseMs: number;
  conflicts: number;
  duplicates: number;
}

interface Worker {
  allocate(id: string): Promise<string>;
  release(id: string, ip: string): Promise<void>;
  conflicts(): number;
  close(): void;
}

let clusters: EtcdCluster[] = [];
const notes: string[] = [];
const stats: Array<{ name: string; knit: Side; naive: Side }> = [];

function side(label: string): Side {
  return { label, lat: [], relLat: [], allocs: 0, allocMs: 0, releases: 0, releaseMs: 0, conflicts: 0, duplicates: 0 };
}

function knitWorkers(endpoints: string[], net: string, n: number, cold: boolean): Worker[] {
  const cfgOf = (node: string) => parseEtcdIpamConfig({
    name: net, ipam: { type: 'knit-etcd-ipam', nodeName: node, etcd: { endpoints, timeoutMs: 10_000 }, ranges: [[{ subnet: SUBNET }]] },
  });
  return Array.from({ length: n }, (_, i) => {
    const cfg = cfgOf(`node${i}`);
    let client = new EtcdClient(cfg.etcd);
    let alloc = new EtcdAllocator(cfg, client);
    let conflicts = 0;
    const fresh = (): EtcdAllocator => {
      if (!cold) return alloc;
      conflicts += alloc.conflicts;
      client.close();
      client = new EtcdClient(cfg.etcd);
      return (alloc = new EtcdAllocator(cfg, client));
    };
    return {
      allocate: async (id) => (await fresh().allocate({ containerId: id, ifName: 'eth0' }))[0]!.ip,
      release: async (id) => { await fresh().release({ containerId: id, ifName: 'eth0' }); },
      conflicts: () => conflicts + alloc.conflicts,
      close: () => client.close(),
    };
  });
}

/** The baseline: one key per address, lowest free by a full read, compare-and-swap create. */
function naiveWorkers(endpoints: string[], net: string, n: number): Worker[] {
  const prefix = `/bench/naive/${net}/`;
  const base = 0x0af00000; // 10.240.0.0
  const size = 65534;
  return Array.from({ length: n }, () => {
    const client = new EtcdClient({ endpoints, timeoutMs: 10_000 });
    let conflicts = 0;
    return {
      async allocate(id) {
        for (;;) {
          const used = new Set((await client.range({ key: prefix, rangeEnd: prefixEnd(prefix), keysOnly: true })).kvs.map((kv) => kv.key.toString().slice(prefix.length)));
          let off = 2; // .1 is the gateway
          while (used.has(String(off)) && off <= size) off++;
          if (off > size) throw new Error('naive: pool exhausted');
          const key = `${prefix}${off}`;
          const r = await client.txn({ compare: [cmp.absent(key)], success: [{ put: { key, value: id } }] });
          if (r.succeeded) {
            const v = base + off;
            return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
          }
          conflicts++;
        }
      },
      async release(id, ip) {
        const off = ip.split('.').map(Number).reduce((a, x) => a * 256 + x, 0) - base;
        await client.txn({ compare: [cmp.value(`${prefix}${off}`, id)], success: [{ del: { key: `${prefix}${off}` } }] });
      },
      conflicts: () => conflicts,
      close: () => client.close(),
    };
  });
}

/** One run: every worker allocates `per` addresses, `lanes` at a time, all workers at once; then releases. */
function batch(s: Side, workers: Worker[], per: number, tag: string, lanes = 1): () => Promise<number> {
  let run = 0;
  return async () => {
    const r = run++;
    const got: Array<{ w: number; id: string; ip: string }> = [];
    const c0 = workers.reduce((a, w) => a + w.conflicts(), 0);
    const t0 = process.hrtime.bigint();
    await Promise.all(workers.flatMap((w, wi) => Array.from({ length: lanes }, async (_, lane) => {
      for (let i = lane; i < per; i += lanes) {
        const id = `${tag}-r${r}-w${wi}-${i}`;
        const t = process.hrtime.bigint();
        const ip = await w.allocate(id);
        s.lat.push(Number(process.hrtime.bigint() - t) / 1e6);
        got.push({ w: wi, id, ip });
      }
    })));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    s.allocs += got.length;
    s.allocMs += ms;
    s.duplicates += got.length - new Set(got.map((g) => g.ip)).size;
    const t1 = process.hrtime.bigint();
    await Promise.all(workers.map(async (w, wi) => {
      for (const g of got.filter((x) => x.w === wi)) {
        const t = process.hrtime.bigint();
        await w.release(g.id, g.ip);
        s.relLat.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }));
    s.releases += got.length;
    s.releaseMs += Number(process.hrtime.bigint() - t1) / 1e6;
    s.conflicts += workers.reduce((a, w) => a + w.conflicts(), 0) - c0;
    return ms;
  };
}

function fmt(s: Side): string {
  const lat = [...s.lat].sort((a, b) => a - b);
  const rel = [...s.relLat].sort((a, b) => a - b);
  if (!lat.length) return `${s.label}: no runs`;
  return `${s.label}: ${Math.round(s.allocs / (s.allocMs / 1000))} allocations/s, p50 ${quantile(lat, 0.5).toFixed(1)} ms, p99 ${quantile(lat, 0.99).toFixed(1)} ms; ` +
    `${Math.round(s.releases / (s.releaseMs / 1000))} releases/s (p50 ${quantile(rel, 0.5).toFixed(1)} ms); ${s.conflicts} lost races; ${s.duplicates} duplicates in ${s.allocs} allocations`;
}

async function setup(_opts: SuiteOptions): Promise<{ cases: BenchCase[]; notes: string[] }> {
  const one = await EtcdCluster.start({ members: 1 });
  clusters.push(one);
  const three = await EtcdCluster.start({ members: 3 });
  clusters.push(three);
  // The ceiling: etcd's rate for the simplest conditional write (one key, compare absent, put)
  // from 32 concurrent clients through the same client, on this machine, now.
  for (const [cl, m] of [[one, 1], [three, 3]] as const) {
    const c = new EtcdClient({ endpoints: cl.endpoints, timeoutMs: 10_000 });
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: 32 }, async (_, w) => {
      for (let i = 0; i < 20; i++) await c.txn({ compare: [cmp.absent(`/bench/raw/${w}/${i}`)], success: [{ put: { key: `/bench/raw/${w}/${i}`, value: 'x' } }] });
    }));
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    notes.push(`ceiling on ${m} member${m > 1 ? 's' : ''}: ${Math.round(640 / s)} single-key compare-and-put transactions/s from 32 concurrent requests (no allocator)`);
    c.close();
  }
  const cases: BenchCase[] = [];
  const all: Worker[] = [];
  const plan: Array<[EtcdCluster, number, number, boolean, number]> = [];
  for (const [cl, m] of [[one, 1], [three, 3]] as const) for (const conc of [1, 8, 32]) plan.push([cl, m, conc, false, 1]);
  plan.push([three, 3, 8, true, 1], [three, 3, 32, false, 4]);
  for (const [cl, m, conc, cold, lanes] of plan) {
    const name = `${conc} allocator${conc > 1 ? 's' : ''}, ${m} member${m > 1 ? 's' : ''}${cold ? ', cold (plugin-like)' : ''}${lanes > 1 ? `, knitd: ${lanes} ADDs at a time per node` : ''}`;
    const net = `b${m}x${conc}${cold ? 'c' : ''}${lanes > 1 ? `l${lanes}` : ''}`;
    const per = lanes > 1 ? 2 * lanes : Math.max(4, Math.ceil(64 / conc));
    const k = knitWorkers(cl.endpoints, net, conc, cold);
    const nv = naiveWorkers(cl.endpoints, net, conc);
    all.push(...k, ...nv);
    const st = { name, knit: side('knit-etcd-ipam'), naive: side('naive CAS') };
    stats.push(st);
    cases.push({
      name: `${name}: ${conc * per} allocations`,
      knit: batch(st.knit, k, per, `k${net}`, lanes), knitLabel: 'knit-etcd-ipam (blocks)',
      reference: batch(st.naive, nv, per, `n${net}`, lanes), referenceLabel: 'naive CAS per address',
    });
  }
  closers = all;
  notes.push(
    `etcd ${'3.4'} (Debian) on loopback, temp data dirs on disk, fsync on; the client is knit's own JSON-gateway client over node:http with keep-alive`,
    'a run: every allocator makes its allocations in sequence, all allocators at once (timed), then all are released (timed apart); the table compares batch times',
  );
  return { cases, notes };
}

let closers: Worker[] = [];

export const suite: Suite = {
  name: 'etcd',
  description: 'knit-etcd-ipam block allocator vs naive per-address CAS: allocations/s and latency on 1 and 3 etcd members',
  setup,
  async teardown() {
    for (const s of stats) notes.push(`${s.name} — ${fmt(s.knit)} | ${fmt(s.naive)}`);
    const { loadavg } = await import('node:os');
    notes.push(`load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(' ')} (2 cores; other work on the machine skews every figure)`);
    for (const w of closers) w.close();
    for (const c of clusters) await c.stop();
    clusters = [];
  },
};
