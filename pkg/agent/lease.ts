// Subnet leases: which subnet of the cluster network this node holds. In order of preference:
//   1. the subnet the datastore says this node already holds (a restart within the TTL);
//   2. the subnet this node held before (persisted under --state-dir), when nobody holds it now;
//   3. a free subnet chosen at random (random, so nodes starting together rarely collide).
// Claims are create-if-absent in the datastore, so a subnet another node holds is never taken,
// not even by a node coming back from a partition with an expired lease.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addToIP, bitsOf, contains, formatCIDR, networkOf, parseCIDR } from '../ip/ip';
import type { Logger } from '../cni/log';
import type { Datastore, SubnetLease } from '../datastore/datastore';
import type { NetworkConfig } from './network-config';

export const STATE_FILE = 'overlay-lease.json';

export interface PersistedLease {
  nodeName: string;
  network: string;
  subnet: string;
}

export function loadPersisted(stateDir: string): PersistedLease | null {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(stateDir, STATE_FILE), 'utf8')) as PersistedLease;
    return typeof v.subnet === 'string' && typeof v.nodeName === 'string' ? v : null;
  } catch {
    return null;
  }
}

export function savePersisted(stateDir: string, s: PersistedLease): void {
  fs.mkdirSync(stateDir, { recursive: true });
  const file = path.join(stateDir, STATE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(s)}\n`);
  fs.renameSync(tmp, file);
}

/** Whether subnet is a subnetLen-sized subnet of the network. */
export function fitsNetwork(cfg: NetworkConfig, subnet: string): boolean {
  const n = parseCIDR(subnet);
  const net = parseCIDR(cfg.network)!;
  return !!n && n.prefix === cfg.subnetLen && contains(net, n.ip) && formatCIDR(networkOf(n)) === subnet;
}

/** Every subnet of the network, in order. */
export function allSubnets(cfg: NetworkConfig): string[] {
  const net = networkOf(parseCIDR(cfg.network)!);
  const count = 1n << BigInt(cfg.subnetLen - net.prefix);
  const step = 1n << BigInt(bitsOf(net.ip.family) - cfg.subnetLen);
  const out: string[] = [];
  for (let i = 0n; i < count; i++) out.push(formatCIDR({ ip: addToIP(net.ip, i * step), prefix: cfg.subnetLen }));
  return out;
}

export interface AcquireOptions {
  store: Datastore;
  cfg: NetworkConfig;
  /** The record to publish; its subnet is filled in. */
  me: Omit<SubnetLease, 'subnet'>;
  ttlSec: number;
  stateDir?: string;
  log?: Logger;
}

/** Claims a subnet for me.nodeName and returns it. */
export async function acquireSubnet(o: AcquireOptions): Promise<string> {
  const { store, cfg, me } = o;
  if (store.assignedSubnet) {
    // The datastore assigns (Kubernetes podCIDR): no choosing, only checking and publishing.
    const subnet = await store.assignedSubnet(me.nodeName);
    if (!fitsNetwork(cfg, subnet)) {
      throw new Error(`node ${me.nodeName}'s assigned subnet ${subnet} is not a /${cfg.subnetLen} of the network ${cfg.network}: make the network config match the cluster's pod CIDR and node CIDR size`);
    }
    const r = await store.claim({ ...me, subnet }, o.ttlSec);
    if (!r.ok) throw new Error(`cannot publish subnet ${subnet} for node ${me.nodeName}: ${r.holder}`);
    o.log?.info(`holding subnet ${subnet} (assigned by the datastore)`);
    return subnet;
  }
  for (let attempt = 0; attempt < 10; attempt++) {
    const { leases } = await store.listLeases();
    const held = new Map(leases.map((l) => [l.subnet, l.nodeName]));
    const tryClaim = async (subnet: string, why: string): Promise<boolean> => {
      const r = await store.claim({ ...me, subnet }, o.ttlSec);
      if (r.ok) o.log?.info(`holding subnet ${subnet} (${why})`);
      else o.log?.warn(`subnet ${subnet} is held by ${r.holder}; not taking it`);
      return r.ok;
    };
    const mine = leases.filter((l) => l.nodeName === me.nodeName && fitsNetwork(cfg, l.subnet));
    if (mine.length) {
      // More than one (should not happen): keep the first, the others expire with their TTL.
      if (await tryClaim(mine[0]!.subnet, 'this node already holds it')) return mine[0]!.subnet;
      continue;
    }
    const prev = o.stateDir ? loadPersisted(o.stateDir) : null;
    if (prev && prev.nodeName === me.nodeName && fitsNetwork(cfg, prev.subnet) && !held.has(prev.subnet)) {
      if (await tryClaim(prev.subnet, `held before, from ${o.stateDir}`)) return prev.subnet;
      continue;
    }
    const free = allSubnets(cfg).filter((s) => !held.has(s));
    if (!free.length) throw new Error(`no free subnet: all ${allSubnets(cfg).length} /${cfg.subnetLen} subnets of ${cfg.network} are leased`);
    const pick = free[Math.floor(Math.random() * free.length)]!;
    if (await tryClaim(pick, 'free')) return pick;
  }
  throw new Error('could not claim a subnet after 10 attempts (heavy contention?)');
}
