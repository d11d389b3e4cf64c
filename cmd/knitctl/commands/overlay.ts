// knitctl's views of the routed pod network (knitd's subnet leases in etcd), top-level commands:
//   knitctl status [--run-dir DIR] [--json]   this node: lease, device, every peer and whether it is programmed
//   knitctl peers [--json]                    every node's lease
//   knitctl inspect [--run-dir DIR]           the pod network as JSON: config, every node's lease, this node's lease
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CommandModule, Options } from 'yargs';
import type { EtcdDatastore } from '../../../pkg/datastore/etcd-overlay';
import type { SubnetLease } from '../../../pkg/datastore/datastore';
import { DEFAULT_RUN_DIR, readLeaseFile, readRefusal } from '../../../pkg/agent/lease-file';
import { KNIT_RTPROT, linkFind, routeList, withNetlink } from '../../../pkg/netlink';
import { leaf, str, table, value, withStore, type Ctx, type Flags } from '../common';
import * as mesh from './mesh';
import { controlCall } from '../../../pkg/mesh/control';

const runDir: Options = value(`knitd's --run-dir (default ${DEFAULT_RUN_DIR})`);
const json: Options = { type: 'boolean', describe: 'as JSON' };

/** A lease's backend data for a table cell, e.g. vtepMac=0e:..; '-' when none. */
const backendDataText = (l: SubnetLease): string => Object.entries(l.backendData ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-';

export function commands(ctx: Ctx): CommandModule[] {
  return [
    withSubcommands(leaf(ctx, ['status'], {
      command: 'status',
      describe: 'this node: its lease, the datapath device, each peer and whether its route is in the kernel; on the mesh: status peers|connections',
      options: { 'run-dir': runDir, json },
      run: (a, c) => {
        const dir = mesh.meshRunDir(a, c.env, false);
        if (dir) return controlCall<SubnetLease[]>(dir, { op: 'leases' }).then((leases) => status({ listLeases: async () => ({ leases, revision: 0 }) }, a));
        return withStore(a, c.env, (s) => status(s, a));
      },
    }), () => mesh.commands(ctx)),
    leaf(ctx, ['peers'], {
      command: 'peers',
      describe: 'every node\'s subnet lease',
      options: { json, 'run-dir': runDir },
      run: (a, c) => withLeases(a, c.env, async (store) => {
        const { leases } = await store.listLeases();
        leases.sort(bySubnet);
        if (a.json) return JSON.stringify(leases, null, 2);
        return table(['NODE', 'SUBNET', 'UNDERLAY', 'BACKEND', 'BACKEND DATA'], leases.map((l) => [l.nodeName, l.subnet, l.underlayAddr, l.backend ?? '-', backendDataText(l)]));
      }),
    }),
    leaf(ctx, ['inspect'], {
      command: 'inspect',
      describe: 'the pod network as JSON (what docker network inspect answers): config, every node\'s lease, this node',
      // --json: accepted as before (the output is JSON anyway), not shown.
      options: { 'run-dir': runDir, json: { ...json, hidden: true } },
      run: (a, c) => withStore(a, c.env, async (store) => {
        const raw = await store.getNetworkConfig();
        const { leases, revision } = await store.listLeases();
        const local = readLeaseFile(str(a, 'run-dir') ?? DEFAULT_RUN_DIR);
        return JSON.stringify({
          datastore: { type: 'etcd', prefix: store.prefix, revision },
          config: raw === null ? null : JSON.parse(raw),
          nodes: leases.sort(bySubnet).map(({ revision: _r, ...l }) => l),
          thisNode: local,
        }, null, 2);
      }),
    }),
  ];
}

const bySubnet = (a: SubnetLease, b: SubnetLease): number => a.subnet.localeCompare(b.subnet, 'en', { numeric: true });

/** A leaf command that also has subcommands (`status` and `status peers`): its handler runs when none is given. */
function withSubcommands(cmd: CommandModule, subs: () => CommandModule[]): CommandModule {
  const builder = cmd.builder as (y: import('yargs').Argv) => import('yargs').Argv;
  return { ...cmd, builder: (y) => { const r = builder(y); for (const c of subs()) r.command(c); return r; } };
}

type LeaseSource = Pick<EtcdDatastore, 'listLeases'>;

/** The leases from the local mesh-mode knitd, or else from etcd. */
function withLeases<T>(a: Flags, env: NodeJS.ProcessEnv, fn: (s: LeaseSource) => Promise<T>): Promise<T> {
  const dir = mesh.meshRunDir(a, env);
  if (dir) return controlCall<SubnetLease[]>(dir, { op: 'leases' }).then((leases) => fn({ listLeases: async () => ({ leases, revision: 0 }) }));
  return withStore(a, env, fn);
}

async function status(store: LeaseSource, a: Flags): Promise<string> {
  const dir = str(a, 'run-dir') ?? DEFAULT_RUN_DIR;
  const lease = readLeaseFile(dir);
  let agent: Record<string, any> | null = null;
  try { agent = JSON.parse(fs.readFileSync(path.join(dir, 'status.json'), 'utf8')); } catch { /* knitd not running or older */ }
  const { leases } = await store.listLeases();
  const me = lease?.nodeName;
  const kernel = withNetlink(null, (nl) => {
    const dev = agent?.device ? linkFind(nl, agent.device) : null;
    const routes = routeList(nl, { family: 4, protocol: KNIT_RTPROT });
    return { device: dev ? { name: dev.name, up: dev.up, mtu: dev.mtu, mac: dev.mac } : null, routes: new Map(routes.map((r) => [r.dst, r])) };
  });
  const peers = leases.filter((l) => l.nodeName !== me).sort(bySubnet).map((l) => {
    const r = kernel.routes.get(l.subnet);
    return { ...l, programmed: !!r, via: r?.gw ?? null };
  });
  const refused = readRefusal(dir);
  const enc = agent?.encryption ?? null;
  const out = {
    node: me ?? null, lease, device: kernel.device, agent: agent ? { syncs: agent.syncs, errors: agent.errors, lastSync: agent.lastSync?.at ?? null } : null, peers,
    ...(enc ? { encryption: enc } : {}), ...(refused ? { refused } : {}),
  };
  if (a.json) return JSON.stringify(out, null, 2);
  const lines = [
    lease ? `node ${me ?? '?'}: subnet ${lease.subnet} of ${lease.network}, mtu ${lease.mtu}, backend ${lease.backend ?? '?'}` : `no lease at ${dir}/lease.json: knitd is not running or not ready`,
    kernel.device ? `device ${kernel.device.name}: ${kernel.device.up ? 'up' : 'DOWN'}, mtu ${kernel.device.mtu}, mac ${kernel.device.mac}` : `device: ${agent?.device ? `${agent.device} MISSING` : '-'}`,
    agent ? `agent: ${agent.syncs} syncs, ${agent.errors} errors, last ${agent.lastSync?.at ?? 'never'}` : 'agent: no status.json',
    ...(refused ? [`REFUSED (code ${refused.code}): ${refused.msg}`] : []),
    ...(enc ? [`encryption: ${enc.cipher}, key generation ${enc.generation}, ${enc.peers.length} peer(s) keyed, ${enc.blocked.length} blocked${enc.retiring ? `, ${enc.retiring} old SA(s) retiring` : ''}`] : []),
    '',
    table(['PEER', 'SUBNET', 'UNDERLAY', 'PROGRAMMED', 'VIA'], peers.map((p) => [p.nodeName, p.subnet, p.underlayAddr, p.programmed ? 'yes' : 'NO', p.via ?? '-'])),
  ];
  return lines.join('\n');
}
