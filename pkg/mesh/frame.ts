// The mesh's wire: frames of a 4-byte big-endian length and that many bytes. The length is
// bounded (before authentication far lower), so a peer can make knitd hold at most one frame's
// worth of bytes; a zero length, a length over the bound or a frame that is no JSON object is a
// FrameError, which closes the connection (and is counted): nothing a bad peer sends is kept.

/** Before authentication: hello and auth are small. */
export const MAX_HANDSHAKE_FRAME = 4096;
/** After: a full state sync of a few hundred nodes fits with room to spare. */
export const MAX_FRAME = 8 << 20;

export class FrameError extends Error {}

export function encodeFrame(payload: Buffer): Buffer {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(payload.length, 0);
  return Buffer.concat([head, payload]);
}

/** Accumulates bytes and cuts them into frames; throws FrameError on a bad length. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The bound for the next frames (raised after authentication). */
  max: number;

  constructor(max = MAX_HANDSHAKE_FRAME) { this.max = max; }

  /** Bytes waiting for the rest of their frame. */
  get pending(): number { return this.size; }

  /** Adds bytes; returns every complete frame's payload (all checked against the present bound). */
  push(data: Buffer): Buffer[] {
    this.add(data);
    const out: Buffer[] = [];
    for (let f = this.next(); f; f = this.next()) out.push(f);
    return out;
  }

  /** Adds bytes, to be cut by next(). */
  add(data: Buffer): void {
    this.chunks.push(data);
    this.size += data.length;
  }

  /**
   * The next complete frame's payload, or null. One at a time, so a bound raised by a frame (the
   * handshake's last) applies to the frames after it in the same read: a peer's first message
   * after authentication (its digest, over 4 KiB from about 190 members) arrives with its proof.
   */
  next(): Buffer | null {
    if (this.size < 4) return null;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [buf];
    const n = buf.readUInt32BE(0);
    if (n === 0 || n > this.max) throw new FrameError(`frame length ${n} (allowed 1..${this.max})`);
    if (buf.length < 4 + n) return null;
    const rest = buf.subarray(4 + n);
    this.chunks = rest.length ? [rest] : [];
    this.size = rest.length;
    return buf.subarray(4, 4 + n);
  }
}

/** A frame's payload as a JSON object with a string `t`, or FrameError. */
export function parseMessage(payload: Buffer): Record<string, unknown> & { t: string } {
  let v: unknown;
  try { v = JSON.parse(payload.toString('utf8')); } catch { throw new FrameError('frame is not JSON'); }
  if (!v || typeof v !== 'object' || Array.isArray(v) || typeof (v as { t?: unknown }).t !== 'string') throw new FrameError('frame is not a message object');
  return v as Record<string, unknown> & { t: string };
}
