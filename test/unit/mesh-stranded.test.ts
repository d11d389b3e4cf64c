// Grants stranded by a claimer that dies mid-race (design D23, docs/mesh.md): four pkg/mesh
// voters in this process on 127.0.0.1, the claimer a child process (test/lab/mesh-dying-claimer.ts)
// that SIGKILLs itself between winning votes and writing the claim's result or giving the votes
// back. Restarted (a new incarnation, the same state dir), it answers 'no' for a claim it no
// longer pursues: every voter drops the grant, its own stale vote goes too, and the name or the
// block can be claimed by another node. Never freed: a claim that completed (a block in the
// claimer's ipam.json: 'done'), nor a live claimer's claim. `node rm` of a dead claimer frees its
// network grants that have no record. The pure parts (suspects, abandoned, removedUnfinished) too.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Grants, type Claim } from '../../pkg/mesh/grants';
import { MeshIpam } from '../../pkg/mesh/ipam';
import { MeshNetworks } from '../../pkg/mesh/networks';
import { MeshNode } from '../../pkg/mesh/node';
import { SpecError } from '../../pkg/network/spec';
import { eventually } from '../lab/mesh-members';

const SECRET = 's3cret-stranded';
const CHILD = path.join(__dirname, '..', 'lab', 'mesh-dying-claimer.ts');

const netClaim = (id: string, name: string, subnet: string): Claim => ({ kind: 'net', net: { id, name, subnets: [subnet] } });
const none = (): boolean => false;

describe('mesh: grants stranded by a claimer that dies mid-race (D23)', function () {
  this.timeout(60_000);
  const nodes: MeshNode[] = [];
  let tmp: string;
  before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'knit-stranded-')); });
  afterEach(() => { for (const n of nodes.splice(0)) n.stop(); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function node(name: string, peers: MeshNode[] = [], o: { stateDir?: string; strandedMs?: number } = {}): Promise<MeshNode> {
    const n = new MeshNode({
      name, secret: Buffer.from(SECRET), listen: { host: '127.0.0.1', port: 0 }, peers: peers.map((p) => `127.0.0.1:${p.listenPort}`),
      stateDir: o.stateDir ?? null, ttlSec: 3, ...(o.strandedMs ? { strandedMs: o.strandedMs } : {}),
    });
    await n.start();
    nodes.push(n);
    return n;
  }

  /** Four voters in a full mesh. */
  async function voters(): Promise<MeshNode[]> {
    const v1 = await node('v1');
    const vs = [v1, await node('v2', [v1]), await node('v3', [v1]), await node('v4', [v1])];
    await eventually(() => vs.every((n) => n.connected().length === 3), 10_000, 'four voters connected');
    return vs;
  }

  /** Runs the dying claimer `c` against the voters until it has killed itself; returns its state dir. */
  async function dyingClaimer(vs: MeshNode[], claim: Claim, when: 'first-grant' | 'won' | 'ungrant', reach?: string[]): Promise<string> {
    const dir = fs.mkdtempSync(path.join(tmp, 'c-'));
    const p = spawn(process.execPath, ['--import', 'tsx', CHILD, 'c', dir, `127.0.0.1:${vs[0]!.listenPort}`, String(reach?.length ?? vs.length), JSON.stringify(claim), when, ...(reach ? [reach.join(',')] : [])],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '', KNIT_TEST_MESH_SECRET: SECRET } });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const sig = await new Promise<NodeJS.Signals | null>((r) => p.once('exit', (_code, s) => r(s)));
    assert.equal(sig, 'SIGKILL', `the claimer died by its own SIGKILL: ${out}`);
    assert.match(out, /voting/);
    return dir;
  }

  const holds = (n: MeshNode, key: string, holder = 'c'): boolean => n.grants.map.get(key)?.holder === holder;

  it('grants: suspects are grants of another incarnation (past a grace) or old ones, not completed, of a holder heard from; abandoned drops only that version', () => {
    const g = new Grants(null);
    const a = netClaim('A', 'app', '10.1.0.0/24');
    const b: Claim = { kind: 'block', netId: 'N', block: '10.2.0.0/28' };
    assert.ok(g.request(a, 'h', 5, none, undefined, 'inc1', 1000).ok);
    assert.ok(g.request(b, 'h', 6, none, undefined, 'inc1', 1000).ok);
    assert.ok(g.request('10.3.0.0/24', 'h', 7, none, undefined, 'inc1', 1000).ok);
    const keys = (now: number, inc: string | undefined, done: (c: Claim) => boolean = none): string[] => g.suspects(now, 60_000, 6000, () => inc, done).map((s) => s.key).sort();
    assert.deepEqual(keys(2000, 'inc1'), [], 'same incarnation, young: none');
    assert.deepEqual(keys(2000, 'inc2'), [], 'new incarnation, within the grace: none');
    assert.deepEqual(keys(8000, 'inc2'), ['block/N/10.2.0.0/28', 'net/A'], 'new incarnation: network and block, never a subnet');
    assert.deepEqual(keys(61_001, 'inc1'), ['block/N/10.2.0.0/28', 'net/A'], 'old grants of the same incarnation');
    assert.deepEqual(keys(61_001, undefined), [], 'a holder not heard from is not asked');
    assert.deepEqual(keys(8000, 'inc2', (c) => c.kind === 'net'), ['block/N/10.2.0.0/28'], 'a completed claim is not suspect');
    // The holder claimed again meanwhile (a higher version): the old answer does not drop it.
    assert.ok(g.request(b, 'h', 9, none, undefined, 'inc2', 9000).ok);
    assert.equal(g.abandoned('block/N/10.2.0.0/28', 'h', 6), false);
    assert.equal(g.abandoned('net/A', 'x', 5), false, 'only the holder\'s grant');
    assert.equal(g.abandoned('net/A', 'h', 5), true);
    // node rm: network grants without a record go, one with a record stays (a network is nobody's).
    assert.ok(g.request(netClaim('B', 'web', '10.4.0.0/24'), 'h', 10, none, undefined, 'inc2', 9000).ok);
    assert.ok(g.request(netClaim('C', 'db', '10.5.0.0/24'), 'h', 11, none, undefined, 'inc2', 9000).ok);
    g.removedUnfinished('h', (c) => c.kind === 'net' && c.net.id === 'B');
    assert.deepEqual(g.claims('net').map((x) => x.key), ['net/B']);
  });

  it('a claimer killed as its first vote comes back, restarted: every voter drops its grant, its own stale vote goes, and another node creates the name', async () => {
    const vs = await voters();
    const claim = netClaim('a'.repeat(64), 'app', '10.50.0.0/24');
    const dir = await dyingClaimer(vs, claim, 'first-grant');
    const key = `net/${'a'.repeat(64)}`;
    await eventually(() => vs.every((v) => holds(v, key)), 5000, 'every voter granted c\'s claim');
    const own = JSON.parse(fs.readFileSync(path.join(dir, 'grants.json'), 'utf8'));
    assert.equal(own[key].holder, 'c', 'the claimer\'s own vote is on its disk');
    // Stranded: c is down, the four voters refuse the name to anyone else.
    await assert.rejects(new MeshNetworks(vs[1]!, 0).create({ name: 'app', driver: 'overlay', subnets: ['10.51.0.0/24'] }),
      (e: Error) => e instanceof SpecError && /conflicts with network app: same name/.test(e.message));
    // Restarted: a new incarnation with the same state dir, not pursuing the claim.
    const c = await node('c', [vs[0]!], { stateDir: dir });
    await eventually(() => vs.every((v) => !holds(v, key)), 15_000, 'every voter dropped c\'s stranded grant');
    await eventually(() => !c.grants.map.has(key), 5000, 'c dropped its own stale vote');
    assert.ok(!JSON.parse(fs.readFileSync(path.join(dir, 'grants.json'), 'utf8'))[key], 'and from its disk');
    const app = await new MeshNetworks(vs[1]!, 0).create({ name: 'app', driver: 'overlay', subnets: ['10.51.0.0/24'] });
    await eventually(() => c.state.nets.get('app')?.id === app.id, 5000, 'the new app reaches c');
  });

  it('a lost race (the claimer dies as it gives its votes back): the voter that granted drops it once the claimer is back', async () => {
    const vs = await voters();
    const claim = netClaim('b'.repeat(64), 'lost', '10.52.0.0/24');
    // c reaches only v1: 2 of 5 votes, no quorum; it dies before its ungrant.
    const dir = await dyingClaimer(vs, claim, 'ungrant', ['v1']);
    const key = `net/${'b'.repeat(64)}`;
    assert.ok(holds(vs[0]!, key), 'v1 holds the grant of the lost race');
    await node('c', [vs[0]!], { stateDir: dir });
    await eventually(() => !holds(vs[0]!, key), 15_000, 'v1 dropped the stranded grant');
  });

  it('an address block: killed after winning, freed on restart; completed (in the restarted claimer\'s ipam.json), kept: the block stays refused to others', async () => {
    const vs = await voters();
    const stranded: Claim = { kind: 'block', netId: 'n'.repeat(64), block: '10.60.0.0/28' };
    const dir = await dyingClaimer(vs, stranded, 'won');
    const key = 'block/' + 'n'.repeat(64) + '/10.60.0.0/28';
    assert.ok(vs.every((v) => holds(v, key)));
    await assert.rejects(vs[1]!.vote(stranded, vs[1]!.version()).then((r) => { if (!r.ok) throw new Error(`refused, held by ${r.holder}`); }), /held by c/);
    // Restarted with a MeshIpam whose ipam.json holds another block (completed before the crash).
    const kept: Claim = { kind: 'block', netId: 'n'.repeat(64), block: '10.60.0.16/28' };
    for (const v of vs) assert.ok(v.grants.request(kept, 'c', 1, none, undefined, 'old-incarnation', Date.now() - 60_000).ok);
    fs.writeFileSync(path.join(dir, 'ipam.json'), JSON.stringify({ ['n'.repeat(64)]: { name: 'x', blocks: [{ lo: '0', hi: '0', text: '10.60.0.16/28' }], allocs: {} } }));
    const c = await node('c', [vs[0]!], { stateDir: dir });
    new MeshIpam(c, dir);
    assert.equal(c.pursuit(kept), 'done');
    assert.equal(c.pursuit(stranded), 'no');
    await eventually(() => vs.every((v) => !holds(v, key)), 15_000, 'the stranded block freed everywhere');
    // Several heartbeats later the completed one is still held: asked, answered 'done', kept.
    await new Promise((r) => setTimeout(r, 3000));
    const kkey = 'block/' + 'n'.repeat(64) + '/10.60.0.16/28';
    assert.ok(vs.every((v) => holds(v, kkey)), 'a completed block is never freed');
    const r = await vs[1]!.vote(stranded, vs[1]!.version());
    assert.equal(r.ok, true, 'another node claims the freed block');
    const r2 = await vs[2]!.vote(kept, vs[2]!.version());
    assert.equal(r2.ok, false);
  });

  it('a live claimer: a grant whose ungrant was lost is dropped once old (it answers no); a claim being voted is answered yes', async () => {
    const a = await node('a', [], { strandedMs: 1500 });
    const b = await node('b', [a], { strandedMs: 1500 });
    await eventually(() => a.connected().length === 1 && b.connected().length === 1, 5000, 'a-b');
    const claim = netClaim('d'.repeat(64), 'ghost', '10.53.0.0/24');
    // b's record of a grant to a's claim that a gave up (its ungrant never arrived).
    const incA = (a as unknown as { inc: string }).inc;
    assert.ok(b.grants.request(claim, 'a', 1, none, undefined, incA, Date.now()).ok);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(holds(b, `net/${'d'.repeat(64)}`, 'a'), 'kept while younger than strandedMs');
    await eventually(() => !holds(b, `net/${'d'.repeat(64)}`, 'a'), 5000, 'dropped once old');
    // Being voted: 'yes' (while the vote waits for a quorum that cannot come in time).
    const p = a.vote(netClaim('e'.repeat(64), 'busy', '10.54.0.0/24'), a.version(), 300);
    assert.equal(a.pursuit(netClaim('e'.repeat(64), 'busy', '10.54.0.0/24')), 'yes');
    await p;
  });

  it('node rm of a dead claimer frees its network grants that have no record; a network it created stays', async () => {
    const vs = await voters();
    const web = await new MeshNetworks(vs[0]!, 0).create({ name: 'web', driver: 'overlay', subnets: ['10.55.0.0/24'] });
    await eventually(() => vs.every((v) => v.state.nets.get('web')?.id === web.id), 5000, 'web everywhere');
    const claim = netClaim('f'.repeat(64), 'orphan', '10.56.0.0/24');
    await dyingClaimer(vs, claim, 'won');
    const key = `net/${'f'.repeat(64)}`;
    assert.ok(vs.every((v) => holds(v, key)));
    // c's record is in the replica (it published it): node rm removes it.
    await eventually(() => vs[2]!.state.nodes.has('c'), 5000, 'v3 knows c');
    assert.equal(vs[2]!.removeNode('c') !== null, true);
    await eventually(() => vs.every((v) => !holds(v, key)), 5000, 'every voter dropped the orphan claim');
    const orphan = await new MeshNetworks(vs[3]!, 0).create({ name: 'orphan', driver: 'overlay', subnets: ['10.56.0.0/24'] });
    assert.equal(orphan.name, 'orphan');
    assert.equal(vs[1]!.state.nets.get('web')?.net?.id, web.id, 'web stays');
    await assert.rejects(new MeshNetworks(vs[1]!, 0).create({ name: 'web', driver: 'overlay', subnets: ['10.57.0.0/24'] }), /already exists|same name/);
  });
});
