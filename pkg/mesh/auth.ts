// Mutual authentication by a shared secret, without the secret crossing the wire: each side
// sends a fresh random nonce in its hello, then an HMAC-SHA256 under the secret over both
// hellos and its role (dialer or acceptor). A peer proves it knows the secret by answering for
// the other side's nonce, which it has never seen before, so a recorded exchange cannot be
// replayed; the role in the MAC stops a reflection (sending a node's own proof back to it on a
// second connection). After that every frame carries a 16-byte tag under a session key derived
// from both nonces, with a per-direction sequence number, so a connection cannot be hijacked or
// its frames replayed or reordered. The mesh is authenticated, not encrypted (docs/mesh.md).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type Role = 'dial' | 'accept';

export interface Hello {
  t: 'hello';
  proto: number;
  name: string;
  /** Random per process start: tells a restarted peer from the one before. */
  inc: string;
  nonce: string;
  /** The port the sender listens on (0: none). */
  port: number;
}

export const PROTO = 1;
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const INC_RE = /^[0-9a-f]{16}$/;

export const newNonce = (): string => randomBytes(32).toString('hex');
export const newIncarnation = (): string => randomBytes(8).toString('hex');

/** A hello from the wire, or an error saying what is wrong with it. */
export function checkHello(m: Record<string, unknown>): Hello {
  if (m.t !== 'hello') throw new Error(`expected hello, got ${JSON.stringify(String(m.t)).slice(0, 40)}`);
  if (m.proto !== PROTO) throw new Error(`protocol ${JSON.stringify(m.proto)} (this knitd speaks ${PROTO})`);
  if (typeof m.name !== 'string' || !NAME_RE.test(m.name)) throw new Error('hello without a valid node name');
  if (typeof m.inc !== 'string' || !INC_RE.test(m.inc)) throw new Error('hello without a valid incarnation');
  if (typeof m.nonce !== 'string' || !HEX64.test(m.nonce)) throw new Error('hello without a valid nonce');
  if (typeof m.port !== 'number' || !Number.isInteger(m.port) || m.port < 0 || m.port > 65535) throw new Error('hello without a valid port');
  return m as unknown as Hello;
}

const field = (h: Hello): string => `${h.name}\0${h.inc}\0${h.nonce}`;

/** The proof `role`'s side sends: its hello, then the other's. */
export function proof(secret: Buffer, role: Role, mine: Hello, theirs: Hello): string {
  return createHmac('sha256', secret).update(`knit-mesh-auth-${PROTO}\0${role}\0${field(mine)}\0${field(theirs)}`).digest('hex');
}

/** Whether `mac` is the proof the other side (role `theirRole`) must send. */
export function verifyProof(secret: Buffer, theirRole: Role, theirs: Hello, mine: Hello, mac: unknown): boolean {
  if (typeof mac !== 'string' || !HEX64.test(mac)) return false;
  const want = Buffer.from(proof(secret, theirRole, theirs, mine), 'hex');
  return timingSafeEqual(want, Buffer.from(mac, 'hex'));
}

/** The key that tags this connection's frames: both nonces, dialer's first. */
export function sessionKey(secret: Buffer, dialer: Hello, acceptor: Hello): Buffer {
  return createHmac('sha256', secret).update(`knit-mesh-session-${PROTO}\0${field(dialer)}\0${field(acceptor)}`).digest();
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
