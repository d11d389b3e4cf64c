// Isolation between knit networks on one node (Docker's DOCKER-ISOLATION chains, in nftables):
// traffic that enters from one isolated network's bridge and leaves through another isolated
// network's bridge is dropped in the forward hook. One rule for the whole node, sets keyed by
// interface name, and one record set per network: adding a pod costs one idempotent, atomic
// `nft -f` transaction (or nothing new when its network is already there), never a rule per pod.
//
//   table inet knit-isolation
//     set bridges { type ifname }                   every isolated network's bridge
//     set same { type ifname . ifname }             (br . br): routed back out of the same bridge
//     set n_<net> { type ifname }                   the record of one network: its bridge(s)
//     chain forward (filter hook, policy accept) {
//       iifname @bridges oifname @bridges iifname . oifname != @same ct status & dnat == 0 drop
//     }
//
// - Networks that share a bridge are one L2 segment: the host never sees their traffic to each
//   other as routed between two bridges, so it cannot isolate them and never drops it (`same`).
// - Traffic the admin published (DNAT'd by portmap or any rule, both directions of such a
//   connection) passes, as it would from outside the node.
// - A network with isolation off has no record and no element: it reaches and is reached by
//   every network, as before (isolation is between networks that both have it on).
// - The policy stays accept and nothing else is matched, so the rest of the node's forwarding
//   is unchanged; the table lives in the namespace the plugin runs in (the node's).
import { chainName, listTable as listNft, nft as runNft, nftComment, type NftJson } from './nft';
import { CniError, Code } from '../cni/errors';

export const ISOLATION_TABLE = 'knit-isolation';

const nft = (args: string[], input?: string): string => runNft(args, input, 'isolation');
const listTable = (): NftJson | null => listNft(ISOLATION_TABLE);

/** The name of a network's record set (the same identifier as its masquerade chain). */
export const isolationSetName = (network: string): string => chainName(network);

export interface IsolationState {
  /** Interfaces recorded for the network (its set n_<net>); empty: the network is not isolated here. */
  interfaces: string[];
  /** What the shared part lacks for those interfaces: elements of bridges/same, the forward rule. */
  missing: string[];
}

const q = (ifname: string): string => JSON.stringify(ifname);

function checkName(ifname: string): void {
  if (!ifname || ifname.length > 15 || /["\\\s]/.test(ifname)) {
    throw new CniError(Code.InvalidConfig, `invalid interface name ${JSON.stringify(ifname)} for isolation: 1-15 bytes without quotes, backslashes or whitespace`);
  }
}

function pairs(ifaces: string[]): Array<[string, string]> {
  return ifaces.flatMap((a) => ifaces.map((b) => [a, b] as [string, string]));
}

const FORWARD_RULE = 'iifname @bridges oifname @bridges iifname . oifname != @same ct status & dnat == 0 drop comment "knit: no traffic between knit networks"';

/** ensureIsolation's transaction, for a caller that runs it with others in one `nft -f` (see applyNft). */
export function isolationScript(network: string, bridge: string | string[]): string {
  const ifaces = [...new Set(Array.isArray(bridge) ? bridge : [bridge])];
  ifaces.forEach(checkName);
  const set = isolationSetName(network);
  return [
    `table inet ${ISOLATION_TABLE} {`,
    '  set bridges { type ifname; }',
    '  set same { type ifname . ifname; }',
    `  set ${set} { type ifname; comment ${nftComment(`knit network ${network}`)}; }`,
    '  chain forward { type filter hook forward priority filter; policy accept; }',
    '}',
    `add element inet ${ISOLATION_TABLE} ${set} { ${ifaces.map(q).join(', ')} }`,
    `add element inet ${ISOLATION_TABLE} bridges { ${ifaces.map(q).join(', ')} }`,
    `add element inet ${ISOLATION_TABLE} same { ${pairs(ifaces).map(([a, b]) => `${q(a)} . ${q(b)}`).join(', ')} }`,
    // Re-written whole in the same transaction, so it is never duplicated by concurrent ADDs.
    `flush chain inet ${ISOLATION_TABLE} forward`,
    `add rule inet ${ISOLATION_TABLE} forward ${FORWARD_RULE}`,
  ].join('\n') + '\n';
}

/** Idempotently isolates `network` (on `bridge`) from every other isolated knit network on this node. */
export function ensureIsolation(network: string, bridge: string | string[]): void {
  if (Array.isArray(bridge) && !bridge.length) return;
  nft(['-f', '-'], isolationScript(network, bridge));
}

/** For STATUS: whether ensureIsolation could run here (nft present, the kernel takes the rules); `nft -c` changes nothing. */
export function isolationCheck(network: string, bridge: string): void {
  nft(['-c', '-f', '-'], isolationScript(network, bridge));
}

interface Parsed {
  /** Record sets: set name -> interfaces. */
  records: Map<string, string[]>;
  bridges: Set<string>;
  /** "a b" for each element a . b of same. */
  same: Set<string>;
  rule: boolean;
}

const elemText = (e: any): string | undefined => (typeof e === 'string' ? e : typeof e?.elem?.val === 'string' ? e.elem.val : undefined);

function parse(t: NftJson): Parsed {
  const p: Parsed = { records: new Map(), bridges: new Set(), same: new Set(), rule: false };
  for (const item of t.nftables) {
    const s = item.set;
    if (s) {
      const elems: any[] = s.elem ?? [];
      if (s.name === 'bridges') for (const e of elems) { const v = elemText(e); if (v) p.bridges.add(v); }
      else if (s.name === 'same') {
        for (const e of elems) {
          const c = e?.concat ?? e?.elem?.val?.concat;
          if (Array.isArray(c) && c.length === 2) p.same.add(`${c[0]} ${c[1]}`);
        }
      } else if (String(s.name).startsWith('n_')) p.records.set(s.name, elems.map(elemText).filter((v): v is string => !!v));
    }
    if (item.rule?.chain === 'forward') {
      const text = JSON.stringify(item.rule.expr ?? []);
      if (text.includes('"@bridges"') && text.includes('"@same"') && text.includes('"drop"')) p.rule = true;
    }
  }
  return p;
}

function missingFor(p: Parsed, ifaces: string[]): string[] {
  const out: string[] = [];
  for (const i of ifaces) if (!p.bridges.has(i)) out.push(`${i} is not in set bridges`);
  for (const [a, b] of pairs(ifaces)) if (!p.same.has(`${a} ${b}`)) out.push(`${a} . ${b} is not in set same`);
  if (ifaces.length && !p.rule) out.push('the drop rule of chain forward is missing');
  return out;
}

/** What the table holds for a network right now (for CHECK, STATUS and tests). */
export function isolationState(network: string): IsolationState {
  const t = listTable();
  if (!t) return { interfaces: [], missing: [] };
  const p = parse(t);
  const interfaces = p.records.get(isolationSetName(network)) ?? [];
  return { interfaces, missing: missingFor(p, interfaces) };
}

/**
 * Removes a network's record and the elements no other isolated network needs; a no-op when
 * nothing is there. Returns the interfaces that were recorded (so a caller that lost a race with
 * an ADD of the network can put them back). Another network sharing the bridge may be added
 * between the read and the removal: afterwards every recorded network's elements are put back
 * where missing. Concurrent removals retry on what is left, as removeMasq does.
 */
export function removeIsolation(network: string): string[] {
  const set = isolationSetName(network);
  const seen = new Set<string>();
  for (let attempt = 0; ; attempt++) {
    const t = listTable();
    if (!t) return [...seen];
    const p = parse(t);
    const mine = p.records.get(set);
    if (!mine) break;
    mine.forEach((i) => seen.add(i));
    const others = [...p.records].filter(([n]) => n !== set).map(([, v]) => v);
    const keepIf = new Set(others.flat());
    const keepPairs = new Set(others.flatMap((v) => pairs(v).map(([a, b]) => `${a} ${b}`)));
    const lines = [`delete set inet ${ISOLATION_TABLE} ${set}`];
    for (const i of mine) if (p.bridges.has(i) && !keepIf.has(i)) lines.push(`delete element inet ${ISOLATION_TABLE} bridges { ${q(i)} }`);
    for (const [a, b] of pairs(mine)) {
      if (p.same.has(`${a} ${b}`) && !keepPairs.has(`${a} ${b}`)) lines.push(`delete element inet ${ISOLATION_TABLE} same { ${q(a)} . ${q(b)} }`);
    }
    try {
      nft(['-f', '-'], lines.join('\n') + '\n');
      break;
    } catch (e) {
      if (attempt >= 4) throw e;
    }
  }
  repair();
  return [...seen];
}

/** Puts back the elements of every recorded network that a racing removal took. */
function repair(): void {
  const t = listTable();
  if (!t) return;
  const p = parse(t);
  const add: string[] = [];
  for (const ifaces of p.records.values()) {
    if (!missingFor(p, ifaces).length) continue;
    add.push(...ifaces);
  }
  if (!add.length) return;
  const ifaces = [...new Set(add)];
  const lines = [
    `add element inet ${ISOLATION_TABLE} bridges { ${ifaces.map(q).join(', ')} }`,
    ...[...p.records.values()].filter((v) => v.length).map((v) => `add element inet ${ISOLATION_TABLE} same { ${pairs(v).map(([a, b]) => `${q(a)} . ${q(b)}`).join(', ')} }`),
    `flush chain inet ${ISOLATION_TABLE} forward`,
    `add rule inet ${ISOLATION_TABLE} forward ${FORWARD_RULE}`,
  ];
  nft(['-f', '-'], lines.join('\n') + '\n');
}
