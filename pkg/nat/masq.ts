// Masquerade per network with nftables (docs/design.md D6): one chain per network holding
// one rule per family, reached through a verdict map keyed by the network's subnets.
// Adding a pod costs one idempotent, atomic `nft -f` transaction, never a rule per pod.
//
//   table inet knit-nat
//     map masq4/masq6 { <subnet> : jump n_<net> }          one element per subnet
//     chain postrouting (nat hook) { ip saddr vmap @masq4; ip6 saddr vmap @masq6 }
//     chain n_<net> { ip daddr != { <subnets>, 224.0.0.0/4 } masquerade }
//
// The rules live in the namespace the plugin runs in (the host's); removal is explicit:
// the bridge removes a network's entry when its last attachment goes (DEL) or by GC.
import { formatCIDR, networkOf, type IPNet } from '../ip/ip';
import { chainName, listTable as listNft, nft as runNft, nftComment, type NftJson } from './nft';

export { chainName };

export const NAT_TABLE = 'knit-nat';

const nft = (args: string[], input?: string): string => runNft(args, input, 'ipMasq');
const listTable = (): ReturnType<typeof listNft> => listNft(NAT_TABLE);

export interface MasqState {
  /** Subnets (CIDR text) mapped to this network's chain. */
  subnets: string[];
  /** True when the network's chain exists with a masquerade rule. */
  chain: boolean;
}

/** Idempotently makes traffic from `subnets` to anywhere outside them (and outside multicast) masquerade. */
export function ensureMasq(network: string, subnets: IPNet[]): void {
  nft(['-f', '-'], masqScript(network, subnets));
}

/** ensureMasq's transaction, for a caller that runs it with others in one `nft -f` (see applyNft). */
export function masqScript(network: string, subnets: IPNet[]): string {
  const chain = chainName(network);
  const nets = subnets.map((s) => networkOf(s));
  const v4 = nets.filter((n) => n.ip.family === 4).map(formatCIDR);
  const v6 = nets.filter((n) => n.ip.family === 6).map(formatCIDR);
  const comment = nftComment(`knit ${network}`);
  const lines = [
    `table inet ${NAT_TABLE} {`,
    '  map masq4 { type ipv4_addr : verdict; flags interval; }',
    '  map masq6 { type ipv6_addr : verdict; flags interval; }',
    '  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }',
    `  chain ${chain} { }`,
    '}',
    `flush chain inet ${NAT_TABLE} ${chain}`,
  ];
  if (v4.length) {
    lines.push(`add rule inet ${NAT_TABLE} ${chain} ip daddr != { ${[...v4, '224.0.0.0/4'].join(', ')} } masquerade comment ${comment}`);
    lines.push(`add element inet ${NAT_TABLE} masq4 { ${v4.map((s) => `${s} : jump ${chain}`).join(', ')} }`);
  }
  if (v6.length) {
    lines.push(`add rule inet ${NAT_TABLE} ${chain} ip6 daddr != { ${[...v6, 'ff00::/8'].join(', ')} } masquerade comment ${comment}`);
    lines.push(`add element inet ${NAT_TABLE} masq6 { ${v6.map((s) => `${s} : jump ${chain}`).join(', ')} }`);
  }
  // Re-written whole in the same transaction, so it is never duplicated by concurrent ADDs.
  lines.push(`flush chain inet ${NAT_TABLE} postrouting`);
  lines.push(`add rule inet ${NAT_TABLE} postrouting ip saddr vmap @masq4`);
  lines.push(`add rule inet ${NAT_TABLE} postrouting ip6 saddr vmap @masq6`);
  return lines.join('\n') + '\n';
}

function prefixText(v: any): string | undefined {
  if (typeof v === 'string') return v.includes('/') ? v : `${v}/${v.includes(':') ? 128 : 32}`;
  if (v?.prefix) return `${v.prefix.addr}/${v.prefix.len}`;
  if (v?.range) return `${v.range[0]}-${v.range[1]}`;
  return undefined;
}

/** What the table holds for a network right now (for CHECK and for removal), from `table` when the caller just listed it. */
export function masqState(network: string, table: NftJson | null = listTable()): MasqState {
  const chain = chainName(network);
  const state: MasqState = { subnets: [], chain: false };
  if (!table) return state;
  for (const item of table.nftables) {
    if (item.map && (item.map.name === 'masq4' || item.map.name === 'masq6')) {
      for (const el of item.map.elem ?? []) {
        const [key, verdict] = Array.isArray(el) ? el : [undefined, undefined];
        if (verdict?.jump?.target === chain) {
          const p = prefixText(key);
          if (p) state.subnets.push(p);
        }
      }
    }
    if (item.rule && item.rule.chain === chain && JSON.stringify(item.rule.expr ?? []).includes('"masquerade"')) state.chain = true;
  }
  return state;
}

/**
 * Removes a network's entries and chain; a no-op when nothing is there. Returns the subnets that
 * were mapped (so a caller that lost a race with an ADD can put them back). Concurrent DELs of the
 * network's last attachments may both get here: when the transaction fails because the other
 * one removed (part of) it first, read the state again and retry with what is left.
 */
export function removeMasq(network: string): string[] {
  const chain = chainName(network);
  const seen = new Set<string>();
  for (let attempt = 0; ; attempt++) {
    const table = listTable();
    if (!table) return [...seen];
    const hasChain = table.nftables.some((i) => i.chain?.name === chain);
    const st = masqState(network, table); // one listing per attempt: every nft process costs ~10 ms
    const lines: string[] = [];
    for (const s of st.subnets) {
      seen.add(s);
      lines.push(`delete element inet ${NAT_TABLE} ${s.includes(':') ? 'masq6' : 'masq4'} { ${s} }`);
    }
    if (hasChain) lines.push(`flush chain inet ${NAT_TABLE} ${chain}`, `delete chain inet ${NAT_TABLE} ${chain}`);
    if (!lines.length) return [...seen];
    try {
      nft(['-f', '-'], lines.join('\n') + '\n');
      return [...seen];
    } catch (e) {
      if (attempt >= 4) throw e;
    }
  }
}
