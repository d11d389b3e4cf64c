// The fuzz suite's inputs and its oracle (issue 14): fast-check arbitraries that produce one CNI
// request each (plugin, verb, environment, stdin) from a valid base, mutated in one or two places,
// together with what the spec says the answer must be. Pure: no I/O here (the worker runs them).
//
// The expectation of a case is decided by the first layer that must refuse it, in the order
// pkg/cni/skel.ts checks (docs/errors.md "Where each check happens"):
//   env (4) -> stdin decode (6) -> cniVersion (1) -> protocol keys (7) -> CNI_ARGS (4)
//   -> CNI_NETNS (4) -> the plugin's own keys (7) -> the kernel (100, 104 ...).
import fc from 'fast-check';
import { VNI_MAX } from '../../pkg/network/spec';

export const PLUGIN_NAMES = ['knit-bridge', 'knit-macvlan', 'knit-overlay', 'knit-l2overlay', 'knit-host-local', 'knit-etcd-ipam'] as const;
export const MAIN_PLUGINS: ReadonlySet<string> = new Set(['knit-bridge', 'knit-macvlan', 'knit-overlay', 'knit-l2overlay']);
export type PluginName = (typeof PLUGIN_NAMES)[number];
export const VERBS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type Verb = (typeof VERBS)[number];

/**
 * CNI_NETNS values that exist but are not network namespaces (regular files, directories, FIFOs,
 * devices, a netns file nothing is mounted on). Fixed (pkg/netlink ns_enter, pkg/iface/netns.ts,
 * pkg/cni/skel.ts checkNetns): they count like any other case. Set false only to bucket them apart.
 */
export const NETNS_CLASS_FIXED = true;

/**
 * A defect the fuzzer found (session 4): an ipam.etcd.tls file that cannot be read (missing, a
 * directory) made knit-etcd-ipam answer code 5. Fixed: EtcdError kind "config", answered 7 naming
 * ipam.etcd.tls.<key> (pkg/etcd/client.ts, pkg/ipam/etcd/keys.ts). Set false to leave such configs out.
 */
export const ETCD_TLS_FILES_FIXED = true;

/** Where the lab puts things (made by runner.ts, inside the worker's private mounts). */
export interface Fixtures {
  /** Sandbox directory: every path a config may name lives under it. */
  dir: string;
  /** host-local data directory. */
  dataDir: string;
  /** macvlan reference counts. */
  runDir: string;
  /** knit-overlay runDir holding lease.json. */
  overlayRunDir: string;
  /** A pod network namespace (empty but for lo), reused: every case is cleaned up after. */
  podNetns: string;
  /** The host's own namespace (the worker runs in it). */
  hostNetns: string;
  /** The macvlan master (a dummy link in the lab host). */
  master: string;
  /** etcd endpoint reachable from the lab host. */
  etcdEndpoint: string;
  etcdPrefix: string;
  /** Paths that exist but are not network namespaces, by kind. */
  notNetns: Record<'file' | 'dir' | 'fifo' | 'dev' | 'unmounted' | 'slash', string>;
  l2: L2Fixtures;
}

/**
 * knit-l2overlay's world as knitd makes it on a node: the network's bridge knb<vni> in the lab host,
 * and <runDir>/networks/node.json on a live etcd lease (written by the worker, which grants the
 * lease from inside the lab). runner.ts renders `conf` with pkg/network/conflist.ts.
 */
export interface L2Fixtures {
  /** The conflist's main plugin entry as knitd renders it, with the conflist's name (no cniVersion). */
  conf: Record<string, unknown>;
  vni: number;
  nodeName: string;
  /** Its node file names this node (conf's runDir). */
  runDir: string;
  /** Node files of another node, corrupt, and none. */
  otherNodeRunDir: string;
  /** This node's node file on a lease that is gone (knitd away longer than its TTL). */
  deadLeaseRunDir: string;
  corruptRunDir: string;
  noNodeRunDir: string;
}

export interface Expect {
  /** exit 0 is a right answer. */
  ok: boolean;
  /** Error codes that are right answers (exit 1). */
  codes: number[];
  /** The error's msg must mention this (a key or variable name). */
  mention?: string;
  /** Which layer decided (for reports). */
  why: string;
  /** A CNI_NETNS that is not a namespace (bucketed separately while NETNS_CLASS_FIXED is false). */
  netnsClass?: boolean;
}

export interface Case {
  plugin: PluginName;
  verb: Verb;
  env: Record<string, string>;
  stdin: Buffer;
  /** The base config this case started from (valid): the cleanup DEL's unless the ADD succeeded
   *  (then its own stdin); whatever a failed ADD left anywhere is found by the residue check. */
  base: Record<string, unknown>;
  expect: Expect;
  /** Short description of the mutations, for reports. */
  label: string;
  /** May this case have created something (run the cleanup DEL and the residue check)? */
  mayCreate: boolean;
}

const CONTAINER_ID = 'fuzzc0';
const IFNAME = 'eth0';

// ---- base configs --------------------------------------------------------------------------

export function baseConf(p: PluginName, fx: Fixtures, verb: Verb): Record<string, unknown> {
  const v = verb === 'STATUS' || verb === 'GC' ? '1.1.0' : '1.0.0';
  const hl = (subnet: string, extra: object = {}): Record<string, unknown> => ({
    type: 'knit-host-local', dataDir: fx.dataDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], ...extra,
  });
  let c: Record<string, unknown>;
  switch (p) {
    case 'knit-bridge':
      c = { cniVersion: v, name: 'fzb', type: p, bridge: 'fzbr0', isGateway: true, ipMasq: true, ipam: hl('10.77.0.0/24') };
      break;
    case 'knit-macvlan':
      c = { cniVersion: v, name: 'fzm', type: p, master: fx.master, mode: 'bridge', runDir: fx.runDir, ipam: hl('10.78.0.0/24') };
      break;
    case 'knit-overlay':
      c = { cniVersion: v, name: 'fzo', type: p, runDir: fx.overlayRunDir, ipam: { type: 'knit-host-local', dataDir: fx.dataDir } };
      break;
    case 'knit-l2overlay':
      c = { cniVersion: v, ...(JSON.parse(JSON.stringify(fx.l2.conf)) as Record<string, unknown>) };
      break;
    case 'knit-host-local':
      c = { cniVersion: v, name: 'fzh', type: p, ipam: { ...hl('10.80.0.0/24'), ranges: [[{ subnet: '10.80.0.0/24' }], [{ subnet: 'fd80::/64' }]] } };
      break;
    case 'knit-etcd-ipam':
      c = {
        cniVersion: v, name: 'fze', type: p,
        ipam: { type: p, nodeName: 'fz1', etcd: { endpoints: [fx.etcdEndpoint], prefix: fx.etcdPrefix, timeoutMs: 3000 }, ranges: [[{ subnet: '10.81.0.0/24' }]], blockSize: 28 },
      };
      break;
  }
  if (verb === 'GC') c['cni.dev/valid-attachments'] = [];
  return c;
}

export function baseEnv(verb: Verb, fx: Fixtures): Record<string, string> {
  const e: Record<string, string> = { CNI_COMMAND: verb, CNI_PATH: '/nonexistent-cni-path' };
  if (verb === 'ADD' || verb === 'DEL' || verb === 'CHECK') {
    e.CNI_CONTAINERID = CONTAINER_ID;
    e.CNI_NETNS = fx.podNetns;
    e.CNI_IFNAME = IFNAME;
  }
  return e;
}

/** What a good request of this verb must answer (nothing mutated). */
function baseExpect(p: PluginName, verb: Verb): Expect {
  // CHECK here has no prevResult (no ADD ran before it): the main plugins must refuse with 7
  // naming prevResult; the IPAM plugins may too, or find nothing to check.
  if (verb === 'CHECK') {
    return p === 'knit-host-local' || p === 'knit-etcd-ipam'
      ? { ok: true, codes: [3, 7, 104], why: 'CHECK without ADD' }
      : { ok: false, codes: [7], mention: 'prevResult', why: 'CHECK without prevResult' };
  }
  return { ok: true, codes: [], why: 'good request' };
}

// ---- mutations -----------------------------------------------------------------------------

type Layer = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;
const L = { env: 0, decode: 1, version: 2, protocol: 3, args: 4, netns: 5, plugin: 6, kernel: 7 } as const;

interface Mut {
  layer: Layer;
  expect: Expect | null; // null: the mutation is harmless (answer as the base)
  label: string;
}

const huge = (n: number): string => 'x'.repeat(n);
const BIG = huge(1 << 20);
const ARR = Array.from({ length: 10000 }, (_, i) => i);
const ATTACH = new Set<Verb>(['ADD', 'DEL', 'CHECK']);

/** Environment mutations: [variable, value or undefined to unset]. */
function envMutations(fx: Fixtures, netnsWeight = 1): fc.Arbitrary<{ name: string; value: string | undefined; tag: string }> {
  const idChars = fc.string({ unit: fc.constantFrom(...'abcdef0123456789_.-'.split('')), minLength: 1, maxLength: 40 });
  return fc.oneof(
    fc.constantFrom<string | undefined>(undefined, '', 'add', 'FOO', ' ADD', 'ADD\n', 'VERSION ', 'del').map((value) => ({ name: 'CNI_COMMAND', value, tag: 'cmd' })),
    fc.oneof(
      fc.constantFrom<string | undefined>(undefined, '', '-x', '.x', 'a/b', '../../etc/passwd', '/abs', 'a b', 'a:b', 'caf\u00e9', 'a\tb', 'a\nb'),
      fc.integer({ min: 190, max: 600 }).map((n) => 'c'.repeat(n)),
      fc.integer({ min: 1, max: 64 }).map((n) => 'a'.repeat(n)),
      idChars.map((s) => 'Z' + s),
    ).map((value) => ({ name: 'CNI_CONTAINERID', value, tag: 'cid' })),
    fc.oneof(
      fc.constantFrom<string | undefined>(undefined, '', '.', '..', 'a/b', 'a:b', 'a b', 'a\tb', ' eth0', 'x'.repeat(16), '\u00e9'.repeat(8),
        'x'.repeat(15), 'lo', 'eth1', 'E\u00e9', 'net0.5', 'a-b_c', '\u00e9'.repeat(7)),
      fc.string({ minLength: 1, maxLength: 20 }),
    ).map((value) => ({ name: 'CNI_IFNAME', value, tag: 'ifname' })),
    { weight: netnsWeight, arbitrary: fc.constantFrom<string | undefined>(undefined, '', 'relative/ns', '/nonexistent/netns', '/proc/self/ns/net', fx.hostNetns,
      fx.notNetns.file, fx.notNetns.dir, fx.notNetns.fifo, fx.notNetns.dev, fx.notNetns.unmounted, fx.notNetns.slash,
      fx.podNetns.replace('/run/netns/', '/run/netns/./'))
      .map((value) => ({ name: 'CNI_NETNS', value, tag: 'netns' })) },
    fc.oneof(
      fc.constantFrom('', 'IgnoreUnknown=1', 'IgnoreUnknown=1;FOO=bar', 'FOO=bar', 'a', '=x', 'IP=notanip', 'IP=10.77.0.77', 'IP=10.1.1.1',
        'MAC=zz', 'MAC=02:00:00:00:00:01', 'MAC=01:00:5e:00:00:01', 'K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns;K8S_POD_INFRA_CONTAINER_ID=x',
        'IgnoreUnknown=1;;', ';', 'IgnoreUnknown=true;K8S_POD_UID=\u00e9', 'IgnoreUnknown=1;X=' + huge(70000)),
      fc.string({ maxLength: 40 }),
    ).map((value) => ({ name: 'CNI_ARGS', value, tag: 'args' })),
    fc.constantFrom('', ':::', '/nonexistent', 'relative', '/tmp:/tmp', huge(5000)).map((value) => ({ name: 'CNI_PATH', value, tag: 'path' })),
  );
}

const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const MAX_CONTAINER_ID = 200;
const ifnameOk = (n: string): boolean => n !== '' && n !== '.' && n !== '..' && Buffer.byteLength(n) <= 15 && !/[/:\s]/.test(n);

/** The expectation of one environment mutation for a verb. */
function envExpect(verb: Verb, p: PluginName, name: string, value: string | undefined, fx: Fixtures): Mut {
  const bad = (why: string, layer: Layer = L.env): Mut => ({ layer, expect: { ok: false, codes: [4], mention: name, why }, label: `${name}=${short(value)}` });
  const fine: Mut = { layer: L.kernel, expect: null, label: `${name}=${short(value)}` };
  const attach = ATTACH.has(verb);
  if (name === 'CNI_COMMAND') {
    if (value === verb) return fine;
    return bad('CNI_COMMAND');
  }
  if (verb === 'VERSION' || !attach) {
    return fine; // STATUS, GC and VERSION ignore the attachment variables; CNI_ARGS/CNI_PATH unused by knit's in-process IPAM
  }
  if (name === 'CNI_CONTAINERID') {
    if (value === undefined || value === '') return bad('missing CNI_CONTAINERID');
    if (!CONTAINER_ID_RE.test(value) || Buffer.byteLength(value) > MAX_CONTAINER_ID) return bad('bad CNI_CONTAINERID');
    return fine;
  }
  if (name === 'CNI_IFNAME') {
    if (value === undefined || value === '') return bad('missing CNI_IFNAME');
    if (!ifnameOk(value)) return bad('bad CNI_IFNAME');
    // A valid name that is already taken in the pod (lo), or that the kernel may refuse.
    return { layer: L.kernel, expect: { ok: true, codes: [100, 104], why: 'odd but valid CNI_IFNAME' }, label: `CNI_IFNAME=${short(value)}` };
  }
  if (name === 'CNI_NETNS') {
    const isPod = value === fx.podNetns || value === fx.podNetns.replace('/run/netns/', '/run/netns/./');
    if (verb === 'DEL') {
      // DEL may omit CNI_NETNS or get one that is gone: cleanup goes on (exit 0).
      const nc = value !== undefined && Object.values(fx.notNetns).includes(value);
      if (value === '/proc/self/ns/net' || value === fx.hostNetns) return fine;
      return { layer: L.kernel, expect: { ok: true, codes: [], why: 'DEL with a gone netns', netnsClass: nc }, label: `CNI_NETNS=${short(value)}` };
    }
    if (isPod) return fine;
    // The IPAM plugins never enter the namespace (skipNetnsCheck): any absolute path will do.
    if ((p === 'knit-host-local' || p === 'knit-etcd-ipam') && value && value.startsWith('/')) return fine;
    const nc = value !== undefined && Object.values(fx.notNetns).includes(value);
    const m = bad(nc ? 'CNI_NETNS not a namespace' : 'bad CNI_NETNS', value && value.startsWith('/') ? L.netns : L.env);
    m.expect!.netnsClass = nc;
    return m;
  }
  if (name === 'CNI_ARGS') return argsExpect(verb, p, value ?? '');
  return fine; // CNI_PATH: knit's own IPAM runs in-process, nothing is looked up
}

function argsExpect(verb: Verb, _p: PluginName, v: string): Mut {
  const label = `CNI_ARGS=${short(v)}`;
  const bad: Mut = { layer: L.args, expect: { ok: verb === 'DEL', codes: verb === 'DEL' ? [] : [4], mention: verb === 'DEL' ? undefined : 'CNI_ARGS', why: 'bad CNI_ARGS' }, label };
  if (v === '') return { layer: L.kernel, expect: null, label };
  const pairs = v.split(';');
  const known = new Set(['IgnoreUnknown', 'IP', 'MAC', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID']);
  let ignore = false;
  const kv: Array<[string, string]> = [];
  for (const pair of pairs) {
    if (pair === '') continue;
    const i = pair.indexOf('=');
    if (i <= 0) return bad;
    kv.push([pair.slice(0, i), pair.slice(i + 1)]);
  }
  // Any input the fuzzer cannot judge exactly (random strings): 4 or a pass, never anything else.
  const unsure: Mut = { layer: L.args, expect: { ok: true, codes: verb === 'DEL' ? [] : [4, 102, 100], why: 'CNI_ARGS' }, label };
  for (const [k, val] of kv) if (k === 'IgnoreUnknown' && /^(1|true)$/i.test(val)) ignore = true;
  for (const [k, val] of kv) {
    if (!known.has(k) && !ignore) return bad;
    if (k === 'IP' && !/^\d+\.\d+\.\d+\.\d+$/.test(val)) return bad;
    if (k === 'MAC' && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(val)) return bad;
  }
  if (kv.some(([k]) => k === 'IP' || k === 'MAC')) {
    // A static IP outside the plugin's range is 102; a multicast MAC the kernel refuses: 100 or 7.
    return { layer: L.plugin, expect: { ok: true, codes: [102, 100, 7, 4], why: 'CNI_ARGS IP/MAC' }, label };
  }
  return kv.length && [...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) > 0x7e) ? unsure : { layer: L.kernel, expect: null, label };
}

// ---- stdin mutations -----------------------------------------------------------------------

/** A bad value for a key, and the layer that must refuse it. */
interface KeyMut {
  path: string[]; value: unknown; layer: Layer; codes?: number[]; ok?: boolean; mention?: string;
  /** The answer per verb, when it differs by verb (a verb not named: exit 0). */
  byVerb?: Partial<Record<Verb, { codes: number[]; mention?: string; ok?: boolean }>>;
}

const protocolBad: KeyMut[] = [
  ...[5, '', 'a/b', '-x', null, 'n\u0000', '\u00e9t\u00e9', huge(300)].map((value) => ({ path: ['name'], value, layer: L.protocol })),
  ...[5, '', 'a/b', '..', null].map((value) => ({ path: ['type'], value, layer: L.protocol })),
  ...[5, 'x', [], true].map((value) => ({ path: ['ipam'], value, layer: L.protocol })),
  ...['x', 5, ['1.1.1.1']].map((value) => ({ path: ['dns'], value, layer: L.protocol })),
  { path: ['dns', 'nameservers'], value: 'x', layer: L.protocol, mention: 'dns' },
  ...[{ mac: 'yes' }, 5, []].map((value) => ({ path: ['capabilities'], value, layer: L.protocol })),
  ...[5, 'x', { ips: ['x'] }, { mac: 'zz' }, { portMappings: [{ hostPort: 0, containerPort: 1 }] }, { portMappings: 'x' },
    { bandwidth: { egressRate: -1 } }, { ipRanges: [[{ subnet: 'x' }]] }, { dns: { servers: ['x'] } }].map((value) => ({ path: ['runtimeConfig'], value, layer: L.protocol })),
  ...[5, { cni: 5 }, { cni: { ips: ['bad'] } }, { cni: { mac: 5 } }, { cni: { labels: [5] } }].map((value) => ({ path: ['args'], value, layer: L.protocol })),
  ...['x', 5, { ips: 'x' }, { cniVersion: '1.0.0', ips: [{ address: 'x' }] }].map((value) => ({ path: ['prevResult'], value, layer: L.protocol })),
  ...[5, 'x', ['a'], [{ containerID: 5, ifname: 'e' }]].map((value) => ({ path: ['cni.dev/valid-attachments'], value, layer: L.protocol })),
  ...[5, 'x'].map((value) => ({ path: ['disableCheck'], value, layer: L.protocol })),
  ...[5, {}].map((value) => ({ path: ['logFile'], value, layer: L.protocol })),
];

const ipamBad: KeyMut[] = [
  ...[5, '', 'a/b'].map((value) => ({ path: ['ipam', 'type'], value, layer: L.protocol })),
  ...[5, 'x', [], [[]], [[{ subnet: 'x' }]], [[{ subnet: '10.0.0.0/33' }]], [[{ subnet: '10.0.0.0/24', rangeStart: '10.9.0.1' }]], [['x']],
    [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/25' }]]].map((value) => ({ path: ['ipam', 'ranges'], value, layer: L.plugin })),
  ...['rel', 5, ''].map((value) => ({ path: ['ipam', 'dataDir'], value, layer: L.plugin })),
  ...['x', [{ dst: 'x' }], [5], [{ dst: '0.0.0.0/0', gw: 'x' }]].map((value) => ({ path: ['ipam', 'routes'], value, layer: L.plugin })),
  ...['x', ['x'], ['1.2.3.4/33']].map((value) => ({ path: ['ipam', 'exclude'], value, layer: L.plugin })),
];

const PLUGIN_BAD: Record<PluginName, KeyMut[]> = {
  'knit-bridge': [
    ...[5, '', 'a/b', 'x'.repeat(16), ' ', 'a:b', '.'].map((value) => ({ path: ['bridge'], value, layer: L.plugin })),
    ...['true', 1].map((value) => ({ path: ['isGateway'], value, layer: L.plugin })),
    ...['true', 1].map((value) => ({ path: ['ipMasq'], value, layer: L.plugin })),
    ...['yes'].map((value) => ({ path: ['hairpinMode'], value, layer: L.plugin })),
    ...[67, 65536, 1.5, '1500', -1, 1e300].map((value) => ({ path: ['mtu'], value, layer: L.plugin })),
    ...['zz', 5, '02:00:00:00:00'].map((value) => ({ path: ['mac'], value, layer: L.plugin })),
    ...ipamBad,
  ],
  'knit-macvlan': [
    ...[5, 'a/b', 'x'.repeat(16), 'a b'].map((value) => ({ path: ['master'], value, layer: L.plugin })),
    ...['foo', 5, 'BRIDGE'].map((value) => ({ path: ['mode'], value, layer: L.plugin })),
    ...[67, 65536, 'x', 2.5].map((value) => ({ path: ['mtu'], value, layer: L.plugin })),
    ...[0, 4095, 'x', 1.5, -1].map((value) => ({ path: ['vlan'], value, layer: L.plugin })),
    ...['x'].map((value) => ({ path: ['promisc'], value, layer: L.plugin })),
    ...['x'].map((value) => ({ path: ['linkInContainer'], value, layer: L.plugin })),
    ...['rel', 5].map((value) => ({ path: ['runDir'], value, layer: L.plugin })),
    ...ipamBad,
  ],
  'knit-overlay': [
    ...['rel', 5].map((value) => ({ path: ['runDir'], value, layer: L.plugin })),
    ...[5, 'x'].map((value) => ({ path: ['ipam'], value, layer: L.protocol })),
  ],
  'knit-l2overlay': [
    ...[0, -1, 1.5, '4242', VNI_MAX + 1, null, true, {}].map((value) => ({ path: ['vni'], value, layer: L.plugin })),
    ...['rel', 5, '', false, []].map((value) => ({ path: ['runDir'], value, layer: L.plugin })),
    ...[0, 67, 65536, 1.5, '1500', -1].map((value) => ({ path: ['mtu'], value, layer: L.plugin })),
    ...['yes', 1, 'true'].map((value) => ({ path: ['internal'], value, layer: L.plugin })),
    ...['no', 0].map((value) => ({ path: ['isolation'], value, layer: L.plugin })),
    // Not knit-etcd-ipam: an overlay network's addresses are cluster-wide.
    ...['knit-host-local', 'host-local', 'knit-etcd'].map((value) => ({ path: ['ipam', 'type'], value, layer: L.plugin, mention: 'ipam.type' })),
    ...[5, ''].map((value) => ({ path: ['ipam', 'nodeName'], value, layer: L.plugin, mention: 'ipam.nodeName' })),
    ...[5, {}, { endpoints: [] }, { endpoints: ['ftp://x'] }, { endpoints: 'x' }].map((value) => ({ path: ['ipam', 'etcd'], value, layer: L.plugin })),
    ...[5, 'x', 99, 600001].map((value) => ({ path: ['ipam', 'etcd', 'timeoutMs'], value, layer: L.plugin })),
    ...['nos', 5].map((value) => ({ path: ['ipam', 'etcd', 'prefix'], value, layer: L.plugin })),
    ...ipamBad.filter((m) => m.path[1] !== 'dataDir'),
    ...[8, 31, 'x'].map((value) => ({ path: ['ipam', 'blockSize'], value, layer: L.plugin })),
  ],
  'knit-host-local': ipamBad,
  'knit-etcd-ipam': [
    ...ipamBad.filter((m) => m.path[1] !== 'dataDir'),
    ...[5, 'a/b', '', ' n'].map((value) => ({ path: ['ipam', 'nodeName'], value, layer: L.plugin })),
    ...[5, {}, { endpoints: [] }, { endpoints: ['ftp://x'] }, { endpoints: 'x' }].map((value) => ({ path: ['ipam', 'etcd'], value, layer: L.plugin })),
    ...[5, 'x', 99, 600001].map((value) => ({ path: ['ipam', 'etcd', 'timeoutMs'], value, layer: L.plugin })),
    ...['nos', 5].map((value) => ({ path: ['ipam', 'etcd', 'prefix'], value, layer: L.plugin })),
    ...[8, 31, 'x'].map((value) => ({ path: ['ipam', 'blockSize'], value, layer: L.plugin })),
  ],
};

/**
 * knit-l2overlay's valid-looking values whose answer depends on the node: a VNI whose bridge knitd
 * has not made (11), a runDir without knitd's node file or with a corrupt one (11), a node file of
 * another node or a conflist rendered for another node (104); STATUS says 50 to all of them.
 */
function l2Odd(fx: Fixtures): fc.Arbitrary<KeyMut> {
  const l2 = fx.l2;
  type ByVerb = NonNullable<KeyMut['byVerb']>;
  const notReady = (mention: string): ByVerb => ({ ADD: { codes: [11], mention }, CHECK: { codes: [11, 7] }, STATUS: { codes: [50] } });
  const otherNode: ByVerb = { ADD: { codes: [104], mention: 'ipam.nodeName' }, CHECK: { codes: [104, 7] }, STATUS: { codes: [50] } };
  const odd = (path: string[], value: unknown, byVerb: ByVerb): KeyMut => ({ path, value, layer: L.plugin, byVerb });
  return fc.oneof(
    fc.constantFrom(1, l2.vni + 1, VNI_MAX).map((value) => odd(['vni'], value, { ADD: { codes: [11], mention: `knb${value}` }, CHECK: { codes: [104, 7] }, STATUS: { codes: [50] } })),
    // null: the default /run/knit, a fresh tmpfs in the worker (no node file).
    fc.constantFrom(l2.noNodeRunDir, null).map((value) => odd(['runDir'], value, notReady('node.json'))),
    fc.constant(l2.corruptRunDir).map((value) => odd(['runDir'], value, notReady('knitd is not ready'))),
    fc.constant(l2.otherNodeRunDir).map((value) => odd(['runDir'], value, otherNode)),
    // The record cannot be written (lease not found): 11, and the attachment made meanwhile undone.
    fc.constant(l2.deadLeaseRunDir).map((value) => odd(['runDir'], value, { ADD: { codes: [11], mention: 'lease' } })),
    fc.constantFrom('fz-other', 'n'.repeat(253)).map((value) => odd(['ipam', 'nodeName'], value, otherNode)),
    // Not a node name at all: not this node (104) or the IPAM's 7; DEL's IPAM step may say 7 too.
    fc.constantFrom('a/b', ' n', 'n'.repeat(300)).map((value) => odd(['ipam', 'nodeName'], value,
      { ADD: { codes: [104, 7] }, CHECK: { codes: [104, 7] }, STATUS: { codes: [50, 7] }, DEL: { ok: true, codes: [7] }, GC: { ok: true, codes: [7] } })),
    // etcd unreachable (connection refused on the lab's loopback): 11 wherever a record is read or written.
    fc.constant({ endpoints: ['http://127.0.0.1:1'], prefix: fx.etcdPrefix, timeoutMs: 300 }).map((value) => odd(['ipam', 'etcd'], value,
      { ADD: { codes: [11] }, DEL: { codes: [11] }, CHECK: { codes: [11, 7] }, STATUS: { codes: [50, 51, 11] }, GC: { codes: [11] } })),
    // TLS files that cannot be read or are not PEM (read when the first request is made).
    ...(!ETCD_TLS_FILES_FIXED ? [] : [fc.constantFrom({ ca: '/nonexistent/ca.pem' }, { ca: fx.notNetns.file }, { ca: fx.notNetns.dir }, { cert: fx.notNetns.file, key: fx.notNetns.file })
      .map((tls) => odd(['ipam', 'etcd'], { endpoints: [fx.etcdEndpoint.replace(/^http:/, 'https:')], prefix: fx.etcdPrefix, timeoutMs: 500, tls },
        { ADD: { codes: [11, 7] }, DEL: { codes: [11, 7] }, CHECK: { codes: [11, 7] }, STATUS: { codes: [50, 51, 11, 7] }, GC: { codes: [11, 7] } }))]),
    fc.integer({ min: 68, max: 65535 }).map((value) => ({ path: ['mtu'], value, layer: L.kernel, ok: true, codes: [100, 7] })),
    fc.constantFrom(true, false).chain((b) => fc.constantFrom<KeyMut>(
      { path: ['internal'], value: b, layer: L.kernel, ok: true, codes: [] },
      { path: ['isolation'], value: b, layer: L.kernel, ok: true, codes: [] },
    )),
    fc.constantFrom('fzl2b', 'x'.repeat(63), 'a.b-c_d').map((value) => ({ path: ['name'], value, layer: L.kernel, ok: true, codes: [] })),
    // Longer than a named network's name may be (63): 7 (was 5, nft's comment limit, at 116+).
    fc.constantFrom('x'.repeat(64), 'x'.repeat(200)).map((value) => odd(['name'], value,
      { ADD: { codes: [7], mention: 'name' }, CHECK: { codes: [7] }, STATUS: { codes: [7] }, GC: { codes: [7] }, DEL: { ok: true, codes: [7] } })),
    fc.constantFrom('/knit-fz-other', '/').map((value) => ({ path: ['ipam', 'etcd', 'prefix'], value, layer: L.kernel, ok: true, codes: [] })),
  );
}

/** Valid-looking values the kernel or a later check may still refuse (never with 5). */
const PLUGIN_ODD: Record<Exclude<PluginName, 'knit-l2overlay'>, fc.Arbitrary<KeyMut>> = {
  'knit-bridge': fc.oneof(
    fc.integer({ min: 68, max: 65535 }).map((value) => ({ path: ['mtu'], value, layer: L.kernel, ok: true, codes: [100, 7] })),
    fc.constantFrom('fzbr1', 'x'.repeat(15), '\u00e9\u00e9\u00e9', 'br-\u4e2d', 'fz.br', 'lo').map((value) => ({ path: ['bridge'], value, layer: L.kernel, ok: true, codes: [100, 104, 7] })),
    fc.constantFrom('02:00:00:00:00:01', '01:00:5e:00:00:01', '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', '02-00-00-00-00-02', '0200.0000.0003')
      .map((value) => ({ path: ['mac'], value, layer: L.kernel, ok: true, codes: [100, 7] })),
    fc.constantFrom([[{ subnet: '10.77.0.0/31' }]], [[{ subnet: '10.77.0.0/32' }]], [[{ subnet: '10.77.0.0/30' }]], [[{ subnet: 'fd77::/127' }]],
      [[{ subnet: 'fd77::/64' }]], [[{ subnet: '10.77.0.0/24' }], [{ subnet: 'fd77::/120' }]], [[{ subnet: '0.0.0.0/0' }]], [[{ subnet: '127.0.0.0/24' }]],
      [[{ subnet: '224.0.0.0/24' }]], [[{ subnet: '10.77.0.0/24', gateway: '10.77.0.0' }]], [[{ subnet: '10.77.0.0/24', gateway: '10.77.0.255' }]])
      .map((value) => ({ path: ['ipam', 'ranges'], value, layer: L.kernel, ok: true, codes: [7, 100, 102, 104] })),
    // 200 characters: cut nft comments (pkg/nat/nft.ts nftComment), success; was 5 at 116+.
    fc.constantFrom('fzb2', 'x'.repeat(200), 'n.\u0041-_', 'x'.repeat(64)).map((value) => ({ path: ['name'], value, layer: L.kernel, ok: true, codes: [] })),
    fc.constantFrom(true, false).chain((b) => fc.constantFrom<KeyMut>(
      { path: ['hairpinMode'], value: b, layer: L.kernel, ok: true, codes: [7] },
      { path: ['promiscMode'], value: b, layer: L.kernel, ok: true, codes: [7] },
      { path: ['isDefaultGateway'], value: b, layer: L.kernel, ok: true, codes: [7, 100, 104] },
      { path: ['forceAddress'], value: b, layer: L.kernel, ok: true, codes: [] },
    )),
  ),
  'knit-macvlan': fc.oneof(
    fc.integer({ min: 68, max: 65535 }).map((value) => ({ path: ['mtu'], value, layer: L.kernel, ok: true, codes: [7, 100] })),
    fc.integer({ min: 1, max: 4094 }).map((value) => ({ path: ['vlan'], value, layer: L.kernel, ok: true, codes: [100, 101, 104] })),
    fc.constantFrom('bridge', 'private', 'vepa', 'passthru').map((value) => ({ path: ['mode'], value, layer: L.kernel, ok: true, codes: [100, 104] })),
    fc.constantFrom('nosuchdev', 'lo', 'eth9').map((value) => ({ path: ['master'], value, layer: L.kernel, ok: true, codes: [7, 100, 104] })),
    fc.constantFrom(true, false).map((value) => ({ path: ['promisc'], value, layer: L.kernel, ok: true, codes: [] })),
    fc.constantFrom(true).map((value) => ({ path: ['linkInContainer'], value, layer: L.kernel, ok: true, codes: [7, 100, 104] })),
    fc.constantFrom('02:00:00:00:00:01', '01:00:5e:00:00:01', '00:00:00:00:00:00').map((value) => ({ path: ['mac'], value, layer: L.kernel, ok: true, codes: [100, 7] })),
  ),
  'knit-overlay': fc.constantFrom<KeyMut>(
    { path: ['runDir'], value: '/nonexistent-knit-run', layer: L.kernel, ok: true, codes: [11, 50] },
    { path: ['ipam'], value: {}, layer: L.kernel, ok: true, codes: [7] },
  ),
  'knit-host-local': fc.oneof(
    fc.constantFrom([[{ subnet: '10.80.0.0/31' }]], [[{ subnet: '10.80.0.0/32' }]], [[{ subnet: 'fd80::/127' }]], [[{ subnet: 'fd80::/128' }]],
      [[{ subnet: '10.80.0.0/24', rangeStart: '10.80.0.200', rangeEnd: '10.80.0.100' }]], [[{ subnet: '0.0.0.0/0' }]], [[{ subnet: '::/0' }]])
      .map((value) => ({ path: ['ipam', 'ranges'], value, layer: L.kernel, ok: true, codes: [7, 102] })),
    fc.constantFrom('fzh2', 'x'.repeat(200), 'a..b').map((value) => ({ path: ['name'], value, layer: L.kernel, ok: true, codes: [7] })),
  ),
  'knit-etcd-ipam': fc.oneof(
    fc.integer({ min: 16, max: 30 }).map((value) => ({ path: ['ipam', 'blockSize'], value, layer: L.kernel, ok: true, codes: [7, 102] })),
    fc.constantFrom('n'.repeat(253), 'fz2', 'a.b-c_d').map((value) => ({ path: ['ipam', 'nodeName'], value, layer: L.kernel, ok: true, codes: [] })),
    fc.constantFrom('/knit-fz-other', '/', '/a/b/').map((value) => ({ path: ['ipam', 'etcd', 'prefix'], value, layer: L.kernel, ok: true, codes: [] })),
    fc.constantFrom('x'.repeat(200), 'fze2').map((value) => ({ path: ['name'], value, layer: L.kernel, ok: true, codes: [7] })),
  ),
};

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let o: any = obj;
  for (const k of path.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null || Array.isArray(o[k])) o[k] = {};
    o = o[k];
  }
  o[path[path.length - 1]!] = value;
}

/** Which verbs look at plugin-level keys (DEL/STATUS/GC may parse less and still succeed). */
function pluginMut(verb: Verb, m: KeyMut): Expect {
  const mention = m.mention ?? m.path[m.path.length - 1];
  if (m.layer === L.protocol) return { ok: false, codes: [7], mention, why: `bad ${m.path.join('.')}` };
  if (m.byVerb) {
    const b = m.byVerb[verb];
    return b ? { ok: b.ok ?? false, codes: b.codes, mention: b.mention, why: `odd ${m.path.join('.')} (${verb})` } : { ok: true, codes: [], why: `odd ${m.path.join('.')} (${verb})` };
  }
  if (m.ok !== undefined) return { ok: m.ok, codes: [...(m.codes ?? []), ...(verb === 'STATUS' ? [50, 51] : [])], why: `odd ${m.path.join('.')}` };
  if (verb === 'ADD') return { ok: false, codes: [7], mention, why: `bad ${m.path.join('.')}` };
  // CHECK: prevResult is missing too (7 either way); DEL, STATUS, GC: 7 naming the key, or done
  // (STATUS may say 50, "not available", for a config it cannot serve ADD with).
  return { ok: verb !== 'CHECK', codes: verb === 'STATUS' ? [7, 50] : [7], why: `bad ${m.path.join('.')} (${verb})` };
}

const deep = (n: number, open: string, close: string, inner = '0'): string => open.repeat(n) + inner + close.repeat(n);

interface StdinMut { text: Buffer; mut: Mut }

// Arbitraries are built once per (fixtures, plugin, verb): building them holds large constants.
const stdinCache = new WeakMap<Fixtures, Map<string, fc.Arbitrary<StdinMut>>>();
function stdinMutations(p: PluginName, verb: Verb, fx: Fixtures): fc.Arbitrary<StdinMut> {
  let m = stdinCache.get(fx);
  if (!m) stdinCache.set(fx, (m = new Map()));
  let a = m.get(`${p} ${verb}`);
  if (!a) m.set(`${p} ${verb}`, (a = makeStdinMutations(p, verb, fx)));
  return a;
}

function makeStdinMutations(p: PluginName, verb: Verb, fx: Fixtures): fc.Arbitrary<StdinMut> {
  const base = (): Record<string, unknown> => baseConf(p, fx, verb);
  const baseText = JSON.stringify(base());
  const decodeBad = (text: string | Buffer, label: string): StdinMut => ({
    text: Buffer.isBuffer(text) ? text : Buffer.from(text),
    mut: { layer: L.decode, expect: { ok: false, codes: [6], why: 'not a JSON object' }, label },
  });
  const judged = (text: Buffer, label: string): StdinMut => ({ text, mut: judgeText(text, verb, label) });
  const keyMut = (m: KeyMut): StdinMut => {
    const c = base();
    setPath(c, m.path, m.value);
    return { text: Buffer.from(JSON.stringify(c)), mut: { layer: m.layer, expect: pluginMut(verb, m), label: `${m.path.join('.')}=${short(m.value)}` } };
  };
  const harmless = (extraKey: string, value: unknown, label: string): StdinMut => {
    const c = { ...base(), [extraKey]: value };
    return { text: Buffer.from(JSON.stringify(c)), mut: { layer: L.kernel, expect: null, label } };
  };
  return fc.oneof(
    // malformed JSON
    fc.nat({ max: baseText.length - 1 }).map((n) => decodeBad(baseText.slice(0, n), `truncated at ${n}`)),
    fc.constantFrom('', ' ', '\n', 'null', '1', '"x"', '[]', '[{}]', 'true', '{', '}', '{"cniVersion":"1.0.0",}', "{'a':1}", '\ufeff', '{"a":1}{"b":2}', 'NaN', '{"a":01}')
      .map((t) => judged(Buffer.from(t), `stdin ${short(t)}`)),
    fc.uint8Array({ maxLength: 200 }).map((b) => judged(Buffer.from(b), 'random bytes')),
    fc.string({ maxLength: 100 }).map((s) => judged(Buffer.from(s), 'random string')),
    fc.integer({ min: 1, max: baseText.length - 1 }).chain((at) => fc.constantFrom('\u0000', '\u0001', '\\', '"', '\ud800', '\u2028', '\x7f', '\n')
      .map((ch) => judged(Buffer.from(baseText.slice(0, at) + ch + baseText.slice(at)), `insert ${short(ch)} at ${at}`))),
    // Nesting: up to MAX_NESTING (1000) levels is a config like any other, deeper is code 6;
    // the very deep ones (10^5-10^6 levels, ~1 MB) are rare: each costs tens of ms.
    fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(1000, 20_000).map((n) => decodeBad(deep(n, '[', ''), `unclosed nesting ${n}`)) },
      { weight: 6, arbitrary: fc.constantFrom(500, 999, 1000, 20_000).map((n) => judged(Buffer.from(baseText.slice(0, -1) + `,"deep":${deep(n, '[', ']')}}`), `deep nesting ${n}`)) },
      { weight: 6, arbitrary: fc.constantFrom(500, 5000).map((n) => judged(Buffer.from(baseText.slice(0, -1) + `,"deep":${deep(n, '{"a":', '}')}}`), `deep objects ${n}`)) },
      { weight: 6, arbitrary: fc.constantFrom(5000).map((n) => judged(Buffer.from(baseText.slice(0, -1) + `,"deep":${deep(n, '[', ']').slice(0, -1)}}`), `unbalanced nesting ${n}`)) },
      { weight: 1, arbitrary: fc.constantFrom(1_000_000).map((n) => decodeBad(deep(n, '[', ''), `unclosed nesting ${n}`)) },
      { weight: 1, arbitrary: fc.constantFrom(200_000).map((n) => judged(Buffer.from(baseText.slice(0, -1) + `,"deep":${deep(n, '{"a":', '}')}}`), `deep objects ${n}`)) },
      { weight: 1, arbitrary: fc.constantFrom(200_000).map((n) => judged(Buffer.from(baseText.slice(0, -1) + `,"deep":${deep(n, '[', ']').slice(0, -1)}}`), `unbalanced nesting ${n}`)) },
    ),
    fc.constantFrom(Buffer.from([0xff, 0xfe]), Buffer.from([0xef, 0xbb, 0xbf])).map((b) => judged(Buffer.concat([b, Buffer.from(baseText)]), `BOM ${b.toString('hex')}`)),
    // duplicate keys (JSON.parse: the last wins)
    fc.constantFrom('cniVersion', 'name', 'type', 'ipam').chain((k) => fc.constantFrom<unknown>('0.2.0', '1.1.0', 5, null, {}, 'dup').map((v) => judged(
      Buffer.from(`{${JSON.stringify(k)}:${JSON.stringify(v)},` + baseText.slice(1)), `dup ${k} first ${short(v)}`))),
    fc.constantFrom('cniVersion', 'name', 'ipam').chain((k) => fc.constantFrom<unknown>('0.2.0', 5, 'dup', '').map((v) => judged(
      Buffer.from(baseText.slice(0, -1) + `,${JSON.stringify(k)}:${JSON.stringify(v)}}`), `dup ${k} last ${short(v)}`))),
    // cniVersion
    fc.constantFrom<unknown>(undefined, '', '0.1.0', '0.2.0', '9.9.9', ' 1.0.0', '1.0', 1, null, true, ['1.0.0'], '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0', '1.0.0\u0000')
      .map((v) => { const c = base(); if (v === undefined) delete c.cniVersion; else c.cniVersion = v; return judged(Buffer.from(JSON.stringify(c)), `cniVersion=${short(v)}`); }),
    // one bad key
    fc.constantFrom(...protocolBad, ...PLUGIN_BAD[p]).map(keyMut),
    (p === 'knit-l2overlay' ? l2Odd(fx) : PLUGIN_ODD[p]).map(keyMut),
    // harmless additions: unknown keys, unicode, NULs, huge strings
    fc.constantFrom<[string, unknown]>(['x-unknown', 1], ['\u00e9\u4e2d\ud83d\ude00', 'v'], ['nul\u0000key', '\u0000'], ['big', BIG],
      ['arr', ARR], ['', ''], ['__proto__', { polluted: true }], ['constructor', 'x'])
      .map(([k, v]) => harmless(k, v, `extra key ${short(k)}`)),
    fc.jsonValue({ maxDepth: 4 }).map((v) => harmless('fz-extra', v, 'extra json value')),
    fc.constantFrom('\n', '\r\n', '   ', '\t').map((ws) => judged(Buffer.from(ws + JSON.stringify(base(), null, 2).replaceAll('\n', ws) + ws), 'whitespace')),
  );
}

/**
 * Expectation for an arbitrary stdin text, decided as skel does: decode (6), object (6),
 * cniVersion (1, or 7 for a non-string), then the verb's minimum version (1); an object that
 * passes those is judged by its keys: the base config's answer when they are the base's.
 */
function judgeText(text: Buffer, verb: Verb, label: string): Mut {
  let s = text.toString('utf8');
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  let v: unknown;
  const decode6: Mut = { layer: L.decode, expect: { ok: false, codes: [6], why: 'not a JSON object' }, label };
  if (verb === 'VERSION') {
    if (s.trim() === '') return { layer: L.kernel, expect: null, label };
    try { v = JSON.parse(s); } catch { return decode6; }
    return { layer: L.kernel, expect: null, label };
  }
  if (s.trim() === '') return decode6;
  try { v = JSON.parse(s); } catch { return decode6; }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return decode6;
  if (s.length > 2000 && depthOf(v) > 1000) return { layer: L.decode, expect: { ok: false, codes: [6], mention: 'nested', why: 'nested too deep' }, label };
  const o = v as Record<string, unknown>;
  const cv = o.cniVersion;
  if (cv === undefined || cv === '') return { layer: L.version, expect: { ok: false, codes: [1], mention: 'cniVersion', why: 'cniVersion missing' }, label };
  if (typeof cv !== 'string') return { layer: L.version, expect: { ok: false, codes: [7], mention: 'cniVersion', why: 'cniVersion not a string' }, label };
  const supported = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
  if (!supported.includes(cv)) return { layer: L.version, expect: { ok: false, codes: [1], why: 'unsupported cniVersion' }, label };
  const min = { ADD: '0.3.0', DEL: '0.3.0', CHECK: '0.4.0', STATUS: '1.1.0', GC: '1.1.0', VERSION: '0.3.0' }[verb];
  if (supported.indexOf(cv) < supported.indexOf(min)) return { layer: L.version, expect: { ok: false, codes: [1], mention: verb, why: 'version predates verb' }, label };
  // Keys other than cniVersion: harmless if they are the base's (whitespace, BOM, duplicates with
  // the same final value, an added unknown key); a duplicate that changed a key: 7 or as the base.
  // A changed byte inside a value can make any value odd: any spec or knit code but 5 (and
  // 5 "failed to find plugin" for an ipam.type that is no longer knit's) is a right answer.
  return { layer: L.protocol, expect: { ok: true, codes: [3, 7, 11, 50, 51, 100, 102, 104], why: 'decoded object' }, label };
}

/** Nesting depth of a decoded value (iterative: the values here can be 10^5 deep). */
function depthOf(v: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    if (d > max) max = d;
    for (const y of Array.isArray(x) ? x : Object.values(x)) if (typeof y === 'object' && y !== null) stack.push([y, d + 1]);
  }
  return max;
}

function short(v: unknown): string {
  let s: string;
  try { s = v === undefined ? 'unset' : JSON.stringify(v) ?? String(v); } catch { s = String(v); }
  return s.length > 40 ? `${s.slice(0, 37)}...(${s.length})` : s;
}

// ---- the case arbitrary --------------------------------------------------------------------

/** Combines mutations: the earliest layer decides; with none, the verb's base expectation. */
function decide(p: PluginName, verb: Verb, muts: Mut[]): Expect {
  const sorted = muts.filter((m) => m.expect).sort((a, b) => a.layer - b.layer);
  const first = sorted[0];
  const base = baseExpect(p, verb);
  if (!first) return base;
  const e = { ...first.expect! };
  // A later, kernel-level oddity keeps its alternatives when the earlier layer would pass.
  if (first.layer >= L.plugin && verb === 'CHECK' && MAIN_PLUGINS.has(p)) {
    // CHECK without prevResult: 7 from the plugin comes first whatever the oddity.
    return { ...base, codes: [...new Set([...base.codes, ...sorted.flatMap((m) => m.expect!.codes)])], mention: undefined };
  }
  if (e.ok && verb === 'CHECK') e.codes = [...new Set([...e.codes, ...base.codes])];
  // A CNI_NETNS that is no namespace, behind mutations that may pass: still that class.
  if (e.ok && sorted.some((m) => m.expect!.netnsClass)) e.netnsClass = true;
  // Ties at the deciding layer (two bad variables): either may be named.
  const ties = sorted.filter((m) => m.layer === first.layer && !m.expect!.ok);
  if (ties.length > 1) e.mention = ties.map((m) => m.expect!.mention).filter(Boolean).join('|') || undefined;
  // Several mutations: an earlier one that "may pass" leaves the later ones' outcomes possible.
  for (const m of sorted.slice(1)) {
    if (first.expect!.ok) { e.codes = [...new Set([...e.codes, ...m.expect!.codes])]; e.ok = e.ok && m.expect!.ok; e.mention = undefined; }
  }
  return e;
}

export function caseArb(fx: Fixtures, opts: { plugins?: readonly PluginName[]; verbs?: readonly Verb[]; inProcess?: boolean } = {}): fc.Arbitrary<Case> {
  const plugins = opts.plugins ?? PLUGIN_NAMES;
  const verbs = opts.verbs ?? VERBS;
  // Exec'd, CNI_NETNS is mutated three times as often: paths that are no namespace can only be
  // tried there (in-process, opening a FIFO would block the worker).
  const envArb = envMutations(fx, opts.inProcess ? 1 : 3);
  return fc.tuple(fc.constantFrom(...plugins), fc.constantFrom(...verbs)).chain(([plugin, verb]) =>
    fc.record({
      env: fc.array(envArb, { maxLength: 2 }),
      stdin: fc.option(stdinMutations(plugin, verb, fx), { freq: 4, nil: null }),
    }).map(({ env: envMuts, stdin }): Case => {
      const env = baseEnv(verb, fx);
      const muts: Mut[] = [];
      for (const m of envMuts) {
        // In-process, a CNI_NETNS that is no namespace could block the whole worker (a FIFO):
        // those go to the exec'd sample only.
        if (opts.inProcess && m.name === 'CNI_NETNS' && m.value && (Object.values(fx.notNetns).includes(m.value))) continue;
        if (m.value === undefined) delete env[m.name]; else env[m.name] = m.value;
      }
      // Judge the final environment (later mutations of the same variable win).
      for (const name of new Set(envMuts.map((m) => m.name))) {
        if (opts.inProcess && name === 'CNI_NETNS' && env.CNI_NETNS === fx.podNetns) continue;
        muts.push(envExpect(verb, plugin, name, env[name], fx));
      }
      const conf = baseConf(plugin, fx, verb);
      const text = stdin ? stdin.text : Buffer.from(JSON.stringify(conf));
      if (stdin) muts.push(verb === 'VERSION' ? judgeText(stdin.text, verb, stdin.mut.label) : stdin.mut);
      const expect = decide(plugin, verb, muts);
      const cmdOk = env.CNI_COMMAND === verb;
      return {
        plugin, verb, env, stdin: text, base: conf, expect,
        label: muts.map((m) => m.label).join(' + ') || 'good',
        mayCreate: cmdOk && verb === 'ADD',
      };
    }));
}

export function okCidr(s: unknown): boolean {
  return typeof s === 'string' && /^[0-9a-fA-F.:]+\/\d{1,3}$/.test(s);
}

/** Checks an ADD result's shape for the request's version; returns the problem or null. */
export function resultProblem(stdout: string, cniVersion: string, main: boolean): string | null {
  let r: any;
  try { r = JSON.parse(stdout); } catch { return 'stdout is not JSON'; }
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'result is not an object';
  if (r.cniVersion !== cniVersion) return `result cniVersion ${r.cniVersion} is not the request's ${cniVersion}`;
  if (!Array.isArray(r.ips)) return 'ips is not a list';
  for (const ip of r.ips) {
    if (!okCidr(ip?.address)) return `bad ips[].address ${JSON.stringify(ip?.address)}`;
    if (!cniVersion.startsWith('1.') && ip.version !== '4' && ip.version !== '6') return 'ips[].version missing below 1.0.0';
    if (ip.interface !== undefined && (typeof ip.interface !== 'number' || !r.interfaces?.[ip.interface])) return 'ips[].interface points nowhere';
  }
  if (main) {
    if (!Array.isArray(r.interfaces) || r.interfaces.length === 0) return 'a main plugin result without interfaces';
    for (const i of r.interfaces) if (typeof i?.name !== 'string' || !i.name) return 'interface without a name';
  }
  if (r.routes !== undefined && !Array.isArray(r.routes)) return 'routes is not a list';
  return null;
}
