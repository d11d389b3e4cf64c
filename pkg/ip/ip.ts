// IP addresses and prefixes as bytes and bigints: the one home for address arithmetic,
// shared by the CNI parser, the netlink codec and the allocator.

// The same grammar as node:net's isIPv4/isIPv6 (no leading zeros in IPv4, optional IPv6 zone), kept
// here because loading node:net costs a plugin ~3-10 ms of start-up for two regular expressions.
const V4_SEG = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const V4_STR = `(?:${V4_SEG}\\.){3}${V4_SEG}`;
const V6_SEG = '(?:[0-9a-fA-F]{1,4})';
const IPV4_RE = new RegExp(`^${V4_STR}$`);
const IPV6_RE = new RegExp('^(?:' +
  `(?:${V6_SEG}:){7}(?:${V6_SEG}|:)|` +
  `(?:${V6_SEG}:){6}(?:${V4_STR}|:${V6_SEG}|:)|` +
  `(?:${V6_SEG}:){5}(?::${V4_STR}|(?::${V6_SEG}){1,2}|:)|` +
  `(?:${V6_SEG}:){4}(?:(?::${V6_SEG}){0,1}:${V4_STR}|(?::${V6_SEG}){1,3}|:)|` +
  `(?:${V6_SEG}:){3}(?:(?::${V6_SEG}){0,2}:${V4_STR}|(?::${V6_SEG}){1,4}|:)|` +
  `(?:${V6_SEG}:){2}(?:(?::${V6_SEG}){0,3}:${V4_STR}|(?::${V6_SEG}){1,5}|:)|` +
  `(?:${V6_SEG}:){1}(?:(?::${V6_SEG}){0,4}:${V4_STR}|(?::${V6_SEG}){1,6}|:)|` +
  `(?::(?:(?::${V6_SEG}){0,5}:${V4_STR}|(?::${V6_SEG}){1,7}|:))` +
  ')(?:%[0-9a-zA-Z-.:]{1,})?$');

function isIPv4(s: string): boolean {
  return IPV4_RE.test(s);
}

function isIPv6(s: string): boolean {
  return IPV6_RE.test(s);
}

export type Family = 4 | 6;

export interface IPAddr {
  family: Family;
  /** 4 or 16 bytes, network order. */
  bytes: Buffer;
}

/** An address with a prefix length, e.g. 10.0.0.5/24 (the address is kept, not masked). */
export interface IPNet {
  ip: IPAddr;
  prefix: number;
}

export function familyOf(s: string): Family | 0 {
  return isIPv4(s) ? 4 : isIPv6(s) ? 6 : 0;
}

/** Parses a dotted-quad or IPv6 text address; returns null when it is neither. */
export function parseIP(s: string): IPAddr | null {
  if (typeof s !== 'string') return null;
  if (isIPv4(s)) return { family: 4, bytes: Buffer.from(s.split('.').map(Number)) };
  if (!isIPv6(s)) return null;
  let text = s;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + ((b[0]! << 8) | b[1]!).toString(16) + ':' + ((b[2]! << 8) | b[3]!).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return { family: 6, bytes };
}

export function mustParseIP(s: string): IPAddr {
  const ip = parseIP(s);
  if (!ip) throw new Error(`not an IP address: ${JSON.stringify(s)}`);
  return ip;
}

export function ipFromBytes(bytes: Buffer): IPAddr {
  if (bytes.length === 4) return { family: 4, bytes: Buffer.from(bytes) };
  if (bytes.length === 16) return { family: 6, bytes: Buffer.from(bytes) };
  throw new Error(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (longest zero run compressed, lower case). */
export function formatIP(ip: IPAddr): string {
  const b = ip.bytes;
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return hex.slice(0, bestStart).join(':') + '::' + hex.slice(bestStart + bestLen).join(':');
}

export function ipToBigInt(ip: IPAddr): bigint {
  return BigInt('0x' + ip.bytes.toString('hex'));
}

export function bigIntToIP(n: bigint, family: Family): IPAddr {
  const len = family === 4 ? 4 : 16;
  const hex = n.toString(16).padStart(len * 2, '0');
  if (hex.length > len * 2 || n < 0n) throw new Error(`${n} does not fit an IPv${family} address`);
  return { family, bytes: Buffer.from(hex, 'hex') };
}

export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** Parses "addr/len"; returns null when malformed or the length is out of range. */
export function parseCIDR(s: string): IPNet | null {
  if (typeof s !== 'string') return null;
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const ip = parseIP(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(lenText)) return null;
  const prefix = Number(lenText);
  if (prefix > bitsOf(ip.family)) return null;
  return { ip, prefix };
}

export function formatCIDR(n: IPNet): string {
  return `${formatIP(n.ip)}/${n.prefix}`;
}

function maskBig(prefix: number, family: Family): bigint {
  const bits = BigInt(bitsOf(family));
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefix))) - 1n);
}

/** The network address of n (host bits cleared). */
export function networkOf(n: IPNet): IPNet {
  return { ip: bigIntToIP(ipToBigInt(n.ip) & maskBig(n.prefix, n.ip.family), n.ip.family), prefix: n.prefix };
}

/** The last address of n (all host bits set). */
export function lastOf(n: IPNet): IPAddr {
  const host = (1n << BigInt(bitsOf(n.ip.family) - n.prefix)) - 1n;
  return bigIntToIP((ipToBigInt(n.ip) & maskBig(n.prefix, n.ip.family)) | host, n.ip.family);
}

export function contains(n: IPNet, ip: IPAddr): boolean {
  if (n.ip.family !== ip.family) return false;
  const m = maskBig(n.prefix, ip.family);
  return (ipToBigInt(n.ip) & m) === (ipToBigInt(ip) & m);
}

/** True when the two prefixes share at least one address. */
export function overlaps(a: IPNet, b: IPNet): boolean {
  if (a.ip.family !== b.ip.family) return false;
  return contains(a, b.ip) || contains(b, a.ip);
}

export function ipEqual(a: IPAddr, b: IPAddr): boolean {
  return a.family === b.family && a.bytes.equals(b.bytes);
}

export function compareIP(a: IPAddr, b: IPAddr): number {
  if (a.family !== b.family) return a.family - b.family;
  return Buffer.compare(a.bytes, b.bytes);
}

export function addToIP(ip: IPAddr, delta: bigint): IPAddr {
  return bigIntToIP(ipToBigInt(ip) + delta, ip.family);
}

/** Dotted netmask or hex mask text as used by CNI results below 1.0 is not needed; this is the prefix mask as bytes. */
export function maskBytes(prefix: number, family: Family): Buffer {
  return bigIntToIP(maskBig(prefix, family), family).bytes;
}
