// The `ipam` section of a knit-host-local (or knit-etcd-ipam) network: parsed once, validated with
// messages that name the key path, the value and what would be valid, and turned into range sets of
// bigint intervals so the allocator never parses text again.
import { invalidConfig } from '../cni/errors';
import { Bounds, Family, bigIntToIP, bitsOf, boundsOf, formatIP, parseCIDR, parseIP, ipToBigInt } from '../ip/ip';

export const DEFAULT_DATA_DIR = '/var/lib/knit/networks';

/** An inclusive interval of addresses of one family. */
export type Interval = Bounds;

/** One subnet and the part of it that dynamic allocation walks. */
export interface Range {
  /** Key path for messages, e.g. `ipam.ranges[0][1]`. */
  path: string;
  family: Family;
  prefix: number;
  /** Subnet text with host bits cleared, e.g. 10.1.0.0/24. */
  subnet: string;
  /** First and last address of the subnet. */
  network: bigint;
  last: bigint;
  /** Dynamic allocation bounds, inclusive (rangeStart..rangeEnd). */
  start: bigint;
  end: bigint;
  gateway: bigint | null;
  /** Addresses of the subnet never handed out, merged and sorted: network, broadcast (IPv4),
   *  subnet-router anycast (IPv6 ::0, the network address), gateway, and `exclude` entries. */
  blocked: Interval[];
}

/** A range set: alternatives of one family; an attachment gets one address per range set. */
export interface RangeSet {
  index: number;
  family: Family;
  ranges: Range[];
}

export interface Route {
  dst: string;
  gw?: string;
  [k: string]: unknown;
}

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface IpamConfig {
  /** The network name: the store's directory (host-local) or key prefix (etcd). */
  network: string;
  type: string;
  rangeSets: RangeSet[];
  routes: Route[];
  dataDir: string;
  resolvConf: string | null;
  dns: Dns | null;
  /** Raw ipam section, for stores that read their own keys (etcd endpoints ...). */
  raw: Record<string, unknown>;
}

/** The parts of a network config this parser reads (a subset of pkg/cni NetConf). */
export interface IpamNetConf {
  name?: unknown;
  ipam?: unknown;
  runtimeConfig?: { ipRanges?: unknown; [k: string]: unknown } | undefined;
  [k: string]: unknown;
}

// Same rule as the spec's network name: it becomes a directory name, so nothing path-like.
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseIpamConfig(conf: IpamNetConf): IpamConfig {
  if (typeof conf.name !== 'string' || !NAME_RE.test(conf.name) || conf.name.length > 200) {
    throw invalidConfig('name', conf.name, 'a network name: letters, digits, _ . - starting with a letter or digit');
  }
  const ipam = conf.ipam;
  if (!isObject(ipam)) throw invalidConfig('ipam', ipam, 'an object with type and ranges (or subnet)');
  const type = typeof ipam.type === 'string' ? ipam.type : '';

  // Range sets, in the reference's order: runtime ipRanges, legacy single range, then ranges.
  const sources: Array<{ path: string; value: unknown }> = [];
  const rtRanges = conf.runtimeConfig?.ipRanges;
  if (rtRanges !== undefined) {
    if (!Array.isArray(rtRanges)) throw invalidConfig('runtimeConfig.ipRanges', rtRanges, 'an array of range sets');
    rtRanges.forEach((rs, i) => sources.push({ path: `runtimeConfig.ipRanges[${i}]`, value: rs }));
  }
  if (ipam.subnet !== undefined) {
    sources.push({ path: 'ipam', value: [{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }] });
  } else {
    for (const k of ['rangeStart', 'rangeEnd', 'gateway']) {
      if (ipam[k] !== undefined) throw invalidConfig(`ipam.${k}`, ipam[k], 'only valid together with ipam.subnet (or use ipam.ranges)');
    }
  }
  if (ipam.ranges !== undefined) {
    if (!Array.isArray(ipam.ranges)) throw invalidConfig('ipam.ranges', ipam.ranges, 'an array of range sets, each an array of {subnet, rangeStart?, rangeEnd?, gateway?}');
    ipam.ranges.forEach((rs, i) => sources.push({ path: `ipam.ranges[${i}]`, value: rs }));
  }
  if (sources.length === 0) {
    throw invalidConfig('ipam.ranges', ipam.ranges, 'at least one range set, e.g. [[{"subnet": "10.22.0.0/16"}]] (or the legacy ipam.subnet)');
  }

  const exclude = parseExclude(ipam.exclude);
  const rangeSets = sources.map((s, i) => parseRangeSet(s.path, s.value, i, exclude));
  checkExcludeInside(exclude, rangeSets);
  checkOverlaps(rangeSets);

  let dataDir = DEFAULT_DATA_DIR;
  if (ipam.dataDir !== undefined) {
    if (typeof ipam.dataDir !== 'string' || !ipam.dataDir.startsWith('/')) throw invalidConfig('ipam.dataDir', ipam.dataDir, 'an absolute directory path');
    dataDir = ipam.dataDir;
  }
  let resolvConf: string | null = null;
  if (ipam.resolvConf !== undefined) {
    if (typeof ipam.resolvConf !== 'string' || !ipam.resolvConf.startsWith('/')) throw invalidConfig('ipam.resolvConf', ipam.resolvConf, 'an absolute path to a resolv.conf file');
    resolvConf = ipam.resolvConf;
  }
  return {
    network: conf.name,
    type,
    rangeSets,
    routes: parseRoutes(ipam.routes),
    dataDir,
    resolvConf,
    dns: ipam.dns === undefined ? null : parseDns(ipam.dns),
    raw: ipam,
  };
}

function parseRangeSet(path: string, value: unknown, index: number, exclude: ExcludeEntry[]): RangeSet {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalidConfig(path, value, 'a non-empty array of ranges {subnet, rangeStart?, rangeEnd?, gateway?}');
  }
  const ranges = value.map((r, j) => parseRange(path === 'ipam' ? 'ipam' : `${path}[${j}]`, r, exclude));
  const family = ranges[0]!.family;
  ranges.forEach((r) => {
    if (r.family !== family) throw invalidConfig(`${r.path}.subnet`, r.subnet, `IPv${family} like the first range of this range set; a range set holds one address family`);
  });
  return { index, family, ranges };
}

const RANGE_KEYS = ['subnet', 'rangeStart', 'rangeEnd', 'gateway'];

function parseRange(path: string, value: unknown, exclude: ExcludeEntry[]): Range {
  if (!isObject(value)) throw invalidConfig(path, value, 'an object {subnet, rangeStart?, rangeEnd?, gateway?}');
  // A misspelt key (rangestart) would silently widen the range: refuse it.
  if (path !== 'ipam') {
    for (const k of Object.keys(value)) {
      if (!RANGE_KEYS.includes(k)) throw invalidConfig(`${path}.${k}`, value[k], `not a range key; a range has ${RANGE_KEYS.join(', ')}`);
    }
  }
  const net = parseCIDR(value.subnet as string);
  if (!net) throw invalidConfig(`${path}.subnet`, value.subnet, 'a CIDR such as 10.22.0.0/16 or fd00:22::/64');
  const family = net.ip.family;
  const bits = bitsOf(family);
  // A /31, /32, /127 or /128 leaves nothing after the network, gateway and broadcast.
  if (net.prefix > bits - 2) throw invalidConfig(`${path}.subnet`, value.subnet, `a prefix of at most /${bits - 2}: this subnet is too small to allocate from`);
  const { lo: network, hi: last } = boundsOf(net);
  const subnet = `${formatIP(bigIntToIP(network, family))}/${net.prefix}`;
  const inSubnet = (key: string, v: unknown): bigint | undefined => {
    if (v === undefined || v === null) return undefined;
    const ip = parseIP(v as string);
    if (!ip || ip.family !== family) throw invalidConfig(`${path}.${key}`, v, `an IPv${family} address inside ${subnet}`);
    const n = ipToBigInt(ip);
    if (n < network || n > last) throw invalidConfig(`${path}.${key}`, v, `an address inside ${subnet}`);
    return n;
  };
  // Never handed out: the network address (IPv4 network, IPv6 subnet-router anycast) and the
  // IPv4 broadcast address.
  const special: Interval[] = [{ lo: network, hi: network }];
  if (family === 4) special.push({ lo: last, hi: last });
  const isSpecial = (n: bigint): boolean => n === network || (family === 4 && n === last);

  const gwGiven = inSubnet('gateway', value.gateway);
  if (gwGiven !== undefined && isSpecial(gwGiven)) {
    throw invalidConfig(`${path}.gateway`, value.gateway, `a host address of ${subnet}, not its network${family === 4 ? ' or broadcast' : ''} address`);
  }
  // Like the reference: without a gateway the first host address is the gateway.
  const gateway = gwGiven ?? network + 1n;
  const start = inSubnet('rangeStart', value.rangeStart) ?? network + 1n;
  const end = inSubnet('rangeEnd', value.rangeEnd) ?? (family === 4 ? last - 1n : last);
  if (start > end) {
    throw invalidConfig(`${path}.rangeEnd`, value.rangeEnd ?? formatIP(bigIntToIP(end, family)), `an address not before rangeStart ${formatIP(bigIntToIP(start, family))}`);
  }
  const blocked: Interval[] = [...special, { lo: gateway, hi: gateway }];
  for (const e of exclude) {
    if (e.family !== family) continue;
    const lo = e.lo > network ? e.lo : network;
    const hi = e.hi < last ? e.hi : last;
    if (lo <= hi) blocked.push({ lo, hi });
  }
  return { path, family, prefix: net.prefix, subnet, network, last, start, end, gateway, blocked: mergeIntervals(blocked) };
}

interface ExcludeEntry extends Interval {
  family: Family;
  path: string;
  text: string;
}

function parseExclude(v: unknown): ExcludeEntry[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalidConfig('ipam.exclude', v, 'an array of addresses or CIDRs never handed out, e.g. ["10.22.0.5", "10.22.0.128/28"]');
  return v.map((e, i) => {
    const path = `ipam.exclude[${i}]`;
    const valid = 'an IP address or CIDR, e.g. "10.22.0.5" or "10.22.0.128/28"';
    if (typeof e !== 'string') throw invalidConfig(path, e, valid);
    if (e.includes('/')) {
      const net = parseCIDR(e);
      if (!net) throw invalidConfig(path, e, valid);
      return { family: net.ip.family, ...boundsOf(net), path, text: e };
    }
    const ip = parseIP(e);
    if (!ip) throw invalidConfig(path, e, valid);
    const n = ipToBigInt(ip);
    return { family: ip.family, lo: n, hi: n, path, text: e };
  });
}

// An exclusion that matches no subnet is almost surely a typo: say so instead of ignoring it.
function checkExcludeInside(exclude: ExcludeEntry[], sets: RangeSet[]): void {
  for (const e of exclude) {
    const hit = sets.some((s) => s.ranges.some((r) => r.family === e.family && e.lo <= r.last && e.hi >= r.network));
    if (!hit) throw invalidConfig(e.path, e.text, `an address or CIDR inside one of the configured subnets (${sets.flatMap((s) => s.ranges.map((r) => r.subnet)).join(', ')})`);
  }
}

// Two ranges sharing an allocatable address would let two range sets hand out the same address.
function checkOverlaps(sets: RangeSet[]): void {
  const all = sets.flatMap((s) => s.ranges);
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i]!, b = all[j]!;
      if (a.family === b.family && a.start <= b.end && b.start <= a.end) {
        throw invalidConfig(`${b.path}.subnet`, b.subnet, `a range not overlapping ${a.path} (${a.subnet}): ranges must not share addresses`);
      }
    }
  }
}

function parseRoutes(v: unknown): Route[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalidConfig('ipam.routes', v, 'an array of {dst, gw?}');
  return v.map((r, i) => {
    const path = `ipam.routes[${i}]`;
    if (!isObject(r)) throw invalidConfig(path, r, 'an object {dst, gw?}');
    const dst = parseCIDR(r.dst as string);
    if (!dst) throw invalidConfig(`${path}.dst`, r.dst, 'a CIDR such as 0.0.0.0/0 or ::/0');
    if (r.gw !== undefined) {
      const gw = parseIP(r.gw as string);
      if (!gw || gw.family !== dst.ip.family) throw invalidConfig(`${path}.gw`, r.gw, `an IPv${dst.ip.family} address (the family of dst)`);
    }
    return { ...r } as Route;
  });
}

function parseDns(v: unknown): Dns {
  if (!isObject(v)) throw invalidConfig('ipam.dns', v, 'an object {nameservers?, domain?, search?, options?}');
  const out: Dns = {};
  const strings = (key: 'nameservers' | 'search' | 'options'): void => {
    const x = v[key];
    if (x === undefined) return;
    if (!Array.isArray(x) || x.some((s) => typeof s !== 'string')) throw invalidConfig(`ipam.dns.${key}`, x, 'an array of strings');
    out[key] = x as string[];
  };
  strings('nameservers');
  (out.nameservers ?? []).forEach((s, i) => {
    if (!parseIP(s)) throw invalidConfig(`ipam.dns.nameservers[${i}]`, s, 'an IP address');
  });
  strings('search');
  strings('options');
  if (v.domain !== undefined) {
    if (typeof v.domain !== 'string') throw invalidConfig('ipam.dns.domain', v.domain, 'a string');
    out.domain = v.domain;
  }
  return out;
}

/** Sorts and merges overlapping or adjacent intervals. */
export function mergeIntervals(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: Interval[] = [];
  for (const iv of sorted) {
    const prev = out[out.length - 1];
    if (prev && iv.lo <= prev.hi + 1n) {
      if (iv.hi > prev.hi) prev.hi = iv.hi;
    } else {
      out.push({ lo: iv.lo, hi: iv.hi });
    }
  }
  return out;
}
