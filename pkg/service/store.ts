// Services in etcd (the record: spec.ts), and the addresses they take from their network.
//
//   <prefix>/services/<network>/<name>                    Service (JSON)
//   <prefix>/ipam/<network>/attach/knit-services/vip-<name>.<id12>:vip   the VIP's reservation
//   <prefix>/ipam/<network>/attach/knit-services/lb-<node>:lb     a node's load-balancer address
//
// VIPs and the nodes' load-balancer addresses are reserved through knit-etcd-ipam's allocator
// under the pseudo node `knit-services`, so no container is ever given one, and the CNI GC of a
// real node (which frees that node's attachments unknown to the runtime) never touches them. A
// --vip outside the network's --ip-range is reserved the same way (with the whole subnet as the
// range): containers never get it, and two services racing for it cannot both win.
import { randomBytes } from 'node:crypto';
import { CniError } from '../cni/errors';
import { EtcdClient, cmp, prefixEnd } from '../etcd/client';
import { parseIpamConfig } from '../ipam/config';
import { DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_SIZE6, DEFAULT_TIMEOUT_MS, type EtcdIpamConfig } from '../ipam/etcd-config';
import { EtcdAllocator, EtcdKeys, readAttachments, releaseAttachments } from '../ipam/etcd-allocator';
import { parseJson } from '../ipam/etcd/keys';
import { formatIP, ipToBigInt, parseCIDR, type IPAddr } from '../ip/ip';
import { ipamOf } from '../network/conflist';
import { SpecError, type Network } from '../network/spec';
import { NetworkStore, decodeEndpoint, decodeNetwork } from '../network/store';
import type { Owner } from '../ipam/store';
import {
  checkServiceName, checkServiceNetwork, checkVip, decodeService, parsePorts, serviceKey, servicesNamed, servicesPrefix, type Service, type ServiceRequest,
} from './spec';

import { SERVICES_NODE, vipOwner, LB_IFNAME, isLbEndpoint } from './owners';
export { SERVICES_NODE, vipOwner, lbOwner, LB_CONTAINER, LB_IFNAME, isLbEndpoint } from './owners';

/**
 * knit-etcd-ipam's config for the network's IPv4 addresses under the services node: the network's
 * own ranges (ip-range, aux addresses excluded), or with `whole` every host address of its subnets
 * (for a --vip outside the ip-range).
 */
export function serviceIpamConfig(net: Network, prefix: string, whole = false): EtcdIpamConfig {
  const etcd = { endpoints: [], prefix, timeoutMs: DEFAULT_TIMEOUT_MS };
  const ipam = ipamOf(net, { nodeName: SERVICES_NODE, etcd, runDir: '/' }) as { ranges: Array<Array<Record<string, unknown>>>; exclude?: string[] };
  const v4 = ipam.ranges.filter((set) => parseCIDR(String(set[0]!.subnet))?.ip.family === 4)
    .map((set) => (whole ? set.map((r) => ({ subnet: r.subnet, gateway: r.gateway })) : set));
  if (!v4.length) throw new SpecError(`network ${net.name} has no IPv4 subnet: knit balances IPv4 VIPs only`);
  const base = parseIpamConfig({ name: net.name, ipam: { type: 'knit-etcd-ipam', ranges: v4, ...(ipam.exclude ? { exclude: ipam.exclude } : {}) } });
  return { ...base, nodeName: SERVICES_NODE, blockSize: DEFAULT_BLOCK_SIZE, blockSize6: DEFAULT_BLOCK_SIZE6, etcd };
}

export class ServiceStore {
  readonly networks: NetworkStore;

  constructor(readonly client: EtcdClient, readonly prefix = '/knit') {
    this.networks = new NetworkStore(client, prefix);
  }

  async list(network?: string): Promise<Service[]> {
    const p = servicesPrefix(this.prefix, network);
    const kvs = await this.client.prefix(p);
    return kvs.map((kv) => decodeService(kv.value)).filter((s): s is Service => !!s)
      .sort((a, b) => a.network.localeCompare(b.network) || a.name.localeCompare(b.name));
  }

  async get(network: string, name: string): Promise<Service | null> {
    const kv = await this.client.get(serviceKey(this.prefix, network, name));
    return kv ? decodeService(kv.value) : null;
  }

  /** Services named `name` (on any network, or on `network`); SpecError when there is none. */
  async find(name: string, network?: string): Promise<Service[]> {
    return servicesNamed(await this.list(network), name, network);
  }

  /** Validates, reserves the VIP and stores the service; SpecError names the bad flag. */
  async create(req: ServiceRequest, now = new Date()): Promise<Service> {
    checkServiceName(req.name);
    const ports = parsePorts(req.ports ?? []);
    const netKv = await this.client.get(this.networks.networksPrefix() + req.network);
    const net = checkServiceNetwork(netKv ? decodeNetwork(netKv) : null, req.network);
    const existing = await this.list(net.name);
    if (existing.some((s) => s.name === req.name)) {
      throw new SpecError(`service ${req.name} already exists on network ${net.name}: pick another name or remove it first (knitctl service rm ${req.name})`);
    }
    const requested = req.vip !== undefined ? checkVip(req.vip, net, existing) : undefined;
    const id = randomBytes(32).toString('hex');
    const vip = await this.reserveVip(net, req.name, id, requested);
    const svc: Service = { name: req.name, network: net.name, vips: [vip], ports, id, created: now.toISOString() };
    const key = serviceKey(this.prefix, net.name, req.name);
    const t = await this.client.txn({
      compare: [cmp.absent(key), cmp.modified(this.networks.networksPrefix() + net.name, netKv!.modRevision)],
      success: [{ put: { key, value: JSON.stringify(svc) } }],
    });
    if (!t.succeeded) {
      await this.releaseVip(net.name, vipOwner(req.name, id));
      throw new SpecError(`service ${req.name} on network ${net.name}: the service or its network changed while it was being created; try again`);
    }
    return svc;
  }

  /**
   * Removes a service and frees its VIP. The last service of a network also takes the nodes'
   * load-balancer endpoints and addresses with it (knitd on each node drops its routes and map).
   */
  async remove(network: string, name: string): Promise<void> {
    const key = serviceKey(this.prefix, network, name);
    const kv = await this.client.get(key);
    const svc = kv ? decodeService(kv.value) : null;
    const t = kv ? await this.client.txn({ compare: [cmp.modified(key, kv.modRevision)], success: [{ del: { key } }] }) : null;
    if (!kv || !t?.succeeded) throw new SpecError(`no service named ${name} on network ${network} (knitctl service ls lists them)`);
    if (svc) await this.releaseVip(network, vipOwner(name, svc.id));
    if ((await this.list(network)).length) return;
    await this.releaseLbs(network);
  }

  /** The nodes' load-balancer records and reservations of a network without services. */
  async releaseLbs(network: string): Promise<void> {
    const ep = this.networks.endpointsPrefix(network);
    const r = await this.client.range({ key: ep, rangeEnd: prefixEnd(ep) });
    for (const kv of r.kvs) {
      const e = decodeEndpoint(kv);
      if (e && isLbEndpoint(e)) await this.client.txn({ compare: [cmp.modified(kv.key.toString(), kv.modRevision)], success: [{ del: { key: kv.key.toString() } }] });
    }
    const keys = new EtcdKeys(this.prefix, network);
    const lbs = (await readAttachments(this.client, keys, SERVICES_NODE)).filter((a) => a.owner.containerId.startsWith('lb-') && a.owner.ifName === LB_IFNAME);
    await releaseAttachments(this.client, keys, lbs, () => `network ${network} has no services left`);
  }

  /** The VIP: `requested` reserved (code 102 from the IPAM becomes a --vip error naming the holder), or one allocated. */
  private async reserveVip(net: Network, name: string, id: string, requested?: IPAddr): Promise<string> {
    const cfg = serviceIpamConfig(net, this.prefix, requested !== undefined);
    const alloc = new EtcdAllocator(cfg, this.client);
    try {
      const [a] = await alloc.allocate(vipOwner(name, id), requested ? [requested] : []);
      return a!.ip;
    } catch (e) {
      if (!(e instanceof CniError) || !requested) {
        if (e instanceof CniError) throw new SpecError(`network ${net.name}: no address for the VIP of ${name}: ${e.message}`);
        throw e;
      }
      const holder = await this.client.get(new EtcdKeys(this.prefix, net.name).ip(4, ipToBigInt(requested)));
      const v = holder ? parseJson(holder.value) : null;
      const who = v ? (v.node === SERVICES_NODE ? `${String(v.containerID).replace(/^vip-(.*)\.[0-9a-f]+$/, 'service $1').replace(/^lb-/, 'the load balancer of node ')}` : `container ${String(v.containerID).slice(0, 12)} on node ${v.node}`) : null;
      throw new SpecError(`invalid --vip ${JSON.stringify(formatIP(requested))}: an address not in use${who ? ` (${who} holds it)` : ` (${e.message})`}`);
    }
  }

  private async releaseVip(network: string, owner: Owner): Promise<void> {
    const keys = new EtcdKeys(this.prefix, network);
    const rows = (await readAttachments(this.client, keys, SERVICES_NODE)).filter((r) => r.owner.containerId === owner.containerId && r.owner.ifName === owner.ifName);
    await releaseAttachments(this.client, keys, rows, () => `service ${owner.containerId} removed`);
  }
}
