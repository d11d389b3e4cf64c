// The mesh at scale (docs/mesh.md), simulated: N knitd mesh nodes (pkg/mesh, the real code, TCP on
// 127.0.0.1) in this one process, every one holding a subnet. Then, per sample, a new node is
// started with --peers naming one member and measured:
//   - sync: start to having the mesh's state (first full sync);
//   - claim: start to its subnet granted by a majority;
//   - seen: start to its lease being known by every other node (what their datapath reconciles on);
//   - full: start to a connection with every member.
// The sample node is then stopped and removed (node rm), so each sample joins a mesh of N.
// Also the mesh's bytes at rest per node (heartbeats only) over --idle seconds.
//   node --import tsx scripts/bench/mesh.ts [--sizes 5,50] [--samples 20] [--ttl 30] [--idle 20] [--out bench/results]
// One process and one event loop carry every node, so the figures include their contention: an
// upper bound for real hosts, each with its own knitd.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshNode } from '../../pkg/mesh/node';

const ROOT = path.resolve(__dirname, '../..');
const arg = (name: string, dflt: string): string => { const i = process.argv.indexOf(`--${name}`); return i >= 0 ? process.argv[i + 1]! : dflt; };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const q = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!; };
const SECRET = Buffer.from('bench');

async function until(fn: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) { if (Date.now() > end) throw new Error(`timed out: ${what}`); await sleep(2); }
}

async function startNode(name: string, peers: MeshNode[], ttl: number): Promise<MeshNode> {
  const n = new MeshNode({ name, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peers.map((p) => `127.0.0.1:${p.listenPort}`), stateDir: null, ttlSec: ttl });
  await n.start();
  return n;
}

const subnetOf = (i: number): string => `10.${64 + (i >> 8)}.${i & 0xff}.0/24`;

interface Row { peers: number; samples: number; syncP50: number; syncP99: number; claimP50: number; claimP99: number; seenP50: number; seenP99: number; fullP50: number; fullP99: number; restBytesPerNodeSec: number }

async function measure(size: number, samples: number, ttl: number, idleSec: number): Promise<Row> {
  const nodes: MeshNode[] = [];
  for (let i = 0; i < size; i++) {
    nodes.push(await startNode(`m${i}`, i ? [nodes[Math.floor(Math.random() * i)]!] : [], ttl));
  }
  await until(() => nodes.every((n) => n.connected().length === size - 1), 300_000, `full mesh of ${size}`);
  for (const [i, n] of nodes.entries()) {
    for (;;) {
      try { if ((await n.claim({ subnet: subnetOf(i), underlayAddr: `192.0.2.${i & 0xff}` })).ok) break; } catch { /* not yet */ }
      await sleep(50);
    }
  }
  // At rest: heartbeats only.
  const bytes = (): number => nodes.reduce((s, n) => s + n.bytesOut(), 0);
  const b0 = bytes();
  await sleep(idleSec * 1000);
  const rest = (bytes() - b0) / size / idleSec;
  const sync: number[] = []; const claim: number[] = []; const seen: number[] = []; const full: number[] = [];
  for (let s = 0; s < samples; s++) {
    const name = `new${s}`;
    const subnet = subnetOf(1000 + s);
    const t0 = performance.now();
    const n = await startNode(name, [nodes[s % size]!], ttl);
    await n.ready(30_000);
    sync.push(performance.now() - t0);
    for (;;) {
      try { if ((await n.claim({ subnet, underlayAddr: '192.0.2.250' }, 10_000)).ok) break; } catch { /* members not all connected yet */ }
      await sleep(5);
    }
    claim.push(performance.now() - t0);
    await until(() => nodes.every((m) => m.state.nodes.get(name)?.lease?.subnet === subnet), 30_000, `${name}'s lease everywhere`);
    seen.push(performance.now() - t0);
    await until(() => n.connected().length === size, 30_000, `${name} connected to all`);
    full.push(performance.now() - t0);
    n.stop();
    await until(() => nodes.every((m) => !m.connected().includes(name)), 30_000, `${name} gone`);
    nodes[0]!.removeNode(name);
    await until(() => nodes.every((m) => !m.state.nodes.has(name)), 30_000, `${name} removed`);
  }
  for (const n of nodes) n.stop();
  return {
    peers: size, samples,
    syncP50: q(sync, 0.5), syncP99: q(sync, 0.99), claimP50: q(claim, 0.5), claimP99: q(claim, 0.99),
    seenP50: q(seen, 0.5), seenP99: q(seen, 0.99), fullP50: q(full, 0.5), fullP99: q(full, 0.99), restBytesPerNodeSec: Math.round(rest),
  };
}

async function main(): Promise<void> {
  const sizes = arg('sizes', '5,50').split(',').map(Number);
  const samples = Number(arg('samples', '20'));
  const ttl = Number(arg('ttl', '30'));
  const idle = Number(arg('idle', '20'));
  const out = path.resolve(ROOT, arg('out', 'bench/results'));
  const rows: Row[] = [];
  for (const size of sizes) {
    const row = await measure(size, samples, ttl, idle);
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  const f = (x: number): string => x.toFixed(1);
  const md = [
    '# Mesh: a new node joining N simulated peers',
    '',
    `\`node --import tsx scripts/bench/mesh.ts --sizes ${sizes.join(',')} --samples ${samples} --ttl ${ttl} --idle ${idle}\` (${new Date().toISOString().slice(0, 10)}).`,
    'Every node is the real pkg/mesh code over TCP on 127.0.0.1, all in one process (one event loop: the figures include',
    'the contention of all nodes, an upper bound for hosts each running their own knitd). Times from the new node\'s start, ms.',
    '',
    '| peers | samples | sync p50 / p99 | subnet granted p50 / p99 | lease seen by all p50 / p99 | connected to all p50 / p99 | bytes/s per node at rest |',
    '|--:|--:|--:|--:|--:|--:|--:|',
    ...rows.map((r) => `| ${r.peers} | ${r.samples} | ${f(r.syncP50)} / ${f(r.syncP99)} | ${f(r.claimP50)} / ${f(r.claimP99)} | ${f(r.seenP50)} / ${f(r.seenP99)} | ${f(r.fullP50)} / ${f(r.fullP99)} | ${r.restBytesPerNodeSec} |`),
    '',
    `At rest each node re-publishes its record every ttl/3 s (ttl ${ttl} s here, 300 s by default) to every peer, and each receiver forwards it only to peers the owner is not connected to (none in a full mesh).`,
    '',
  ].join('\n');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'mesh.md'), md);
  fs.writeFileSync(path.join(out, 'mesh.json'), JSON.stringify(rows, null, 2));
  console.log(md);
  process.exit(0);
}

void main();
