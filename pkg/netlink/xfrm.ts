// IPsec through NETLINK_XFRM (linux/xfrm.h): security associations (states) and policies, the
// subset knit's encrypted overlay uses: ESP in transport mode with an AEAD between two underlay
// addresses, policies selecting UDP to a port between two hosts, block policies, dumps with the
// byte counters (to see a new SA in use). IPv4 only for now. Structs are x86-64/arm64 layouts
// (64-bit kernels; a 32-bit userland on a 64-bit kernel would need the compat layer).
import { formatIP, parseIP, type IPAddr } from '../ip/ip';
import { MsgWriter, parseAttrs, type NlMsg } from './codec';
import { NLM_F_CREATE, NLM_F_EXCL } from './constants';
import { Netlink } from './socket';

export const NETLINK_XFRM = 6;

// message types
export const XFRM_MSG_NEWSA = 0x10;
export const XFRM_MSG_DELSA = 0x11;
export const XFRM_MSG_GETSA = 0x12;
export const XFRM_MSG_NEWPOLICY = 0x13;
export const XFRM_MSG_DELPOLICY = 0x14;
export const XFRM_MSG_GETPOLICY = 0x15;
export const XFRM_MSG_UPDPOLICY = 0x19;
export const XFRM_MSG_UPDSA = 0x1a;

// attributes
export const XFRMA_TMPL = 5;
export const XFRMA_ALG_AEAD = 18;

export const IPPROTO_ESP = 50;
export const IPPROTO_UDP = 17;
export const XFRM_MODE_TRANSPORT = 0;
export const XFRM_POLICY_IN = 0;
export const XFRM_POLICY_OUT = 1;
export const XFRM_POLICY_ALLOW = 0;
export const XFRM_POLICY_BLOCK = 1;
const AF_INET = 2;

const USERSA_INFO_LEN = 224;
const USERSA_ID_LEN = 24;
const USERPOLICY_INFO_LEN = 168;
const USERPOLICY_ID_LEN = 64;
const USER_TMPL_LEN = 64;
const XFRM_INF = 0xffffffffffffffffn;

/** Traffic a policy (or a state) applies to; absent fields are wildcards. */
export interface XfrmSelector {
  src?: string; srcPrefix?: number;
  dst?: string; dstPrefix?: number;
  proto?: number;
  sport?: number;
  dport?: number;
}

function v4(s: string | undefined, what: string): Buffer {
  const b = Buffer.alloc(16);
  if (s === undefined) return b;
  const ip: IPAddr | null = parseIP(s);
  if (!ip || ip.family !== 4) throw new Error(`xfrm: ${what} ${JSON.stringify(s)}: an IPv4 address`);
  ip.bytes.copy(b, 0);
  return b;
}

function addrText(b: Buffer, off: number): string {
  return formatIP({ family: 4, bytes: b.subarray(off, off + 4) });
}

function encodeSelector(s: XfrmSelector, into: Buffer, at: number): void {
  v4(s.dst, 'selector dst').copy(into, at);
  v4(s.src, 'selector src').copy(into, at + 16);
  if (s.dport !== undefined) { into.writeUInt16BE(s.dport, at + 32); into.writeUInt16BE(0xffff, at + 34); }
  if (s.sport !== undefined) { into.writeUInt16BE(s.sport, at + 36); into.writeUInt16BE(0xffff, at + 38); }
  into.writeUInt16LE(AF_INET, at + 40);
  into.writeUInt8(s.dst !== undefined ? (s.dstPrefix ?? 32) : 0, at + 42);
  into.writeUInt8(s.src !== undefined ? (s.srcPrefix ?? 32) : 0, at + 43);
  into.writeUInt8(s.proto ?? 0, at + 44);
}

function decodeSelector(b: Buffer, at: number): XfrmSelector {
  const s: XfrmSelector = {};
  const pd = b.readUInt8(at + 42), ps = b.readUInt8(at + 43);
  if (pd) { s.dst = addrText(b, at); s.dstPrefix = pd; }
  if (ps) { s.src = addrText(b, at + 16); s.srcPrefix = ps; }
  if (b.readUInt16BE(at + 34)) s.dport = b.readUInt16BE(at + 32);
  if (b.readUInt16BE(at + 38)) s.sport = b.readUInt16BE(at + 36);
  const proto = b.readUInt8(at + 44);
  if (proto) s.proto = proto;
  return s;
}

/** Lifetime config: no limits (rekeying is knit's, by generation, not the kernel's). */
function encodeLifetimeInf(into: Buffer, at: number): void {
  for (let i = 0; i < 4; i++) into.writeBigUInt64LE(XFRM_INF, at + i * 8);
}

export interface XfrmStateSpec {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  /** Kernel AEAD name, e.g. rfc4106(gcm(aes)). */
  aead: string;
  /** Key material (rfc4106: the AES key then the 4-byte salt). Never logged. */
  key: Buffer;
  icvBits: number;
  /** Selector the state is restricted to (transport mode: the flow it protects). */
  sel?: XfrmSelector;
}

export interface XfrmState {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  proto: number;
  mode: number;
  aead?: string;
  /** Bytes and packets through this SA so far (curlft). */
  bytes: bigint;
  packets: bigint;
}

function stateOp(s: XfrmStateSpec): string {
  return `xfrm state ${s.src} > ${s.dst} spi 0x${s.spi.toString(16)} reqid ${s.reqid}`;
}

/** Adds an ESP transport-mode SA (EEXIST when src, dst and SPI exist already). */
export function xfrmStateAdd(nl: Netlink, s: XfrmStateSpec, update = false): void {
  const w = new MsgWriter(update ? XFRM_MSG_UPDSA : XFRM_MSG_NEWSA, update ? 0 : NLM_F_CREATE | NLM_F_EXCL, 512);
  const h = Buffer.alloc(USERSA_INFO_LEN);
  encodeSelector({ ...s.sel }, h, 0);
  v4(s.dst, 'state dst').copy(h, 56); // id.daddr
  h.writeUInt32BE(s.spi >>> 0, 72); // id.spi
  h.writeUInt8(IPPROTO_ESP, 76); // id.proto
  v4(s.src, 'state src').copy(h, 80); // saddr
  encodeLifetimeInf(h, 96); // lft: soft/hard byte and packet limits
  h.writeUInt32LE(s.reqid >>> 0, 208);
  h.writeUInt16LE(AF_INET, 212);
  h.writeUInt8(XFRM_MODE_TRANSPORT, 214);
  // A 32-packet anti-replay window: a replayed ESP packet is dropped.
  h.writeUInt8(32, 215);
  w.bytes(h);
  const alg = Buffer.alloc(64 + 8 + s.key.length);
  alg.write(s.aead, 0, 63, 'latin1');
  alg.writeUInt32LE(s.key.length * 8, 64);
  alg.writeUInt32LE(s.icvBits, 68);
  s.key.copy(alg, 72);
  w.attr(XFRMA_ALG_AEAD, alg);
  nl.exec(w, stateOp(s));
  alg.fill(0);
}

export function xfrmStateDel(nl: Netlink, s: { dst: string; spi: number }): void {
  const w = new MsgWriter(XFRM_MSG_DELSA, 0);
  const h = Buffer.alloc(USERSA_ID_LEN);
  v4(s.dst, 'state dst').copy(h, 0);
  h.writeUInt32BE(s.spi >>> 0, 16);
  h.writeUInt16LE(AF_INET, 20);
  h.writeUInt8(IPPROTO_ESP, 22);
  w.bytes(h);
  nl.exec(w, `xfrm state del dst ${s.dst} spi 0x${s.spi.toString(16)}`);
}

export function decodeState(msg: NlMsg): XfrmState | undefined {
  if (msg.type !== XFRM_MSG_NEWSA || msg.data.length < USERSA_INFO_LEN) return undefined;
  const b = msg.data;
  if (b.readUInt16LE(212) !== AF_INET) return undefined;
  const st: XfrmState = {
    dst: addrText(b, 56), spi: b.readUInt32BE(72), proto: b.readUInt8(76), src: addrText(b, 80),
    bytes: b.readBigUInt64LE(160), packets: b.readBigUInt64LE(168), reqid: b.readUInt32LE(208), mode: b.readUInt8(214),
  };
  const a = parseAttrs(b, USERSA_INFO_LEN);
  const alg = a.get(XFRMA_ALG_AEAD);
  if (alg) st.aead = alg.toString('latin1', 0, 64).replace(/\0.*$/s, '');
  return st;
}

/** Every IPv4 SA in the namespace (keys are not returned to callers). */
export function xfrmStateList(nl: Netlink): XfrmState[] {
  return nl.dump(new MsgWriter(XFRM_MSG_GETSA, 0), 'xfrm state list', decodeState);
}

export interface XfrmPolicySpec {
  sel: XfrmSelector;
  dir: number;
  /** Lower is preferred. */
  priority: number;
  action: number;
  /** ESP transport template for ALLOW policies; reqid 0: any SA. */
  tmpl?: { reqid: number };
}

export interface XfrmPolicy extends XfrmPolicySpec {
  index: number;
}

function policyOp(p: { sel: XfrmSelector; dir: number }, verb: string): string {
  const s = p.sel;
  return `xfrm policy ${verb} ${p.dir === XFRM_POLICY_OUT ? 'out' : p.dir === XFRM_POLICY_IN ? 'in' : `dir ${p.dir}`} ${s.src ?? 'any'} > ${s.dst ?? 'any'}${s.dport ? ` dport ${s.dport}` : ''}`;
}

/** Adds or replaces (same selector and direction) a policy. */
export function xfrmPolicyUpdate(nl: Netlink, p: XfrmPolicySpec): void {
  const w = new MsgWriter(XFRM_MSG_UPDPOLICY, 0);
  const h = Buffer.alloc(USERPOLICY_INFO_LEN);
  encodeSelector(p.sel, h, 0);
  encodeLifetimeInf(h, 56);
  h.writeUInt32LE(p.priority >>> 0, 152);
  h.writeUInt8(p.dir, 160);
  h.writeUInt8(p.action, 161);
  w.bytes(h);
  if (p.tmpl) {
    const t = Buffer.alloc(USER_TMPL_LEN);
    t.writeUInt8(IPPROTO_ESP, 20); // id.proto (addresses and SPI: any)
    t.writeUInt16LE(AF_INET, 24);
    t.writeUInt32LE(p.tmpl.reqid >>> 0, 44);
    t.writeUInt8(XFRM_MODE_TRANSPORT, 48);
    t.writeUInt32LE(0xffffffff, 52); // aalgos, ealgos, calgos: any
    t.writeUInt32LE(0xffffffff, 56);
    t.writeUInt32LE(0xffffffff, 60);
    w.attr(XFRMA_TMPL, t);
  }
  nl.exec(w, policyOp(p, p.action === XFRM_POLICY_BLOCK ? 'block' : 'update'));
}

export function xfrmPolicyDel(nl: Netlink, p: { sel: XfrmSelector; dir: number }): void {
  const w = new MsgWriter(XFRM_MSG_DELPOLICY, 0);
  const h = Buffer.alloc(USERPOLICY_ID_LEN);
  encodeSelector(p.sel, h, 0);
  h.writeUInt8(p.dir, 60);
  w.bytes(h);
  nl.exec(w, policyOp(p, 'del'));
}

export function decodePolicy(msg: NlMsg): XfrmPolicy | undefined {
  if (msg.type !== XFRM_MSG_NEWPOLICY || msg.data.length < USERPOLICY_INFO_LEN) return undefined;
  const b = msg.data;
  if (b.readUInt16LE(40) !== AF_INET) return undefined;
  const p: XfrmPolicy = {
    sel: decodeSelector(b, 0), priority: b.readUInt32LE(152), index: b.readUInt32LE(156), dir: b.readUInt8(160), action: b.readUInt8(161),
  };
  const t = parseAttrs(b, USERPOLICY_INFO_LEN).get(XFRMA_TMPL);
  if (t && t.length >= USER_TMPL_LEN) p.tmpl = { reqid: t.readUInt32LE(44) };
  return p;
}

export function xfrmPolicyList(nl: Netlink): XfrmPolicy[] {
  return nl.dump(new MsgWriter(XFRM_MSG_GETPOLICY, 0), 'xfrm policy list', decodePolicy);
}

/** A NETLINK_XFRM handle in a namespace (null: the current one). */
export function openXfrm(netnsPath?: string | null): Netlink {
  return Netlink.open(netnsPath, NETLINK_XFRM);
}
