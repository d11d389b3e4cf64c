// One knitd's end of the mesh (docs/mesh.md): a TCP listener and dialer, authenticated
// connections (auth.ts), the replicated state (state.ts) kept by pushing every change to every
// connected peer and by a full sync on each new connection (a late joiner catches up), peer
// discovery (each node publishes its connections with dialable addresses, and every node dials
// the members it is not connected to: a chain becomes a full mesh), and subnet claims that need
// a majority of the known members (grants.ts). Known members, grants and the state are kept
// under the state dir, so a restarted node (or one on the minority side of a partition) still
// knows how many votes a claim needs.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Logger } from '../cni/log';
import { nullLogger } from '../cni/log';
import { checkHello, FEATURES, frameTag, NAME_RE, negotiate, newIncarnation, newNonce, proof, PROTO_MAX, PROTO_MIN, PROTO_TOLERANT, rangeMismatch, rangeText, sessionKey, TAG_LEN, verifyProof, type Hello, type Role } from './auth';
import { encodeFrame, FrameError, FrameReader, MAX_FRAME, parseMessage } from './frame';
import { bfs, buildGraph, chosen, DEFAULT_FANOUT, DEFAULT_FULL_MESH, floodsTo, forwards, nextHop, type Dist, type Graph } from './topology';
import type { Endpoint } from '../network/store';
import { checkClaim, claimKey, claimText, conflicts as conflictsOf, Grants, type Claim, type Grant, type Pursuit, type Vote } from './grants';
import { applyDelta, checkDelta, checkDigest, checkRecord, deltaOf, MeshState, RecordError, sendable, svcKey, V1_KINDS, type ConnInfo, type MeshLease, type MeshRecord, type NetRecord, type NodeDelta, type NodeIpamView, type SvcRecord, type NodeRecord, type StateChange, type WireRecord } from './state';
import type { NodeEnc } from './state';

export const DEFAULT_MESH_PORT = 6788;
const HANDSHAKE_MS = 5000;
const REQUEST_MS = 3000;
const MAX_PENDING_HANDSHAKES = 64;
const STRANDED_MS = 60_000;
/** A grant of an earlier incarnation of its claimer is checked once it is this old (past any vote's requests). */
const STRANDED_MIN_MS = 2 * REQUEST_MS;

export interface MeshOptions {
  name: string;
  secret: Buffer;
  /** Where to listen; port 0 picks one (tests). */
  listen: { host: string; port: number };
  /** host:port addresses to dial first (--peers). */
  peers: string[];
  /** Where members, grants and the state are kept; null keeps nothing (tests). */
  stateDir: string | null;
  ttlSec: number;
  log?: Logger;
  /** Tests: whether a peer may be talked to (a simulated partition); default every peer. */
  reachable?: (name: string) => boolean;
  /** A grant older than this whose claim shows no result is checked with its claimer (D23); default 60 s. */
  strandedMs?: number;
  /** Members each node chooses to connect to above a full mesh (topology.ts); default 8. */
  fanout?: number;
  /** Live members up to which every pair is connected (topology.ts); default 64. */
  fullMesh?: number;
  /** Tests: the protocol versions this node speaks (default PROTO_MIN..PROTO_MAX), to act as an older or newer knitd. */
  protoRange?: [number, number];
  /** Tests: the features (auth.ts FEATURES) this node has; one left out acts as a knitd from before it (its records kept opaque, its op unsupported). */
  features?: string[];
}

/** Hops a routed message may take (the mesh's diameter is a few at hundreds of members). */
const MAX_HOPS = 16;

export interface ConnStatus {
  dir: 'in' | 'out';
  /** The address dialed, or the remote address of an inbound connection. */
  addr: string;
  state: 'handshake' | 'established' | 'connecting' | 'retrying';
  name?: string;
  inc?: string;
  /** The protocol version the connection uses, and the range and features the peer said it has. */
  proto?: number;
  speaks?: string;
  feat?: string[];
  since: string;
  error?: string;
}

export interface MeshCounters {
  authFailed: number;
  badFrames: number;
  handshakeTimeouts: number;
  duplicates: number;
  refusedBusy: number;
  /** Connections that closed in the middle of a frame. */
  truncated: number;
  /** Peers refused because their protocol versions and this node's do not overlap. */
  versionRefused: number;
  /** Messages of a type this node does not know (a later knitd's), ignored. */
  ignoredMessages: number;
  /** Requests with an op or claim kind this node does not know, answered `unsupported`. */
  unsupportedOps: number;
}

export class NoQuorumError extends Error {}

/** Why a network claim conflicts with a network record (another network), or null. */
function conflictsWithNetwork(c: Claim & { kind: 'net' }, r: NetRecord): string | null {
  const n = r.net!;
  return conflictsOf(c, { kind: 'net', net: { id: n.id, name: n.name, subnets: n.subnets.map((s) => s.subnet), ...(n.options.vni !== undefined ? { vni: n.options.vni } : {}) } });
}

/** Whether a node's connections (by name) differ between two of its versions. */
function connsChanged(a: NodeRecord | null, b: NodeRecord): boolean {
  if (!a || a.conns.length !== b.conns.length) return true;
  const was = new Set(a.conns.map((c) => c.name));
  return b.conns.some((c) => !was.has(c.name));
}

const isName = (x: unknown): x is string => typeof x === 'string' && NAME_RE.test(x);
/** The claim kinds this code votes on (grants.ts checkClaim); another is answered `unsupported`. */
const CLAIM_KINDS: ReadonlySet<string> = new Set(['subnet', 'block', 'vip', 'net']);

/** A routed message (`fwd`): for `to`, through `path` (its origin first), along `via` when source-routed (an answer going back). */
interface Fwd { to: string; path: string[]; via?: string[]; m: Record<string, unknown> & { t: string } }

function checkFwd(m: Record<string, unknown>): Fwd {
  const names = (x: unknown): x is string[] => Array.isArray(x) && x.length <= MAX_HOPS && x.every(isName);
  const inner = m.m as Record<string, unknown> | undefined;
  // Any inner type: a later knitd's is relayed to the peers that keep what they do not know.
  if (!isName(m.to) || !names(m.path) || !m.path.length || (m.via !== undefined && !names(m.via)) || !inner || typeof inner !== 'object' || typeof inner.t !== 'string') throw new FrameError('bad routed message');
  return m as unknown as Fwd;
}

/** host:port, brackets for IPv6, IPv4-mapped IPv6 as IPv4. */
export function joinHostPort(host: string, port: number): string {
  const h = host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}

/** HOST, HOST:PORT or [V6]:PORT, with the default port. */
export function parseHostPort(s: string, dfltPort = DEFAULT_MESH_PORT): { host: string; port: number } {
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(s) ?? /^([^:[\]\s]+)(?::(\d+))?$/.exec(s);
  if (!m) throw new Error(`${JSON.stringify(s)}: HOST, HOST:PORT or [IPV6]:PORT`);
  const port = m[2] === undefined ? dfltPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${JSON.stringify(s)}: port ${m[2]} out of range`);
  return { host: m[1]!, port };
}

class Conn {
  readonly reader = new FrameReader();
  state: 'handshake' | 'up' | 'closed' = 'handshake';
  mine: Hello;
  theirs?: Hello;
  key?: Buffer;
  seqOut = 0;
  seqIn = 0;
  since = new Date();
  /** When the last frame arrived: a peer's record comes at least every ttl/3, so silence means the path is gone. */
  lastRx = Date.now();
  /** Dialable address of the other end, once known. */
  addr: string;
  timer: NodeJS.Timeout;
  /** The dial target this connection was made for (outbound). */
  target?: Target;
  /** The protocol version in use (once authenticated): the highest both ends speak. */
  ver = 0;
  /** Message types of a later knitd ignored on this connection (logged once each). */
  ignored?: Set<string>;

  constructor(readonly sock: net.Socket, readonly role: Role, mine: Hello, addr: string, onTimeout: () => void) {
    this.mine = mine;
    this.addr = addr;
    this.timer = setTimeout(onTimeout, HANDSHAKE_MS);
  }

  get remote(): string { return joinHostPort(this.sock.remoteAddress ?? '?', this.sock.remotePort ?? 0); }
  get name(): string | undefined { return this.theirs?.name; }

  sendRaw(m: object): void {
    if (this.state === 'closed') return;
    this.sock.write(encodeFrame(Buffer.from(JSON.stringify(m))));
  }

  send(m: object | Buffer): void {
    if (this.state !== 'up') return;
    const payload = Buffer.isBuffer(m) ? m : Buffer.from(JSON.stringify(m));
    const tag = frameTag(this.key!, this.role, this.seqOut++, payload);
    // The frames of one turn of the event loop in one write (a relay forwards bursts).
    if (!this.corked) { this.corked = true; this.sock.cork(); process.nextTick(() => { this.corked = false; this.sock.uncork(); }); }
    this.sock.write(encodeFrame(Buffer.concat([tag, payload])));
  }

  private corked = false;
}

interface Target { addr: string; attempts: number; timer: NodeJS.Timeout | null; conn: Conn | null; error?: string; since: Date; self?: boolean; /** Named in --peers: always kept. */ pinned?: boolean; /** The member expected there. */ name?: string }

export class MeshNode {
  readonly inc = newIncarnation();
  readonly state: MeshState;
  readonly grants: Grants;
  readonly counters: MeshCounters = { authFailed: 0, badFrames: 0, handshakeTimeouts: 0, duplicates: 0, refusedBusy: 0, truncated: 0, versionRefused: 0, ignoredMessages: 0, unsupportedOps: 0 };
  /** The protocol versions this node speaks, and what it knows beyond version 1 (auth.ts). */
  readonly range: [number, number];
  readonly features: ReadonlySet<string>;
  /** The record kinds this node interprets (others are kept opaque). */
  private readonly kinds: ReadonlySet<string>;
  private readonly log: Logger;
  private server?: net.Server;
  private readonly conns = new Set<Conn>();
  /** Authenticated connections by peer name. */
  private readonly byName = new Map<string, Conn>();
  private readonly targets = new Map<string, Target>();
  /** Requests awaiting an answer: the connection they left on and the member they are for. */
  private readonly pending = new Map<number, ((m: Record<string, unknown> | null) => void) & { conn: Conn; to: string }>();
  private reqId = 0;
  private clock = 0;
  private lease: MeshLease | null = null;
  /** This node's endpoints on named networks, published in its record. */
  private eps: Endpoint[] = [];
  /** Encrypted named networks: set by the agent once its SAs are in (not restored on restart: the agent sets it again). */
  private enc: NodeEnc | undefined;
  /** Attachments holding addresses from this node's blocks, by network (published for `network rm`). */
  private held: Record<string, string[]> = {};
  /** This node's blocks and addresses per network, published for `knitctl ipam ls`. */
  private ipamView: Record<string, NodeIpamView> = {};
  private ttl: number;
  private claiming = 0;
  private publishTimer: NodeJS.Timeout | null = null;
  private saveTimer: NodeJS.Timeout | null = null;
  private heartbeat?: NodeJS.Timeout;
  private stopped = false;
  private synced = false;
  private readonly syncWaiters: Array<() => void> = [];
  private readonly listeners = new Set<(c: StateChange) => void>();
  listenPort = 0;
  /** Bytes written on connections since closed (bytesOut). */
  private bytesClosed = 0;

  constructor(private readonly o: MeshOptions) {
    this.log = o.log ?? nullLogger;
    this.range = o.protoRange ?? [PROTO_MIN, PROTO_MAX];
    this.features = new Set(o.features ?? FEATURES);
    this.kinds = new Set([...V1_KINDS].filter((k) => k !== 'keygen' || this.features.has('keygen')));
    this.ttl = o.ttlSec;
    this.state = new MeshState(o.name);
    this.grants = new Grants(o.stateDir ? path.join(o.stateDir, 'grants.json') : null);
    this.load();
  }

  private get stateFile(): string | null { return this.o.stateDir ? path.join(this.o.stateDir, 'state.json') : null; }

  /** The persisted state: known members (their last records), removals, config, our clock. */
  private load(): void {
    const f = this.stateFile;
    if (!f) return;
    let raw: { clock?: number; savedAt?: number; records?: unknown[] };
    try { raw = JSON.parse(fs.readFileSync(f, 'utf8')); } catch { return; }
    const elapsed = Math.max(0, Date.now() - (raw.savedAt ?? Date.now()));
    for (const w of raw.records ?? []) {
      try {
        const r = checkRecord(w, this.kinds);
        if (r.age !== undefined) r.age += elapsed;
        this.state.apply(r, Date.now());
      } catch { /* skip a damaged entry */ }
    }
    this.clock = Math.max(this.clock, raw.clock ?? 0);
    const own = this.state.nodes.get(this.o.name);
    if (own) { this.clock = Math.max(this.clock, own.v); this.lease = own.lease; this.eps = own.eps ?? []; this.held = own.held ?? {}; this.ipamView = own.ipam ?? {}; }
    this.clock = Math.max(this.clock, this.state.removedAt(this.o.name));
  }

  private scheduleSave(): void {
    if (!this.stateFile || this.saveTimer || this.stopped) return;
    this.saveTimer = setTimeout(() => { this.saveTimer = null; this.saveNow(); }, 200);
  }

  private saveNow(): void {
    const f = this.stateFile;
    if (!f) return;
    try {
      fs.mkdirSync(path.dirname(f), { recursive: true });
      const tmp = `${f}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify({ clock: this.clock, savedAt: Date.now(), records: this.state.records(Date.now()) }));
      fs.renameSync(tmp, f);
    } catch (e) { this.log.warn(`mesh: cannot save state: ${(e as Error).message}`); }
  }

  /** A version above every one this node used, its own record's and any removal of it. */
  private nextVersion(): number {
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  onChange(fn: (c: StateChange) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async start(): Promise<void> {
    this.server = net.createServer((s) => this.accept(s));
    this.server.on('error', (e) => this.log.error(`mesh: listener: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.o.listen.port, this.o.listen.host, () => { this.server!.off('error', reject); resolve(); });
    });
    this.listenPort = (this.server.address() as net.AddressInfo).port;
    this.publishSelf();
    for (const p of this.o.peers) this.addTarget(p).pinned = true;
    this.dialKnown();
    this.heartbeat = setInterval(() => { this.publishSelf(); this.closeSilent(); this.pullStale(); this.dialKnown(); this.checkStranded(); }, Math.max(1, Math.floor(this.ttl / 3)) * 1000);
    this.heartbeat.unref?.();
    this.log.info(`mesh: node ${this.o.name} (incarnation ${this.inc}) listening on ${joinHostPort(this.o.listen.host, this.listenPort)}; ${this.state.members().length} known member(s)`);
  }

  stop(): void {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.publishTimer) clearTimeout(this.publishTimer);
    if (this.dialTimer) clearTimeout(this.dialTimer);
    if (this.saveTimer) { clearTimeout(this.saveTimer); this.saveTimer = null; }
    this.saveNow();
    for (const t of this.targets.values()) if (t.timer) clearTimeout(t.timer);
    for (const c of this.conns) this.close(c);
    this.server?.close();
    for (const p of this.pending.values()) p(null);
  }

  /** Resolves once this node has the mesh's state: at once when it knows no other member and has no --peers, else after the first sync. */
  /** No --peers and no other known member: the first node of a new mesh. */
  private alone(): boolean {
    return this.o.peers.length === 0 && this.state.members().every((m) => m === this.o.name);
  }

  ready(timeoutMs: number): Promise<void> {
    if (this.synced || this.alone()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new NoQuorumError(`mesh: no peer reached yet (--peers ${this.o.peers.join(',') || '-'}, ${this.state.members().length - 1} other known member(s))`)), timeoutMs);
      this.syncWaiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  // ---- connections ----

  private hello(): Hello {
    // proto is the lowest version: a knitd from before ranges (it accepts its own version only) reads it as its own.
    return { t: 'hello', proto: this.range[0], max: this.range[1], feat: [...this.features].sort(), name: this.o.name, inc: this.inc, nonce: newNonce(), port: this.listenPort };
  }

  private accept(s: net.Socket): void {
    if (this.stopped) { s.destroy(); return; }
    const handshakes = [...this.conns].filter((c) => c.state === 'handshake' && c.role === 'accept').length;
    if (handshakes >= MAX_PENDING_HANDSHAKES) { this.counters.refusedBusy++; s.destroy(); return; }
    const c = this.setup(s, 'accept', joinHostPort(s.remoteAddress ?? '?', s.remotePort ?? 0));
    c.sendRaw(c.mine);
  }

  private setup(s: net.Socket, role: Role, addr: string, target?: Target): Conn {
    const c = new Conn(s, role, this.hello(), addr, () => {
      if (c.state !== 'handshake') return;
      this.counters.handshakeTimeouts++;
      this.log.warn(`mesh: ${c.remote}: no handshake within ${HANDSHAKE_MS} ms; closing`);
      this.close(c);
    });
    this.conns.add(c);
    if (target) c.target = target;
    s.setNoDelay(true);
    s.setKeepAlive(true, 5000);
    s.on('data', (d: Buffer) => this.onData(c, d));
    s.on('error', (e) => { if (target) target.error = e.message; });
    s.on('close', () => this.onClose(c, target));
    return c;
  }

  private onData(c: Conn, d: Buffer): void {
    if (c.state === 'closed') return;
    c.lastRx = Date.now();
    try {
      c.reader.add(d);
      for (let f = c.reader.next(); f; f = c.reader.next()) {
        this.onFrame(c, f);
        if ((c.state as string) === 'closed') return;
      }
    } catch (e) {
      if (e instanceof FrameError || e instanceof RecordError) {
        this.counters.badFrames++;
        this.log.warn(`mesh: ${c.remote}${c.name ? ` (${c.name})` : ''}: ${e.message}; closing`);
      } else {
        this.log.error(`mesh: ${c.remote}: ${(e as Error).stack ?? e}; closing`);
      }
      this.close(c);
    }
  }

  private onFrame(c: Conn, f: Buffer): void {
    if (c.state === 'up') {
      if (f.length <= TAG_LEN) throw new FrameError('frame too short for its tag');
      const payload = f.subarray(TAG_LEN);
      const want = frameTag(c.key!, c.role === 'dial' ? 'accept' : 'dial', c.seqIn, payload);
      if (!want.equals(f.subarray(0, TAG_LEN))) throw new FrameError('frame tag does not verify (tampered, replayed or out of order)');
      c.seqIn++;
      return this.onMessage(c, parseMessage(payload));
    }
    const m = parseMessage(f);
    if (!c.theirs) {
      try { c.theirs = checkHello(m); } catch (e) { throw new FrameError((e as Error).message); }
      const ver = negotiate(this.range, c.theirs);
      if (ver === null) { this.refuseVersion(c, c.theirs); return; }
      c.ver = ver;
      c.sendRaw({ t: 'auth', mac: proof(this.o.secret, c.role, c.mine, c.theirs) });
      return;
    }
    if (m.t !== 'auth') throw new FrameError(`expected auth, got ${JSON.stringify(m.t).slice(0, 40)}`);
    const theirRole: Role = c.role === 'dial' ? 'accept' : 'dial';
    if (!verifyProof(this.o.secret, theirRole, c.theirs, c.mine, m.mac)) {
      this.counters.authFailed++;
      this.log.warn(`mesh: refused ${c.remote} (says it is node ${c.theirs.name}): authentication failed, wrong or missing --mesh-password; nothing it sent is applied`);
      this.close(c);
      return;
    }
    this.authenticated(c);
  }

  /** Peers (name and range) whose refusal was logged at warn: a peer dials again every 2 s. */
  private readonly refusedLogged = new Set<string>();

  /** A peer whose protocol versions do not overlap this node's: one clear line (then debug), and closed. */
  private refuseVersion(c: Conn, h: Hello): void {
    this.counters.versionRefused++;
    const key = `${h.name}/${rangeText(h)}`;
    const line = `mesh: refused ${c.remote}: ${rangeMismatch(this.range, h)}`;
    // Before authentication anyone can send a hello: past 1024 distinct ones, debug only.
    if (this.refusedLogged.has(key) || this.refusedLogged.size >= 1024) this.log.debug(line);
    else { this.refusedLogged.add(key); this.log.warn(line); }
    this.close(c);
  }

  private authenticated(c: Conn): void {
    const t = c.theirs!;
    clearTimeout(c.timer);
    if (t.name === this.o.name) {
      if (t.inc !== this.inc) this.log.error(`mesh: ${c.remote} is another node called ${t.name} (incarnation ${t.inc}): node names must be unique; closing`);
      for (const tg of this.targets.values()) if (tg.conn === c) tg.self = true;
      this.close(c);
      return;
    }
    if (this.o.reachable && !this.o.reachable(t.name)) { this.close(c); return; }
    const [dialer, acceptor] = c.role === 'dial' ? [c.mine, t] : [t, c.mine];
    c.key = sessionKey(this.o.secret, dialer, acceptor);
    c.reader.max = MAX_FRAME;
    if (c.role === 'accept') c.addr = joinHostPort(c.sock.remoteAddress ?? '?', t.port);
    const old = this.byName.get(t.name);
    if (old && old.state === 'up') {
      // Two connections to one peer (both dialed at once): keep the one the smaller name dialed,
      // the same choice on both ends; a new incarnation replaces the old one.
      const keepNew = old.theirs!.inc !== t.inc || (c.role === 'dial' ? this.o.name < t.name : t.name < this.o.name);
      this.counters.duplicates++;
      if (!keepNew) { this.close(c); return; }
      this.byName.delete(t.name);
      this.close(old);
    }
    c.state = 'up';
    c.since = new Date();
    if (c.target) c.target.name = t.name;
    this.byName.set(t.name, c);
    this.topoEpoch++;
    this.log.info(`mesh: connected to ${t.name} (${c.role === 'dial' ? '->' : '<-'} ${c.remote}), protocol ${c.ver} (it speaks ${rangeText(t)})`);
    this.schedulePublish();
    // Anti-entropy: each side says what it has, the other answers with what it lacks. Before its
    // first sync a node asks one peer at a time: dialing all of --peers at once, an empty digest
    // on each connection would bring the whole state from every one of them (at 200 members, a
    // record with 199 connections from each of 199 peers: 400 MB, the mesh did not form).
    if (!this.synced && this.syncConn?.state === 'up') this.digestWait.add(c);
    else { if (!this.synced) this.syncConn = c; c.send({ t: 'digest', d: this.state.digest() }); }
    this.refusedLogged.delete(`${t.name}/${rangeText(t)}`);
  }

  /** The connection this node's first sync is asked on, and those waiting for it to finish. */
  private syncConn: Conn | null = null;
  private readonly digestWait = new Set<Conn>();

  /** Sends the digests held back for the first sync: after it, or to the next peer if its connection closed first. */
  private flushDigests(): void {
    for (const c of this.digestWait) {
      this.digestWait.delete(c);
      if (c.state !== 'up') continue;
      c.send({ t: 'digest', d: this.state.digest() });
      if (!this.synced) { this.syncConn = c; return; }
    }
  }

  /**
   * Closes connections silent for a lease time: TCP would keep them "established" through a
   * partition for many minutes; closed, they are dialed again and resynced when the path heals.
   */
  private closeSilent(): void {
    const now = Date.now();
    for (const c of this.byName.values()) {
      if (now - c.lastRx > Math.max(this.ttl * 1000, 3000)) {
        this.log.warn(`mesh: nothing from ${c.name} (${c.remote}) for ${Math.round((now - c.lastRx) / 1000)} s; closing to dial again`);
        this.close(c);
      }
    }
  }

  /**
   * Asks one peer (each time the next) for the records of members not heard from for half their
   * lease time: a heartbeat travels along a tree, and a node every view leaves out of it (views
   * that disagree for long) would otherwise hear nothing, and expire the owner, until the views
   * agree. A peer answers with the versions it has (newer ones are applied and forwarded).
   */
  private pullStale(): void {
    const peers = [...this.byName.values()];
    if (!peers.length) return;
    const now = Date.now();
    const stale = this.state.members().filter((m) => {
      const h = this.state.heard.get(m);
      const n = this.state.nodes.get(m)!;
      return m !== this.o.name && h !== undefined && now - h > (n.ttl * 1000) / 2 && now - h < n.ttl * 2000;
    });
    if (stale.length) peers[this.pullTurn++ % peers.length]!.send({ t: 'want', names: stale.slice(0, 4096) });
  }

  private pullTurn = 0;

  private onClose(c: Conn, target?: Target): void {
    const was = c.state;
    this.bytesClosed += c.sock.bytesWritten;
    if (c.reader.pending > 0) {
      this.counters.truncated++;
      this.log.warn(`mesh: ${c.remote}${c.name ? ` (${c.name})` : ''}: connection closed in the middle of a frame (${c.reader.pending} byte(s) pending)`);
    }
    c.state = 'closed';
    clearTimeout(c.timer);
    this.conns.delete(c);
    this.digestWait.delete(c);
    if (c === this.syncConn) { this.syncConn = null; if (!this.synced) this.flushDigests(); }
    if (c.name && this.byName.get(c.name) === c) {
      this.byName.delete(c.name);
      this.topoEpoch++;
      this.log.info(`mesh: connection to ${c.name} (${c.remote}) closed`);
      this.schedulePublish();
    }
    // Requests on this connection will get no answer: settle them now, not at their timeout.
    for (const [id, p] of this.pending) if (p.conn === c) { this.pending.delete(id); p(null); }
    if (target && target.conn === c) {
      target.conn = null;
      if (was === 'up') target.attempts = 0;
      // A target dropped from the topology (dialKnown) is not dialed again.
      if (this.targets.get(target.addr) === target) this.scheduleDial(target);
    }
  }

  private close(c: Conn): void {
    if (c.state === 'closed') return;
    c.state = 'closed';
    c.sock.destroy();
  }

  // ---- dialing ----

  private addTarget(addr: string): Target {
    let t = this.targets.get(addr);
    if (!t) {
      t = { addr, attempts: 0, timer: null, conn: null, since: new Date() };
      this.targets.set(addr, t);
    }
    return t;
  }

  /** Members each node chooses above a full mesh (topology.ts). */
  get fanout(): number { return this.o.fanout ?? DEFAULT_FANOUT; }

  /** Live members up to which the mesh is full. */
  get fullMesh(): number { return this.o.fullMesh ?? DEFAULT_FULL_MESH; }

  /** The live members (this node included): what the topology is chosen among. */
  private liveMembers(now = Date.now()): string[] {
    const m = this.state.members().filter((x) => x === this.o.name || this.state.live(x, now));
    if (!m.includes(this.o.name)) m.push(this.o.name);
    return m;
  }

  /**
   * Dials the members the topology gives this node (every member up to fullMesh of them: a full
   * mesh; above, its ring neighbours and its lightest pairs, topology.ts) at the addresses their
   * peers publish, and closes a connection it dialed that neither end chose any more (not one to
   * --peers, and not in its first seconds: views settle while a mesh forms).
   */
  private dialKnown(): void {
    if (this.stopped) return;
    if (this.dialTimer) { clearTimeout(this.dialTimer); this.dialTimer = null; }
    const now = Date.now();
    const live = this.liveMembers(now);
    const want = chosen(this.o.name, live, this.fanout, this.fullMesh);
    const missing = new Set([...want].filter((n) => !this.byName.has(n)));
    // Every chosen member connected (the usual case): nothing to look up in members' connection lists.
    if (missing.size) {
      for (const n of this.state.nodes.values()) {
        for (const ci of n.conns) {
          if (!missing.has(ci.name)) continue;
          missing.delete(ci.name);
          const fresh = !this.targets.has(ci.addr);
          const t = this.addTarget(ci.addr);
          t.name ??= ci.name;
          // Both ends chose each other and learn of it at once: the smaller name dials, the other
          // only if no connection came within 2 s (so a one-way firewall still connects them). A
          // node lacking most of its connections (a joiner) dials at once.
          if (fresh && ci.name < this.o.name && this.byName.size * 2 >= want.size && chosen(ci.name, live, this.fanout, this.fullMesh).has(this.o.name)) { t.timer = setTimeout(() => { t.timer = null; this.dial(t); }, 2000); t.timer.unref?.(); }
        }
      }
    }
    if (this.synced && live.length > Math.max(this.fanout + 1, this.fullMesh)) {
      for (const c of [...this.byName.values()]) {
        if (c.role !== 'dial' || want.has(c.name!) || c.target?.pinned || now - c.since.getTime() < 5000) continue;
        if (chosen(c.name!, live, this.fanout, this.fullMesh).has(this.o.name)) continue;
        this.log.info(`mesh: closing the connection to ${c.name}: neither end chose it (${live.length} live members, fanout ${this.fanout})`);
        if (c.target) this.forget(c.target);
        this.close(c);
      }
      for (const t of [...this.targets.values()]) if (!t.pinned && !t.conn && t.name && !want.has(t.name)) this.forget(t);
    }
    const connected = new Set([...this.byName.values()].map((c) => c.addr));
    for (const t of this.targets.values()) if (!t.conn && !t.timer && !t.self && !connected.has(t.addr)) this.dial(t);
  }

  /** Drops a dial target: not dialed again. */
  private forget(t: Target): void {
    if (t.timer) { clearTimeout(t.timer); t.timer = null; }
    if (this.targets.get(t.addr) === t) this.targets.delete(t.addr);
  }

  /** Whether this node is connected to every member the topology gives it (benchmarks, tests). */
  formed(): boolean {
    for (const n of chosen(this.o.name, this.liveMembers(), this.fanout, this.fullMesh)) if (!this.byName.has(n)) return false;
    return true;
  }

  private dialTimer: NodeJS.Timeout | null = null;

  /** dialKnown once for a burst of records (it walks every member's connections). */
  private scheduleDialKnown(): void {
    if (this.dialTimer || this.stopped) return;
    this.dialTimer = setTimeout(() => { this.dialTimer = null; this.dialKnown(); }, 200);
  }

  private scheduleDial(t: Target): void {
    if (this.stopped || t.timer || t.self) return;
    // At most 2 s between dials of a member not reached: a healed partition is found within that
    // (at 10 s, the lab's partition rounds took up to 7 s to ping again); a dial is one SYN.
    const delay = Math.min(2000, 500 * 2 ** Math.min(t.attempts, 5));
    t.timer = setTimeout(() => { t.timer = null; this.dial(t); }, delay);
    t.timer.unref?.();
  }

  private dial(t: Target): void {
    if (this.stopped || t.conn || t.self) return;
    // Connected already to whoever listens there (known from a connection's published address).
    for (const c of this.byName.values()) if (c.addr === t.addr) return;
    let hp: { host: string; port: number };
    try { hp = parseHostPort(t.addr); } catch (e) { t.error = (e as Error).message; return; }
    t.attempts++;
    t.since = new Date();
    const s = net.connect({ host: hp.host, port: hp.port });
    t.conn = this.setup(s, 'dial', t.addr, t);
    s.once('connect', () => { t.error = undefined; t.conn?.sendRaw(t.conn.mine); });
  }

  // ---- messages ----

  private onMessage(c: Conn, m: Record<string, unknown> & { t: string }): void {
    switch (m.t) {
      case 'digest': {
        const d = checkDigest(m.d);
        c.send({ t: 'sync', records: this.state.newerThan(d, Date.now()).filter((w) => this.sendableTo(c, w.rec)) });
        return;
      }
      case 'sync':
      case 'upd': {
        if (!Array.isArray(m.records) || m.records.length > 100_000) throw new FrameError(`${m.t} without records`);
        const recs = (m.records as unknown[]).map((w) => checkRecord(w, this.kinds));
        // A joiner's first sync is old news to its peers: not forwarded (later syncs, a healed
        // partition's, are: this node may be the only one to have crossed it).
        const first = m.t === 'sync' && !this.synced;
        for (const w of recs) this.applyRemote(w, c, !first);
        if (m.t === 'sync' && !this.synced) {
          this.synced = true;
          this.flushDigests();
          this.publishSelf();
          for (const w of this.syncWaiters.splice(0)) w();
          this.dialKnown(); // a joiner: every member at once
        } else this.scheduleDialKnown();
        return;
      }
      case 'dlt': {
        const { d, age } = checkDelta(m.d, m.age);
        // New connections in it may name members to dial.
        if (this.applyRemoteDelta(d, age, c) && d.add.length) this.scheduleDialKnown();
        return;
      }
      case 'want': {
        // A peer got a delta without its base: the whole records it names, as we have them.
        if (!Array.isArray(m.names) || m.names.length > 4096 || !m.names.every((x) => typeof x === 'string')) throw new FrameError('bad want');
        const now = Date.now();
        const recs = (m.names as string[]).map((x) => this.state.nodes.get(x)).filter((x): x is NodeRecord => !!x).map((x) => this.state.wire(x, now));
        if (recs.length) c.send({ t: 'upd', records: recs });
        return;
      }
      case 'req': {
        // A claim from the peer itself: the authenticated name is the holder (a node claims for itself).
        const r = this.answer(m, c.name!, c.theirs!.inc);
        c.send(r);
        return;
      }
      case 'res': {
        this.settle(m, c.name!);
        return;
      }
      case 'fwd': {
        this.onRouted(c, checkFwd(m));
        return;
      }
      default:
        this.ignore(c, m.t);
    }
  }

  /** A message of a type this node does not know (a later knitd's): ignored, logged once per type per connection. */
  private ignore(c: Conn, t: string): void {
    this.counters.ignoredMessages++;
    c.ignored ??= new Set();
    if (c.ignored.has(t) || c.ignored.size >= 64) return;
    c.ignored.add(t);
    this.log.debug(`mesh: ${c.name}: ignored a message of type ${JSON.stringify(t).slice(0, 40)} (a later knitd's; this one speaks protocol ${rangeText({ proto: this.range[0], max: this.range[1] })})`);
  }

  /** Whether a record may go to this peer: a kind version 1 does not know only to one that keeps what it does not know. */
  private sendableTo(c: Conn, rec: MeshRecord): boolean {
    return sendable(rec, c.ver, PROTO_TOLERANT);
  }

  private applyRemote(w: WireRecord, from: Conn | null, forward = true): void {
    if (w.rec.k === 'node' && w.rec.name === this.o.name) {
      // Our own record from before a restart: continue above its version.
      if (w.rec.v >= this.clock) { this.clock = w.rec.v; this.schedulePublish(); }
      return;
    }
    const ch = this.state.apply(w, Date.now());
    if (!ch) return;
    if (w.rec.k === 'node') this.wanted.delete(w.rec.name); // answered: the next gap may ask again
    this.afterChange(ch, w.rec, from, undefined, forward);
  }

  /** A delta from a peer: applied on the version it was made from, else the whole record is asked for. */
  private applyRemoteDelta(d: NodeDelta, age: number, from: Conn): boolean {
    if (d.name === this.o.name) {
      if (d.v >= this.clock) { this.clock = d.v; this.schedulePublish(); }
      return false;
    }
    const cur = this.state.nodes.get(d.name);
    if ((cur && cur.v >= d.v) || this.state.removedAt(d.name) >= d.v) return false;
    const rec = applyDelta(cur, d);
    if (!rec) {
      // Missed the base (a new peer, or a path that skipped a version): the whole record, once per burst.
      if (!this.wanted.has(d.name)) {
        this.wanted.add(d.name);
        setTimeout(() => this.wanted.delete(d.name), 1000).unref?.();
        from.send({ t: 'want', names: [d.name] });
      }
      return false;
    }
    const ch = this.state.apply({ rec, age }, Date.now());
    if (ch) this.afterChange(ch, rec, from, d);
    return !!ch;
  }

  /** Names asked for with 'want' in the last second. */
  private readonly wanted = new Set<string>();

  private afterChange(ch: StateChange, rec: MeshRecord, from: Conn | null, delta?: NodeDelta, forward = true): void {
    if (ch.kind === 'node') this.grants.holderMoved(ch.name, ch.after.v, ch.after.lease?.subnet ?? null);
    if ((ch.kind === 'node' && connsChanged(ch.before, ch.after)) || ch.kind === 'rm') this.topoEpoch++;
    if (ch.kind === 'node' && ch.name !== this.o.name && connsChanged(ch.before, ch.after)) this.patchTopo(ch.after);
    // A network removed: its grant and its blocks' go (a network made again under the name starts clean).
    // (Also a voter that never saw the network's record, only its tombstone.)
    if (ch.kind === 'net') {
      if (!ch.after.net) this.grants.networkRemoved(ch.after.id);
      if (ch.before && ch.before.id !== ch.after.id) this.grants.networkRemoved(ch.before.id);
    }
    // A service removed: its name and VIP are free again.
    if (ch.kind === 'svc' && !ch.after.svc) this.grants.serviceRemoved(ch.after.id);
    if (ch.kind === 'svc' && ch.before && ch.before.id !== ch.after.id) this.grants.serviceRemoved(ch.before.id);
    if (ch.kind === 'rm') {
      this.grants.removed(ch.name, (rec as { upTo: number }).upTo);
      this.grants.removedUnfinished(ch.name, (c) => this.claimDone(c, ch.name));
      if (ch.name === this.o.name) {
        this.log.warn(`mesh: this node was removed (knitctl node rm ${this.o.name}); its lease is gone until claimed again`);
        if (this.lease && this.clock <= (rec as { upTo: number }).upTo) this.lease = null;
        this.clock = Math.max(this.clock, (rec as { upTo: number }).upTo);
        this.schedulePublish();
      }
    }
    const w = this.state.wire(rec, Date.now());
    // A change of a node's connections (and a heartbeat: the frequent ones) travels as a delta
    // along its owner's tree (topology.ts): the owner sends it to each of its peers, and a
    // receiver forwards it to the peers it is the parent of in that tree (none in a full mesh), so
    // each member gets each version about once; one missed while views differ is fetched with the
    // next. Any other change (a lease, endpoints: rare, and waited for; a node's first record),
    // removals and the config are flooded: every peer but the sender, each node forwarding a
    // version once (measured at 50 members: a new node's lease reached all in 4.4 s p50 along
    // trees still moving with its join, in 40 ms flooded).
    let targets = forward ? [...this.byName.values()].filter((c) => c !== from && this.sendableTo(c, rec)) : [];
    const connsOnly = rec.k === 'node' && ch.kind === 'node' && (!!delta || (!!ch.before && deltaOf(ch.before, rec) !== null));
    if (rec.k === 'node' && rec.name !== this.o.name && targets.length && connsOnly) {
      const { g } = this.topo();
      const dist = this.distFrom(rec.name);
      targets = targets.filter((c) => forwards(g, dist, rec.name, this.o.name, c.name!));
    } else if (rec.k === 'node' && rec.name !== this.o.name && targets.length) {
      // Flooded, but not to the owner's own peers (it sent them the version); in a full mesh, by
      // one of those only (topology.floodsTo): members that are not the owner's peers pass nothing on.
      const direct = new Set([rec.name, ...rec.conns.map((x) => x.name)]);
      targets = targets.filter((c) => !direct.has(c.name!));
      if (targets.length && this.liveMembers().length <= Math.max(this.fanout + 1, this.fullMesh)) {
        const ownerPeers = rec.conns.map((x) => x.name);
        targets = targets.filter((c) => floodsTo(rec.name, ownerPeers, this.o.name, c.name!, this.publishedPeers(c.name!)));
      }
    }
    if (targets.length) {
      const msg = Buffer.from(JSON.stringify(delta ? { t: 'dlt', d: delta, age: w.age } : { t: 'upd', records: [w] }));
      for (const c of targets) c.send(msg);
    }
    this.scheduleSave();
    for (const l of this.listeners) l(ch);
  }

  /** The peers a member's record lists (undefined: no record), kept per version (a flood asks for each peer's). */
  private publishedPeers(name: string): Set<string> | undefined {
    const r = this.state.nodes.get(name);
    if (!r) return undefined;
    let s = this.connNames.get(r);
    if (!s) { s = new Set(r.conns.map((x) => x.name)); this.connNames.set(r, s); }
    return s;
  }

  private readonly connNames = new WeakMap<NodeRecord, Set<string>>();

  /** Bumped when a connection (this node's or one a record publishes) comes or goes. */
  private topoEpoch = 0;
  private topoCache: { epoch: number; at: number; g: Graph; dist: Map<string, Dist> } | null = null;

  /**
   * The graph of the mesh as this node sees it, and distances from its members. Rebuilt on a
   * change at most every 10 ms per member (2 s at 200): while a mesh forms every record changes
   * it, and each rebuild costs a breadth-first search per owner heard from (at 200 members,
   * rebuilding every 400 ms made that most of the CPU); a graph a moment old only costs a
   * duplicate, a longer route, or a version that waits for the next one. A record's own new
   * edges are added at once (patchTopo).
   */
  private topo(): { g: Graph; dist: Map<string, Dist> } {
    const now = Date.now();
    let c = this.topoCache;
    if (!c || (c.epoch !== this.topoEpoch && now - c.at >= Math.max(100, 10 * this.state.nodes.size))) {
      c = { epoch: this.topoEpoch, at: now, g: buildGraph(this.o.name, this.byName.keys(), this.state.nodes.values(), this.state.heard), dist: new Map() };
      this.topoCache = c;
    }
    return c;
  }

  /**
   * A record with new connections, added to the graph at once (the graph is rebuilt at most every
   * few hundred ms): the record itself must travel along a tree that has its owner's new edges,
   * or its owner's new peers' subtrees would wait for the next version.
   */
  private patchTopo(rec: NodeRecord): void {
    const c = this.topoCache;
    if (!c) return;
    const a = c.g.id(rec.name);
    for (const x of rec.conns) {
      if (x.name === this.o.name) continue;
      const b = c.g.id(x.name);
      if (!c.g.adj[a]!.includes(b)) c.g.link(a, b);
    }
    c.dist.delete(rec.name);
  }

  private distFrom(name: string): Dist {
    const c = this.topo();
    let d = c.dist.get(name);
    if (!d) { d = bfs(c.g, name); c.dist.set(name, d); }
    return d;
  }

  // ---- this node's record ----

  private schedulePublish(): void {
    if (this.publishTimer || this.stopped) return;
    // Connection changes come in bursts (a node joining dials its peers): one record for a burst.
    // Each one reaches every member, so n nodes changing together cost n^2 messages: the burst
    // window grows with the mesh (1 s up to 20 members, 5 s at 100, at most 10 s from 200).
    const ms = Math.min(10_000, Math.max(1000, 50 * this.state.nodes.size));
    this.publishTimer = setTimeout(() => { this.publishTimer = null; this.publishSelf(); }, ms);
  }

  /** Publishes a new version of this node's record (connections, lease); deferred while a claim is in flight. */
  publishSelf(): void {
    if (this.stopped) return;
    if (this.claiming) return; // published when the claim ends
    // A restarted node publishes nothing before it has the mesh's state: a `node rm` of it made
    // while it was down must reach it first, or its old lease would come back with a newer version.
    if (!this.synced && !this.alone()) return;
    const conns: ConnInfo[] = [...this.byName.values()].map((c) => ({ name: c.name!, addr: c.addr, dir: c.role === 'dial' ? 'out' : 'in' }));
    const rec: NodeRecord = { k: 'node', name: this.o.name, inc: this.inc, v: this.nextVersion(), ttl: this.ttl, lease: this.lease, conns, ...(this.eps.length ? { eps: this.eps } : {}), ...(Object.keys(this.held).length ? { held: this.held } : {}), ...(Object.keys(this.ipamView).length ? { ipam: this.ipamView } : {}), ...(this.enc ? { enc: this.enc } : {}), pv: this.range };
    const prev = this.state.nodes.get(this.o.name);
    const ch = this.state.apply({ rec, age: 0 }, Date.now());
    // Peers hold our previous version (it went to each of them, and a new connection's sync
    // sends it): the change as a delta when only connections changed, the whole record otherwise.
    if (ch) this.afterChange(ch, rec, null, prev ? deltaOf(prev, rec) ?? undefined : undefined);
  }

  setTtl(sec: number): void { this.ttl = sec; }

  get ownLease(): MeshLease | null { return this.lease; }

  /** Members (known nodes not removed, this one included) and the votes a claim needs. */
  quorum(extra: Iterable<string> = []): { members: string[]; need: number } {
    const m = new Set([...this.state.members(), this.o.name, ...extra]);
    return { members: [...m].sort(), need: Math.floor(m.size / 2) + 1 };
  }

  /**
   * A request to member `to`: on the connection to it, or routed (`fwd`) through the neighbour on
   * a shortest path to it (topology.ts) when not connected. Null when it cannot be reached or does
   * not answer in time.
   */
  private request(to: string, body: object): Promise<Record<string, unknown> | null> {
    const id = ++this.reqId;
    const direct = this.byName.get(to);
    const hop = direct ? to : nextHop(this.distFrom(to), this.byName.keys(), to, new Set([this.o.name]));
    const via = hop ? this.byName.get(hop) : undefined;
    if (!via) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.pending.delete(id); resolve(null); }, REQUEST_MS);
      const done = Object.assign((m: Record<string, unknown> | null) => { clearTimeout(t); resolve(m); }, { conn: via, to });
      this.pending.set(id, done);
      const m = { t: 'req', id, inc: this.inc, ...body };
      via.send(direct ? m : { t: 'fwd', to, path: [this.o.name], m });
    });
  }

  /** An answer from `from` (direct or routed; a relay's "unreachable" names its destination): settles the request it answers, if it was for that member. */
  private settle(m: Record<string, unknown>, from: string): void {
    const p = this.pending.get(m.id as number);
    if (!p || p.to !== (m.unreachable === true ? String(m.dest) : from)) return;
    this.pending.delete(m.id as number);
    p(m.unreachable === true ? null : m);
  }

  /** This node's answer to a vote request from `holder` (the claimer). */
  private answer(m: Record<string, unknown>, holder: string, inc?: string): Record<string, unknown> {
    const id = m.id;
    if (typeof id !== 'number') throw new FrameError('bad request');
    // An op or a claim kind of a later knitd: "cannot tell", which its sender must never count as a "no".
    const op = m.op;
    if (typeof op !== 'string' || !(op === 'grant' || op === 'ungrant' || (op === 'pursue' && this.features.has('pursue')))) return this.unsupported(id, `op ${JSON.stringify(op)?.slice(0, 40)}`);
    if (m.claim !== undefined && (!m.claim || typeof m.claim !== 'object')) throw new FrameError('bad request');
    const kind = (m.claim as { kind?: unknown } | undefined)?.kind;
    if (m.claim !== undefined && !(typeof kind === 'string' && CLAIM_KINDS.has(kind))) return this.unsupported(id, `claim kind ${JSON.stringify(kind)?.slice(0, 40)}`);
    // A claim of any kind (grants.ts), or a subnet as before D21.
    const claim: Claim | null = m.claim !== undefined ? checkClaim(m.claim) : typeof m.subnet === 'string' && m.subnet.length <= 64 ? { kind: 'subnet', subnet: m.subnet } : null;
    if (!claim || typeof m.v !== 'number') throw new FrameError('bad request');
    // The claimer's incarnation (stranded grants, D23): a direct peer's from its hello; a routed
    // claim's as its claimer wrote it (trusted as its name is).
    const claimerInc = inc ?? (typeof m.inc === 'string' && m.inc.length <= 64 ? m.inc : '');
    if (m.op === 'grant') return { t: 'res', id, ...this.grantVote(claim, holder, m.v, claimerInc), members: this.state.members() };
    if (m.op === 'pursue') return { t: 'res', id, ok: true, pursue: this.pursuit(claim) };
    if (m.op === 'ungrant') {
      this.grants.release(claim, holder, m.v);
      return { t: 'res', id, ok: true, members: this.state.members() };
    }
    throw new FrameError('bad request op');
  }

  private unsupported(id: number, what: string): Record<string, unknown> {
    this.counters.unsupportedOps++;
    return { t: 'res', id, ok: false, unsupported: what };
  }

  /**
   * A routed message: answered when it is for this node (a request's answer goes back along the
   * path it came), else passed on. A request is passed to the neighbour on a shortest path to its
   * member, never back through a node it came through; an answer along its recorded path. A
   * request that cannot be passed on is answered "unreachable", so its claimer counts it at once.
   * The holder of a routed claim is the path's origin: every member holds the mesh's secret, as a
   * direct peer's hello name is trusted, so routing changes who carries a vote, not who may ask.
   */
  private onRouted(c: Conn, f: Fwd): void {
    if (f.path[f.path.length - 1] !== c.name) throw new FrameError('routed message whose path does not end at its sender');
    const origin = f.path[0]!;
    const back = (m: object): void => {
      const via = f.path.slice(1, -1).reverse();
      c.send(c.name === origin ? m : { t: 'fwd', to: origin, path: [this.o.name], via, m });
    };
    if (f.to === this.o.name) {
      if (f.m.t === 'req') back(this.answer(f.m, origin));
      else if (f.m.t === 'res') this.settle(f.m, origin);
      else this.ignore(c, `fwd/${f.m.t}`);
      return;
    }
    let next: Conn | undefined;
    if (f.path.length < MAX_HOPS && !f.path.includes(this.o.name)) {
      if (f.via) next = this.byName.get(f.via[0] ?? f.to);
      else {
        const hop = this.byName.has(f.to) ? f.to : nextHop(this.distFrom(f.to), this.byName.keys(), f.to, new Set(f.path));
        next = hop ? this.byName.get(hop) : undefined;
      }
    }
    // A later knitd's routed message is not passed to a peer that would cut the connection over it.
    if (next && f.m.t !== 'req' && f.m.t !== 'res' && next.ver < PROTO_TOLERANT) next = undefined;
    if (next) next.send({ t: 'fwd', to: f.to, path: [...f.path, this.o.name], ...(f.via ? { via: f.via.slice(1) } : {}), m: f.m });
    else if (f.m.t === 'req') back({ t: 'res', id: f.m.id, unreachable: true, dest: f.to });
  }

  /** This node's vote on a claim: conflicts with its grants, or (networks) with a network it knows of. */
  private grantVote(claim: Claim, holder: string, v: number, inc: string): Vote {
    return this.grants.request(claim, holder, v, (n, gv) => this.state.removedAt(n) >= gv, (c) => this.knownConflict(c), inc);
  }

  /** A network claim against the networks in the replicated state (one created before this node joined). */
  private knownConflict(c: Claim): string | null {
    if (c.kind === 'vip') return this.knownServiceConflict(c);
    if (c.kind !== 'net') return null;
    for (const r of this.state.nets.values()) {
      if (!r.net) continue;
      const why = conflictsWithNetwork(c, r);
      if (why) return why;
    }
    return null;
  }

  /** A service claim against the replica: its network removed, or another service there with its name or VIP. */
  private knownServiceConflict(c: Claim & { kind: 'vip' }): string | null {
    const n = this.state.nets.get(c.svc.network);
    if (n && n.id === c.svc.netId && !n.net) return `network ${c.svc.network} was removed`;
    if (!n?.net || n.id !== c.svc.netId) return null;
    for (const s of this.state.services()) {
      if (s.network !== c.svc.network || s.id === c.svc.id) continue;
      const why = conflictsOf(c, { kind: 'vip', svc: { id: s.id, netId: n.id, network: s.network, name: s.name, vip: s.vips[0] ?? '' } });
      if (why) return why;
    }
    return null;
  }

  /** Who a claim asks: the live members and the connected peers, this node left out. */
  private voters(): string[] {
    return [...new Set([...this.liveMembers(), ...this.byName.keys()])].filter((x) => x !== this.o.name);
  }

  /**
   * One claim put to the vote: granted by a majority of the known members (this node's own vote
   * included). Refused (ok false, the holder and the conflict) when the votes cannot add up
   * because others hold conflicting grants; NoQuorumError when too few members answer. A claim
   * that loses gives back the votes it won, so a lost race strands nothing.
   */
  async vote(claim: Claim, v: number, waitMs = 0): Promise<{ ok: true; votes: string[] } | { ok: false; holder: string; conflict?: string }> {
    // A joiner connects to (or learns a path to) the members it learned of within moments: give it that long.
    const until = Date.now() + waitMs;
    while (this.voters().filter((x) => this.byName.has(x) || this.distFrom(this.o.name).has(x)).length + 1 < this.quorum().need && Date.now() < until && !this.stopped) await new Promise((r) => setTimeout(r, 10));
    // Being voted on: a voter asking about its grant is told 'yes' (D23). Cleared after the
    // caller's continuation has written the claim's result (no await between the two).
    const key = claimKey(claim);
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    try {
      return await this.voteInFlight(claim, v);
    } finally {
      setImmediate(() => { const n = (this.inFlight.get(key) ?? 1) - 1; if (n > 0) this.inFlight.set(key, n); else this.inFlight.delete(key); });
    }
  }

  private async voteInFlight(claim: Claim, v: number): Promise<{ ok: true; votes: string[] } | { ok: false; holder: string; conflict?: string }> {
    const votes: string[] = [];
    const refusals: Array<{ node: string; holder: string; conflict?: string }> = [];
    /** Voters whose knitd does not know this claim's kind: neither a vote nor a refusal. */
    const cannot: string[] = [];
    const own = this.grantVote(claim, this.o.name, v, this.inc);
    if (own.ok) votes.push(this.o.name); else refusals.push({ node: this.o.name, holder: own.holder, ...(own.conflict ? { conflict: own.conflict } : {}) });
    const seen = new Set<string>();
    const body = claim.kind === 'subnet' ? { subnet: claim.subnet } : { claim };
    // Every live member votes, connected to this node or not (a request to one it is not
    // connected to is routed): the votes are the same per voter as in a full mesh (design D26).
    const answers = await Promise.all(this.voters().map(async (name) => ({ name, r: await this.request(name, { op: 'grant', ...body, v }) })));
    for (const { name, r } of answers) {
      if (!r) continue;
      if (r.unsupported !== undefined) { cannot.push(name); continue; }
      if (Array.isArray(r.members)) for (const x of r.members) if (typeof x === 'string') seen.add(x);
      if (r.ok === true) votes.push(name); else refusals.push({ node: name, holder: String(r.holder), ...(typeof r.conflict === 'string' ? { conflict: r.conflict } : {}) });
    }
    const q = this.quorum(seen);
    const granted = votes.filter((x) => q.members.includes(x)).length;
    if (granted >= q.need) {
      this.log.info(`mesh: ${claimText(claim)} granted by ${granted} of ${q.members.length} member(s) (need ${q.need}): ${votes.join(', ')}`);
      return { ok: true, votes };
    }
    if (own.ok) this.grants.release(claim, this.o.name, v);
    await Promise.all(answers.filter((a) => a.r?.ok === true).map((a) => this.request(a.name, { op: 'ungrant', ...body, v })));
    if (refusals.length && refusals.length > q.members.length - q.need) {
      const r = refusals.find((x) => x.holder !== this.o.name) ?? refusals[0]!;
      return { ok: false, holder: r.holder, ...(r.conflict ? { conflict: r.conflict } : {}) };
    }
    throw new NoQuorumError(`mesh: no quorum to claim ${claimText(claim)}: ${granted} of ${q.members.length} known member(s) granted it, ${q.need} needed` +
      ` (reached: ${[this.o.name, ...answers.filter((a) => a.r).map((a) => a.name)].join(', ')}; members: ${q.members.join(', ')})` +
      `${cannot.length ? `; cannot vote on it (an older knitd: upgrade it): ${cannot.join(', ')}` : ''}` +
      `${refusals.length ? `; refused by ${refusals.map((r) => `${r.node} (${r.conflict && claim.kind !== 'subnet' ? r.conflict : `held by ${r.holder}`})`).join(', ')}` : ''}`);
  }

  /**
   * Claims `lease.subnet` for this node: granted by a majority of the known members, then
   * published. Refused (ok false, the holder) when others hold it; NoQuorumError when too few
   * members answer.
   */
  async claim(lease: MeshLease, waitMs = 0): Promise<{ ok: boolean; holder?: string }> {
    this.claiming++;
    try {
      const r = await this.vote({ kind: 'subnet', subnet: lease.subnet }, this.nextVersion(), waitMs);
      if (!r.ok) return { ok: false, holder: r.holder };
      this.lease = lease;
      return { ok: true };
    } finally {
      this.claiming--;
      if (this.claiming === 0) this.publishSelf();
    }
  }

  /** A version for a claim or a record this node writes. */
  version(): number { return this.nextVersion(); }

  /** Writes a network or service record (created after its claim won, or a tombstone) and floods it. */
  putNetworkRecord(rec: NetRecord | SvcRecord): boolean {
    this.clock = Math.max(this.clock, rec.v);
    const ch = this.state.apply({ rec }, Date.now());
    // On disk before any peer sees it: a restarted claimer answers 'done' for it, never 'no' (D23).
    if (ch) { this.saveNow(); this.afterChange(ch, rec, null); }
    return !!ch;
  }

  /** This node's endpoints (replaced as a whole), published at once in its record. */
  setEndpoints(eps: Endpoint[]): void {
    this.eps = eps;
    this.publishSelf();
  }

  get ownEndpoints(): readonly Endpoint[] { return this.eps; }

  /** Encrypted named networks: this node's public key and key generation (undefined: none), published at once when changed. */
  setEnc(enc: NodeEnc | undefined): void {
    if (enc?.key === this.enc?.key && enc?.gen === this.enc?.gen) return;
    this.enc = enc;
    this.publishSelf();
  }

  get ownHeld(): Readonly<Record<string, string[]>> { return this.held; }

  /** The attachments holding this node's addresses on `network` (empty: none), published at once when changed. */
  setHeld(network: string, owners: string[]): void {
    const cur = this.held[network] ?? [];
    if (cur.length === owners.length && cur.every((x, i) => x === owners[i])) return;
    const next = { ...this.held };
    if (owners.length) next[network] = owners; else delete next[network];
    this.held = next;
    this.publishSelf();
  }

  /** This node's blocks and addresses per network (replaced as a whole), published when changed. */
  setIpamView(view: Record<string, NodeIpamView>): void {
    if (JSON.stringify(view) === JSON.stringify(this.ipamView)) return;
    this.ipamView = view;
    this.publishSelf();
  }

  /** Updates this node's published lease without a claim (same subnet, new underlay or backend data). */
  updateLease(lease: MeshLease): void {
    if (!this.lease || this.lease.subnet !== lease.subnet) throw new Error(`mesh: ${lease.subnet} is not this node's claimed subnet`);
    this.lease = lease;
    this.publishSelf();
  }

  /** `knitctl node rm`: removes a node's record and votes everywhere (tombstone). Returns its lease count (0 or 1), or null when unknown. */
  removeNode(name: string): number | null {
    const n = this.state.nodes.get(name);
    if (!n) return null;
    const rec: MeshRecord = { k: 'rm', name, upTo: n.v, by: this.o.name };
    const ch = this.state.apply({ rec }, Date.now());
    if (ch) this.afterChange(ch, rec, null);
    return n.lease ? 1 : 0;
  }

  setConfig(json: string): void {
    const rec: MeshRecord = { k: 'config', name: 'config', json, v: this.nextVersion(), by: this.o.name };
    const ch = this.state.apply({ rec }, Date.now());
    if (ch) this.afterChange(ch, rec, null);
  }

  /**
   * The encrypted overlay's key generation moved from `expect` (null: none yet) to expect + 1,
   * unless this node's replica already moved past it; replicated to every member, merged by the
   * highest generation (state.ts). Returns the record as it is afterwards.
   */
  bumpKeyGeneration(expect: number | null): { generation: number; at: string } {
    const cur = this.state.keygen;
    if ((cur?.generation ?? null) !== expect) return cur ?? { generation: 0, at: new Date(0).toISOString() };
    const rec: MeshRecord = { k: 'keygen', name: 'keygen', generation: (cur?.generation ?? 0) + 1, at: new Date().toISOString(), by: this.o.name };
    const ch = this.state.apply({ rec }, Date.now());
    if (ch) this.afterChange(ch, rec, null);
    return { generation: rec.generation, at: rec.at };
  }

  // ---- stranded grants (design D23) ----

  private readonly inFlight = new Map<string, number>();
  private readonly doneChecks: Array<(c: Claim) => boolean> = [];
  /** Grants whose claimer answered 'done' (holder/incarnation/version): not asked again. */
  private readonly confirmed = new Map<string, string>();
  private readonly asking = new Set<string>();
  /** Claimers (holder/incarnation) that answered the pursue op `unsupported`: not asked again. */
  private readonly cannotTell = new Set<string>();

  /** Another part of knitd that completes claims of this node (the IPAM's blocks) says whether one is complete. */
  addClaimCheck(fn: (c: Claim) => boolean): void { this.doneChecks.push(fn); }

  /** Whether `holder`'s claim has its result here: a network's record (anyone's replica), or (this node's own) its lease or a block it keeps. */
  private claimDone(c: Claim, holder: string): boolean {
    if (c.kind === 'net') return this.state.nets.get(c.net.name)?.id === c.net.id;
    if (c.kind === 'vip') return this.state.svcs.get(svcKey(c.svc.network, c.svc.name))?.id === c.svc.id;
    if (holder !== this.o.name) return false;
    if (c.kind === 'subnet') return this.lease?.subnet === c.subnet;
    return this.doneChecks.some((f) => f(c));
  }

  /** This node's answer about one of its own claims: still being voted, completed, or neither (it will never complete). */
  pursuit(c: Claim): Pursuit {
    if (this.inFlight.has(claimKey(c))) return 'yes';
    return this.claimDone(c, this.o.name) ? 'done' : 'no';
  }

  /**
   * Grants of claims that may have died with their claimer (grants.suspects): each claimer is
   * asked whether it still pursues the claim; 'no' drops the grant. This node's own grants of an
   * earlier incarnation are settled here (it is the claimer).
   */
  checkStranded(): void {
    // Without the pursue op (a knitd from before D23, or a test acting as one): stranded grants stay, as they did.
    if (this.stopped || !this.features.has('pursue')) return;
    // A claimer not connected here (the sparse topology) is asked through the mesh, by its record's incarnation.
    const live = new Set(this.liveMembers());
    const incOf = (h: string): string | undefined => (h === this.o.name ? this.inc : this.byName.get(h)?.theirs?.inc ?? (live.has(h) ? this.state.nodes.get(h)?.inc : undefined));
    const suspects = this.grants.suspects(Date.now(), this.o.strandedMs ?? STRANDED_MS, STRANDED_MIN_MS, incOf, (c, h) => this.claimDone(c, h));
    for (const { key, grant: g } of suspects) {
      const inc = incOf(g.holder)!;
      if (this.asking.has(key) || this.confirmed.get(key) === `${g.holder}/${inc}/${g.v}` || this.cannotTell.has(`${g.holder}/${inc}`)) continue;
      if (g.holder === this.o.name) { this.settleStranded(key, g, this.pursuit(g.claim), inc); continue; }
      this.asking.add(key);
      void this.request(g.holder, { op: 'pursue', claim: g.claim, v: g.v }).then((r) => {
        this.asking.delete(key);
        const p = r?.pursue;
        if (p === 'yes' || p === 'done' || p === 'no') this.settleStranded(key, g, p, inc);
        else if (r?.unsupported !== undefined && this.cannotTell.size < 4096) {
          // An older claimer cannot say: "cannot tell" is never a "no" (D23), the grant stays until it is upgraded (a new incarnation) or removed.
          this.cannotTell.add(`${g.holder}/${inc}`);
          this.log.info(`mesh: ${g.holder} cannot say whether it still pursues ${claimText(g.claim)} (an older knitd, without the pursue op): its grant is kept until it is upgraded or removed`);
        }
      });
    }
  }

  private settleStranded(key: string, g: Grant & { claim: Claim }, p: Pursuit, inc: string): void {
    if (p === 'done') this.confirmed.set(key, `${g.holder}/${inc}/${g.v}`);
    else if (p === 'no' && this.grants.abandoned(key, g.holder, g.v)) {
      this.log.info(`mesh: dropped a stranded grant of ${claimText(g.claim)} to ${g.holder} (version ${g.v}): its claimer neither votes on it nor completed it`);
    }
  }

  /** Connections and dial targets, for `knitctl status connections`. */
  connections(): ConnStatus[] {
    const out: ConnStatus[] = [];
    for (const c of this.conns) {
      out.push({
        dir: c.role === 'dial' ? 'out' : 'in', addr: c.role === 'dial' ? c.addr : c.remote,
        state: c.state === 'up' ? 'established' : 'handshake', ...(c.name ? { name: c.name, inc: c.theirs!.inc } : {}), since: c.since.toISOString(),
        ...(c.state === 'up' ? { proto: c.ver, speaks: rangeText(c.theirs!), ...(c.theirs!.feat ? { feat: c.theirs!.feat } : {}) } : {}),
      });
    }
    for (const t of this.targets.values()) {
      if (t.conn || t.self || [...this.byName.values()].some((c) => c.addr === t.addr)) continue;
      out.push({ dir: 'out', addr: t.addr, state: t.timer ? 'retrying' : 'connecting', since: t.since.toISOString(), ...(t.error ? { error: t.error } : {}) });
    }
    return out;
  }

  /** Tests: applies a changed `reachable` at once (closes what it cuts, dials what it allows). */
  recheck(): void {
    for (const c of [...this.byName.values()]) if (this.o.reachable && !this.o.reachable(c.name!)) this.close(c);
    for (const t of this.targets.values()) { if (t.timer) { clearTimeout(t.timer); t.timer = null; } t.attempts = 0; }
    this.dialKnown();
  }

  /** Bytes this node has written to peers (benchmarks: the mesh's own traffic). */
  bytesOut(): number {
    let n = this.bytesClosed;
    for (const c of this.conns) n += c.sock.bytesWritten;
    return n;
  }

  /** Names of the peers this node has an authenticated connection to. */
  connected(): string[] { return [...this.byName.keys()].sort(); }
}
