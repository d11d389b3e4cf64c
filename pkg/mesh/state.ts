// The replicated state of the mesh, without I/O: what every node holds a copy of.
//   node/<name>   written only by that node: its incarnation, its mesh connections, its subnet
//                 lease (subnet, underlay address, backend data); versioned by the owner's own
//                 counter, so merging is "the higher version wins" and needs no clocks. The owner
//                 re-publishes it (a higher version) every ttl/3: a node not heard from for its
//                 ttl is dead, and its lease leaves every datapath.
//   rm/<name>     `knitctl node rm`: removes node/<name> up to a version (tombstone), written by
//                 anyone, merged by the highest version: idempotent, safe on any node and twice.
//   config        the pod network's config, last writer wins (time, then writer's name).
//   keygen        the encrypted overlay's key generation (docs/encryption.md): the higher
//                 generation wins, then the writer's name; a counter that only grows, so two
//                 nodes rotating at once from g both land on g + 1 (one rotation, not two).
//   net/<name>    a named network (pkg/network/spec.ts), written once its claim won a majority's
//                 votes (grants.ts); `network rm` writes its tombstone (net null) with a higher
//                 version. Higher version wins, then the writer's name.
//   svc/<network>/<name>  a service (pkg/service/spec.ts, docs/services.md), written once its VIP
//                 claim won a majority's votes (grants.ts `vip`); `service rm` writes its tombstone
//                 (svc null) with a higher version. Merged as networks are.
// A node's record also carries its endpoints on named networks (eps): one writer, versioned with
// the record, gone from every view with the node's liveness, as its lease's datapath entries are.
// And, while it encrypts named networks, its public key and key generation (enc, docs/encryption.md).
// A record of a kind this code does not know (a later knitd's, docs/mesh.md "Upgrades") is kept
// whole and relayed, never interpreted: merged by its envelope (kind, name, version v, writer by;
// the higher v wins, then the writer's name), bounded in size and number (OPAQUE_LIMITS).
// "Heard" times are local: records travel with their age (ms since the sender heard the owner),
// never a timestamp, so nodes need no synchronised clocks.
import { NAME_RE } from './auth';
import type { Network } from '../network/spec';
import type { Endpoint } from '../network/store';
import type { Service } from '../service/spec';

export interface MeshLease {
  subnet: string;
  underlayAddr: string;
  backend?: string;
  backendData?: Record<string, string>;
}

/** One connection as its owner sees it. */
export interface ConnInfo {
  name: string;
  /** host:port: where the other end can be dialed (for an inbound connection: its address and listen port). */
  addr: string;
  dir: 'in' | 'out';
}

export interface NodeRecord {
  k: 'node';
  name: string;
  inc: string;
  v: number;
  /** The owner's lease time in seconds: others drop it after this long without news. */
  ttl: number;
  lease: MeshLease | null;
  conns: ConnInfo[];
  /** Its endpoints on named networks (absent: none). */
  eps?: Endpoint[];
  /** The attachments holding addresses from its blocks, by network name ("containerId:ifName"): what `network rm` waits for on every driver. */
  held?: Record<string, string[]>;
  /** Its address blocks and the addresses each attachment holds, by network name (`knitctl ipam ls`). */
  ipam?: Record<string, NodeIpamView>;
  /** Encrypted named networks: its X25519 public key and the key generation it accepts (absent: it does not decrypt). */
  enc?: NodeEnc;
  /** The protocol versions its knitd speaks (absent: a knitd from before ranges, or relayed by one), for `knitctl status peers`. */
  pv?: [number, number];
}

export interface NodeEnc { key: string; gen: number }

/** One node's addresses on one network, as it publishes them: its blocks, and "containerId:ifName" -> addresses. */
export interface NodeIpamView { blocks: string[]; ips: Record<string, string[]> }

export interface RmRecord { k: 'rm'; name: string; upTo: number; by: string }
export interface ConfigRecord { k: 'config'; name: 'config'; json: string; v: number; by: string }
/** A named network (net null: removed), keyed by its name. */
export interface NetRecord { k: 'net'; name: string; id: string; v: number; by: string; net: Network | null }
/** The key generation (`knitctl key rotate`, `--key-rotation-interval`): `at` is RFC 3339, never a secret. */
export interface KeyGenRecord { k: 'keygen'; name: 'keygen'; generation: number; at: string; by: string }
/** A service (svc null: removed), keyed by network and name (svcKey). */
export interface SvcRecord { k: 'svc'; name: string; network: string; id: string; v: number; by: string; svc: Service | null }
/** A record of a kind this code does not know, as it arrived (`raw` goes on the wire); keyed by kind and name. */
export interface OpaqueRecord { k: 'opaque'; kind: string; name: string; v: number; by: string; raw: Record<string, unknown>; size: number }
export type MeshRecord = NodeRecord | RmRecord | ConfigRecord | NetRecord | SvcRecord | KeyGenRecord | OpaqueRecord;

/** The kinds version 1 of the protocol knows: any other goes only to peers that keep what they do not know (auth.ts PROTO_TOLERANT). */
export const V1_KINDS: ReadonlySet<string> = new Set(['node', 'rm', 'config', 'net', 'svc', 'keygen']);
/** Whether a peer at protocol version `ver` may be sent this record. */
export const sendable = (rec: MeshRecord, ver: number, tolerant: number): boolean => ver >= tolerant || (rec.k !== 'opaque' && V1_KINDS.has(rec.k));

/**
 * Bounds on records of unknown kinds, so a peer's garbage cannot grow memory without limit: each
 * at most 16 KiB of JSON, 4096 of them and 1 MiB in all (a full sync must fit in a frame). One
 * past a bound is dropped (counted), not an error: a later knitd's kinds stay within them.
 */
export const OPAQUE_LIMITS = { record: 16 << 10, count: 4096, bytes: 1 << 20 };
const KIND_RE = /^[a-z][a-z0-9-]{0,31}$/;
/** The version field of a kind whose records predate the envelope rule (keygen counts generations). */
const VERSION_FIELD: Record<string, string> = { keygen: 'generation' };

export const svcKey = (network: string, name: string): string => `${network}/${name}`;

/** A record on the wire: with its age for node records. */
export interface WireRecord { rec: MeshRecord; age?: number }

export class RecordError extends Error {}

/** Versions by node, removals by node, the config's version and writer, networks' and services' versions, the key generation and its writer, and records of kinds added later by "kind/name" (x). */
export interface Digest { n: Record<string, number>; r: Record<string, number>; c: [number, string] | null; w?: Record<string, number>; s?: Record<string, number>; g?: [number, string] | null; x?: Record<string, number> }

/** A digest from a peer, checked (a bad one cuts the peer off like a bad record). */
export function checkDigest(x: unknown): Digest {
  const d = x as Digest;
  const map = (m: unknown): boolean => !!m && typeof m === 'object' && !Array.isArray(m) && Object.keys(m).length <= 100_000 && Object.values(m).every(isVer);
  if (!d || typeof d !== 'object' || !map(d.n) || !map(d.r)) throw new RecordError('bad digest');
  if (d.c !== null && !(Array.isArray(d.c) && d.c.length === 2 && isVer(d.c[0]) && isStr(d.c[1]))) throw new RecordError('bad digest config');
  if (d.w !== undefined && !map(d.w)) throw new RecordError('bad digest networks');
  if (d.s !== undefined && !map(d.s)) throw new RecordError('bad digest services');
  if (d.x !== undefined && !map(d.x)) throw new RecordError('bad digest records of later kinds');
  if (d.g !== undefined && d.g !== null && !(Array.isArray(d.g) && d.g.length === 2 && isVer(d.g[0]) && isStr(d.g[1]))) throw new RecordError('bad digest key generation');
  // Lookups only by name: a prototype key must not answer for a missing one.
  return { n: Object.assign(Object.create(null), d.n), r: Object.assign(Object.create(null), d.r), c: d.c, w: Object.assign(Object.create(null), d.w ?? {}), s: Object.assign(Object.create(null), d.s ?? {}), g: d.g ?? null, x: Object.assign(Object.create(null), d.x ?? {}) };
}

const isStr = (x: unknown, max = 256): x is string => typeof x === 'string' && x.length <= max;
const isVer = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const ADDR_RE = /^[0-9a-fA-F.:[\]]{2,60}:\d{1,5}$/;

/**
 * A record from a peer, checked field by field (a peer that sends anything else is cut off). A
 * kind not in `known` (default: every kind this code has) is checked by its envelope only and
 * kept whole (OpaqueRecord).
 */
export function checkRecord(w: unknown, known?: ReadonlySet<string>): WireRecord {
  const bad = (why: string): never => { throw new RecordError(`bad record: ${why}`); };
  if (!w || typeof w !== 'object') bad('not an object');
  const { rec, age } = w as { rec?: unknown; age?: unknown };
  if (age !== undefined && !isVer(age)) bad('age');
  if (!rec || typeof rec !== 'object') bad('no rec');
  const r = rec as Record<string, unknown>;
  if (!isStr(r.name) || !NAME_RE.test(r.name as string)) bad('name');
  if (typeof r.k !== 'string' || !KIND_RE.test(r.k) || (known && !known.has(r.k)) || !V1_KINDS.has(r.k)) return checkOpaque(r, bad);
  if (r.k === 'node') {
    if (!isStr(r.inc, 32) || !isVer(r.v) || !isVer(r.ttl) || (r.ttl as number) < 1) bad('node fields');
    if (!Array.isArray(r.conns) || r.conns.length > 4096) bad('conns');
    for (const c of r.conns as unknown[]) checkConn(c);
    if (r.lease !== null) {
      const l = r.lease as Record<string, unknown>;
      if (!l || typeof l !== 'object' || !isStr(l.subnet, 64) || !isStr(l.underlayAddr, 64)) bad('lease');
      if (l.backend !== undefined && !isStr(l.backend, 64)) bad('lease backend');
      if (l.backendData !== undefined) {
        if (!l.backendData || typeof l.backendData !== 'object') bad('backendData');
        for (const v of Object.values(l.backendData as object)) if (!isStr(v, 1024)) bad('backendData value');
      }
    }
    if (r.eps !== undefined) {
      if (!Array.isArray(r.eps) || r.eps.length > 20_000) bad('eps');
      for (const e of r.eps as unknown[]) if (!checkEndpoint(e, r.name as string)) bad('endpoint');
    }
    if (r.held !== undefined) {
      const h = r.held as Record<string, unknown>;
      if (!h || typeof h !== 'object' || Array.isArray(h) || Object.keys(h).length > 4096) bad('held');
      for (const [k, v] of Object.entries(h)) if (k.length > 64 || !isStrArr(v, 20_000, 300)) bad('held entry');
    }
    if (r.ipam !== undefined) {
      const m = r.ipam as Record<string, unknown>;
      if (!m || typeof m !== 'object' || Array.isArray(m) || Object.keys(m).length > 4096) bad('ipam');
      for (const [k, v] of Object.entries(m)) if (k.length > 64 || !checkIpamView(v)) bad('ipam entry');
    }
    const enc = r.enc as NodeEnc | undefined;
    if (enc !== undefined && (!enc || typeof enc !== 'object' || !isStr(enc.key, 64) || !isVer(enc.gen))) bad('enc');
    const eps = r.eps as Endpoint[] | undefined;
    const held = r.held as Record<string, string[]> | undefined;
    const ipam = r.ipam as Record<string, NodeIpamView> | undefined;
    const pv = r.pv as [number, number] | undefined;
    if (pv !== undefined && !(Array.isArray(pv) && pv.length === 2 && pv.every((x) => Number.isInteger(x) && x >= 1 && x <= 65535) && pv[0] <= pv[1])) bad('pv');
    return { rec: { k: 'node', name: r.name as string, inc: r.inc as string, v: r.v as number, ttl: r.ttl as number, lease: r.lease as MeshLease | null, conns: r.conns as ConnInfo[], ...(eps?.length ? { eps } : {}), ...(held && Object.keys(held).length ? { held } : {}), ...(ipam && Object.keys(ipam).length ? { ipam } : {}), ...(enc ? { enc: { key: enc.key, gen: enc.gen } } : {}), ...(pv ? { pv: [pv[0], pv[1]] as [number, number] } : {}) }, age: (age as number | undefined) ?? 0 };
  }
  if (r.k === 'rm') {
    if (!isVer(r.upTo) || !isStr(r.by) || !NAME_RE.test(r.by)) bad('rm fields');
    return { rec: { k: 'rm', name: r.name as string, upTo: r.upTo as number, by: r.by as string } };
  }
  if (r.k === 'config') {
    if (!isStr(r.json, 65536) || !isVer(r.v) || !isStr(r.by)) bad('config fields');
    return { rec: { k: 'config', name: 'config', json: r.json as string, v: r.v as number, by: r.by as string } };
  }
  if (r.k === 'net') {
    if (!isStr(r.id, 64) || !isVer(r.v) || !isStr(r.by) || !NAME_RE.test(r.by)) bad('net fields');
    if (r.net !== null && !checkNetwork(r.net, r.name as string, r.id as string)) bad('network');
    return { rec: { k: 'net', name: r.name as string, id: r.id as string, v: r.v as number, by: r.by as string, net: r.net as Network | null } };
  }
  if (r.k === 'keygen') {
    if (r.name !== 'keygen' || !isVer(r.generation) || !isStr(r.at, 64) || !isStr(r.by) || !NAME_RE.test(r.by as string)) bad('keygen fields');
    return { rec: { k: 'keygen', name: 'keygen', generation: r.generation as number, at: r.at as string, by: r.by as string } };
  }
  if (r.k === 'svc') {
    if (!isStr(r.network, 64) || !NAME_RE.test(r.network as string) || !isStr(r.id, 64) || !isVer(r.v) || !isStr(r.by) || !NAME_RE.test(r.by as string)) bad('svc fields');
    if (r.svc !== null && !checkService(r.svc, r.name as string, r.network as string, r.id as string)) bad('service');
    return { rec: { k: 'svc', name: r.name as string, network: r.network as string, id: r.id as string, v: r.v as number, by: r.by as string, svc: r.svc as Service | null } };
  }
  return bad(`kind ${JSON.stringify(r.k)}`);
}

/** A record of a kind this code does not know: its envelope (kind, name, version, writer), the rest as it came. */
function checkOpaque(r: Record<string, unknown>, bad: (why: string) => never): WireRecord {
  if (typeof r.k !== 'string' || !KIND_RE.test(r.k) || r.k === 'opaque') bad(`kind ${JSON.stringify(r.k)?.slice(0, 40)}`);
  const v = r[VERSION_FIELD[r.k as string] ?? 'v'];
  if (!isVer(v) || !isStr(r.by) || !NAME_RE.test(r.by)) bad(`kind ${r.k as string} without a version and writer`);
  return { rec: { k: 'opaque', kind: r.k as string, name: r.name as string, v: v as number, by: r.by as string, raw: r, size: JSON.stringify(r).length } };
}

/** A service as its creator stored it (spec.ts): the shape the load balancer and the resolver read. */
function checkService(x: unknown, name: string, network: string, id: string): boolean {
  const s = x as Record<string, unknown>;
  if (!s || typeof s !== 'object' || s.name !== name || s.network !== network || s.id !== id || !isStr(s.created, 64)) return false;
  if (!isStrArr(s.vips, 2) || (s.vips as string[]).length < 1 || !Array.isArray(s.ports) || s.ports.length > 1024) return false;
  return (s.ports as Array<Record<string, unknown>>).every((p) => !!p && (p.proto === 'tcp' || p.proto === 'udp') && Number.isInteger(p.port) && (p.port as number) >= 1 && (p.port as number) <= 65535);
}

/** A node's published blocks and addresses on one network. */
function checkIpamView(x: unknown): boolean {
  const v = x as Record<string, unknown>;
  if (!v || typeof v !== 'object' || !isStrArr(v.blocks, 65_536)) return false;
  const ips = v.ips as Record<string, unknown>;
  return !!ips && typeof ips === 'object' && !Array.isArray(ips) && Object.keys(ips).length <= 20_000 && Object.entries(ips).every(([k, a]) => k.length <= 300 && isStrArr(a, 16));
}

const isStrArr = (x: unknown, n: number, max = 64): boolean => Array.isArray(x) && x.length <= n && x.every((s) => isStr(s, max));
const isStrMap = (x: unknown): boolean => !!x && typeof x === 'object' && !Array.isArray(x) && Object.keys(x).length <= 256 && Object.entries(x).every(([k, v]) => k.length <= 256 && isStr(v, 1024));

/** A network as its creator stored it: the shape the agents read (spec.ts built it). */
function checkNetwork(x: unknown, name: string, id: string): boolean {
  const n = x as Record<string, unknown>;
  if (!n || typeof n !== 'object' || n.name !== name || n.id !== id || !isStr(n.driver, 16) || !isStr(n.created, 64)) return false;
  if (!Array.isArray(n.subnets) || n.subnets.length < 1 || n.subnets.length > 64) return false;
  for (const s of n.subnets as Array<Record<string, unknown>>) {
    if (!s || !isStr(s.subnet, 64) || !isStr(s.gateway, 64) || (s.ipRange !== undefined && !isStr(s.ipRange, 64)) || !isStrMap(s.auxAddresses)) return false;
  }
  const o = n.options as Record<string, unknown>;
  if (!o || typeof o !== 'object' || typeof o.mtu !== 'number' || typeof o.isolation !== 'boolean' || (o.vni !== undefined && !isVer(o.vni))) return false;
  return typeof n.internal === 'boolean' && typeof n.ipv6 === 'boolean' && isStrMap(n.labels);
}

/** An endpoint in its owner's record: only the owner's own. */
function checkEndpoint(x: unknown, owner: string): boolean {
  const e = x as Record<string, unknown>;
  return !!e && typeof e === 'object' && e.node === owner && isStr(e.network, 64) && isStr(e.containerId) && isStr(e.ifName, 16) && isStr(e.nodeIp, 64) &&
    isStr(e.mac, 32) && isStrArr(e.ips, 16) && (e.name === undefined || isStr(e.name)) && (e.aliases === undefined || isStrArr(e.aliases, 64, 256)) && isStr(e.created, 64);
}

/**
 * A node record's change sent as a delta (docs/mesh.md): the owner's new version `v` is its
 * version `base` with these connections added or replaced (`add`) and these gone (`del`), its
 * lease and incarnation unchanged. A heartbeat is a delta with none of either: a few dozen bytes
 * where the whole record (with a connection per member) would be kilobytes at hundreds of nodes.
 * A receiver without `base` asks for the whole record ('want').
 */
export interface NodeDelta { name: string; inc: string; base: number; v: number; ttl: number; add: ConnInfo[]; del: string[] }

const checkConn = (c: unknown): ConnInfo => {
  const x = c as Record<string, unknown>;
  if (!x || typeof x !== 'object' || !isStr(x.name) || !NAME_RE.test(x.name) || !isStr(x.addr, 64) || !ADDR_RE.test(x.addr) || (x.dir !== 'in' && x.dir !== 'out')) throw new RecordError('bad record: conn');
  return { name: x.name, addr: x.addr, dir: x.dir };
};

/** A delta from a peer, checked field by field (anything else cuts the peer off). */
export function checkDelta(x: unknown, age: unknown): { d: NodeDelta; age: number } {
  const bad = (why: string): never => { throw new RecordError(`bad delta: ${why}`); };
  const r = x as Record<string, unknown>;
  if (!r || typeof r !== 'object') bad('not an object');
  if (age !== undefined && !isVer(age)) bad('age');
  if (!isStr(r.name) || !NAME_RE.test(r.name as string) || !isStr(r.inc, 32) || !isVer(r.base) || !isVer(r.v) || (r.v as number) <= (r.base as number) || !isVer(r.ttl) || (r.ttl as number) < 1) bad('fields');
  if (!Array.isArray(r.add) || r.add.length > 4096 || !Array.isArray(r.del) || r.del.length > 4096) bad('add/del');
  const add = (r.add as unknown[]).map(checkConn);
  const del = (r.del as unknown[]).map((n) => (isStr(n) && NAME_RE.test(n) ? n : bad('del')));
  return { d: { name: r.name as string, inc: r.inc as string, base: r.base as number, v: r.v as number, ttl: r.ttl as number, add, del }, age: (age as number | undefined) ?? 0 };
}

/** The delta from `prev` to `next` (one owner, one incarnation), or null when more than connections changed. */
export function deltaOf(prev: NodeRecord, next: NodeRecord): NodeDelta | null {
  // Only connections travel as deltas: any other field changed (lease, endpoints, held addresses) sends the whole record.
  const rest = (r: NodeRecord): string => JSON.stringify([r.lease, r.eps ?? [], r.held ?? {}, r.ipam ?? {}, r.enc ?? null, r.pv ?? null]);
  if (prev.name !== next.name || prev.inc !== next.inc || next.v <= prev.v || rest(prev) !== rest(next)) return null;
  const was = new Map(prev.conns.map((c) => [c.name, c]));
  const now = new Set(next.conns.map((c) => c.name));
  const add = next.conns.filter((c) => { const o = was.get(c.name); return !o || o.addr !== c.addr || o.dir !== c.dir; });
  const del = prev.conns.filter((c) => !now.has(c.name)).map((c) => c.name);
  return { name: next.name, inc: next.inc, base: prev.v, v: next.v, ttl: next.ttl, add, del };
}

/** The record `delta` makes of `base` (its version `delta.base`), or null when it does not apply to it. */
export function applyDelta(base: NodeRecord | undefined, delta: NodeDelta): NodeRecord | null {
  if (!base || base.v !== delta.base || base.inc !== delta.inc) return null;
  const gone = new Set([...delta.del, ...delta.add.map((c) => c.name)]);
  const conns = [...base.conns.filter((c) => !gone.has(c.name)), ...delta.add];
  if (conns.length > 4096) return null;
  return { ...base, v: delta.v, ttl: delta.ttl, conns };
}

export type StateChange =
  | { kind: 'node'; name: string; before: NodeRecord | null; after: NodeRecord }
  | { kind: 'rm'; name: string; removed: NodeRecord | null }
  | { kind: 'config'; json: string }
  | { kind: 'keygen'; generation: number }
  | { kind: 'net'; name: string; before: NetRecord | null; after: NetRecord }
  | { kind: 'svc'; name: string; before: SvcRecord | null; after: SvcRecord }
  | { kind: 'opaque'; key: string };

export class MeshState {
  readonly nodes = new Map<string, NodeRecord>();
  /** Local ms time each node was last heard of (its newest version arrived). */
  readonly heard = new Map<string, number>();
  readonly rms = new Map<string, RmRecord>();
  config: ConfigRecord | null = null;
  /** Named networks by name, tombstones included (net null). */
  readonly nets = new Map<string, NetRecord>();
  keygen: KeyGenRecord | null = null;
  /** Services by svcKey(network, name), tombstones included (svc null). */
  readonly svcs = new Map<string, SvcRecord>();
  /** Records of kinds this code does not know, by "kind/name" (OPAQUE_LIMITS). */
  readonly opaque = new Map<string, OpaqueRecord>();
  opaqueBytes = 0;
  /** Records of unknown kinds not kept: over a bound. */
  opaqueDropped = 0;

  constructor(readonly self: string) {}

  /** Merges one record; returns what changed, or null when it was not newer. */
  apply(w: WireRecord, now: number): StateChange | null {
    const r = w.rec;
    if (r.k === 'node') {
      const cur = this.nodes.get(r.name);
      if (cur && cur.v >= r.v) return null;
      if (this.removedAt(r.name) >= r.v) return null;
      this.nodes.set(r.name, r);
      const at = now - (w.age ?? 0);
      this.heard.set(r.name, Math.max(this.heard.get(r.name) ?? 0, at));
      return { kind: 'node', name: r.name, before: cur ?? null, after: r };
    }
    if (r.k === 'rm') {
      if (this.removedAt(r.name) >= r.upTo) return null;
      this.rms.set(r.name, r);
      const cur = this.nodes.get(r.name);
      let removed: NodeRecord | null = null;
      if (cur && cur.v <= r.upTo) { this.nodes.delete(r.name); this.heard.delete(r.name); removed = cur; }
      return { kind: 'rm', name: r.name, removed };
    }
    if (r.k === 'net') {
      const cur = this.nets.get(r.name);
      if (cur && (cur.v > r.v || (cur.v === r.v && cur.by >= r.by))) return null;
      this.nets.set(r.name, r);
      return { kind: 'net', name: r.name, before: cur ?? null, after: r };
    }
    if (r.k === 'keygen') {
      const g = this.keygen;
      if (g && (g.generation > r.generation || (g.generation === r.generation && g.by >= r.by))) return null;
      this.keygen = r;
      return { kind: 'keygen', generation: r.generation };
    }
    if (r.k === 'opaque') {
      const key = `${r.kind}/${r.name}`;
      const cur = this.opaque.get(key);
      if (cur && (cur.v > r.v || (cur.v === r.v && cur.by >= r.by))) return null;
      const bytes = this.opaqueBytes - (cur?.size ?? 0) + r.size;
      if (r.size > OPAQUE_LIMITS.record || bytes > OPAQUE_LIMITS.bytes || (!cur && this.opaque.size >= OPAQUE_LIMITS.count)) { this.opaqueDropped++; return null; }
      this.opaque.set(key, r);
      this.opaqueBytes = bytes;
      return { kind: 'opaque', key };
    }
    if (r.k === 'svc') {
      const key = svcKey(r.network, r.name);
      const cur = this.svcs.get(key);
      if (cur && (cur.v > r.v || (cur.v === r.v && cur.by >= r.by))) return null;
      this.svcs.set(key, r);
      return { kind: 'svc', name: key, before: cur ?? null, after: r };
    }
    const c = this.config;
    if (c && (c.v > r.v || (c.v === r.v && c.by >= r.by))) return null;
    this.config = r;
    return { kind: 'config', json: r.json };
  }

  removedAt(name: string): number { return this.rms.get(name)?.upTo ?? -1; }

  /** Whether a node was heard of within its ttl (the local node always is). */
  live(name: string, now: number): boolean {
    if (name === this.self) return this.nodes.has(name);
    const n = this.nodes.get(name);
    const h = this.heard.get(name);
    return !!n && h !== undefined && now - h < n.ttl * 1000;
  }

  /** Every record with its age, for a full sync. */
  records(now: number): WireRecord[] {
    const out: WireRecord[] = [];
    for (const n of this.nodes.values()) out.push(this.wire(n, now));
    for (const r of this.rms.values()) out.push({ rec: r });
    if (this.config) out.push({ rec: this.config });
    for (const x of this.nets.values()) out.push({ rec: x });
    if (this.keygen) out.push({ rec: this.keygen });
    for (const x of this.svcs.values()) out.push({ rec: x });
    for (const x of this.opaque.values()) out.push(this.wire(x, now));
    return out;
  }

  /** The named networks that exist (tombstones left out). */
  networks(): Network[] {
    return [...this.nets.values()].flatMap((r) => (r.net ? [r.net] : []));
  }

  /** The services that exist (tombstones left out), by network then name. */
  services(): Service[] {
    return [...this.svcs.values()].flatMap((r) => (r.svc ? [r.svc] : [])).sort((a, b) => a.network.localeCompare(b.network) || a.name.localeCompare(b.name));
  }

  /** The endpoints of live nodes (this node's always). */
  endpoints(now: number): Endpoint[] {
    return [...this.nodes.values()].flatMap((n) => (n.eps?.length && this.live(n.name, now) ? n.eps : []));
  }

  wire(rec: MeshRecord, now: number): WireRecord {
    // As it came (its writer's shape), for the peers that know its kind.
    if (rec.k === 'opaque') return { rec: rec.raw as unknown as MeshRecord };
    if (rec.k !== 'node') return { rec };
    const h = rec.name === this.self ? now : this.heard.get(rec.name) ?? now;
    return { rec, age: Math.max(0, now - h) };
  }

  /** What this node has, in versions only: a new connection's first message (anti-entropy). */
  digest(): Digest {
    return {
      n: Object.fromEntries([...this.nodes.values()].map((x) => [x.name, x.v])),
      r: Object.fromEntries([...this.rms.values()].map((x) => [x.name, x.upTo])),
      c: this.config ? [this.config.v, this.config.by] : null,
      w: Object.fromEntries([...this.nets.values()].map((x) => [x.name, x.v])),
      g: this.keygen ? [this.keygen.generation, this.keygen.by] : null,
      s: Object.fromEntries([...this.svcs].map(([k, x]) => [k, x.v])),
      x: Object.fromEntries([...this.opaque].map(([k, x]) => [k, x.v])),
    };
  }

  /** The records newer here than in a peer's digest: what it lacks. */
  newerThan(d: Digest, now: number): WireRecord[] {
    const out: WireRecord[] = [];
    for (const x of this.nodes.values()) if (!(d.n[x.name]! >= x.v)) out.push(this.wire(x, now));
    for (const x of this.rms.values()) if (!(d.r[x.name]! >= x.upTo)) out.push({ rec: x });
    const c = this.config;
    if (c && (!d.c || c.v > d.c[0] || (c.v === d.c[0] && c.by > d.c[1]))) out.push({ rec: c });
    for (const x of this.nets.values()) if (!(d.w?.[x.name]! >= x.v)) out.push({ rec: x });
    const g = this.keygen;
    if (g && (!d.g || g.generation > d.g[0] || (g.generation === d.g[0] && g.by > d.g[1]))) out.push({ rec: g });
    for (const [k, x] of this.svcs) if (!(d.s?.[k]! >= x.v)) out.push({ rec: x });
    for (const [k, x] of this.opaque) if (!(d.x?.[k]! >= x.v)) out.push(this.wire(x, now));
    return out;
  }

  /** The known members: every node with a record that no rm covers. */
  members(): string[] {
    return [...this.nodes.keys()].sort();
  }
}
