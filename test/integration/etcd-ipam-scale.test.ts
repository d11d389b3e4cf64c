// knit-etcd-ipam never hands out an address twice: 16 allocator processes (simulated nodes) x 50
// ADDs each, 5 at a time per node with a fresh client each (like plugin processes), against real
// etcd: one member, and three members with one killed and restarted mid-run. The range is sized
// so that every block gets claimed and nodes must borrow. Afterwards etcd's state must match what
// the processes were told, key for key.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import { EtcdCluster, requireEtcd } from '../lab/etcd';

let WORKER = '';
const NODES = 16;
const PODS = 50;
const PREFIX = '/knit';

interface Line { cid: string; ips?: string[]; error?: string; code?: number; tries: number; codes: number[] }
interface Batch { requests: number; transactions: number }

function worker(conf: object, node: string, count: number, parallel: number, shared = false, batches: Batch[] = []): Promise<Line[]> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, [WORKER, JSON.stringify({ conf, node, count, parallel, shared })], {
      env, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`worker ${node} exited ${code}: ${err}`));
      const all = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line & { batch?: Batch });
      for (const l of all) if (l.batch) batches.push(l.batch);
      resolve(all.filter((l) => !l.batch));
    });
  });
}

/** Checks the processes' answers against each other and against every key in etcd. */
function verify(etcd: EtcdCluster, net: string, lines: Line[]): void {
  const failed = lines.filter((l) => l.error);
  assert.deepEqual(failed, [], 'every ADD succeeded (after retries of code 11)');
  assert.equal(lines.length, NODES * PODS);
  const all = lines.map((l) => l.ips![0]!);
  assert.equal(new Set(all).size, all.length, `${all.length - new Set(all).size} duplicate addresses`);
  for (const l of lines) for (const c of l.codes) assert.equal(c, 11, `${l.cid}: a failed try returned code ${c}, not 11`);

  const kv = etcd.dump(`${PREFIX}/ipam/${net}/`);
  const base = `${PREFIX}/ipam/${net}/`;
  const byKind = (k: string): Array<[string, any]> => [...kv].filter(([key]) => key.startsWith(base + k)).map(([key, v]) => [key.slice(base.length + k.length), JSON.parse(v)]);
  const ips = byKind('ips/');
  const atts = byKind('attach/');
  const blocks = byKind('blocks/');
  const nodes = byKind('nodes/');
  assert.equal(ips.length, lines.length, 'one reservation key per ADD');
  assert.equal(atts.length, lines.length, 'one attachment index per ADD');
  const told = new Map(lines.map((l) => [l.ips![0]!, l.cid]));
  for (const [, v] of ips) {
    assert.equal(told.get(v.ip), v.containerID, `${v.ip} is held by ${v.containerID} in etcd`);
    assert.equal(v.containerID.split('-c')[0], v.node);
  }
  for (const [key, v] of atts) {
    const [node, id] = key.split('/');
    assert.equal(id, `${told.get(v.ips[0].ip)}:eth0`);
    assert.equal(v.ips.length, 1);
    assert.ok(id!.startsWith(`${node}-`));
  }
  // The block index and the blocks agree; every reservation lies in a claimed block.
  const blockSet = new Set(blocks.map(([k, v]) => `${v.node}/${k}`));
  assert.deepEqual(new Set(nodes.map(([k]) => k)), blockSet);
  const blockCidrs = blocks.map(([, v]) => v.cidr as string);
  const inBlock = (ip: string): boolean => blockCidrs.some((c) => {
    const [net, p] = c.split('/');
    const toN = (s: string): number => s.split('.').reduce((a, x) => a * 256 + Number(x), 0);
    const size = 2 ** (32 - Number(p));
    return toN(ip) >= toN(net!) && toN(ip) < toN(net!) + size;
  });
  for (const ip of all) assert.ok(inBlock(ip), `${ip} lies in a claimed block`);
}

function conf(etcd: EtcdCluster, net: string): object {
  return {
    cniVersion: '1.1.0', name: net, type: 'knit-etcd-ipam',
    // 1021 addresses in 32 blocks of 32: 16 nodes x 50 claim them all and borrow.
    ipam: { type: 'knit-etcd-ipam', blockSize: 27, etcd: { endpoints: etcd.endpoints, timeoutMs: 3000, prefix: PREFIX }, ranges: [[{ subnet: '10.220.0.0/22' }]] },
  };
}

describe('knit-etcd-ipam under concurrency (16 nodes x 50 pods, real etcd)', function () {
  this.timeout(120_000);
  let etcd: EtcdCluster | undefined;

  let tmp = '';
  before(async function () {
    requireEtcd(this);
    // Bundled once like the executables: 16 tsx start-ups at once would take seconds each here.
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-etcd-worker-'));
    WORKER = path.join(tmp, 'worker.js');
    await build({ entryPoints: [path.join(__dirname, 'etcd/worker.ts')], outfile: WORKER, bundle: true, platform: 'node', target: 'node20', format: 'cjs', logLevel: 'warning' });
  });
  after(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });
  afterEach(async () => { await etcd?.stop(); etcd = undefined; });

  it('one member: 800 distinct addresses, etcd state matches, blocks claimed and borrowed', async () => {
    etcd = await EtcdCluster.start({ members: 1 });
    const c = conf(etcd, 'scale1');
    const t0 = Date.now();
    const lines = (await Promise.all(Array.from({ length: NODES }, (_, i) => worker(c, `node${i}`, PODS, 5)))).flat();
    const ms = Date.now() - t0;
    verify(etcd, 'scale1', lines);
    const kv = etcd.dump(`${PREFIX}/ipam/scale1/blocks/`);
    assert.equal(kv.size, 32, 'every block of the range is claimed');
    const borrowed = [...etcd.dump(`${PREFIX}/ipam/scale1/attach/`)].filter(([k, v]) => JSON.parse(v).ips[0].blockNode !== k.split('/').at(-2)).length;
    const lat = lines.map((l) => (l as any).ms as number).sort((a, b) => a - b);
    const conflicts = lines.reduce((a, l) => a + ((l as any).conflicts as number), 0);
    console.log(`      ${lines.length} ADDs in ${ms} ms by ${NODES} processes (p50 ${lat[lat.length >> 1]} ms, p99 ${lat[Math.floor(lat.length * 0.99)]} ms, ${conflicts} lost races); ${borrowed} addresses borrowed from other nodes' blocks`);
    assert.ok(borrowed > 0, 'some node had to borrow');
  });

  it('three members, knitd-like (one allocator per node, 8 ADDs at a time): batched transactions, no duplicates', async () => {
    etcd = await EtcdCluster.start({ members: 3 });
    const c = conf(etcd, 'scaleb');
    const batches: Batch[] = [];
    const t0 = Date.now();
    const lines = (await Promise.all(Array.from({ length: NODES }, (_, i) => worker(c, `node${i}`, PODS, 8, true, batches)))).flat();
    const ms = Date.now() - t0;
    verify(etcd, 'scaleb', lines);
    assert.equal(batches.length, NODES);
    const sum = batches.reduce((a, b) => ({ requests: a.requests + b.requests, transactions: a.transactions + b.transactions }), { requests: 0, transactions: 0 });
    assert.ok(sum.transactions >= lines.length, 'every ADD wrote through the batcher');
    assert.ok(sum.requests < sum.transactions * 0.75, `concurrent ADDs of a node share requests (${sum.transactions} transactions in ${sum.requests} requests)`);
    console.log(`      ${lines.length} ADDs in ${ms} ms; ${sum.transactions} ADD transactions in ${sum.requests} etcd requests`);
  });

  it('three members, one killed and restarted mid-run: no duplicates, failed calls are code 11 and leave nothing half-written', async () => {
    etcd = await EtcdCluster.start({ members: 3 });
    const c = conf(etcd, 'scale3');
    const run = Promise.all(Array.from({ length: NODES }, (_, i) => worker(c, `node${i}`, PODS, 5)));
    // Kill the member most clients talk to first (pid-spread) once the run is under way.
    await new Promise((r) => setTimeout(r, 1500));
    const victim = 1;
    await etcd.kill(victim);
    await new Promise((r) => setTimeout(r, 1500));
    await etcd.restart(victim);
    const lines = (await run).flat();
    verify(etcd, 'scale3', lines);
    const retried = lines.filter((l) => l.codes.length).length;
    console.log(`      member ${victim} killed and restarted mid-run; ${retried} ADDs needed a retry (code 11)`);
  });
});
