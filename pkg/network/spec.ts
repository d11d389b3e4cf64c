// A named network, Docker's model: created once (knitctl network create), stored in the datastore,
// usable on every node. This file is the object and its validation from Docker's flags; pure, so
// every rule is unit-tested without etcd. Docker's own rules are the reference (docker/cli
// consolidateIpam): each --gateway, --ip-range and --aux-address belongs to the --subnet that
// contains it, at most one gateway and one ip-range per subnet, subnets never overlap.
import { contains, formatCIDR, formatIP, lastOf, networkOf, overlaps, parseCIDR, parseIP, addToIP, type IPNet } from '../ip/ip';

export type Driver = 'overlay' | 'bridge' | 'macvlan';
/**
 * `-o cipher` of an encrypted overlay network: the names of pkg/agent/backend/esp-keys.ts's
 * ESP_CIPHERS (a unit test keeps them equal; listed here because `network` sits below `agent`).
 */
export const CIPHERS = ['aes-gcm', 'chacha20-poly1305'] as const;
export type Cipher = (typeof CIPHERS)[number];
export const DEFAULT_CIPHER: Cipher = 'aes-gcm';
export const DRIVERS: readonly Driver[] = ['overlay', 'bridge', 'macvlan'];

export interface SubnetSpec {
  subnet: string;
  /** Always set once validated: given, or the subnet's first host address. */
  gateway: string;
  /** Docker's --ip-range: containers get addresses only from here (default: the whole subnet). */
  ipRange?: string;
  /** Docker's --aux-address NAME=IP: addresses never handed out. */
  auxAddresses: Record<string, string>;
}

export interface NetworkOptions {
  /** Container MTU; 0: the underlay's less the encapsulation (50 for VXLAN). */
  mtu: number;
  /** VXLAN network identifier (overlay). */
  vni?: number;
  /** Parent link (macvlan), e.g. "eth0" or "eth0.100". */
  parent?: string;
  /** macvlan mode. */
  macvlanMode?: 'bridge' | 'private' | 'vepa' | 'passthru';
  /** Isolation from every other knit network on a node (default on). */
  isolation: boolean;
  /** knitd's resolver for the network's names (docs/dns.md); absent: on for overlay networks. */
  dns?: boolean;
  /** Docker's `--opt encrypted` (overlay only): the VXLAN traffic between nodes is ESP (docs/encryption.md). */
  encrypted?: boolean;
  /**
   * `-o cipher` (with -o encrypted): the ESP AEAD between the nodes; absent: aes-gcm. Part of the
   * network, so every node picks the same (each cipher has its own port and xfrm domain).
   */
  cipher?: Cipher;
}

export interface Network {
  name: string;
  /** 64 hex digits, like Docker's network IDs. */
  id: string;
  driver: Driver;
  subnets: SubnetSpec[];
  options: NetworkOptions;
  /** No egress through the node (no masquerade, no default route). */
  internal: boolean;
  ipv6: boolean;
  labels: Record<string, string>;
  /** RFC 3339. */
  created: string;
}

/** What `knitctl network create` was given, flags as strings in the order given. */
export interface CreateRequest {
  name: string;
  driver?: string;
  subnets?: string[];
  gateways?: string[];
  ipRanges?: string[];
  auxAddresses?: string[];
  opts?: string[];
  labels?: string[];
  internal?: boolean;
  ipv6?: boolean;
}

export class SpecError extends Error {
  override readonly name = 'SpecError';
}

const bad = (flag: string, value: unknown, valid: string): SpecError =>
  new SpecError(`invalid ${flag} ${JSON.stringify(value)}: ${valid}`);

/** Docker's network name rule, and the names Docker (and podman) reserve. */
export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const RESERVED = new Set(['bridge', 'host', 'none', 'default', 'podman']);

export function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw bad('network name', name, 'a letter or digit, then letters, digits, "_", "." or "-", at most 63 characters');
  if (RESERVED.has(name)) throw bad('network name', name, `a name other than ${[...RESERVED].join(', ')} (reserved by runtimes)`);
}

export const VNI_MIN_AUTO = 4096;
export const VNI_MAX = 0xffffff;
/** Docker's default address pool for networks created without --subnet: /24s of 10.90.0.0/15. */
export const DEFAULT_POOL = '10.90.0.0/15';
export const DEFAULT_POOL_SIZE = 24;

const OPTION_KEYS: Record<string, string> = {
  mtu: 'mtu', 'com.docker.network.driver.mtu': 'mtu',
  vni: 'vni', 'com.docker.network.driver.overlay.vxlanid_list': 'vni',
  parent: 'parent',
  macvlan_mode: 'macvlan_mode',
  isolation: 'isolation',
  dns: 'dns',
  encrypted: 'encrypted',
  cipher: 'cipher',
};


/**
 * Validates a create request against the networks that exist (overlaps, VNIs in use) and
 * returns the network to store. `now` and `id` are given so the result is deterministic in tests.
 */
export function buildNetwork(req: CreateRequest, existing: readonly Network[], now: Date, id: string): Network {
  checkName(req.name);
  if (existing.some((n) => n.name === req.name)) throw new SpecError(`network ${req.name} already exists: pick another name or remove it first (knitctl network rm ${req.name})`);
  const driver = (req.driver ?? 'bridge') as Driver;
  if (!DRIVERS.includes(driver)) throw bad('--driver', req.driver, `one of ${DRIVERS.join(', ')}`);

  const options = parseOptions(req.opts ?? []);
  const labels = parseKeyValues('--label', req.labels ?? [], 'KEY=VALUE');
  const ipv6 = !!req.ipv6;
  const taken = existing.flatMap((n) => n.subnets.map((s) => ({ net: parseCIDR(s.subnet)!, name: n.name })));

  // Subnets: given, or the first free /24 of the default pool.
  const subnets: IPNet[] = [];
  for (const s of req.subnets ?? []) {
    const n = parseCIDR(s);
    if (!n) throw bad('--subnet', s, 'a CIDR such as 192.168.0.0/16 or fd00:1::/64');
    const net = networkOf(n);
    if (formatCIDR(net) !== formatCIDR(n)) throw bad('--subnet', s, `a network address with no host bits, here ${formatCIDR(net)}`);
    const maxPrefix = n.ip.family === 4 ? 30 : 126;
    if (n.prefix > maxPrefix) throw bad('--subnet', s, `a prefix of at most /${maxPrefix} (room for a gateway and containers)`);
    if (n.ip.family === 6 && !ipv6) throw bad('--subnet', s, 'an IPv4 subnet, or add --ipv6 to give the network IPv6 subnets');
    const other = subnets.find((o) => overlaps(o, net));
    if (other) throw bad('--subnet', s, `a subnet that does not overlap ${formatCIDR(other)} (also given)`);
    const used = taken.find((t) => overlaps(t.net, net));
    if (used) throw bad('--subnet', s, `a subnet that does not overlap ${formatCIDR(used.net)} of network ${used.name}`);
    subnets.push(net);
  }
  if (!subnets.some((n) => n.ip.family === 4)) {
    if ((req.subnets ?? []).length === 0 || ipv6) subnets.unshift(freeDefaultSubnet(taken.map((t) => t.net)));
  }
  if (ipv6 && !subnets.some((n) => n.ip.family === 6)) throw bad('--ipv6', true, 'give an IPv6 --subnet as well (knit has no default IPv6 pool)');

  const owner = (flag: string, value: string, ip: IPNet): number => {
    const i = subnets.findIndex((n) => contains(n, ip.ip) && (ip.prefix >= n.prefix));
    if (i < 0) throw bad(flag, value, `an address inside one of the subnets ${subnets.map(formatCIDR).join(', ')}`);
    return i;
  };

  const gateways = new Map<number, string>();
  for (const g of req.gateways ?? []) {
    const ip = parseIP(g);
    if (!ip) throw bad('--gateway', g, 'an IP address such as 192.168.0.1');
    const i = owner('--gateway', g, { ip, prefix: ip.family === 4 ? 32 : 128 });
    const n = subnets[i]!;
    if (isReserved(n, ip)) throw bad('--gateway', g, `a host address of ${formatCIDR(n)}, not its network or broadcast address`);
    if (gateways.has(i)) throw bad('--gateway', g, `one gateway per subnet; ${formatCIDR(n)} already has ${gateways.get(i)}`);
    gateways.set(i, formatIP(ip));
  }
  const ranges = new Map<number, string>();
  for (const r of req.ipRanges ?? []) {
    const n = parseCIDR(r);
    if (!n) throw bad('--ip-range', r, 'a CIDR such as 192.168.1.0/24');
    const i = owner('--ip-range', r, networkOf(n));
    if (ranges.has(i)) throw bad('--ip-range', r, `one ip-range per subnet; ${formatCIDR(subnets[i]!)} already has ${ranges.get(i)}`);
    ranges.set(i, formatCIDR(networkOf(n)));
  }
  const aux = new Map<number, Record<string, string>>();
  for (const a of req.auxAddresses ?? []) {
    const eq = a.indexOf('=');
    const key = eq > 0 ? a.slice(0, eq) : '';
    const ip = eq > 0 ? parseIP(a.slice(eq + 1)) : null;
    if (!key || !ip) throw bad('--aux-address', a, 'NAME=IP, e.g. my-router=192.168.1.5');
    const i = owner('--aux-address', a, { ip, prefix: ip.family === 4 ? 32 : 128 });
    const m = aux.get(i) ?? {};
    if (key in m) throw bad('--aux-address', a, `a name not already used (${key}=${m[key]})`);
    m[key] = formatIP(ip);
    aux.set(i, m);
  }

  const specs: SubnetSpec[] = subnets.map((n, i) => {
    const gateway = gateways.get(i) ?? formatIP(addToIP(n.ip, 1n));
    const ipRange = ranges.get(i);
    const auxAddresses = aux.get(i) ?? {};
    for (const [k, v] of Object.entries(auxAddresses)) {
      if (v === gateway) throw bad('--aux-address', `${k}=${v}`, `an address other than the gateway ${gateway}`);
    }
    return { subnet: formatCIDR(n), gateway, ...(ipRange ? { ipRange } : {}), auxAddresses };
  });

  if (driver === 'overlay') {
    const inUse = new Set(existing.map((n) => n.options.vni).filter((v): v is number => v !== undefined));
    if (options.vni !== undefined) {
      const holder = existing.find((n) => n.options.vni === options.vni);
      if (holder) throw bad('-o vni', options.vni, `a VNI not in use (network ${holder.name} has it); free ones start at ${nextVni(inUse)}`);
    } else {
      options.vni = nextVni(inUse);
    }
  } else if (options.vni !== undefined) {
    throw bad('-o vni', options.vni, 'only for --driver overlay');
  }
  if (driver === 'macvlan' && !options.parent) throw bad('-o parent', undefined, 'required for --driver macvlan: the parent link, e.g. -o parent=eth0 or -o parent=eth0.100 (VLAN 100 on eth0)');
  if (options.dns && driver !== 'overlay') throw bad('-o dns', 'true', `only for --driver overlay (knitd answers on the network's gateway, which ${driver} networks do not have on every node with their containers' records); leave it out or set false`);
  if (options.encrypted && driver !== 'overlay') throw bad('-o encrypted', 'true', `only for --driver overlay (knit encrypts the VXLAN traffic between nodes; a ${driver} network's traffic does not cross an overlay); leave it out`);
  if (options.cipher && driver !== 'overlay') throw bad('-o cipher', options.cipher, `only for --driver overlay with -o encrypted (the cipher of the ESP between nodes); leave it out`);
  if (options.cipher && !options.encrypted) throw bad('-o cipher', options.cipher, 'only with -o encrypted (the cipher of the ESP between nodes): add -o encrypted, or leave -o cipher out');
  if (driver !== 'macvlan' && (options.parent || options.macvlanMode)) throw bad(options.parent ? '-o parent' : '-o macvlan_mode', options.parent ?? options.macvlanMode, 'only for --driver macvlan');

  return { name: req.name, id, driver, subnets: specs, options, internal: !!req.internal, ipv6, labels, created: now.toISOString() };
}

function isReserved(n: IPNet, ip: { family: 4 | 6 }): boolean {
  const text = formatIP(ip as never);
  if (text === formatIP(n.ip)) return true;
  return n.ip.family === 4 && n.prefix < 31 && text === formatIP(lastOf(n));
}

function nextVni(inUse: Set<number>): number {
  let v = VNI_MIN_AUTO;
  while (inUse.has(v)) v++;
  return v;
}

function freeDefaultSubnet(taken: IPNet[]): IPNet {
  const pool = parseCIDR(DEFAULT_POOL)!;
  const count = 1n << BigInt(DEFAULT_POOL_SIZE - pool.prefix);
  for (let i = 0n; i < count; i++) {
    const cand: IPNet = { ip: addToIP(pool.ip, i << BigInt(32 - DEFAULT_POOL_SIZE)), prefix: DEFAULT_POOL_SIZE };
    if (!taken.some((t) => overlaps(t, cand))) return cand;
  }
  throw new SpecError(`no free /${DEFAULT_POOL_SIZE} left in the default pool ${DEFAULT_POOL}: give --subnet`);
}

function parseKeyValues(flag: string, items: string[], form: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const it of items) {
    const eq = it.indexOf('=');
    if (eq <= 0) throw bad(flag, it, form);
    out[it.slice(0, eq)] = it.slice(eq + 1);
  }
  return out;
}

function parseOptions(items: string[]): NetworkOptions {
  // Docker's `--opt encrypted` has no value: it means encrypted=true.
  const raw = parseKeyValues('-o', items.map((it) => (it === 'encrypted' ? 'encrypted=true' : it)), 'KEY=VALUE');
  const out: NetworkOptions = { mtu: 0, isolation: true };
  for (const [k, v] of Object.entries(raw)) {
    const key = OPTION_KEYS[k];
    if (!key) throw bad('-o', `${k}=${v}`, 'one of mtu, vni, parent, macvlan_mode, isolation, dns, encrypted, cipher (Docker spellings com.docker.network.driver.mtu and ...overlay.vxlanid_list too)');
    switch (key) {
      case 'mtu': {
        const n = Number(v);
        if (!/^\d+$/.test(v) || n < 68 || n > 65535) throw bad(`-o ${k}`, v, 'an integer from 68 to 65535');
        out.mtu = n;
        break;
      }
      case 'vni': {
        const n = Number(v);
        if (!/^\d+$/.test(v) || n < 1 || n > VNI_MAX) throw bad(`-o ${k}`, v, `an integer from 1 to ${VNI_MAX}`);
        out.vni = n;
        break;
      }
      case 'parent':
        if (!/^[^\s/:]{1,15}$/.test(v) || v === '.' || v === '..') throw bad('-o parent', v, 'a link name of at most 15 characters, e.g. eth0 or eth0.100');
        out.parent = v;
        break;
      case 'macvlan_mode':
        if (!['bridge', 'private', 'vepa', 'passthru'].includes(v)) throw bad('-o macvlan_mode', v, 'one of bridge, private, vepa, passthru');
        out.macvlanMode = v as NetworkOptions['macvlanMode'];
        break;
      case 'isolation':
        if (v !== 'true' && v !== 'false') throw bad('-o isolation', v, 'true or false');
        out.isolation = v === 'true';
        break;
      case 'dns':
        if (v !== 'true' && v !== 'false') throw bad('-o dns', v, 'true or false (knitd\'s resolver for the network\'s names; on by default for overlay networks)');
        out.dns = v === 'true';
        break;
      case 'encrypted':
        if (v !== 'true' && v !== 'false') throw bad('-o encrypted', v, 'true or false, or -o encrypted alone (Docker\'s --opt encrypted): ESP between the nodes, docs/encryption.md');
        if (v === 'true') out.encrypted = true;
        break;
      case 'cipher':
        if (!(CIPHERS as readonly string[]).includes(v)) throw bad('-o cipher', v, `one of ${CIPHERS.join(', ')} (with -o encrypted; default aes-gcm, chacha20-poly1305 for nodes without AES instructions)`);
        out.cipher = v as Cipher;
        break;
    }
  }
  return out;
}

/** The ESP cipher of an encrypted overlay network (aes-gcm unless created with -o cipher); null: not encrypted. */
export function cipherOf(n: Pick<Network, 'driver' | 'options'>): Cipher | null {
  if (n.driver !== 'overlay' || !n.options.encrypted) return null;
  return n.options.cipher ?? DEFAULT_CIPHER;
}

/** The DNS zone under which every network has its own domain (docs/dns.md). */
export const DNS_ZONE = 'knit';

/** A network's DNS domain, the search domain its containers get: `<network>.knit`. */
export function networkDomain(network: string): string {
  return `${network.toLowerCase()}.${DNS_ZONE}`;
}

/** Whether knitd's resolver serves the network: overlay networks unless created with -o dns=false. */
export function resolverOn(n: Pick<Network, 'driver' | 'options'>): boolean {
  return n.driver === 'overlay' && n.options.dns !== false;
}

/** The VLAN id and master of a macvlan parent written Docker's way ("eth0.100"). */
export function splitParent(parent: string): { master: string; vlan?: number } {
  const m = /^(.+)\.(\d{1,4})$/.exec(parent);
  if (m && Number(m[2]) >= 1 && Number(m[2]) <= 4094) return { master: m[1]!, vlan: Number(m[2]) };
  return { master: parent };
}
