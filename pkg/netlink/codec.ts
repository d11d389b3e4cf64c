// The netlink wire format: nlmsghdr, rtattr TLVs (4-byte aligned, nestable), the fixed
// rtnetlink headers, and NLMSG_ERROR with extended-ack TLVs. Pure functions over Buffers,
// host byte order (little endian on every platform knit targets) except where the
// kernel wants network order (ports, VLAN protocol).
import {
  NLA_F_NESTED, NLA_TYPE_MASK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_REQUEST, NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS,
} from './constants';
import { bitsOf, Family, formatIP, IPAddr, IPNet, parseCIDR, parseIP } from '../ip/ip';

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
export const IFINFOMSG_LEN = 16;
export const IFADDRMSG_LEN = 8;
export const RTMSG_LEN = 12;
export const NDMSG_LEN = 12;

export const align4 = (n: number): number => (n + 3) & ~3;

/** A decoded netlink message; `data` is the payload after the header (a view, not a copy). */
export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  data: Buffer;
}

/**
 * Builds one request. Attributes are appended in order; nest() opens a container whose
 * length is patched when it closes. The buffer grows as needed.
 */
export class MsgWriter {
  private buf: Buffer;
  private off = NLMSG_HDRLEN;

  constructor(readonly type: number, readonly flags: number, size = 512) {
    this.buf = Buffer.alloc(size);
    this.buf.writeUInt16LE(type, 4);
    // Every message we send is a request; callers pass only the operation's flags.
    this.buf.writeUInt16LE(flags | NLM_F_REQUEST, 6);
  }

  get length(): number {
    return this.off;
  }

  private reserve(n: number): number {
    const need = this.off + align4(n);
    if (need > this.buf.length) {
      const next = Buffer.alloc(Math.max(need, this.buf.length * 2));
      this.buf.copy(next, 0, 0, this.off);
      this.buf = next;
    }
    const at = this.off;
    this.off = need;
    return at;
  }

  /** Raw fixed-size bytes (a family header such as ifinfomsg), padded to 4. */
  bytes(b: Buffer): this {
    b.copy(this.buf, this.reserve(b.length));
    return this;
  }

  attr(type: number, value: Buffer): this {
    const at = this.reserve(NLA_HDRLEN + value.length);
    this.buf.writeUInt16LE(NLA_HDRLEN + value.length, at);
    this.buf.writeUInt16LE(type, at + 2);
    value.copy(this.buf, at + NLA_HDRLEN);
    return this;
  }

  u8(type: number, v: number): this {
    const at = this.reserve(NLA_HDRLEN + 1);
    this.buf.writeUInt16LE(NLA_HDRLEN + 1, at);
    this.buf.writeUInt16LE(type, at + 2);
    this.buf.writeUInt8(v, at + 4);
    return this;
  }

  u16(type: number, v: number): this {
    const at = this.reserve(NLA_HDRLEN + 2);
    this.buf.writeUInt16LE(NLA_HDRLEN + 2, at);
    this.buf.writeUInt16LE(type, at + 2);
    this.buf.writeUInt16LE(v, at + 4);
    return this;
  }

  /** A 16-bit value in network byte order (UDP port, VLAN protocol). */
  u16be(type: number, v: number): this {
    const at = this.reserve(NLA_HDRLEN + 2);
    this.buf.writeUInt16LE(NLA_HDRLEN + 2, at);
    this.buf.writeUInt16LE(type, at + 2);
    this.buf.writeUInt16BE(v, at + 4);
    return this;
  }

  u32(type: number, v: number): this {
    const at = this.reserve(NLA_HDRLEN + 4);
    this.buf.writeUInt16LE(NLA_HDRLEN + 4, at);
    this.buf.writeUInt16LE(type, at + 2);
    this.buf.writeUInt32LE(v >>> 0, at + 4);
    return this;
  }

  /** A NUL-terminated string (IFLA_IFNAME, IFLA_INFO_KIND). */
  str(type: number, s: string): this {
    const len = Buffer.byteLength(s);
    const at = this.reserve(NLA_HDRLEN + len + 1);
    this.buf.writeUInt16LE(NLA_HDRLEN + len + 1, at);
    this.buf.writeUInt16LE(type, at + 2);
    this.buf.write(s, at + NLA_HDRLEN);
    this.buf[at + NLA_HDRLEN + len] = 0;
    return this;
  }

  /** Opens a nested attribute; pass the result to end(). */
  begin(type: number, nestedFlag = false): number {
    const at = this.reserve(NLA_HDRLEN);
    this.buf.writeUInt16LE(type | (nestedFlag ? NLA_F_NESTED : 0), at + 2);
    return at;
  }

  end(at: number): this {
    this.buf.writeUInt16LE(this.off - at, at);
    return this;
  }

  nest(type: number, fill: (w: this) => void, nestedFlag = false): this {
    const at = this.begin(type, nestedFlag);
    fill(this);
    return this.end(at);
  }

  /** Stamps length, sequence and port and returns the finished message (a view). */
  finish(seq: number, pid = 0): Buffer {
    this.buf.writeUInt32LE(this.off, 0);
    this.buf.writeUInt32LE(seq >>> 0, 8);
    this.buf.writeUInt32LE(pid >>> 0, 12);
    return this.buf.subarray(0, this.off);
  }
}

/** Splits a received datagram into messages; throws on a malformed length. */
export function parseMessages(buf: Buffer, len: number = buf.length): NlMsg[] {
  const out: NlMsg[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= len;) {
    const mlen = buf.readUInt32LE(off);
    if (mlen < NLMSG_HDRLEN || off + mlen > len) throw new Error(`netlink: malformed message length ${mlen} at ${off}`);
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      data: buf.subarray(off + NLMSG_HDRLEN, off + mlen),
    });
    off += align4(mlen);
  }
  return out;
}

/** Attributes by type (NLA_F_NESTED and byte-order flags stripped); values are views. */
export type Attrs = Map<number, Buffer>;

export function parseAttrs(buf: Buffer, start = 0, end = buf.length): Attrs {
  const out: Attrs = new Map();
  for (let off = start; off + NLA_HDRLEN <= end;) {
    const len = buf.readUInt16LE(off);
    if (len < NLA_HDRLEN || off + len > end) break; // truncated tail: keep what parsed
    out.set(buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return out;
}

/** Every attribute in order, for lists of same-typed entries. */
export function attrList(buf: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  for (let off = 0; off + NLA_HDRLEN <= buf.length;) {
    const len = buf.readUInt16LE(off);
    if (len < NLA_HDRLEN || off + len > buf.length) break;
    out.push([buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + NLA_HDRLEN, off + len)]);
    off += align4(len);
  }
  return out;
}

// Attribute value readers (undefined when absent or short).
export const getU8 = (a: Attrs, t: number): number | undefined => { const b = a.get(t); return b && b.length >= 1 ? b[0] : undefined; };
export const getU16 = (a: Attrs, t: number): number | undefined => { const b = a.get(t); return b && b.length >= 2 ? b.readUInt16LE(0) : undefined; };
export const getU16be = (a: Attrs, t: number): number | undefined => { const b = a.get(t); return b && b.length >= 2 ? b.readUInt16BE(0) : undefined; };
export const getU32 = (a: Attrs, t: number): number | undefined => { const b = a.get(t); return b && b.length >= 4 ? b.readUInt32LE(0) : undefined; };
export const getI32 = (a: Attrs, t: number): number | undefined => { const b = a.get(t); return b && b.length >= 4 ? b.readInt32LE(0) : undefined; };
export function getStr(a: Attrs, t: number): string | undefined {
  const b = a.get(t);
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

// ---- fixed family headers ---------------------------------------------------

export interface IfInfoMsg { family: number; type: number; index: number; flags: number; change: number }
export function encodeIfInfo(m: Partial<IfInfoMsg>): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt16LE(m.type ?? 0, 2);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((m.change ?? 0) >>> 0, 12);
  return b;
}
export function decodeIfInfo(b: Buffer): IfInfoMsg {
  return { family: b[0]!, type: b.readUInt16LE(2), index: b.readInt32LE(4), flags: b.readUInt32LE(8), change: b.readUInt32LE(12) };
}

export interface IfAddrMsg { family: number; prefix: number; flags: number; scope: number; index: number }
export function encodeIfAddr(m: Partial<IfAddrMsg>): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b[0] = m.family ?? 0;
  b[1] = m.prefix ?? 0;
  b[2] = (m.flags ?? 0) & 0xff;
  b[3] = m.scope ?? 0;
  b.writeUInt32LE(m.index ?? 0, 4);
  return b;
}
export function decodeIfAddr(b: Buffer): IfAddrMsg {
  return { family: b[0]!, prefix: b[1]!, flags: b[2]!, scope: b[3]!, index: b.readUInt32LE(4) };
}

export interface RtMsg {
  family: number; dstLen: number; srcLen: number; tos: number; table: number;
  protocol: number; scope: number; type: number; flags: number;
}
export function encodeRtMsg(m: Partial<RtMsg>): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b[0] = m.family ?? 0;
  b[1] = m.dstLen ?? 0;
  b[2] = m.srcLen ?? 0;
  b[3] = m.tos ?? 0;
  b[4] = m.table ?? 0;
  b[5] = m.protocol ?? 0;
  b[6] = m.scope ?? 0;
  b[7] = m.type ?? 0;
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  return b;
}
export function decodeRtMsg(b: Buffer): RtMsg {
  return {
    family: b[0]!, dstLen: b[1]!, srcLen: b[2]!, tos: b[3]!, table: b[4]!,
    protocol: b[5]!, scope: b[6]!, type: b[7]!, flags: b.readUInt32LE(8),
  };
}

export interface NdMsg { family: number; index: number; state: number; flags: number; type: number }
export function encodeNdMsg(m: Partial<NdMsg>): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b[0] = m.family ?? 0;
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt16LE(m.state ?? 0, 8);
  b[10] = m.flags ?? 0;
  b[11] = m.type ?? 0;
  return b;
}
export function decodeNdMsg(b: Buffer): NdMsg {
  return { family: b[0]!, index: b.readInt32LE(4), state: b.readUInt16LE(8), flags: b[10]!, type: b[11]! };
}

// ---- NLMSG_ERROR --------------------------------------------------------------

export interface NlErr {
  /** Positive errno; 0 for an ACK. */
  errno: number;
  /** NLMSGERR_ATTR_MSG, the kernel's explanation. */
  extack?: string;
  /** NLMSGERR_ATTR_OFFS, byte offset of the offending attribute in the request. */
  offset?: number;
}

/**
 * Decodes an NLMSG_ERROR payload: int error, the echoed request header (whole request
 * unless capped), then extack TLVs when NLM_F_ACK_TLVS is set.
 */
export function decodeError(msg: NlMsg): NlErr {
  const d = msg.data;
  if (d.length < 4) return { errno: 0 };
  const errno = -d.readInt32LE(0) || 0; // never -0
  const out: NlErr = { errno };
  if (!(msg.flags & NLM_F_ACK_TLVS) || d.length < 4 + NLMSG_HDRLEN) return out;
  const echoed = msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : d.readUInt32LE(4);
  const tlvs = parseAttrs(d, 4 + align4(echoed));
  const text = getStr(tlvs, NLMSGERR_ATTR_MSG);
  if (text) out.extack = text;
  const offs = getU32(tlvs, NLMSGERR_ATTR_OFFS);
  if (offs !== undefined) out.offset = offs;
  return out;
}

/** NLMSG_DONE of a dump: an int (negative errno when the dump failed), then extack TLVs directly. */
export function decodeDone(msg: NlMsg): NlErr {
  const d = msg.data;
  if (d.length < 4) return { errno: 0 };
  const out: NlErr = { errno: -d.readInt32LE(0) || 0 };
  if (msg.flags & NLM_F_ACK_TLVS) {
    const text = getStr(parseAttrs(d, 4), NLMSGERR_ATTR_MSG);
    if (text) out.extack = text;
  }
  return out;
}

// ---- small value codecs ---------------------------------------------------------

/** "aa:bb:cc:dd:ee:ff" (or '-' separated) to 6 bytes; throws on anything else. */
export function parseMAC(s: string): Buffer {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) throw new Error(`not a MAC address: ${JSON.stringify(s)}`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/** Lower-case colon form of any hardware address (as ip -json prints it). */
export function formatMAC(b: Buffer): string {
  const out: string[] = [];
  for (const x of b) out.push(x.toString(16).padStart(2, '0'));
  return out.join(':');
}

// ---- addresses as arguments -------------------------------------------------------

/** Accepts "10.0.0.1" or an IPAddr; throws on anything else. */
export function ipArg(v: string | IPAddr, what = 'address'): IPAddr {
  if (typeof v !== 'string') return v;
  const ip = parseIP(v);
  if (!ip) throw new Error(`netlink: bad ${what} ${JSON.stringify(v)}`);
  return ip;
}

/** Accepts "10.0.0.0/24", "default" (with a family), a bare address (host prefix) or an IPNet. */
export function netArg(v: string | IPNet, what = 'prefix', family: Family = 4): IPNet {
  if (typeof v !== 'string') return v;
  if (v === 'default') return { ip: { family, bytes: Buffer.alloc(family === 4 ? 4 : 16) }, prefix: 0 };
  const n = v.includes('/') ? parseCIDR(v) : (() => { const ip = parseIP(v); return ip ? { ip, prefix: bitsOf(ip.family) } : null; })();
  if (!n) throw new Error(`netlink: bad ${what} ${JSON.stringify(v)}`);
  return n;
}

export const familyToAF = (f: Family): number => (f === 4 ? 2 : 10);
export const afToFamily = (af: number): Family | undefined => (af === 2 ? 4 : af === 10 ? 6 : undefined);

/** Formats an address attribute (4 or 16 bytes) as text; undefined for other lengths. */
export function ipText(b: Buffer | undefined): string | undefined {
  if (!b || (b.length !== 4 && b.length !== 16)) return undefined;
  return formatIP({ family: b.length === 4 ? 4 : 6, bytes: b });
}
