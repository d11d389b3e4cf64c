// The frames between knit-client (cmd/client/knit-client.c) and knitd's CNI server. Integers are
// u32 little-endian, str is a u32 length and its bytes:
//
//   request  "KNQ1" u32 body-length | str plugin, u32 n, n x str "KEY=VALUE", str stdin
//   response "KNR1" u32 body-length | u32 status, u32 exit code, str stdout, str stderr
//
// Binary and length-prefixed so the C side needs no JSON parser and the server knows a request's
// size from its first 8 bytes; parsing is strict (every byte accounted for, bounded sizes).

export const REQUEST_MAGIC = 0x31514e4b; // "KNQ1" read little-endian
export const RESPONSE_MAGIC = 0x31524e4b; // "KNR1"
/** Largest body either side accepts (the client execs the Node path for bigger input). */
export const MAX_BODY = 16 << 20;
export const MAX_ENV_ENTRIES = 4096;
export const MAX_PLUGIN_NAME = 255;

/** Response status: answered, or not served here (the client then execs the Node path). */
export const Status = { Answered: 0, NotServed: 1 } as const;
export type Status = (typeof Status)[keyof typeof Status];

export interface CniRequest {
  plugin: string;
  env: Record<string, string>;
  stdin: Buffer;
}

export interface CniResponse {
  status: Status;
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class FrameError extends Error {}

/**
 * Returns the body length announced by a frame's 8-byte head, or throws on a foreign or
 * oversized frame (checked before the body is buffered).
 */
export function bodyLength(head: Buffer, magic: number = REQUEST_MAGIC): number {
  if (head.length < 8) throw new FrameError('short frame head');
  if (head.readUInt32LE(0) !== magic) throw new FrameError(`bad magic 0x${head.readUInt32LE(0).toString(16)}`);
  const len = head.readUInt32LE(4);
  if (len > MAX_BODY) throw new FrameError(`body of ${len} bytes exceeds ${MAX_BODY}`);
  return len;
}

/** Parses a request body (without its 8-byte head). */
export function decodeRequest(body: Buffer): CniRequest {
  let off = 0;
  const u32 = (what: string): number => {
    if (off + 4 > body.length) throw new FrameError(`truncated ${what}`);
    const v = body.readUInt32LE(off);
    off += 4;
    return v;
  };
  const bytes = (what: string, max: number): Buffer => {
    const n = u32(`${what} length`);
    if (n > max || off + n > body.length) throw new FrameError(`${what} of ${n} bytes does not fit`);
    const b = body.subarray(off, off + n);
    off += n;
    return b;
  };
  const plugin = bytes('plugin name', MAX_PLUGIN_NAME).toString('utf8');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(plugin)) throw new FrameError(`bad plugin name ${JSON.stringify(plugin)}`);
  const count = u32('env count');
  if (count > MAX_ENV_ENTRIES) throw new FrameError(`${count} env entries exceed ${MAX_ENV_ENTRIES}`);
  const env: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let i = 0; i < count; i++) {
    const kv = bytes('env entry', MAX_BODY).toString('utf8');
    const eq = kv.indexOf('=');
    const key = eq > 0 ? kv.slice(0, eq) : '';
    // Only what the client forwards, the CNI_* and KNIT_* variables, is taken; odd names are dropped.
    if (/^(CNI|KNIT)_[A-Za-z0-9_]*$/.test(key)) env[key] = kv.slice(eq + 1);
  }
  const stdin = Buffer.from(bytes('stdin', MAX_BODY));
  if (off !== body.length) throw new FrameError(`${body.length - off} trailing bytes`);
  return { plugin, env: { ...env }, stdin };
}

function str(s: string | Buffer): Buffer[] {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(b.length);
  return [len, b];
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** A whole request frame (what knit-client sends; used by tests and tools). */
export function encodeRequest(r: CniRequest): Buffer {
  const env = Object.entries(r.env);
  const body = Buffer.concat([...str(r.plugin), u32(env.length), ...env.flatMap(([k, v]) => str(`${k}=${v}`)), ...str(r.stdin)]);
  return Buffer.concat([u32(REQUEST_MAGIC), u32(body.length), body]);
}

/** A whole response frame. */
export function encodeResponse(r: CniResponse): Buffer {
  const body = Buffer.concat([u32(r.status), u32(r.exitCode), ...str(r.stdout), ...str(r.stderr)]);
  return Buffer.concat([u32(RESPONSE_MAGIC), u32(body.length), body]);
}

/** Parses a whole response frame (tests). */
export function decodeResponse(frame: Buffer): CniResponse {
  const len = bodyLength(frame, RESPONSE_MAGIC);
  if (frame.length !== 8 + len || len < 16) throw new FrameError('response length mismatch');
  const outLen = frame.readUInt32LE(16);
  if (20 + outLen + 4 > frame.length) throw new FrameError('truncated stdout');
  const errLen = frame.readUInt32LE(20 + outLen);
  if (24 + outLen + errLen !== frame.length) throw new FrameError('truncated stderr');
  return {
    status: frame.readUInt32LE(8) as Status,
    exitCode: frame.readUInt32LE(12),
    stdout: frame.subarray(20, 20 + outLen).toString('utf8'),
    stderr: frame.subarray(24 + outLen).toString('utf8'),
  };
}
