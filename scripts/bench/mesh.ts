// The mesh at scale (docs/mesh.md) beside the etcd datastore on the same work (issue 15).
//
// Mesh: N knitd mesh members (pkg/mesh, the real code, TCP on 127.0.0.1), every one holding a
// subnet, spread over ceil(N / --per) worker processes (scripts/bench/mesh-worker.ts). Each is told
// one earlier member (--peers); above --full-mesh members the mesh is sparse (pkg/mesh/topology.ts).
// Per sample, a new node is started in this process with --peers naming one member, and measured
// from its start:
//   - sync: having the mesh's state (first full sync);
//   - claim: its subnet granted by a majority;
//   - seen: its lease known by every member (what their datapath reconciles on);
//   - full: connected to every member the topology gives it (every member, in a full mesh).
// It is then stopped and removed (node rm), so each sample joins a mesh of N. Then "a record
// change": a member changes its lease's backend data, until every member has it (the mesh's
// nearest equivalent of a new endpoint: named networks' endpoints are not on the mesh yet).
// At rest: the bytes the members send (heartbeats only) over --idle seconds.
//
// etcd: one real etcd (test/lab/etcd.ts) and N simulated nodes, each what knitd runs against
// etcd: the overlay datastore (pkg/datastore/etcd-overlay.ts: a subnet lease on its etcd lease,
// kept alive every ttl/3, and a watch of the subnets) and the named-network agent's watch of the
// endpoints (pkg/agent/networks.ts). Every byte between the nodes and etcd goes through a
// counting TCP relay in this process. Per sample: a new node lists the leases (sync), claims a
// subnet (claim), until every node's watch saw it (seen); and a node puts an endpoint record on
// its lease until every node's endpoint watch saw it. At rest: bytes both ways per node.
//
//   node --import tsx scripts/bench/mesh.ts [--sizes 5,50,100,200] [--mesh-sizes 5,50,100,200] [--samples 20] [--ttl 30] [--idle 20] [--per 50] [--fanout 8] [--full-mesh 64] [--etcd on|off] [--out bench/results]
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { MeshNode } from '../../pkg/mesh/node';
import { EtcdDatastore } from '../../pkg/datastore/etcd-overlay';
import type { LeaseEvent, Watch } from '../../pkg/datastore/datastore';
import { EtcdWatch, type WatchEvent } from '../../pkg/etcd/watch';
import { NetworkStore, type Endpoint } from '../../pkg/network/store';
import { EtcdCluster, freePorts, haveEtcd } from '../../test/lab/etcd';
import { arg, q, sleep, until } from './script';

const ROOT = path.resolve(__dirname, '../..');
const abs = (): number => performance.timeOrigin + performance.now();
const SECRET = Buffer.from('bench');
const subnetOf = (i: number): string => `10.${64 + (i >> 8)}.${i & 0xff}.0/24`;


class Worker {
  private readonly proc: ChildProcess;
  private id = 0;
  private readonly waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();

  constructor() {
    this.proc = fork(path.join(__dirname, 'mesh-worker.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined) w.reject(new Error(`worker: ${m.error}`)); else w.resolve(m.result);
    });
    this.proc.on('exit', (code) => { for (const w of this.waiting.values()) w.reject(new Error(`worker exited (${code})`)); this.waiting.clear(); });
  }

  call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.id;
    return new Promise((resolve, reject) => { this.waiting.set(id, { resolve, reject }); this.proc.send({ id, op, ...args }); });
  }

  kill(): void { this.proc.kill(); }
}

interface Times { p50: number; p99: number }
const pq = (xs: number[]): Times => ({ p50: q(xs, 0.5), p99: q(xs, 0.99) });

interface MeshRow { peers: number; procs: number; samples: number; formS: number; degree: { min: number; mean: number; max: number }; sync: Times; claim: Times; seen: Times; full: Times; change: Times; restBytesPerNodeSec: number }

async function measureMesh(size: number, samples: number, ttl: number, idleSec: number, per: number, fanout: number, fullMesh: number): Promise<MeshRow> {
  const procs = Math.ceil(size / per);
  const workers = Array.from({ length: procs }, () => new Worker());
  const home = (i: number): Worker => workers[i % procs]!;
  const ports: number[] = [];
  const t0 = Date.now();
  try {
    // Setup, not measured: members start in waves of 25, each told one earlier member (spread, not
    // a chain), so the mesh forms by gossip and the topology's own dialing; the measured joiners
    // name one member too.
    ports.push(...await freePorts(size));
    let lastLog = Date.now();
    const formed = async (n: number): Promise<{ minLive: number; notFormed: number }> => {
      const fs = await Promise.all(workers.filter((_, w) => w < n).map((w) => w.call<{ minLive: number; notFormed: number }>('formed')));
      return { minLive: Math.min(...fs.map((f) => f.minLive)), notFormed: fs.reduce((a, f) => a + f.notFormed, 0) };
    };
    for (let started = 0; started < size;) {
      const wave = Math.min(size, started + 25);
      await Promise.all(ports.slice(started, wave).map((port, j) => { const i = started + j; return home(i).call<number>('start', { name: `m${i}`, port, peers: i ? [`127.0.0.1:${ports[(Math.imul(i, 0x9e3779b1) >>> 0) % i]}`] : [], ttl, fanout, fullMesh }); }));
      started = wave;
      for (const end = Date.now() + 300_000; ;) {
        const f = await formed(started);
        if (f.minLive === started && f.notFormed === 0) break;
        if (Date.now() > end) throw new Error(`timed out: mesh of ${started} (a member sees ${f.minLive} live; ${f.notFormed} not connected to their peers)`);
        if (Date.now() - lastLog > 10_000) { lastLog = Date.now(); console.error(`mesh ${size}: forming, ${((Date.now() - t0) / 1000).toFixed(0)} s: ${started} started, the least informed sees ${f.minLive} live, ${f.notFormed} not connected to their peers; ${JSON.stringify(await Promise.all(workers.map((w) => w.call('counters'))))}`); }
        await sleep(200);
      }
    }
    const degrees = (await Promise.all(workers.map((w) => w.call<number[]>('degrees')))).flat();
    const degree = { min: Math.min(...degrees), mean: Math.round(10 * degrees.reduce((a, b) => a + b, 0) / degrees.length) / 10, max: Math.max(...degrees) };
    console.error(`mesh ${size}: formed in ${((Date.now() - t0) / 1000).toFixed(1)} s (connections per member ${degree.min} / ${degree.mean} / ${degree.max}); claiming`);
    await Promise.all(Array.from({ length: size }, (_, i) => home(i).call('claim', { name: `m${i}`, subnet: subnetOf(i), underlay: `192.0.2.${i & 0xff}` })));
    const formS = (Date.now() - t0) / 1000;
    console.error(`mesh ${size}: formed and claimed in ${formS.toFixed(1)} s (${procs} process(es))`);
    // At rest: heartbeats only (a few seconds after the claims' records settled).
    await sleep(2000);
    const bytes = async (): Promise<number> => (await Promise.all(workers.map((w) => w.call<number>('bytes')))).reduce((a, b) => a + b, 0);
    const b0 = await bytes();
    await sleep(idleSec * 1000);
    const rest = ((await bytes()) - b0) / size / idleSec;
    const sync: number[] = []; const claim: number[] = []; const seen: number[] = []; const full: number[] = []; const change: number[] = [];
    for (let s = 0; s < samples; s++) {
      const name = `new${s}`;
      const subnet = subnetOf(1000 + s);
      await Promise.all(workers.map((w) => w.call('armLease', { key: name, name, subnet })));
      const t = abs();
      const n = new MeshNode({ name, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: [`127.0.0.1:${ports[s % size]}`], stateDir: null, ttlSec: ttl, fanout, fullMesh });
      await n.start();
      await n.ready(30_000);
      sync.push(abs() - t);
      for (;;) {
        try { if ((await n.claim({ subnet, underlayAddr: '192.0.2.250' }, 10_000)).ok) break; } catch { /* members not all connected yet */ }
        await sleep(5);
      }
      claim.push(abs() - t);
      const seenAt = Math.max(...await Promise.all(workers.map((w) => w.call<number>('collect', { key: name }))));
      seen.push(seenAt - t);
      await until(() => n.formed(), 30_000, `${name} connected to its peers`);
      full.push(abs() - t);
      n.stop();
      await Promise.all(workers.map((w) => w.call('waitGone', { name })));
      await home(0).call('remove', { by: 'm0', name });
      await Promise.all(workers.map((w) => w.call('waitRemoved', { name })));
      // A record change: member k's lease gets new backend data.
      const k = `m${(s * 7) % size}`;
      const data = `ep${s}`;
      await Promise.all(workers.map((w) => w.call('armData', { key: data, name: k, data })));
      const tc = await home((s * 7) % size).call<number>('updateLease', { name: k, data });
      const doneAt = Math.max(...await Promise.all(workers.map((w) => w.call<number>('collect', { key: data }))));
      change.push(doneAt - tc);
    }
    return { peers: size, procs, samples, formS, degree, sync: pq(sync), claim: pq(claim), seen: pq(seen), full: pq(full), change: pq(change), restBytesPerNodeSec: Math.round(rest) };
  } finally {
    await Promise.all(workers.map((w) => w.call('stop').catch(() => undefined)));
    for (const w of workers) w.kill();
  }
}

/** A TCP relay to etcd counting every byte both ways: what the nodes' traffic with etcd costs. */
async function countingRelay(target: { host: string; port: number }): Promise<{ endpoint: string; bytes: () => number; close: () => void }> {
  let total = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const u = net.connect(target.port, target.host);
    socks.add(c); socks.add(u);
    c.setNoDelay(true); u.setNoDelay(true);
    c.on('data', (d) => { total += d.length; u.write(d); });
    u.on('data', (d) => { total += d.length; c.write(d); });
    const end = (): void => { c.destroy(); u.destroy(); socks.delete(c); socks.delete(u); };
    c.on('close', end); u.on('close', end); c.on('error', end); u.on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    bytes: () => total,
    close: () => { for (const s of socks) s.destroy(); server.close(); },
  };
}

interface EtcdRow { peers: number; samples: number; sync: Times; claim: Times; seen: Times; endpoint: Times; restBytesPerNodeSec: number }

/** One simulated node against etcd: its overlay datastore (lease, keepalive, subnet watch) and the endpoint watch. */
interface EtcdNode { name: string; store: EtcdDatastore; leaseWatch: Watch; epWatch: EtcdWatch; timer: NodeJS.Timeout; onLease: Array<(e: LeaseEvent) => void>; onEp: Array<(e: WatchEvent) => void> }

async function measureEtcd(cluster: EtcdCluster, size: number, samples: number, ttl: number, idleSec: number): Promise<EtcdRow> {
  const etcdUrl = new URL(cluster.endpoints[0]!);
  const relay = await countingRelay({ host: etcdUrl.hostname, port: Number(etcdUrl.port) });
  const prefix = `/bench-${size}-${Date.now()}`;
  const conn = { endpoints: [relay.endpoint], prefix };
  const nodes: EtcdNode[] = [];
  const epStore = new NetworkStore(new EtcdDatastore(conn).client, prefix);
  const epPrefix = epStore.endpointsPrefix();
  try {
    for (let i = 0; i < size; i++) {
      const name = `e${i}`;
      const store = new EtcdDatastore(conn);
      const r = await store.claim({ nodeName: name, subnet: subnetOf(i), underlayAddr: `192.0.2.${i & 0xff}` }, ttl);
      if (!r.ok) throw new Error(`etcd claim ${name}: ${JSON.stringify(r)}`);
      const { revision } = await store.listLeases();
      const node: EtcdNode = { name, store, onLease: [], onEp: [] } as unknown as EtcdNode;
      node.leaseWatch = store.watchLeases(revision, (e) => { for (const f of node.onLease) f(e); }, (e) => console.error(`${name}: lease watch: ${e.message}`));
      node.epWatch = new EtcdWatch({ conn, client: store.client, prefix: epPrefix, revision, onEvents: (es) => { for (const e of es) for (const f of node.onEp) f(e); }, onError: (e) => console.error(`${name}: endpoint watch: ${e.message}`) });
      node.timer = setInterval(() => void store.keepAlive().catch(() => undefined), Math.max(1, Math.floor(ttl / 3)) * 1000);
      nodes.push(node);
    }
    /** Resolves with the time the last node's watch saw `match`. */
    const everyNode = (kind: 'onLease' | 'onEp', match: (e: any) => boolean, what: string): Promise<number> => new Promise((resolve, reject) => {
      const pending = new Set(nodes);
      const t = setTimeout(() => reject(new Error(`timed out: ${what} (${pending.size} node(s) short)`)), 60_000);
      for (const n of nodes) {
        const f = (e: unknown): void => {
          if (!pending.has(n) || !match(e)) return;
          pending.delete(n);
          n[kind].splice(n[kind].indexOf(f as never), 1);
          if (!pending.size) { clearTimeout(t); resolve(abs()); }
        };
        (n[kind] as Array<(e: unknown) => void>).push(f);
      }
    });
    const endpoint = (node: string, id: string): Endpoint => ({ network: 'bench', containerId: id, ifName: 'eth0', node, nodeIp: '192.0.2.1', mac: '02:00:00:00:00:01', ips: ['10.99.0.2/24'], created: new Date().toISOString() });
    // Every watch streaming before anything is timed: an endpoint put and deleted, seen by all.
    const warm = everyNode('onEp', (e: WatchEvent) => e.type === 'put' && e.kv.key.toString().endsWith('/warm/eth0'), 'warm-up');
    await epStore.putEndpoint(endpoint('e0', 'warm'), nodes[0]!.store.lease!);
    await warm;
    await epStore.deleteEndpoint(endpoint('e0', 'warm'));
    await sleep(2000);
    const b0 = relay.bytes();
    await sleep(idleSec * 1000);
    const rest = (relay.bytes() - b0) / size / idleSec;
    const sync: number[] = []; const claim: number[] = []; const seen: number[] = []; const ep: number[] = [];
    for (let s = 0; s < samples; s++) {
      const name = `enew${s}`;
      const subnet = subnetOf(1000 + s);
      const all = everyNode('onLease', (e: LeaseEvent) => e.type === 'put' && e.lease.subnet === subnet, `${name}'s lease everywhere`);
      const t = abs();
      const store = new EtcdDatastore(conn);
      await store.listLeases();
      sync.push(abs() - t);
      const r = await store.claim({ nodeName: name, subnet, underlayAddr: '192.0.2.250' }, ttl);
      if (!r.ok) throw new Error(`etcd claim ${name}: ${JSON.stringify(r)}`);
      claim.push(abs() - t);
      seen.push((await all) - t);
      // The node leaves: its lease revoked, its subnet deleted everywhere.
      const gone = everyNode('onLease', (e: LeaseEvent) => e.type === 'del' && e.subnet === subnet, `${name} gone`);
      await store.revoke();
      await gone;
      store.close();
      // A new endpoint: node k records one on its lease, until every node's endpoint watch has it.
      const k = nodes[(s * 7) % size]!;
      const id = `c${s}`;
      const got = everyNode('onEp', (e: WatchEvent) => e.type === 'put' && e.kv.key.toString().endsWith(`/${k.name}/${id}/eth0`), `endpoint ${id} everywhere`);
      const te = abs();
      await epStore.putEndpoint(endpoint(k.name, id), k.store.lease!);
      ep.push((await got) - te);
      await epStore.deleteEndpoint(endpoint(k.name, id));
    }
    return { peers: size, samples, sync: pq(sync), claim: pq(claim), seen: pq(seen), endpoint: pq(ep), restBytesPerNodeSec: Math.round(rest) };
  } finally {
    for (const n of nodes) { clearInterval(n.timer); n.leaseWatch?.close(); n.epWatch?.close(); await n.store.revoke().catch(() => undefined); n.store.close(); }
    epStore.client.close();
    relay.close();
  }
}

async function main(): Promise<void> {
  const sizes = arg('sizes', '5,50,100,200').split(',').map(Number);
  const samples = Number(arg('samples', '20'));
  const ttl = Number(arg('ttl', '30'));
  const idle = Number(arg('idle', '20'));
  const per = Number(arg('per', '50'));
  const fanout = Number(arg('fanout', '8'));
  const fullMesh = Number(arg('full-mesh', '64'));
  const meshSizes = arg('mesh-sizes', arg('sizes', '5,50,100,200')).split(',').map(Number);
  const withEtcd = arg('etcd', 'on') !== 'off';
  const out = path.resolve(ROOT, arg('out', 'bench/results'));
  if (withEtcd && !haveEtcd()) throw new Error('--etcd on needs /usr/bin/etcd (scripts/bootstrap installs it); --etcd off to run the mesh alone');
  const cluster = withEtcd ? await EtcdCluster.start() : null;
  const t0 = Date.now();
  const mesh: MeshRow[] = [];
  const etcd: EtcdRow[] = [];
  try {
    for (const size of sizes) {
      if (meshSizes.includes(size)) {
        const m = await measureMesh(size, samples, ttl, idle, per, fanout, fullMesh);
        mesh.push(m);
        console.log(JSON.stringify({ mesh: m }));
      }
      if (cluster) {
        const e = await measureEtcd(cluster, size, samples, ttl, idle);
        etcd.push(e);
        console.log(JSON.stringify({ etcd: e }));
      }
    }
  } finally {
    await cluster?.stop();
  }
  const wall = Math.round((Date.now() - t0) / 1000);
  const f = (x: number): string => (x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString('en-US'));
  const t = (x: Times): string => `${f(x.p50)} / ${f(x.p99)}`;
  const ratio = (a: Times, b: Times): string => `${(a.p50 / b.p50).toFixed(1)}x / ${(a.p99 / b.p99).toFixed(1)}x`;
  const md = [
    '# Mesh: a new node joining N peers, beside etcd',
    '',
    `\`node --import tsx scripts/bench/mesh.ts --sizes ${sizes.join(',')} --mesh-sizes ${meshSizes.join(',')} --samples ${samples} --ttl ${ttl} --idle ${idle} --per ${per} --fanout ${fanout} --full-mesh ${fullMesh}\` (${new Date().toISOString().slice(0, 10)}, ${wall} s in all, 2 shared cores).`,
    '',
    '## Mesh',
    '',
    `Every member is the real pkg/mesh code over TCP on 127.0.0.1, ${per} per process (one event loop carries ${per} members: the figures`,
    'include their contention, an upper bound for hosts each running their own knitd); the new node runs in the parent process.',
    'Times from the new node\'s start, ms. "record change": a member\'s lease gets new backend data, until every member has it',
    '(the nearest equivalent of a new endpoint: named networks\' endpoints are not on the mesh in this tree).',
    '',
    '| peers | processes | formed in | connections per member min / mean / max | sync p50 / p99 | subnet granted p50 / p99 | lease seen by all p50 / p99 | connected to its peers p50 / p99 | record change seen by all p50 / p99 | bytes/s sent per node at rest |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...mesh.map((r) => `| ${r.peers} | ${r.procs} | ${r.formS.toFixed(0)} s | ${r.degree.min} / ${r.degree.mean} / ${r.degree.max} | ${t(r.sync)} | ${t(r.claim)} | ${t(r.seen)} | ${t(r.full)} | ${t(r.change)} | ${r.restBytesPerNodeSec.toLocaleString('en-US')} |`),
    '',
    `"formed in": every member started, seeing every other live and connected to the peers the topology gives it (every member up to ${fullMesh}, fanout ${fanout} above), and every member's subnet claimed.`,
    `At rest each node sends a heartbeat (a delta of its record: no connection changed) every ttl/3 s (ttl ${ttl} s here, 300 s by default) to its peers, and forwards the others' along their trees.`,
    '',
    ...(etcd.length ? [
      '## etcd, on the same work',
      '',
      'One etcd (test/lab/etcd.ts) and N simulated nodes in one process, each with its overlay datastore (a subnet on its etcd lease, kept',
      `alive every ttl/3 s, a watch of the subnets) and the named-network agent's watch of the endpoints; all their traffic through a counting`,
      'relay. New node: list the leases (sync), claim (lease grant + transaction), until every node\'s watch saw it. New endpoint: a node',
      'puts an endpoint record on its lease, until every node\'s endpoint watch saw it. Bytes at rest: both ways, per node (keepalives, idle watches).',
      '',
      '| peers | sync p50 / p99 | subnet granted p50 / p99 | lease seen by all p50 / p99 | endpoint seen by all p50 / p99 | bytes/s per node at rest (both ways) |',
      '|--:|--:|--:|--:|--:|--:|',
      ...etcd.map((r) => `| ${r.peers} | ${t(r.sync)} | ${t(r.claim)} | ${t(r.seen)} | ${t(r.endpoint)} | ${r.restBytesPerNodeSec.toLocaleString('en-US')} |`),
      '',
      '## Ratios, mesh / etcd (p50 / p99)',
      '',
      '| peers | new node: lease seen by all | record change (mesh) / new endpoint (etcd) seen by all | bytes at rest per node (mesh sent+received / etcd both ways) |',
      '|--:|--:|--:|--:|',
      ...mesh.map((m) => { const e = etcd.find((x) => x.peers === m.peers)!; return `| ${m.peers} | ${ratio(m.seen, e.seen)} | ${ratio(m.change, e.endpoint)} | ${((2 * m.restBytesPerNodeSec) / Math.max(1, e.restBytesPerNodeSec)).toFixed(1)}x |`; }),
      '',
    ] : []),
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'mesh.md'), md);
  fs.writeFileSync(path.join(out, 'mesh.json'), JSON.stringify({ mesh, etcd }, null, 2));
  console.log(md);
  process.exit(0);
}

main().catch((e) => { console.error(e); process.exit(1); });
