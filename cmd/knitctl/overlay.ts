// knitctl's overlay commands (knitd's subnet leases in etcd):
//   knitctl network set FILE | network get
//   knitctl status [--run-dir DIR]     this node: lease, device, every peer and whether it is programmed
//   knitctl peers                      every node's lease
//   knitctl node rm NAME               decommission: delete the node's lease (peers drop its routes)
//   knitctl inspect                    the overlay as JSON: config, every node's lease, this node's lease
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EtcdConnConfig } from '../../pkg/ipam/etcd-config';
import { EtcdDatastore } from '../../pkg/datastore/etcd-overlay';
import type { SubnetLease } from '../../pkg/datastore/datastore';
import { parseNetworkConfig } from '../../pkg/agent/network-config';
import { DEFAULT_RUN_DIR, readLeaseFile } from '../../pkg/agent/lease-file';
import { KNIT_RTPROT, linkFind, routeList, withNetlink } from '../../pkg/netlink';

export const OVERLAY_USAGE = `  knitctl network set FILE [etcd flags]     validate and store the cluster network config
  knitctl network get [etcd flags]          show it
  knitctl status [--run-dir DIR] [--json] [etcd flags]
      this node: its lease, the datapath device, each peer and whether it is programmed
  knitctl peers [--json] [etcd flags]       every node's subnet lease
  knitctl node rm NAME [etcd flags]         decommission a node: delete its lease (peers drop its routes)
  knitctl inspect [--run-dir DIR] [etcd flags]
      the overlay as JSON (what docker network inspect answers): config, every node's lease, this node
`;

export class OverlayUsageError extends Error {}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** A lease's backend data for a table cell, e.g. vtepMac=0e:..; '-' when none. */
const backendDataText = (l: SubnetLease): string => Object.entries(l.backendData ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-';

const bySubnet = (a: SubnetLease, b: SubnetLease): number => a.subnet.localeCompare(b.subnet, 'en', { numeric: true });

/** Runs an overlay command; null when the words are not one. */
export async function overlayCommand(words: string[], flags: Map<string, string>, json: boolean, conn: () => EtcdConnConfig): Promise<string | null> {
  const [group, verb, ...rest] = words;
  const want = (n: number, usage: string): void => {
    if (rest.length !== n) throw new OverlayUsageError(rest.length > n ? `unexpected argument ${rest[n]}` : `usage: knitctl ${usage}`);
  };
  const isOurs = (group === 'network' && (verb === 'set' || verb === 'get')) || (group === 'status' && verb === undefined) ||
    (group === 'peers' && verb === undefined) || (group === 'node' && verb === 'rm') || (group === 'inspect' && verb === undefined);
  if (!isOurs) return null;
  const store = new EtcdDatastore(conn());
  try {
    if (group === 'network' && verb === 'set') {
      want(1, 'network set FILE');
      const text = fs.readFileSync(rest[0]!, 'utf8');
      const cfg = parseNetworkConfig(text);
      await store.putNetworkConfig(JSON.stringify(cfg));
      return `network config stored at ${store.configKey}: ${JSON.stringify(cfg)}`;
    }
    if (group === 'network' && verb === 'get') {
      want(0, 'network get');
      const raw = await store.getNetworkConfig();
      if (raw === null) throw new Error(`no network config at ${store.configKey} (knitctl network set FILE)`);
      return JSON.stringify(JSON.parse(raw), null, 2);
    }
    if (group === 'peers') {
      const { leases } = await store.listLeases();
      leases.sort(bySubnet);
      if (json) return JSON.stringify(leases, null, 2);
      return table(['NODE', 'SUBNET', 'UNDERLAY', 'BACKEND', 'BACKEND DATA'], leases.map((l) => [l.nodeName, l.subnet, l.underlayAddr, l.backend ?? '-', backendDataText(l)]));
    }
    if (group === 'node' && verb === 'rm') {
      want(1, 'node rm NAME');
      const n = await store.releaseNode(rest[0]!);
      if (!n) throw new Error(`node ${rest[0]} holds no lease under ${store.subnetsPrefix}`);
      return `released ${n} lease(s) of node ${rest[0]}; its peers remove its routes`;
    }
    if (group === 'inspect') {
      const raw = await store.getNetworkConfig();
      const { leases, revision } = await store.listLeases();
      const local = readLeaseFile(flags.get('run-dir') ?? DEFAULT_RUN_DIR);
      return JSON.stringify({
        datastore: { type: 'etcd', prefix: store.prefix, revision },
        config: raw === null ? null : JSON.parse(raw),
        nodes: leases.sort(bySubnet).map(({ revision: _r, ...l }) => l),
        thisNode: local,
      }, null, 2);
    }
    // status
    const runDir = flags.get('run-dir') ?? DEFAULT_RUN_DIR;
    const lease = readLeaseFile(runDir);
    let agent: Record<string, any> | null = null;
    try { agent = JSON.parse(fs.readFileSync(path.join(runDir, 'status.json'), 'utf8')); } catch { /* knitd not running or older */ }
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
    const out = { node: me ?? null, lease, device: kernel.device, agent: agent ? { syncs: agent.syncs, errors: agent.errors, lastSync: agent.lastSync?.at ?? null } : null, peers };
    if (json) return JSON.stringify(out, null, 2);
    const lines = [
      lease ? `node ${me ?? '?'}: subnet ${lease.subnet} of ${lease.network}, mtu ${lease.mtu}, backend ${lease.backend ?? '?'}` : `no lease at ${runDir}/lease.json: knitd is not running or not ready`,
      kernel.device ? `device ${kernel.device.name}: ${kernel.device.up ? 'up' : 'DOWN'}, mtu ${kernel.device.mtu}, mac ${kernel.device.mac}` : `device: ${agent?.device ? `${agent.device} MISSING` : '-'}`,
      agent ? `agent: ${agent.syncs} syncs, ${agent.errors} errors, last ${agent.lastSync?.at ?? 'never'}` : 'agent: no status.json',
      '',
      table(['PEER', 'SUBNET', 'UNDERLAY', 'PROGRAMMED', 'VIA'], peers.map((p) => [p.nodeName, p.subnet, p.underlayAddr, p.programmed ? 'yes' : 'NO', p.via ?? '-'])),
    ];
    return lines.join('\n');
  } finally {
    store.close();
  }
}
