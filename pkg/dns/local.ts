// Records of plain knit-bridge networks, without a datastore (a conflist on one host with
// `"resolver": true`): knit-bridge writes one file per attachment at ADD and removes it at DEL,
//   <runDir>/dns/<network>/<containerId>_<ifName>.json   LocalRecord
// and knitd on the same host reads them (pkg/dns/agent.ts) into the same record table as the
// named networks' endpoints. Names are then answered on that host only. Codec-free: the plugin
// loads this file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeAtomic } from '../network/node-file';
import type { Network } from '../network/spec';
import type { Endpoint } from '../network/store';

export interface LocalRecord {
  network: string;
  /** The bridge holding the gateway, where knitd listens. */
  bridge: string;
  /** The network's subnets as this attachment saw them (from its addresses and gateways). */
  subnets: Array<{ subnet: string; gateway: string }>;
  containerId: string;
  ifName: string;
  ips: string[];
  name?: string;
  aliases?: string[];
  created: string;
}

/** The node name local records carry in the table (they are never in etcd). */
export const LOCAL_NODE = '(local)';

export const localDir = (runDir: string): string => path.join(runDir, 'dns');
const netDir = (runDir: string, network: string): string => path.join(localDir(runDir), encodeURIComponent(network));
export const localFile = (runDir: string, network: string, containerId: string, ifName: string): string =>
  path.join(netDir(runDir, network), `${encodeURIComponent(containerId)}_${encodeURIComponent(ifName)}.json`);

export function writeLocalRecord(runDir: string, r: LocalRecord): void {
  fs.mkdirSync(netDir(runDir, r.network), { recursive: true, mode: 0o755 });
  writeAtomic(localFile(runDir, r.network, r.containerId, r.ifName), JSON.stringify(r) + '\n', 0o644);
}

/** Idempotent. */
export function removeLocalRecord(runDir: string, network: string, containerId: string, ifName: string): void {
  fs.rmSync(localFile(runDir, network, containerId, ifName), { force: true });
}

/** Removes the network's records whose attachment is not in `valid` (containerId\0ifName); returns how many. */
export function removeStaleLocal(runDir: string, network: string, valid: ReadonlySet<string>): number {
  let n = 0;
  for (const r of readDir(netDir(runDir, network))) {
    if (valid.has(`${r.containerId}\0${r.ifName}`)) continue;
    removeLocalRecord(runDir, network, r.containerId, r.ifName);
    n++;
  }
  return n;
}

function readDir(dir: string): LocalRecord[] {
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return []; }
  const out: LocalRecord[] = [];
  for (const f of names) {
    if (!f.endsWith('.json')) continue; // temp files of a write in progress
    try {
      const r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as LocalRecord;
      if (r && typeof r.network === 'string' && typeof r.bridge === 'string' && Array.isArray(r.ips) && Array.isArray(r.subnets)) out.push(r);
    } catch { /* removed meanwhile, or junk: skipped */ }
  }
  return out;
}

/**
 * Reads the records, re-reading only the network directories whose mtime changed since `cache`
 * (a file renamed in or removed changes its directory's mtime): a poll costs a few stats.
 */
export function scanLocal(runDir: string, cache: Map<string, { mtimeMs: number; records: LocalRecord[] }>): LocalRecord[] {
  const top = localDir(runDir);
  let dirs: string[];
  try { dirs = fs.readdirSync(top); } catch { cache.clear(); return []; }
  const seen = new Set<string>();
  for (const d of dirs) {
    const full = path.join(top, d);
    let mtimeMs: number;
    try { mtimeMs = fs.statSync(full).mtimeMs; } catch { continue; }
    seen.add(d);
    const c = cache.get(d);
    if (!c || c.mtimeMs !== mtimeMs) cache.set(d, { mtimeMs, records: readDir(full) });
  }
  for (const d of [...cache.keys()]) if (!seen.has(d)) cache.delete(d);
  return [...cache.values()].flatMap((c) => c.records);
}

/** The records as networks and endpoints of the record table (a network per name, its subnets the union seen). */
export function localView(records: readonly LocalRecord[]): { networks: Network[]; endpoints: Endpoint[]; bridges: Map<string, string> } {
  const nets = new Map<string, Network>();
  const bridges = new Map<string, string>();
  const endpoints: Endpoint[] = [];
  for (const r of records) {
    let n = nets.get(r.network);
    if (!n) {
      n = { name: r.network, id: 'local', driver: 'bridge', subnets: [], options: { mtu: 0, isolation: true, dns: true }, internal: false, ipv6: false, labels: {}, created: '' };
      nets.set(r.network, n);
      bridges.set(r.network, r.bridge);
    }
    for (const s of r.subnets) if (!n.subnets.some((x) => x.subnet === s.subnet)) n.subnets.push({ subnet: s.subnet, gateway: s.gateway, auxAddresses: {} });
    endpoints.push({
      network: r.network, containerId: r.containerId, ifName: r.ifName, node: LOCAL_NODE, nodeIp: '', mac: '', ips: r.ips,
      ...(r.name ? { name: r.name } : {}), ...(r.aliases?.length ? { aliases: r.aliases } : {}), created: r.created,
    });
  }
  for (const n of nets.values()) n.subnets.sort((a, b) => a.subnet.localeCompare(b.subnet));
  return { networks: [...nets.values()], endpoints, bridges };
}
