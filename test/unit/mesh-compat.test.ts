// Mixed versions on the mesh (docs/mesh.md "Upgrades", design D29): real MeshNode instances
// over TCP on 127.0.0.1, some acting as an older knitd (a narrower protocol range, features left
// out), and raw peers that complete the real handshake and then send what a later knitd would (a
// record kind, a message type, a request op this code does not know) or what a knitd from before
// ranges sends (a hello with one version). What must hold: overlapping ranges talk at the highest
// common version, non-overlapping ones are refused with a line naming both; unknown records are
// kept, relayed and saved, never sent to a version-1 peer; unknown messages are ignored; unknown
// ops are answered `unsupported`, which a claimer and the stranded-grant check treat as "cannot tell".
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { checkHello, frameTag, negotiate, newIncarnation, newNonce, proof, rangeMismatch, sessionKey, TAG_LEN, type Hello } from '../../pkg/mesh/auth';
import { encodeFrame, FrameReader, MAX_FRAME } from '../../pkg/mesh/frame';
import type { Claim } from '../../pkg/mesh/grants';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { MeshNode, NoQuorumError } from '../../pkg/mesh/node';
import { checkRecord, MeshState, OPAQUE_LIMITS, RecordError } from '../../pkg/mesh/state';
import { meshStatus, protocolLine } from '../../pkg/mesh/status';
import type { Logger } from '../../pkg/cni/log';
import { eventually } from '../lab/mesh-members';

const SECRET = Buffer.from('s3cret-compat');
/** The last commit before protocol ranges: its pkg/mesh is the real version-1 knitd's mesh. */
const PREVIOUS_RELEASE = '73dc0e1f124a0f7ce2390e5bf17e1975e0f6b9d9';
const REPO = path.join(__dirname, '..', '..');

/** A logger that keeps its lines (level and text). */
function recorder(): Logger & { lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = [];
  const l = {
    lines,
    debug: (m: string) => { lines.push(['debug', m]); },
    info: (m: string) => { lines.push(['info', m]); },
    warn: (m: string) => { lines.push(['warn', m]); },
    error: (m: string) => { lines.push(['error', m]); },
    enabled: () => true,
    child: () => l,
  };
  return l;
}

type Msg = Record<string, unknown> & { t: string };

/**
 * A peer speaking the wire by hand: the real handshake (auth.ts) as the dialer, then tagged
 * frames. Answers a digest with an empty sync, every request `unsupported` (a knitd that does not know the claim's kind).
 */
class RawPeer {
  readonly got: Msg[] = [];
  closed = false;
  private readonly sock: net.Socket;
  private readonly reader = new FrameReader(MAX_FRAME);
  private readonly mine: Hello;
  private theirs?: Hello;
  private key?: Buffer;
  private seqOut = 0;
  private seqIn = 0;

  constructor(port: number, hello: Partial<Hello> & { name: string }) {
    this.mine = { t: 'hello', proto: 2, max: 3, feat: ['future-op'], inc: newIncarnation(), nonce: newNonce(), port: 0, ...hello };
    if ((hello as { max?: unknown }).max === undefined && 'max' in hello) delete this.mine.max;
    this.sock = net.connect(port, '127.0.0.1', () => this.raw(this.mine));
    this.sock.on('data', (d) => { for (const f of this.reader.push(d)) this.frame(f); });
    this.sock.on('close', () => { this.closed = true; });
    this.sock.on('error', () => {});
  }

  get up(): boolean { return !!this.key && !this.closed; }

  private raw(m: object): void { this.sock.write(encodeFrame(Buffer.from(JSON.stringify(m)))); }

  send(m: object): void {
    const payload = Buffer.from(JSON.stringify(m));
    this.sock.write(encodeFrame(Buffer.concat([frameTag(this.key!, 'dial', this.seqOut++, payload), payload])));
  }

  private frame(f: Buffer): void {
    if (this.key) {
      const payload = f.subarray(TAG_LEN);
      if (!frameTag(this.key, 'accept', this.seqIn++, payload).equals(f.subarray(0, TAG_LEN))) throw new Error('a frame from the node does not verify');
      const m = JSON.parse(payload.toString()) as Msg;
      this.got.push(m);
      if (m.t === 'req') this.send({ t: 'res', id: m.id, ok: false, unsupported: `op ${String(m.op)}` });
      // A node waits for its first sync on the first connection up: answer as an empty peer.
      if (m.t === 'digest') this.send({ t: 'sync', records: [] });
      return;
    }
    const m = JSON.parse(f.toString()) as Msg;
    if (!this.theirs) {
      this.theirs = checkHello(m);
      this.raw({ t: 'auth', mac: proof(SECRET, 'dial', this.mine, this.theirs) });
      return;
    }
    assert.equal(m.t, 'auth');
    this.key = sessionKey(SECRET, this.mine, this.theirs);
  }

  close(): void { this.sock.destroy(); }
}

describe('mesh: mixed versions (rolling upgrades)', function () {
  this.timeout(60_000);
  const nodes: MeshNode[] = [];
  const raws: RawPeer[] = [];
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-compat-')); });
  afterEach(() => { for (const n of nodes.splice(0)) n.stop(); for (const r of raws.splice(0)) r.close(); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  interface Opts { range?: [number, number]; features?: string[]; state?: boolean; reachable?: (n: string) => boolean; log?: Logger; strandedMs?: number; ttl?: number }
  async function node(name: string, peers: MeshNode[] = [], o: Opts = {}): Promise<MeshNode> {
    const n = new MeshNode({
      name, secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: peers.map((p) => `127.0.0.1:${p.listenPort}`),
      stateDir: o.state ? path.join(tmp, name) : null, ttlSec: o.ttl ?? 30,
      ...(o.range ? { protoRange: o.range } : {}), ...(o.features ? { features: o.features } : {}), ...(o.reachable ? { reachable: o.reachable } : {}),
      ...(o.log ? { log: o.log } : {}), ...(o.strandedMs ? { strandedMs: o.strandedMs } : {}),
    });
    await n.start();
    nodes.push(n);
    return n;
  }
  function raw(n: MeshNode, hello: Partial<Hello> & { name: string }): RawPeer {
    const r = new RawPeer(n.listenPort, hello);
    raws.push(r);
    return r;
  }
  const conn = (n: MeshNode, peer: string) => meshStatus(n).connections.find((c) => c.name === peer && c.state === 'established');

  describe('pure parts', () => {
    const hello = (proto: number, max?: number): Hello => ({ t: 'hello', proto, ...(max !== undefined ? { max } : {}), name: 'x', inc: '0'.repeat(16), nonce: '0'.repeat(64), port: 0 });

    it('the highest common version, a hello without a range is its one version, no overlap is null with a line naming both ranges', () => {
      assert.equal(negotiate([1, 2], hello(1)), 1);
      assert.equal(negotiate([1, 2], hello(2, 3)), 2);
      assert.equal(negotiate([2, 2], hello(1, 5)), 2);
      assert.equal(negotiate([2, 3], hello(1)), null);
      assert.equal(negotiate([1, 2], hello(3, 4)), null);
      assert.equal(rangeMismatch([2, 3], hello(1)), 'peer x speaks mesh protocol 1, this knitd 2..3: upgrade x');
      assert.equal(rangeMismatch([1, 2], hello(3, 4)), 'peer x speaks mesh protocol 3..4, this knitd 1..2: upgrade this knitd');
      for (const bad of [{ proto: 0 }, { proto: 1.5 }, { proto: 2, max: 1 }, { proto: 1, max: 'x' }, { proto: 1, feat: ['UP'] }, { proto: 1, feat: 'pursue' }]) {
        assert.throws(() => checkHello({ ...hello(1), ...bad }), /protocol|range|features/, JSON.stringify(bad));
      }
    });

    it('a record of an unknown kind is kept by its envelope; without one it is a RecordError; past a bound it is dropped, not kept', () => {
      const w = checkRecord({ rec: { k: 'quota', name: 'q', v: 3, by: 'z', data: { a: [1, 2] } } });
      assert.equal(w.rec.k, 'opaque');
      for (const bad of [{ k: 'quota', name: 'q', by: 'z' }, { k: 'quota', name: 'q', v: -1, by: 'z' }, { k: 'quota', name: 'q', v: 1 }, { k: 'Quota!', name: 'q', v: 1, by: 'z' }, { k: 'opaque', name: 'q', v: 1, by: 'z' }, { k: 7, name: 'q', v: 1, by: 'z' }]) {
        assert.throws(() => checkRecord({ rec: bad }), RecordError, JSON.stringify(bad));
      }
      // A kind this node is told not to know (acting as an older knitd): keygen, versioned by its generation.
      const g = checkRecord({ rec: { k: 'keygen', name: 'keygen', generation: 4, at: 'now', by: 'a' } }, new Set(['node']));
      assert.deepEqual([g.rec.k, (g.rec as { v: number }).v], ['opaque', 4]);

      const s = new MeshState('self');
      const put = (name: string, v: number, by = 'z', pad = 0) => s.apply(checkRecord({ rec: { k: 'quota', name, v, by, pad: 'x'.repeat(pad) } }), 0);
      assert.ok(put('a', 2));
      assert.equal(put('a', 1), null, 'an older version is not kept');
      assert.equal(put('a', 2, 'a'), null, 'the same version by a smaller name is not kept');
      assert.ok(put('a', 2, 'zz'), 'the same version by a larger name wins');
      assert.equal(put('big', 1, 'z', OPAQUE_LIMITS.record), null, 'one record over its bound');
      for (let i = 0; s.opaque.size < OPAQUE_LIMITS.count; i++) assert.ok(put(`n${i}`, 1), `record ${i}`);
      assert.equal(put('one-more', 1), null, 'one past the count');
      assert.ok(put('a', 3), 'a newer version of a kept one still replaces it');
      assert.equal(s.opaqueDropped, 2);
      assert.ok(s.opaqueBytes <= OPAQUE_LIMITS.bytes);
      const big = new MeshState('self');
      let kept = 0;
      for (let i = 0; i < 200; i++) if (big.apply(checkRecord({ rec: { k: 'quota', name: `b${i}`, v: 1, by: 'z', pad: 'x'.repeat(15_000) } }), 0)) kept++;
      assert.ok(kept < 200 && big.opaqueBytes <= OPAQUE_LIMITS.bytes, `bytes bounded: ${kept} kept, ${big.opaqueBytes} B`);
      // In the digest and in what a peer lacks.
      assert.equal(s.digest().x!['quota/a'], 3);
      assert.equal(s.newerThan({ n: {}, r: {}, c: null, x: { 'quota/a': 3 } }, 0).filter((x) => x.rec.name === 'a').length, 0);
      assert.deepEqual(s.newerThan({ n: {}, r: {}, c: null, x: { 'quota/a': 2 } }, 0).find((x) => x.rec.name === 'a')!.rec, { k: 'quota', name: 'a', v: 3, by: 'z', pad: '' });
    });
  });

  it('any record of any kind: a RecordError or a record; what is kept of unknown kinds stays within its bounds', () => {
    const kinds = fc.oneof(fc.constantFrom('node', 'rm', 'config', 'net', 'svc', 'keygen', 'quota', 'opaque', ''), fc.string({ maxLength: 40 }));
    const anyRec = fc.record({ k: kinds, name: fc.oneof(fc.constant('n1'), fc.string({ maxLength: 20 })), v: fc.oneof(fc.nat(), fc.integer(), fc.constant('1')), by: fc.oneof(fc.constant('w'), fc.string({ maxLength: 8 })), generation: fc.nat(), pad: fc.string({ maxLength: 3000 }) }, { requiredKeys: [] });
    fc.assert(fc.property(fc.array(anyRec, { maxLength: 600 }), (recs) => {
      const s = new MeshState('self');
      for (const rec of recs) {
        let w;
        try { w = checkRecord({ rec }); } catch (e) { assert.ok(e instanceof RecordError, String(e)); continue; }
        s.apply(w, 0);
      }
      assert.ok(s.opaqueBytes <= OPAQUE_LIMITS.bytes && s.opaque.size <= OPAQUE_LIMITS.count);
      assert.equal(s.opaqueBytes, [...s.opaque.values()].reduce((n, r) => n + r.size, 0));
      for (const r of s.opaque.values()) assert.ok(!['node', 'rm', 'config', 'net', 'svc', 'keygen', 'opaque'].includes(r.kind), r.kind);
    }), { numRuns: 60 });
  });

  it('an older node (protocol 2 only, no keygen, no pursue) between two current ones: leases, networks and claims work, keygen crosses it untouched', async () => {
    // a - old - b: a and b never connect directly, everything between them goes through old.
    const a = await node('a', [], { reachable: (n) => n !== 'b' });
    const old = await node('old', [a], { range: [2, 2], features: [] });
    const b = await node('b', [old], { reachable: (n) => n !== 'a' });
    await eventually(() => a.connected().includes('old') && b.connected().includes('old') && old.connected().length === 2, 10_000, 'a-old-b');
    assert.deepEqual([conn(a, 'old')!.proto, conn(a, 'old')!.speaks, conn(a, 'old')!.feat], [2, '2', []]);
    assert.deepEqual([conn(old, 'b')!.proto, conn(old, 'b')!.speaks, conn(old, 'b')!.feat], [2, '1..2', ['keygen', 'pursue']]);

    const lease = (s: string) => ({ subnet: s, underlayAddr: '192.0.2.1' });
    assert.deepEqual(await a.claim(lease('10.70.1.0/24')), { ok: true });
    assert.deepEqual(await old.claim(lease('10.70.2.0/24')), { ok: true });
    assert.deepEqual(await b.claim(lease('10.70.1.0/24')), { ok: false, holder: 'a' });
    assert.deepEqual(await b.claim(lease('10.70.3.0/24')), { ok: true });
    await eventually(() => [a, old, b].every((n) => ['a', 'old', 'b'].every((m) => !!n.state.nodes.get(m)?.lease)), 10_000, 'every lease everywhere');
    const app = await new MeshNetworks(b, 0).create({ name: 'app', driver: 'overlay', subnets: ['10.71.0.0/24'] });
    await eventually(() => a.state.nets.get('app')?.id === app.id && old.state.nets.get('app')?.id === app.id, 5000, 'b\'s network reaches a through old');

    assert.equal(a.bumpKeyGeneration(null).generation, 1);
    await eventually(() => b.state.keygen?.generation === 1, 5000, 'a\'s key generation reaches b through old');
    assert.equal(old.state.keygen, null, 'old does not interpret it');
    assert.equal(old.state.opaque.get('keygen/keygen')?.v, 1, 'old keeps it whole');
    assert.deepEqual(b.state.keygen, a.state.keygen);

    // status peers: each member's versions (a's record crossed old, which keeps the field).
    const peers = new Map(meshStatus(b).peers.map((p) => [p.name, p.proto]));
    assert.deepEqual(Object.fromEntries(peers), { a: '1..2', b: '1..2', old: '2' });
  });

  it('a peer sending a later record kind, message type and request op stays connected; the record is relayed, saved and answered', async () => {
    const log = recorder();
    const a = await node('a', [], { state: true, log });
    const b = await node('b', [a]);
    await eventually(() => a.connected().includes('b'), 5000, 'a-b');
    const z = raw(a, { name: 'z', proto: 2, max: 3 });
    await eventually(() => z.up && a.connected().includes('z'), 5000, 'z authenticated');
    await eventually(() => z.got.some((m) => m.t === 'digest'), 5000, 'a sends z its digest');
    assert.equal(conn(a, 'z')!.proto, 2);

    const quota = { k: 'quota', name: 'team1', v: 5, by: 'z', limits: { cpu: 4 } };
    z.send({ t: 'upd', records: [{ rec: quota }] });
    z.send({ t: 'gossip3', whatever: [1, 2, 3] });
    z.send({ t: 'gossip3', whatever: [4] });
    z.send({ t: 'req', id: 41, op: 'reserve', claim: { kind: 'subnet', subnet: '10.0.0.0/24' }, v: 1 });
    z.send({ t: 'req', id: 42, op: 'grant', claim: { kind: 'quota', team: 'team1' }, v: 1 });
    z.send({ t: 'fwd', to: 'b', path: ['z'], m: { t: 'later', x: 1 } });
    await eventually(() => z.got.some((m) => m.t === 'res' && m.id === 42), 5000, 'answers');
    assert.deepEqual(z.got.find((m) => m.id === 41), { t: 'res', id: 41, ok: false, unsupported: 'op "reserve"' });
    assert.deepEqual(z.got.find((m) => m.id === 42), { t: 'res', id: 42, ok: false, unsupported: 'claim kind "quota"' });
    await eventually(() => b.state.opaque.get('quota/team1')?.v === 5, 5000, 'the record relayed to b');
    assert.deepEqual(b.state.opaque.get('quota/team1')!.raw, quota, 'as it came');
    assert.ok(a.connected().includes('z') && !z.closed, 'z still connected');
    assert.equal(a.counters.badFrames, 0);
    assert.equal(a.counters.ignoredMessages, 2);
    assert.equal(a.counters.unsupportedOps, 2);
    assert.deepEqual([meshStatus(a).counters.unknownRecordsKept, meshStatus(a).counters.unknownRecordsDropped], [1, 0]);
    assert.equal(log.lines.filter(([l, m]) => l === 'debug' && /z: ignored a message of type "gossip3"/.test(m)).length, 1, 'logged once per type');
    await eventually(() => b.counters.ignoredMessages === 1, 5000, 'b ignores the routed message of a later type');

    // A claim of a voter that cannot vote on it: neither a vote nor a refusal.
    b.stop();
    await eventually(() => !a.connected().includes('b'), 5000, 'b gone');
    await assert.rejects(a.claim({ subnet: '10.72.0.0/24', underlayAddr: '192.0.2.1' }), (e: Error) => e instanceof NoQuorumError && /cannot vote on it \(an older knitd: upgrade it\): z/.test(e.message));

    // Saved with the state, and kept across a restart.
    a.stop();
    nodes.splice(nodes.indexOf(a), 1);
    const again = await node('a', [], { state: true });
    assert.deepEqual(again.state.opaque.get('quota/team1')?.raw, quota);
    const late = await node('late', [again]);
    await eventually(() => late.state.opaque.get('quota/team1')?.v === 5, 5000, 'a late joiner gets it in its sync');
  });

  it('a knitd from before ranges (hello with protocol 1, no range): it talks at version 1 and is never sent a record kind it would not know', async () => {
    const a = await node('a');
    const z = raw(a, { name: 'z', proto: 2, max: 2 });
    await eventually(() => z.up, 5000, 'z up');
    z.send({ t: 'upd', records: [{ rec: { k: 'quota', name: 'q', v: 1, by: 'z' } }] });
    await eventually(() => a.state.opaque.has('quota/q'), 5000, 'a keeps it');
    a.bumpKeyGeneration(null);
    const v1 = raw(a, { name: 'v1', proto: 1, max: undefined, feat: undefined });
    await eventually(() => v1.up && a.connected().includes('v1'), 5000, 'the version-1 peer authenticated');
    assert.deepEqual([conn(a, 'v1')!.proto, conn(a, 'v1')!.speaks, conn(a, 'v1')!.feat], [1, '1', undefined]);
    v1.send({ t: 'digest', d: { n: {}, r: {}, c: null } });
    await eventually(() => v1.got.some((m) => m.t === 'sync'), 5000, 'a syncs v1');
    const kinds = (v1.got.find((m) => m.t === 'sync')!.records as Array<{ rec: { k: string } }>).map((w) => w.rec.k).sort();
    assert.deepEqual(kinds, ['keygen', 'node'], 'its kinds only');
    // A later change of the unknown kind is flooded to z, not to v1.
    z.send({ t: 'upd', records: [{ rec: { k: 'quota', name: 'q', v: 2, by: 'z' } }] });
    const z2 = raw(a, { name: 'z2', proto: 2, max: 2 });
    await eventually(() => z2.up, 5000, 'z2 up');
    z.send({ t: 'upd', records: [{ rec: { k: 'quota', name: 'q', v: 3, by: 'z' } }] });
    await eventually(() => z2.got.some((m) => m.t === 'upd' && JSON.stringify(m).includes('"quota"')), 5000, 'z2 gets the change');
    assert.ok(!v1.got.some((m) => JSON.stringify(m).includes('"quota"')), 'v1 never does');
    assert.ok(a.connected().includes('v1'));
  });

  it('the previous release\'s own MeshNode (version 1, from git) and a current node: one mesh, claims both ways, never sent a later kind', async function () {
    // Its pkg/mesh and the files it imports, as they were (self-contained: node: modules only).
    const dir = path.join(tmp, 'v1');
    fs.mkdirSync(dir, { recursive: true });
    try {
      const tar = execFileSync('git', ['-C', REPO, 'archive', PREVIOUS_RELEASE, 'pkg/mesh', 'pkg/cni/log.ts', 'pkg/ip/ip.ts', 'pkg/hash.ts'], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 });
      execFileSync('tar', ['-x', '-C', dir], { input: tar });
    } catch {
      // A checkout without history (a shallow clone) has no previous release to run.
      console.log(`      skipped: commit ${PREVIOUS_RELEASE.slice(0, 7)} (the version-1 mesh) is not in this checkout's history`);
      this.skip();
    }
    const V1 = require(path.join(dir, 'pkg', 'mesh', 'node.ts')) as { MeshNode: typeof MeshNode };
    const old = new V1.MeshNode({ name: 'old', secret: SECRET, listen: { host: '127.0.0.1', port: 0 }, peers: [], stateDir: null, ttlSec: 30 });
    await old.start();
    nodes.push(old);
    const a = await node('a', [old]);
    const z = raw(a, { name: 'z', proto: 2, max: 2 });
    await eventually(() => a.connected().includes('old') && old.connected().includes('a') && z.up, 10_000, 'a connected to the version-1 node and to z');
    assert.deepEqual([conn(a, 'old')!.proto, conn(a, 'old')!.speaks], [1, '1']);
    z.send({ t: 'upd', records: [{ rec: { k: 'quota', name: 'q', v: 1, by: 'z' } }] });
    await eventually(() => a.state.opaque.has('quota/q'), 5000, 'a keeps z\'s record');
    const lease = (s: string) => ({ subnet: s, underlayAddr: '192.0.2.1' });
    assert.deepEqual(await a.claim(lease('10.74.1.0/24')), { ok: true });
    assert.deepEqual(await old.claim(lease('10.74.1.0/24')), { ok: false, holder: 'a' });
    assert.deepEqual(await old.claim(lease('10.74.2.0/24')), { ok: true });
    a.bumpKeyGeneration(null);
    await eventually(() => old.state.keygen?.generation === 1 && a.state.nodes.get('old')?.lease?.subnet === '10.74.2.0/24' && old.state.nodes.get('a')?.lease?.subnet === '10.74.1.0/24', 5000, `leases and the key generation both ways: ${JSON.stringify([old.state.keygen, a.state.nodes.get('old')?.lease, old.state.nodes.get('a')?.lease, old.counters, a.counters, old.connected()])}`);
    assert.ok(a.connected().includes('old') && old.connected().includes('a'), 'still connected');
    assert.equal(old.counters.badFrames, 0, 'the version-1 node found nothing to refuse');
    assert.equal(meshStatus(a).peers.find((p) => p.name === 'old')!.proto, '1');
    assert.equal(protocolLine(meshStatus(a)), 'mesh protocol: this knitd speaks 1..2; z at 2 (speaking 2); old at 1 (speaking 1: upgrade)');
  });

  it('ranges that do not overlap: refused, one line naming both ranges and who to upgrade (then at debug), not connected', async () => {
    const la = recorder();
    const ln = recorder();
    const a = await node('a', [], { log: la });
    const n = await node('next', [a], { range: [3, 4], log: ln });
    await eventually(() => a.counters.versionRefused >= 2 && n.counters.versionRefused >= 2, 10_000, 'refused, and refused again on the next dial');
    assert.deepEqual(a.connected(), []);
    assert.deepEqual(n.connected(), []);
    const warns = (l: typeof la) => l.lines.filter(([lv, m]) => lv === 'warn' && /refused/.test(m)).map(([, m]) => m.replace(/127\.0\.0\.1:\d+/, 'ADDR'));
    assert.deepEqual(warns(la), ['mesh: refused ADDR: peer next speaks mesh protocol 3..4, this knitd 1..2: upgrade this knitd']);
    assert.deepEqual(warns(ln), ['mesh: refused ADDR: peer a speaks mesh protocol 1..2, this knitd 3..4: upgrade a']);
    assert.ok(la.lines.some(([lv, m]) => lv === 'debug' && /peer next speaks mesh protocol 3..4/.test(m)), 'the next refusals at debug');
    assert.equal(a.state.nodes.has('next'), false, 'nothing it sent is applied');
  });

  it('a stranded grant whose claimer cannot answer the pursue op (an older knitd) is kept: "cannot tell" is never "no" (D23)', async () => {
    const log = recorder();
    const a = await node('a', [], { features: [], strandedMs: 1500, ttl: 3 });
    const b = await node('b', [a], { strandedMs: 1500, ttl: 3, log });
    await eventually(() => a.connected().length === 1 && b.connected().length === 1, 5000, 'a-b');
    const claim: Claim = { kind: 'net', net: { id: 'd'.repeat(64), name: 'ghost', subnets: ['10.73.0.0/24'] } };
    const key = `net/${'d'.repeat(64)}`;
    assert.ok(b.grants.request(claim, 'a', 1, () => false, undefined, a.inc, Date.now() - 10_000).ok);
    await eventually(() => log.lines.some(([, m]) => /a cannot say whether it still pursues/.test(m)), 10_000, 'b asked a, a answered unsupported');
    assert.equal(a.counters.unsupportedOps, 1);
    // Heartbeats later: still held, and not asked again (this incarnation of a cannot tell).
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(b.grants.map.get(key)?.holder, 'a', 'the grant is kept');
    assert.equal(a.counters.unsupportedOps, 1, 'asked once');
  });
});
