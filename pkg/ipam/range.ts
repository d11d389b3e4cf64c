// The range logic both IPAM backends share, pure (no store, no I/O): which range set and range an
// address belongs to, why an address is never handed out, where static requests go, the
// round-robin order of candidates, allocatable counts, and CHECK's comparison with prevResult.
// Every function works on the parsed config (config.ts): bigint intervals, no text parsing.
import { CniError, Code } from '../cni/errors';
import { Family, IPAddr, bigIntToIP, formatIP, ipToBigInt, parseIP } from '../ip/ip';
import type { Interval, IpamConfig, Range, RangeSet } from './config';
import type { Owner } from './store';

/** One address handed to an attachment. */
export interface Allocation {
  rangeSet: number;
  ip: string;
  family: Family;
  prefix: number;
  gateway: string | null;
}

/** A static request placed in its range: the address as a number. */
export interface Placed {
  range: Range;
  n: bigint;
}

export function ipText(n: bigint, family: Family): string {
  return formatIP(bigIntToIP(n, family));
}

/** "container C (IF)": how messages name an attachment. */
export function who(o: Owner): string {
  return `container ${o.containerId} (${o.ifName})`;
}

function unavailable(msg: string): CniError {
  return new CniError(Code.AddressUnavailable, msg);
}

/** The allocation of address n of range r in set. */
export function allocationOf(set: RangeSet, r: Range, n: bigint): Allocation {
  return { rangeSet: set.index, ip: ipText(n, r.family), family: r.family, prefix: r.prefix, gateway: r.gateway === null ? null : ipText(r.gateway, r.family) };
}

/** The blocked interval holding n, if any. */
export function blockedAt(r: Range, n: bigint): Interval | undefined {
  return r.blocked.find((b) => n >= b.lo && n <= b.hi);
}

/** The range of the set whose subnet holds the address, preferring one whose start..end holds it. */
export function rangeFor(set: RangeSet, family: Family, n: bigint): Range | undefined {
  if (set.family !== family) return undefined;
  return set.ranges.find((r) => n >= r.start && n <= r.end) ?? set.ranges.find((r) => n >= r.network && n <= r.last);
}

/** The range set and range an address belongs to (subnet match), or undefined. */
export function locate(sets: readonly RangeSet[], ip: IPAddr): { set: RangeSet; range: Range } | undefined {
  const n = ipToBigInt(ip);
  for (const set of sets) {
    const range = rangeFor(set, ip.family, n);
    if (range) return { set, range };
  }
  return undefined;
}

/** Why an address of the range's subnet is never handed out (null: it may be). */
export function blockedReason(r: Range, n: bigint): string | null {
  if (!blockedAt(r, n)) return null;
  if (n === r.network) return r.family === 4 ? `the network address of ${r.subnet}` : `the subnet-router anycast address of ${r.subnet}`;
  if (r.family === 4 && n === r.last) return `the broadcast address of ${r.subnet}`;
  if (n === r.gateway) return `the gateway of ${r.subnet}`;
  return 'excluded by ipam.exclude';
}

/** The subnets of every range, for messages. */
export function subnetsText(sets: readonly RangeSet[]): string {
  return sets.flatMap((s) => s.ranges.map((r) => r.subnet)).join(', ');
}

/** "range set I (SUBNET START-END, ...) of network N": for exhaustion messages. */
export function exhaustedMessage(set: RangeSet, network: string): string {
  return `no free address in range set ${set.index} (${set.ranges.map((r) => `${r.subnet} ${ipText(r.start, r.family)}-${ipText(r.end, r.family)}`).join(', ')}) of network ${network}: all are reserved`;
}

/**
 * Maps static requests to range sets; each must lie in a subnet (anywhere in it, also outside
 * rangeStart..rangeEnd) and be allocatable; at most one per range set. Code 102 otherwise.
 */
export function placeRequests(cfg: Pick<IpamConfig, 'rangeSets' | 'network'>, requests: IPAddr[]): Map<number, Placed> {
  const out = new Map<number, Placed>();
  for (const ip of requests) {
    const text = formatIP(ip);
    const hit = locate(cfg.rangeSets, ip);
    if (!hit) throw unavailable(`requested address ${text} is outside every range of network ${cfg.network} (subnets ${subnetsText(cfg.rangeSets)})`);
    const n = ipToBigInt(ip);
    const why = blockedReason(hit.range, n);
    if (why) throw unavailable(`requested address ${text} cannot be handed out: it is ${why}`);
    const prev = out.get(hit.set.index);
    if (prev) {
      if (prev.n === n) continue;
      throw unavailable(`requested addresses ${ipText(prev.n, prev.range.family)} and ${text} fall in the same range set ${hit.set.index}: an attachment gets one address per range set`);
    }
    out.set(hit.set.index, { range: hit.range, n });
  }
  return out;
}

/**
 * Whether an address the attachment already holds may stay: it lies in a range set not yet
 * filled, fits the static request of its set (if any) and is not blocked (config edits).
 * Returns where it lies, or null when it must go.
 */
export function keepable(sets: readonly RangeSet[], text: string, filled: ReadonlySet<number> | ReadonlyMap<number, unknown>, wanted: ReadonlyMap<number, Placed>): { set: RangeSet; range: Range; n: bigint } | null {
  const ip = parseIP(text);
  const hit = ip && locate(sets, ip);
  if (!ip || !hit || filled.has(hit.set.index)) return null;
  const n = ipToBigInt(ip);
  const req = wanted.get(hit.set.index);
  if ((req && req.n !== n) || blockedReason(hit.range, n)) return null;
  return { ...hit, n };
}

/** Addresses of rangeStart..rangeEnd that may be handed out. */
export function allocatableCount(r: Range): bigint {
  let n = r.end - r.start + 1n;
  for (const b of r.blocked) {
    const lo = b.lo > r.start ? b.lo : r.start;
    const hi = b.hi < r.end ? b.hi : r.end;
    if (lo <= hi) n -= hi - lo + 1n;
  }
  return n;
}

/** Up to `limit` addresses of lo..hi (clipped to r's start..end) that are not blocked and pass `ok`. */
export function freeBetween(r: Range, lo: bigint, hi: bigint, limit: number, ok: (n: bigint) => boolean): bigint[] {
  const out: bigint[] = [];
  let n = lo > r.start ? lo : r.start;
  const top = hi < r.end ? hi : r.end;
  while (n <= top && out.length < limit) {
    const bl = blockedAt(r, n);
    if (bl) { n = bl.hi + 1n; continue; }
    if (ok(n)) out.push(n);
    n++;
  }
  return out;
}

/**
 * Candidate addresses of a range set in round-robin order: after `last` to the end of its range,
 * then the following ranges, wrapping to the start of `last`'s range; blocked addresses skipped.
 */
export function* candidates(set: RangeSet, last: IPAddr | null): Generator<Placed> {
  const k = set.ranges.length;
  let first = 0;
  let from: bigint | null = null;
  if (last && last.family === set.family) {
    const n = ipToBigInt(last);
    const i = set.ranges.findIndex((r) => n >= r.start && n <= r.end);
    if (i >= 0) { first = i; from = n + 1n; }
  }
  const r0 = set.ranges[first]!;
  const segments: Array<[Range, bigint, bigint]> = [];
  segments.push([r0, from ?? r0.start, r0.end]);
  for (let j = 1; j < k; j++) { const r = set.ranges[(first + j) % k]!; segments.push([r, r.start, r.end]); }
  if (from !== null && from > r0.start) segments.push([r0, r0.start, from - 1n]);
  for (const [range, lo, hi] of segments) {
    let n = lo;
    while (n <= hi) {
      const b = blockedAt(range, n);
      if (b) { n = b.hi + 1n; continue; }
      yield { range, n };
      n++;
    }
  }
}

/** CHECK after the store agreed: the attachment holds an address in every range set. */
export function checkAllSets(sets: readonly RangeSet[], owner: Owner, held: Allocation[]): void {
  const missing = sets.filter((s) => !held.some((a) => a.rangeSet === s.index));
  if (missing.length) throw new CniError(Code.Conflict, `${who(owner)} holds no address in range set ${missing.map((s) => s.index).join(', ')}`);
}

/**
 * CHECK against prevResult: every held address is in prevResult, and every prevResult address
 * inside this network's ranges is held (addresses of other networks are not ours to judge).
 * `prevIps` as in a result: "addr/len".
 */
export function matchPrevResult(sets: readonly RangeSet[], owner: Owner, held: Allocation[], prevIps: string[]): void {
  const prev = new Set(prevIps.map((a) => { const ip = parseIP(a.split('/')[0]!); return ip ? formatIP(ip) : a; }));
  for (const a of held) if (!prev.has(a.ip)) throw new CniError(Code.Conflict, `address ${a.ip} of ${who(owner)} is missing from prevResult`);
  for (const p of prev) {
    const ip = parseIP(p);
    if (ip && locate(sets, ip) && !held.some((a) => a.ip === p)) throw new CniError(Code.Conflict, `prevResult address ${p} is not reserved for ${who(owner)}`);
  }
}
