// Keys of the encrypted overlay (docs/encryption.md). Each node has an X25519 key pair: the
// private half stays in its state directory (mode 0600), the public half travels in its lease's
// backend data (encKey). Two nodes derive the same pair secret by ECDH, and from it, per
// direction and key generation, the ESP key and SPI by HKDF-SHA256. Nothing secret is ever
// published, logged or written outside the state directory; SPIs and reqids are public.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The kernel's AEAD: AES-GCM for ESP (RFC 4106), 128-bit ICV. */
export const ESP_AEAD = 'rfc4106(gcm(aes))';
export const ESP_ICV_BITS = 128;
/** AES-128 key + the 4-byte salt RFC 4106 keying material ends with. */
export const ESP_KEY_BYTES = 16 + 4;
/**
 * The AEADs knit asks the kernel for (the vxlan backend's `cipher`), both with a 128-bit ICV and
 * an 8-byte IV. AES-GCM is the default: with AES-NI and PCLMULQDQ (aesni_intel) it is the fastest
 * on x86 servers. ChaCha20-Poly1305 (RFC 7634) is for kernels without AES acceleration: in the
 * kernel lane (UML: aes-generic, ghash-generic in C) it encrypts 2.5x and decrypts 1.6x faster
 * (tcrypt, docs/encryption.md "Throughput").
 */
export const ESP_CIPHERS = {
  'aes-gcm': { aead: 'rfc4106(gcm(aes))', keyBits: 128, keyBytes: 16 + 4, features: 'CONFIG_CRYPTO_GCM, CONFIG_CRYPTO_AES, CONFIG_CRYPTO_SEQIV; modules gcm, aes' },
  /** A 256-bit key + the 4-byte salt (nonce prefix). */
  'chacha20-poly1305': { aead: 'rfc7539esp(chacha20,poly1305)', keyBits: 256, keyBytes: 32 + 4, features: 'CONFIG_CRYPTO_CHACHA20POLY1305, CONFIG_CRYPTO_CHACHA20, CONFIG_CRYPTO_POLY1305, CONFIG_CRYPTO_SEQIV; modules chacha20poly1305, chacha_generic, poly1305_generic' },
} as const;
export type EspCipherName = keyof typeof ESP_CIPHERS;
export const DEFAULT_ESP_CIPHER: EspCipherName = 'aes-gcm';
export const isEspCipher = (v: unknown): v is EspCipherName => typeof v === 'string' && Object.hasOwn(ESP_CIPHERS, v);

/**
 * What ESP in transport mode adds to each VXLAN packet: header 8 (SPI, sequence), IV 8, trailer
 * 2 + padding to 4 bytes (≤ 3), ICV 16: at most 37, rounded up to 40.
 */
export const ESP_OVERHEAD = 40;
/** Backend data keys: the node's X25519 public key (base64url, 32 bytes) and its key generation. */
export const ENC_KEY = 'encKey';
export const ENC_GEN = 'encGen';
/** The node's private key file in its state directory. */
export const NODE_KEY_FILE = 'esp-x25519.pem';
/** knit's SAs carry reqid KNIT_REQID_BASE + generation (mod 2^16): ownership and per-generation selection. */
export const KNIT_REQID_BASE = 0x6b6e0000;

export interface NodeKey {
  /** Raw 32-byte public key, base64url (43 characters): what peers need. */
  readonly publicKey: string;
  readonly privateKey: crypto.KeyObject;
}

const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;

function fromPrivate(privateKey: crypto.KeyObject): NodeKey {
  const jwk = crypto.createPublicKey(privateKey).export({ format: 'jwk' }) as { x: string };
  return { publicKey: jwk.x, privateKey };
}

/** A fresh key pair, not stored (tests, and nodes without a state directory). */
export function newNodeKey(): NodeKey {
  return fromPrivate(crypto.generateKeyPairSync('x25519').privateKey);
}

/**
 * The node's key pair from <stateDir>/esp-x25519.pem, created (0600, written atomically) when
 * absent: the same key across restarts, so peers need not re-learn it after a reboot.
 */
export function loadNodeKey(stateDir: string): NodeKey {
  const file = path.join(stateDir, NODE_KEY_FILE);
  try {
    return fromPrivate(crypto.createPrivateKey(fs.readFileSync(file)));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file}: ${(e as Error).message} (remove it to make a new key)`);
  }
  const k = newNodeKey();
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, k.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  fs.renameSync(tmp, file);
  return k;
}

/** Whether s is a public key as peers publish it. */
export function isPublicKey(s: unknown): s is string {
  return typeof s === 'string' && B64URL_32.test(s);
}

/** A generation as published (encGen): a whole number ≥ 0, else null. */
export function parseGeneration(s: unknown): number | null {
  if (typeof s !== 'string' || !/^\d{1,15}$/.test(s)) return null;
  return Number(s);
}

export function reqidFor(gen: number, base = KNIT_REQID_BASE): number {
  return (base + (gen & 0xffff)) >>> 0;
}

export function isKnitReqid(reqid: number, base = KNIT_REQID_BASE): boolean {
  return (reqid & 0xffff0000) >>> 0 === base;
}

export interface DirectionalSa {
  spi: number;
  /** The cipher's keyBytes of keying material (ESP_KEY_BYTES for AES-GCM). The caller zeroes it after use. */
  key: Buffer;
}

/** The ECDH secret of this node and a peer (same on both sides). */
export function pairSecret(me: NodeKey, peerPublic: string): Buffer {
  const pub = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peerPublic }, format: 'jwk' });
  return crypto.diffieHellman({ privateKey: me.privateKey, publicKey: pub });
}

/**
 * The SA for traffic from `src` (public key srcPub) to `dst` (dstPub) in generation `gen`:
 * both ends compute the same one (the sender for its outbound SA, the receiver for its inbound).
 * A change of either public key or the generation changes the SPI, so a stale SA never matches.
 * `domain` separates datapaths of the same pair ('' the pod network, 'named' the named overlay
 * networks): each gets its own SPIs and keys from the one pair secret, so each owns its SAs.
 */
export function directionalSa(
  secret: Buffer, gen: number, src: string, srcPub: string, dst: string, dstPub: string, cipher: EspCipherName = DEFAULT_ESP_CIPHER, domain = '',
): DirectionalSa {
  // Another cipher, another SPI and key (AES-GCM's info is the one of before ciphers were a choice).
  const info = `knit-esp v1 ${domain ? `${domain} ` : ''}gen ${gen} ${src} ${srcPub} > ${dst} ${dstPub}${cipher === DEFAULT_ESP_CIPHER ? '' : ` ${cipher}`}`;
  const key = Buffer.from(crypto.hkdfSync('sha256', secret, 'knit-esp-v1', info, ESP_CIPHERS[cipher].keyBytes));
  const h = crypto.createHash('sha256').update(`knit-esp-spi ${info}`).digest();
  // SPIs 0-255 are reserved (RFC 4303).
  const spi = ((h.readUInt32BE(0) % (0x100000000 - 0x100)) + 0x100) >>> 0;
  return { spi, key };
}
