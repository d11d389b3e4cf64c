// Mutual authentication by a shared secret, without the secret crossing the wire: each side
// sends a fresh random nonce in its hello, then an HMAC-SHA256 under the secret over both
// hellos and its role (dialer or acceptor). A peer proves it knows the secret by answering for
// the other side's nonce, which it has never seen before, so a recorded exchange cannot be
// replayed; the role in the MAC stops a reflection (sending a node's own proof back to it on a
// second connection). After that every frame carries a 16-byte tag under a session key derived
// from both nonces, with a per-direction sequence number, so a connection cannot be hijacked or
// its frames replayed or reordered. The mesh is authenticated, not encrypted (docs/mesh.md).
// The hello also carries the range of protocol versions the sender speaks (docs/mesh.md
// "Upgrades", design D29): `proto` its lowest, `max` its highest (absent: proto, a knitd
// from before ranges), and its features; a connection uses the highest version both speak.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type Role = 'dial' | 'accept';

export interface Hello {
  t: 'hello';
  /** The lowest protocol version the sender speaks (a knitd from before ranges: its only one). */
  proto: number;
  /** The highest (absent: proto). */
  max?: number;
  /** What the sender's code knows beyond its version (shown in status; absent: a knitd from before ranges). */
  feat?: string[];
  name: string;
  /** Random per process start: tells a restarted peer from the one before. */
  inc: string;
  nonce: string;
  /** The port the sender listens on (0: none). */
  port: number;
}

/**
 * Protocol versions: 1 is the mesh as it was before ranges (strict: an unknown record kind,
 * message type or request op cuts the peer off); 2 adds ranges and tolerance (unknown kinds kept
 * and relayed, unknown messages ignored, unknown ops answered `unsupported`). A peer at version 1
 * is sent nothing it would not know.
 */
export const PROTO_MIN = 1;
export const PROTO_MAX = 2;
/** The version from which peers keep what they do not know (records of later kinds go only to them). */
export const PROTO_TOLERANT = 2;
/** Record kinds and request ops this code knows beyond version 1's wire (a test can leave some out to act as an older knitd). */
export const FEATURES = ['keygen', 'pursue'] as const;
const FEAT_RE = /^[a-z][a-z0-9-]{0,31}$/;

/** A peer's version range, or null when it and ours do not overlap. */
export function negotiate(mine: [number, number], theirs: Hello): number | null {
  const lo = Math.max(mine[0], theirs.proto);
  const hi = Math.min(mine[1], theirs.max ?? theirs.proto);
  return lo <= hi ? hi : null;
}

/** "1..2" (or "1"): a range as logs and status show it. */
export function rangeText(h: { proto: number; max?: number }): string {
  const max = h.max ?? h.proto;
  return max === h.proto ? String(h.proto) : `${h.proto}..${max}`;
}

/** The line saying why two ranges cannot talk, and which side to upgrade. */
export function rangeMismatch(mine: [number, number], theirs: Hello): string {
  const them = rangeText(theirs);
  const us = rangeText({ proto: mine[0], max: mine[1] });
  const fix = (theirs.max ?? theirs.proto) < mine[0] ? `upgrade ${theirs.name}` : 'upgrade this knitd';
  return `peer ${theirs.name} speaks mesh protocol ${them}, this knitd ${us}: ${fix}`;
}
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const INC_RE = /^[0-9a-f]{16}$/;

export const newNonce = (): string => randomBytes(32).toString('hex');
export const newIncarnation = (): string => randomBytes(8).toString('hex');

/** A hello from the wire, or an error saying what is wrong with it. */
export function checkHello(m: Record<string, unknown>): Hello {
  if (m.t !== 'hello') throw new Error(`expected hello, got ${JSON.stringify(String(m.t)).slice(0, 40)}`);
  if (!isVersion(m.proto)) throw new Error(`hello without a valid protocol version (${JSON.stringify(m.proto)?.slice(0, 20)})`);
  if (m.max !== undefined && (!isVersion(m.max) || m.max < m.proto)) throw new Error(`hello with a bad protocol range ${JSON.stringify(m.proto)}..${JSON.stringify(m.max)?.slice(0, 20)}`);
  if (m.feat !== undefined && !(Array.isArray(m.feat) && m.feat.length <= 64 && m.feat.every((f) => typeof f === 'string' && FEAT_RE.test(f)))) throw new Error('hello with bad features');
  if (typeof m.name !== 'string' || !NAME_RE.test(m.name)) throw new Error('hello without a valid node name');
  if (typeof m.inc !== 'string' || !INC_RE.test(m.inc)) throw new Error('hello without a valid incarnation');
  if (typeof m.nonce !== 'string' || !HEX64.test(m.nonce)) throw new Error('hello without a valid nonce');
  if (typeof m.port !== 'number' || !Number.isInteger(m.port) || m.port < 0 || m.port > 65535) throw new Error('hello without a valid port');
  return m as unknown as Hello;
}

const isVersion = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= 65535;

/**
 * What the MACs cover of a hello. Ranges and features too when both hellos carry a range (a
 * knitd from before ranges computes without them), so nobody without the secret can narrow what
 * two current nodes agree on.
 */
function field(h: Hello, ranged: boolean): string {
  return ranged ? `${h.name}\0${h.inc}\0${h.nonce}\0${h.proto}-${h.max}\0${(h.feat ?? []).join(',')}` : `${h.name}\0${h.inc}\0${h.nonce}`;
}
const bothRanged = (a: Hello, b: Hello): boolean => a.max !== undefined && b.max !== undefined;
/** The handshake's own version (its MAC strings): 1, whatever the protocol versions. */
const AUTH_V = 1;

/** The proof `role`'s side sends: its hello, then the other's. */
export function proof(secret: Buffer, role: Role, mine: Hello, theirs: Hello): string {
  const r = bothRanged(mine, theirs);
  return createHmac('sha256', secret).update(`knit-mesh-auth-${AUTH_V}\0${role}\0${field(mine, r)}\0${field(theirs, r)}`).digest('hex');
}

/** Whether `mac` is the proof the other side (role `theirRole`) must send. */
export function verifyProof(secret: Buffer, theirRole: Role, theirs: Hello, mine: Hello, mac: unknown): boolean {
  if (typeof mac !== 'string' || !HEX64.test(mac)) return false;
  const want = Buffer.from(proof(secret, theirRole, theirs, mine), 'hex');
  return timingSafeEqual(want, Buffer.from(mac, 'hex'));
}

/** The key that tags this connection's frames: both nonces, dialer's first. */
export function sessionKey(secret: Buffer, dialer: Hello, acceptor: Hello): Buffer {
  const r = bothRanged(dialer, acceptor);
  return createHmac('sha256', secret).update(`knit-mesh-session-${AUTH_V}\0${field(dialer, r)}\0${field(acceptor, r)}`).digest();
}

export const TAG_LEN = 16;

/** A frame's tag: the sender's role, its sequence number and the payload. */
export function frameTag(key: Buffer, role: Role, seq: number, payload: Buffer): Buffer {
  const h = createHmac('sha256', key);
  const head = Buffer.allocUnsafe(9);
  head.writeUInt8(role === 'dial' ? 1 : 2, 0);
  head.writeBigUInt64BE(BigInt(seq), 1);
  return h.update(head).update(payload).digest().subarray(0, TAG_LEN);
}
