// knitctl ipam: knit-etcd-ipam's cluster-wide address records (docs/knit-etcd-ipam.md#knitctl).
//   knitctl ipam ls [--network NAME] [--node N] [--json]
//   knitctl ipam gc --node N [--network NAME] [--keep CID:IFNAME,...] [--dry-run] [--json]
//   knitctl ipam gc --pods [--kubeconfig FILE] [--node N] [--network NAME] [--grace SEC] [--dry-run] [--json]
// On the mesh (the local knitd's socket there, no etcd given; docs/mesh.md): `ls` shows every
// node's blocks and attachments as the nodes publish them, `gc [--network N] [--grace SEC]` releases
// this node's attachments whose container is gone (its host link gone at two looks).
import type { CommandModule } from 'yargs';
import { EtcdClient, prefixEnd } from '../../../pkg/etcd';
import { EtcdAllocator, EtcdKeys, gcNode, type NetworkListing } from '../../../pkg/ipam/etcd-allocator';
import { NODE_RE, type EtcdConnConfig } from '../../../pkg/ipam/etcd-config';
import type { Owner } from '../../../pkg/ipam/store';
import { podGcPass, StaleTracker, type Judgement } from '../../../pkg/ipam/pod-gc';
import { etcdConfFromArgs, group, ipSort, leaf, str, table, UsageError, value, type Ctx, type Flags } from '../common';
import { DEFAULT_RUN_DIR } from '../../../pkg/agent/lease-file';
import type { MeshJudgement } from '../../../pkg/agent/ipam-gc';
import { contains, parseCIDR, parseIP } from '../../../pkg/ip/ip';
import { controlCall } from '../../../pkg/mesh/control';
import type { MeshIpamListing } from '../../../pkg/mesh/ipam';
import { meshRunDir } from './mesh';

const runDirOpt = value(`on the mesh: the local knitd's --run-dir (default ${DEFAULT_RUN_DIR})`);

export function commands(ctx: Ctx): CommandModule[] {
  return [group(ctx, ['ipam'], {
    describe: 'knit-etcd-ipam (or the mesh\'s blocks): who holds which address; release the addresses of gone nodes, pods and containers',
    commands: () => [
      leaf(ctx, ['ipam', 'ls'], {
        command: 'ls [network]',
        describe: 'who holds which address, per node and block',
        positionals: { network: { type: 'string', describe: 'only this network (as --network)' } },
        options: {
          network: value('only this network (default: every network with IPAM keys)'),
          node: value('only this node\'s blocks and addresses'),
          json: { type: 'boolean', describe: 'the listing as JSON' },
          'run-dir': runDirOpt,
        },
        run: (a, c) => { const dir = meshRunDir(a, c.env); return dir ? meshIpamLs(a, dir) : ipamLs(a, c.env); },
      }),
      leaf(ctx, ['ipam', 'gc'], {
        command: 'gc',
        describe: 'release the addresses of a node that left without DEL (--node N), or of pods that are gone (--pods); on the mesh: of this node\'s containers that are gone',
        options: {
          node: value('the node whose addresses to release (with --pods: only this node\'s attachments)'),
          pods: { type: 'boolean', describe: 'release the attachments whose Kubernetes pod is gone (deleted, recreated, finished): judged stale twice, --grace seconds apart, and unchanged' },
          network: value('only this network (default: every network with IPAM keys)'),
          keep: value('CID:IFNAME,... attachments of --node N to keep'),
          kubeconfig: value('with --pods: the kubeconfig (default $KUBECONFIG, else in-cluster)'),
          grace: value('with --pods: seconds between the two looks (default 30)'),
          'dry-run': { type: 'boolean', describe: 'show what would be released, release nothing' },
          json: { type: 'boolean', describe: 'the report as JSON' },
          'run-dir': runDirOpt,
        },
        builder: (y) => y
          .example('knitctl ipam gc --node n3', 'release every address n3 holds and return its blocks')
          .example('knitctl ipam gc --pods --dry-run', 'which attachments belong to pods that are gone'),
        run: (a, c) => { const dir = meshRunDir(a, c.env); return dir ? meshIpamGc(a, dir) : a.pods ? ipamGcPods(a, c) : ipamGc(a, c.env); },
      }),
    ],
  })];
}

/** Network names that have IPAM keys under the prefix. */
async function networks(client: EtcdClient, prefix: string): Promise<string[]> {
  const base = `${prefix}/ipam/`;
  const r = await client.range({ key: base, rangeEnd: prefixEnd(base), keysOnly: true });
  const names = new Set<string>();
  for (const kv of r.kvs) names.add(kv.key.toString().slice(base.length).split('/')[0]!);
  return [...names].sort();
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

async function withClient<T>(a: Flags, env: NodeJS.ProcessEnv, fn: (c: EtcdClient, conf: EtcdConnConfig) => Promise<T>): Promise<T> {
  const conf = etcdConfFromArgs(a, env);
  const client = new EtcdClient(conf);
  try { return await fn(client, conf); } finally { client.close(); }
}

async function ipamLs(a: Flags, env: NodeJS.ProcessEnv): Promise<string> {
  const node = str(a, 'node');
  const network = str(a, 'network');
  return withClient(a, env, async (client, conf) => {
    const nets = network !== undefined ? [network] : await networks(client, conf.prefix);
    const listings: NetworkListing[] = [];
    for (const n of nets) listings.push(await EtcdAllocator.list(client, new EtcdKeys(conf.prefix, n)));
    if (a.json) {
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
async function ipamGcPods(a: Flags, ctx: Ctx): Promise<string> {
  const node = str(a, 'node');
  const network = str(a, 'network');
  if (node !== undefined && !NODE_RE.test(node)) throw new UsageError(`invalid --node ${JSON.stringify(node)}: a node name`);
  if (a.keep !== undefined) throw new UsageError('--keep goes with --node N alone, not with --pods');
  const grace = Number(str(a, 'grace') ?? 30);
  if (!Number.isInteger(grace) || grace < 0) throw new UsageError(`invalid --grace ${str(a, 'grace')}: whole seconds ≥ 0 between the two looks`);
  const { kubeClient, listPods } = require('../../../pkg/kube') as typeof import('../../../pkg/kube');
  const kubeconfig = str(a, 'kubeconfig') ?? ctx.env.KUBECONFIG;
  const kube = kubeClient(kubeconfig ? { kubeconfig } : {});
  const list = () => listPods(kube.api);
  const dryRun = !!a['dry-run'];
  return withClient(a, ctx.env, async (client, conf) => {
    const nets = network !== undefined ? [network] : await networks(client, conf.prefix);
        const trackers = new Map(nets.map((n) => [n, new StaleTracker(grace * 1000)]));
    const t0 = Date.now();
    let first = 0;
    for (const n of nets) {
      const p = await podGcPass(client, new EtcdKeys(conf.prefix, n), list, trackers.get(n)!, { ...(node ? { node } : {}), now: t0, dryRun: true });
      first += p.judged.filter((j) => j.stale).length;
    }
    const reports: Array<{ network: string; released: Array<{ node: string; ip: string; containerId: string; ifName: string; pod: string; reason: string }>; kept: number; dryRun: boolean }> = [];
    if (first) {
      await ctx.sleep(grace * 1000);
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
    if (a.json) return JSON.stringify(reports, null, 2);
    if (!nets.length) return `no IPAM networks under ${conf.prefix}/ipam/`;
    if (!first) return `no attachment of a pod that is gone${node ? ` on node ${node}` : ''}: nothing to release`;
    return reports.map((r) => [
      `network ${r.network}: ${r.dryRun ? 'would release' : 'released'} ${r.released.length} address${r.released.length === 1 ? '' : 'es'} (stale at both looks, ${grace} s apart)`,
      ...(r.released.length ? ['', table(['NODE', 'ADDRESS', 'CONTAINER', 'IFNAME', 'POD', 'REASON'], r.released.sort((x, y) => x.node.localeCompare(y.node) || ipSort(x.ip, y.ip)).map((x) => [x.node, x.ip, x.containerId, x.ifName, x.pod, x.reason]))] : []),
    ].join('\n')).join('\n\n');
  });
}

const ownerId = (o: Owner): string => `${o.containerId}:${o.ifName}`;

async function ipamGc(a: Flags, env: NodeJS.ProcessEnv): Promise<string> {
  const node = str(a, 'node');
  const network = str(a, 'network');
  if (!node) throw new UsageError('ipam gc needs --node N (the node whose addresses to release)');
  if (!NODE_RE.test(node)) throw new UsageError(`invalid --node ${JSON.stringify(node)}: a node name`);
  const keep: Owner[] = (str(a, 'keep') ?? '').split(',').filter(Boolean).map((s) => {
    const i = s.lastIndexOf(':');
    if (i <= 0 || i === s.length - 1) throw new UsageError(`invalid --keep entry ${JSON.stringify(s)}: CONTAINERID:IFNAME`);
    return { containerId: s.slice(0, i), ifName: s.slice(i + 1) };
  });
  return withClient(a, env, async (client, conf) => {
    const nets = network !== undefined ? [network] : await networks(client, conf.prefix);
    const reports: Array<{ network: string; released: Array<{ ip: string; containerId: string; ifName: string; reason: string }>; blocksReturned: string[]; dryRun: boolean }> = [];
    for (const n of nets) {
      const keys = new EtcdKeys(conf.prefix, n);
      if (a['dry-run']) {
        const l = await EtcdAllocator.list(client, keys);
        const kept = new Set(keep.map((o) => `${o.containerId}:${o.ifName}`));
        const released = l.ips.filter((r) => r.node === node && !kept.has(`${r.containerId}:${r.ifName}`)).map((r) => ({ ip: r.ip, containerId: r.containerId, ifName: r.ifName, reason: 'would release' }));
        reports.push({ network: n, released, blocksReturned: [], dryRun: true });
        continue;
      }
      const r = await gcNode(client, keys, node, keep);
      reports.push({ network: n, released: r.released.map((x) => ({ ip: x.ip, containerId: x.owner.containerId, ifName: x.owner.ifName, reason: x.reason })), blocksReturned: r.blocksReturned, dryRun: false });
    }
    if (a.json) return JSON.stringify(reports, null, 2);
    return reports.map((r) => [
      `network ${r.network}: ${r.dryRun ? 'would release' : 'released'} ${r.released.length} addresses of node ${node}${r.dryRun ? '' : `, returned ${r.blocksReturned.length} blocks`}`,
      ...(r.released.length ? ['', table(['ADDRESS', 'CONTAINER', 'IFNAME', 'REASON'], r.released.sort((x, y) => ipSort(x.ip, y.ip)).map((x) => [x.ip, x.containerId, x.ifName, x.reason]))] : []),
      ...(r.blocksReturned.length ? ['', `blocks returned: ${r.blocksReturned.join(' ')}`] : []),
    ].join('\n')).join('\n\n');
  });
}

// ---- the mesh ---------------------------------------------------------------------------------

/** The mesh's per-node view as etcd's listing (formatListing prints both alike). */
export function meshListing(l: MeshIpamListing): NetworkListing {
  const blocks = l.nodes.flatMap((n) => n.blocks.map((cidr) => ({ cidr, node: n.node, net: parseCIDR(cidr)! })));
  const ips = l.nodes.flatMap((n) => Object.entries(n.ips).flatMap(([k, addrs]) => {
    const i = k.lastIndexOf(':');
    return addrs.map((ip) => {
      const at = parseIP(ip);
      const b = at ? blocks.find((x) => x.net && contains(x.net, at)) : undefined;
      return { ip, node: n.node, containerId: k.slice(0, i), ifName: k.slice(i + 1), block: b?.cidr ?? null, blockNode: b?.node ?? null };
    });
  }));
  return {
    network: l.network,
    blocks: blocks.map((b) => ({ cidr: b.cidr, node: b.node, used: ips.filter((r) => r.block === b.cidr && r.blockNode === b.node).length })),
    ips,
    attachments: l.nodes.flatMap((n) => Object.entries(n.ips).map(([k, addrs]) => ({ node: n.node, containerId: k.slice(0, k.lastIndexOf(':')), ifName: k.slice(k.lastIndexOf(':') + 1), ips: addrs }))),
  };
}

async function meshIpamLs(a: Flags, dir: string): Promise<string> {
  const node = str(a, 'node');
  const network = str(a, 'network');
  const views = await controlCall<MeshIpamListing[]>(dir, { op: 'ipam-view', ...(network !== undefined ? { network } : {}) });
  const listings = views.map(meshListing);
  if (a.json) {
    return JSON.stringify(listings.map((l, i) => ({
      ...l, gone: views[i]!.nodes.filter((n) => !n.live).map((n) => n.node),
      ...(node ? { blocks: l.blocks.filter((b) => b.node === node), ips: l.ips.filter((r) => r.node === node), attachments: l.attachments.filter((x) => x.node === node) } : {}),
    })), null, 2);
  }
  if (!listings.length) return 'no addresses on the mesh\'s named networks yet';
  return listings.map((l, i) => {
    const gone = views[i]!.nodes.filter((n) => !n.live).map((n) => n.node);
    return formatListing(l, node) + (gone.length ? `\n\nnot heard from within their lease time: ${gone.join(', ')} (their blocks stay theirs until knitctl node rm)` : '');
  }).join('\n\n');
}

async function meshIpamGc(a: Flags, dir: string): Promise<string> {
  if (a.pods) throw new UsageError('--pods is for etcd with Kubernetes: on the mesh, ipam gc judges this node\'s attachments by their host links');
  if (a.keep !== undefined) throw new UsageError('--keep goes with --node N on etcd; on the mesh, ipam gc releases only attachments whose container is gone');
  const network = str(a, 'network');
  const node = str(a, 'node');
  const grace = Number(str(a, 'grace') ?? 30);
  if (!Number.isInteger(grace) || grace < 0) throw new UsageError(`invalid --grace ${str(a, 'grace')}: whole seconds ≥ 0 between the two looks`);
  const st = await controlCall<{ node: string }>(dir, { op: 'status' });
  if (node !== undefined && node !== st.node) throw new UsageError(`invalid --node ${JSON.stringify(node)}: on the mesh, ipam gc works on this node (${st.node}) only; a node gone for good: knitctl node rm ${node} frees its blocks`);
  const r = await controlCall<{ judged: MeshJudgement[]; released: MeshJudgement[] }>(dir, { op: 'ipam-gc-local', graceSec: grace, dryRun: !!a['dry-run'], ...(network !== undefined ? { network } : {}) }, grace * 1000 + 15_000);
  const dry = !!a['dry-run'];
  const rows = r.released.flatMap((j) => j.ips.map((ip) => ({ network: j.network, node: st.node, ip, containerId: j.owner.containerId, ifName: j.owner.ifName, reason: j.reason })));
  if (a.json) return JSON.stringify({ node: st.node, dryRun: dry, released: rows, kept: r.judged.length - r.released.length }, null, 2);
  if (!rows.length) return `no attachment of a container that is gone on node ${st.node}: nothing to release`;
  return [
    `node ${st.node}: ${dry ? 'would release' : 'released'} ${rows.length} address${rows.length === 1 ? '' : 'es'} (container gone at both looks, ${grace} s apart)`, '',
    table(['NETWORK', 'ADDRESS', 'CONTAINER', 'IFNAME', 'REASON'], rows.sort((x, y) => x.network.localeCompare(y.network) || ipSort(x.ip, y.ip)).map((x) => [x.network, x.ip, x.containerId, x.ifName, x.reason])),
  ].join('\n');
}
