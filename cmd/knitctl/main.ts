// knitctl: the admin CLI. Hand-parsed arguments (no yargs: DESIGN.md decision 4), tables for
// people and --json for scripts.
//
//   knitctl ipam ls [--network NAME] [--node N] [--json] [etcd flags]
//   knitctl ipam gc --node N [--network NAME] [--keep CID:IFNAME,...] [--dry-run] [--json] [etcd flags]
//   knitctl ipam gc --pods [--kubeconfig F] [--node N] [--network NAME] [--grace SEC] [--dry-run] [--json] [etcd flags]
//
// etcd flags: --etcd-endpoints URL[,URL...] (default $KNIT_ETCD_ENDPOINTS or http://127.0.0.1:2379),
// --etcd-prefix (default /knit), --etcd-cafile, --etcd-certfile, --etcd-keyfile,
// --etcd-username, --etcd-password (or $KNIT_ETCD_PASSWORD, kept out of the process list),
// --etcd-timeout MS (default 5000).
import { EtcdClient, EtcdError, prefixEnd } from '../../pkg/etcd';
import { EtcdAllocator, EtcdKeys, gcNode, type NetworkListing } from '../../pkg/ipam/etcd-allocator';
import { parseEtcdConn, NODE_RE, type EtcdConnConfig } from '../../pkg/ipam/etcd-config';
import { CniError } from '../../pkg/cni/errors';
import type { Owner } from '../../pkg/ipam/store';
import { podGcPass, StaleTracker, type Judgement } from '../../pkg/ipam/pod-gc';
import { OVERLAY_USAGE, OverlayUsageError, overlayCommand } from './overlay';

const USAGE = `usage:
  knitctl ipam ls [--network NAME] [--node N] [--json] [etcd flags]
      who holds which address, per node and block
  knitctl ipam gc --node N [--network NAME] [--keep CID:IFNAME,...] [--dry-run] [--json] [etcd flags]
      release every address node N holds (except --keep) and return its empty blocks:
      for a node that left the cluster without DEL
  knitctl ipam gc --pods [--kubeconfig FILE] [--node N] [--network NAME] [--grace SEC] [--dry-run] [--json] [etcd flags]
      release the addresses of attachments whose Kubernetes pod is gone (deleted, recreated,
      finished): judged stale twice, --grace seconds apart (default 30), and unchanged
${OVERLAY_USAGE}etcd flags:
  --etcd-endpoints URL[,URL...]   default $KNIT_ETCD_ENDPOINTS or http://127.0.0.1:2379
  --etcd-prefix PREFIX            default /knit
  --etcd-cafile FILE  --etcd-certfile FILE  --etcd-keyfile FILE
  --etcd-username USER  --etcd-password PASS (or $KNIT_ETCD_PASSWORD)
  --etcd-timeout MS               default 5000
`;

class UsageError extends Error {}

interface Args {
  words: string[];
  flags: Map<string, string>;
  bools: Set<string>;
}

const VALUE_FLAGS = new Set(['run-dir', 'network', 'node', 'keep', 'kubeconfig', 'grace', 'etcd-endpoints', 'etcd-prefix', 'etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password', 'etcd-timeout']);
const BOOL_FLAGS = new Set(['json', 'dry-run', 'help', 'pods']);

export function parseArgs(argv: string[]): Args {
  const out: Args = { words: [], flags: new Map(), bools: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h') { out.bools.add('help'); continue; }
    if (!a.startsWith('--')) { out.words.push(a); continue; }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (BOOL_FLAGS.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      out.bools.add(name);
    } else if (VALUE_FLAGS.has(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`--${name} needs a value`);
      out.flags.set(name, v);
    } else throw new UsageError(`unknown flag ${a.split('=')[0]}`);
  }
  return out;
}

export function etcdConfFromArgs(a: Args, env: NodeJS.ProcessEnv = process.env): EtcdConnConfig {
  const eps = (a.flags.get('etcd-endpoints') ?? env.KNIT_ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379').split(',').map((s) => s.trim()).filter(Boolean);
  const tls: Record<string, string> = {};
  const abs = (f: string): string => (f.startsWith('/') ? f : `${process.cwd()}/${f}`);
  if (a.flags.has('etcd-cafile')) tls.ca = abs(a.flags.get('etcd-cafile')!);
  if (a.flags.has('etcd-certfile')) tls.cert = abs(a.flags.get('etcd-certfile')!);
  if (a.flags.has('etcd-keyfile')) tls.key = abs(a.flags.get('etcd-keyfile')!);
  const raw: Record<string, unknown> = { endpoints: eps };
  if (Object.keys(tls).length) raw.tls = tls;
  if (a.flags.has('etcd-prefix')) raw.prefix = a.flags.get('etcd-prefix');
  if (a.flags.has('etcd-timeout')) raw.timeoutMs = Number(a.flags.get('etcd-timeout'));
  if (a.flags.has('etcd-username')) raw.username = a.flags.get('etcd-username');
  const pw = a.flags.get('etcd-password') ?? env.KNIT_ETCD_PASSWORD;
  if (pw !== undefined) raw.password = pw;
  try {
    return parseEtcdConn(raw, 'etcd');
  } catch (e) {
    // Name flags, not config keys.
    throw new UsageError((e as Error).message.replace(/etcd\.endpoints(\[\d+\])?/, '--etcd-endpoints').replace(/etcd\.tls\.ca/, '--etcd-cafile').replace(/etcd\.tls\.cert/, '--etcd-certfile')
      .replace(/etcd\.tls\.key/, '--etcd-keyfile').replace(/etcd\.tls/, '--etcd-certfile/--etcd-keyfile').replace(/etcd\.prefix/, '--etcd-prefix').replace(/etcd\.timeoutMs/, '--etcd-timeout').replace(/etcd\.username/, '--etcd-username'));
  }
}

/** Network names that have IPAM keys under the prefix. */
async function networks(client: EtcdClient, prefix: string): Promise<string[]> {
  const base = `${prefix}/ipam/`;
  const r = await client.range({ key: base, rangeEnd: prefixEnd(base), keysOnly: true });
  const names = new Set<string>();
  for (const kv of r.kvs) names.add(kv.key.toString().slice(base.length).split('/')[0]!);
  return [...names].sort();
}

export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

function ipSort(a: string, b: string): number {
  const key = (s: string): string => (s.includes(':') ? `6${s}` : `4${s.split('.').map((x) => x.padStart(3, '0')).join('.')}`);
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

function blockSize(cidr: string): number {
  const [ip, p] = cidr.split('/');
  const bits = (ip ?? '').includes(':') ? 128 : 32;
  return 2 ** Math.min(52, bits - Number(p));
}

export function formatListing(l: NetworkListing, node?: string): string {
  const pods = new Map(l.attachments.map((x) => [`${x.node}/${x.containerId}:${x.ifName}`, x.pod ? `${x.pod.namespace}/${x.pod.name}` : '-']));
  const blocks = l.blocks.filter((b) => !node || b.node === node).sort((a, b) => a.node.localeCompare(b.node) || ipSort(a.cidr, b.cidr));
  const ips = l.ips.filter((r) => !node || r.node === node || r.blockNode === node).sort((a, b) => a.node.localeCompare(b.node) || ipSort(a.ip, b.ip));
  const out = [`network ${l.network}: ${l.blocks.length} blocks, ${l.ips.length} addresses, ${l.attachments.length} attachments`];
  out.push('', table(['NODE', 'BLOCK', 'USED'], blocks.map((b) => [b.node, b.cidr, `${b.used}/${blockSize(b.cidr)}`])));
  out.push('', table(['NODE', 'ADDRESS', 'CONTAINER', 'IFNAME', 'POD', 'BLOCK', 'NOTE'], ips.map((r) => [
    r.node, r.ip, r.containerId, r.ifName, pods.get(`${r.node}/${r.containerId}:${r.ifName}`) ?? '-', r.block ?? '-',
    !r.block ? 'outside any block (static)' : r.blockNode !== r.node ? `borrowed from ${r.blockNode}` : '',
  ])));
  return out.join('\n');
}

async function withClient<T>(a: Args, fn: (c: EtcdClient, conf: EtcdConnConfig) => Promise<T>): Promise<T> {
  const conf = etcdConfFromArgs(a);
  const client = new EtcdClient(conf);
  try { return await fn(client, conf); } finally { client.close(); }
}

async function ipamLs(a: Args): Promise<string> {
  const node = a.flags.get('node');
  return withClient(a, async (client, conf) => {
    const nets = a.flags.has('network') ? [a.flags.get('network')!] : await networks(client, conf.prefix);
    const listings: NetworkListing[] = [];
    for (const n of nets) listings.push(await EtcdAllocator.list(client, new EtcdKeys(conf.prefix, n)));
    if (a.bools.has('json')) {
      return JSON.stringify(listings.map((l) => node ? {
        ...l, blocks: l.blocks.filter((b) => b.node === node), ips: l.ips.filter((r) => r.node === node || r.blockNode === node), attachments: l.attachments.filter((x) => x.node === node),
      } : l), null, 2);
    }
    if (!listings.length) return `no IPAM networks under ${conf.prefix}/ipam/`;
    return listings.map((l) => formatListing(l, node)).join('\n\n');
  });
}

/**
 * The pod GC (pkg/ipam/pod-gc.ts) from the command line: every node's attachments (or N's)
 * against every pod, looked at twice, --grace seconds apart; what was stale both times, with an
 * unchanged index, is released.
 */
async function ipamGcPods(a: Args, sleep: (ms: number) => Promise<void>): Promise<string> {
  const node = a.flags.get('node');
  if (node !== undefined && !NODE_RE.test(node)) throw new UsageError(`invalid --node ${JSON.stringify(node)}: a node name`);
  if (a.flags.has('keep')) throw new UsageError('--keep goes with --node N alone, not with --pods');
  const grace = Number(a.flags.get('grace') ?? 30);
  if (!Number.isInteger(grace) || grace < 0) throw new UsageError(`invalid --grace ${a.flags.get('grace')}: whole seconds ≥ 0 between the two looks`);
  const { kubeClient, listPods } = require('../../pkg/kube') as typeof import('../../pkg/kube');
  const kubeconfig = a.flags.get('kubeconfig') ?? process.env.KUBECONFIG;
  const kube = kubeClient(kubeconfig ? { kubeconfig } : {});
  const list = () => listPods(kube.api);
  const dryRun = a.bools.has('dry-run');
  return withClient(a, async (client, conf) => {
    const nets = a.flags.has('network') ? [a.flags.get('network')!] : await networks(client, conf.prefix);
    const trackers = new Map(nets.map((n) => [n, new StaleTracker(grace * 1000)]));
    const t0 = Date.now();
    let first = 0;
    for (const n of nets) {
      const p = await podGcPass(client, new EtcdKeys(conf.prefix, n), list, trackers.get(n)!, { ...(node ? { node } : {}), now: t0, dryRun: true });
      first += p.judged.filter((j) => j.stale).length;
    }
    const reports: Array<{ network: string; released: Array<{ node: string; ip: string; containerId: string; ifName: string; pod: string; reason: string }>; kept: number; dryRun: boolean }> = [];
    if (first) {
      await sleep(grace * 1000);
      for (const n of nets) {
        const p = await podGcPass(client, new EtcdKeys(conf.prefix, n), list, trackers.get(n)!, { ...(node ? { node } : {}), now: t0 + grace * 1000, dryRun });
        const freed = new Set((p.report?.released ?? []).map((r) => `${ownerId(r.owner)}/${r.ip}`));
        const rows = p.confirmed.flatMap((j: Judgement) => j.row.rec.ips
          .filter((x) => dryRun || freed.has(`${ownerId(j.row.owner)}/${x.ip}`))
          .map((x) => ({ node: j.row.node, ip: x.ip, containerId: j.row.owner.containerId, ifName: j.row.owner.ifName, pod: j.row.rec.pod ? `${j.row.rec.pod.namespace}/${j.row.rec.pod.name}` : '-', reason: j.reason })));
        reports.push({ network: n, released: rows, kept: p.judged.length - p.confirmed.length, dryRun });
      }
    } else {
      for (const n of nets) reports.push({ network: n, released: [], kept: 0, dryRun });
    }
    if (a.bools.has('json')) return JSON.stringify(reports, null, 2);
    if (!nets.length) return `no IPAM networks under ${conf.prefix}/ipam/`;
    if (!first) return `no attachment of a pod that is gone${node ? ` on node ${node}` : ''}: nothing to release`;
    return reports.map((r) => [
      `network ${r.network}: ${r.dryRun ? 'would release' : 'released'} ${r.released.length} address${r.released.length === 1 ? '' : 'es'} (stale at both looks, ${grace} s apart)`,
      ...(r.released.length ? ['', table(['NODE', 'ADDRESS', 'CONTAINER', 'IFNAME', 'POD', 'REASON'], r.released.sort((x, y) => x.node.localeCompare(y.node) || ipSort(x.ip, y.ip)).map((x) => [x.node, x.ip, x.containerId, x.ifName, x.pod, x.reason]))] : []),
    ].join('\n')).join('\n\n');
  });
}

const ownerId = (o: Owner): string => `${o.containerId}:${o.ifName}`;

async function ipamGc(a: Args): Promise<string> {
  const node = a.flags.get('node');
  if (!node) throw new UsageError('ipam gc needs --node N (the node whose addresses to release)');
  if (!NODE_RE.test(node)) throw new UsageError(`invalid --node ${JSON.stringify(node)}: a node name`);
  const keep: Owner[] = (a.flags.get('keep') ?? '').split(',').filter(Boolean).map((s) => {
    const i = s.lastIndexOf(':');
    if (i <= 0 || i === s.length - 1) throw new UsageError(`invalid --keep entry ${JSON.stringify(s)}: CONTAINERID:IFNAME`);
    return { containerId: s.slice(0, i), ifName: s.slice(i + 1) };
  });
  return withClient(a, async (client, conf) => {
    const nets = a.flags.has('network') ? [a.flags.get('network')!] : await networks(client, conf.prefix);
    const reports: Array<{ network: string; released: Array<{ ip: string; containerId: string; ifName: string; reason: string }>; blocksReturned: string[]; dryRun: boolean }> = [];
    for (const n of nets) {
      const keys = new EtcdKeys(conf.prefix, n);
      if (a.bools.has('dry-run')) {
        const l = await EtcdAllocator.list(client, keys);
        const kept = new Set(keep.map((o) => `${o.containerId}:${o.ifName}`));
        const released = l.ips.filter((r) => r.node === node && !kept.has(`${r.containerId}:${r.ifName}`)).map((r) => ({ ip: r.ip, containerId: r.containerId, ifName: r.ifName, reason: 'would release' }));
        reports.push({ network: n, released, blocksReturned: [], dryRun: true });
        continue;
      }
      const r = await gcNode(client, keys, node, keep);
      reports.push({ network: n, released: r.released.map((x) => ({ ip: x.ip, containerId: x.owner.containerId, ifName: x.owner.ifName, reason: x.reason })), blocksReturned: r.blocksReturned, dryRun: false });
    }
    if (a.bools.has('json')) return JSON.stringify(reports, null, 2);
    return reports.map((r) => [
      `network ${r.network}: ${r.dryRun ? 'would release' : 'released'} ${r.released.length} addresses of node ${node}${r.dryRun ? '' : `, returned ${r.blocksReturned.length} blocks`}`,
      ...(r.released.length ? ['', table(['ADDRESS', 'CONTAINER', 'IFNAME', 'REASON'], r.released.sort((x, y) => ipSort(x.ip, y.ip)).map((x) => [x.ip, x.containerId, x.ifName, x.reason]))] : []),
      ...(r.blocksReturned.length ? ['', `blocks returned: ${r.blocksReturned.join(' ')}`] : []),
    ].join('\n')).join('\n\n');
  });
}

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function run(argv: string[], sleep: (ms: number) => Promise<void> = wait): Promise<{ code: number; out: string; err: string }> {
  try {
    const a = parseArgs(argv);
    if (a.bools.has('help') || a.words.length === 0) return { code: a.bools.has('help') ? 0 : 2, out: a.bools.has('help') ? USAGE : '', err: a.bools.has('help') ? '' : USAGE };
    const [group, verb, ...rest] = a.words;
    const overlay = await overlayCommand(a.words, a.flags, a.bools.has('json'), () => etcdConfFromArgs(a));
    if (overlay !== null) return { code: 0, out: overlay + '\n', err: '' };
    if (rest.length) throw new UsageError(`unexpected argument ${rest[0]}`);
    if (group === 'ipam' && verb === 'ls') return { code: 0, out: await ipamLs(a) + '\n', err: '' };
    if (group === 'ipam' && verb === 'gc' && a.bools.has('pods')) return { code: 0, out: await ipamGcPods(a, sleep) + '\n', err: '' };
    if (group === 'ipam' && verb === 'gc') return { code: 0, out: await ipamGc(a) + '\n', err: '' };
    throw new UsageError(`unknown command ${a.words.join(' ')}`);
  } catch (e) {
    if (e instanceof UsageError || e instanceof OverlayUsageError) return { code: 2, out: '', err: `knitctl: ${e.message}\n${USAGE}` };
    if (e instanceof EtcdError || e instanceof CniError) return { code: 1, out: '', err: `knitctl: ${e.message}\n` };
    return { code: 1, out: '', err: `knitctl: ${(e as Error).message ?? e}\n` };
  }
}

if (require.main === module) {
  run(process.argv.slice(2)).then((r) => {
    if (r.out) process.stdout.write(r.out);
    if (r.err) process.stderr.write(r.err);
    process.exitCode = r.code;
  });
}
