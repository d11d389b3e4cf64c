// Named networks and their endpoints in etcd.
//
//   <prefix>/networks/<name>                               Network (JSON)
//   <prefix>/endpoints/<network>/<node>/<containerId>/<if>  Endpoint (JSON), bound to the node's lease
//   <prefix>/netnodes/<node>                                NetworkNode (JSON), bound to the node's lease:
//                                                           its underlay address, and for encrypted
//                                                           networks its public key and key generation
//
// Creating a network validates it against every network read at revision R and commits only if
// no network key changed since R (one compare over the whole range), so two admins racing to
// take the same subnet or VNI cannot both win. An endpoint lives on the lease knitd keeps alive
// for its node: a node that dies takes its endpoints with it when the lease expires.
import { randomBytes } from 'node:crypto';
import { EtcdClient, prefixEnd, type KeyValue } from '../etcd/client';
import { b64, raw } from '../etcd/lease';
import { EtcdKeys } from '../ipam/etcd/keys';
import { buildNetwork, SpecError, type CreateRequest, type Network } from './spec';

/** One container interface on a named network, as the plugin recorded it at ADD. */
export interface Endpoint {
  network: string;
  containerId: string;
  ifName: string;
  node: string;
  /** The node's underlay address (the remote VTEP for overlay networks). */
  nodeIp: string;
  mac: string;
  /** Addresses with prefix, e.g. 10.0.0.5/24. */
  ips: string[];
  /** The container's name (CNI_ARGS K8S_POD_NAME) when the runtime gave one. */
  name?: string;
  /** Further names on this network (the CNI `aliases` capability: podman's --network-alias). */
  aliases?: string[];
  created: string;
}

/**
 * A node of the named networks as knitd publishes it: what peers of encrypted networks need
 * (docs/encryption.md). encKey/encGen only once the node can encrypt (ESP probed, SAs of encGen in).
 */
export interface NetworkNode {
  node: string;
  nodeIp: string;
  /** X25519 public key, base64url: the same key as the node's pod-network lease (one key file per node). */
  encKey?: string;
  /** The highest key generation this node accepts (its inbound SAs of it are installed). */
  encGen?: number;
  updated: string;
}

const CREATE_RETRIES = 5;

/** What knitctl's network verbs need, on etcd (NetworkStore) or on the mesh (the local knitd: pkg/mesh/network-client.ts). */
export interface NetworkCatalog {
  list(): Promise<{ networks: Network[] }>;
  get(name: string): Promise<Network | null>;
  create(req: CreateRequest): Promise<Network>;
  remove(name: string): Promise<void>;
  endpoints(network?: string): Promise<{ endpoints: Endpoint[] }>;
}

/** An endpoint's identity: one per container interface on a network on a node. */
export type EndpointId = Pick<Endpoint, 'network' | 'node' | 'containerId' | 'ifName'>;

export class NetworkStore implements NetworkCatalog {
  constructor(readonly client: EtcdClient, readonly prefix = '/knit') {}

  networksPrefix(): string { return `${this.prefix}/networks/`; }
  endpointsPrefix(network?: string): string { return `${this.prefix}/endpoints/${network ? `${network}/` : ''}`; }
  endpointKey(e: Pick<Endpoint, 'network' | 'node' | 'containerId' | 'ifName'>): string {
    return `${this.endpointsPrefix(e.network)}${e.node}/${e.containerId}/${e.ifName}`;
  }

  nodesPrefix(): string { return `${this.prefix}/netnodes/`; }

  /** Publishes this node's record on its lease (replacing the previous one). */
  async putNode(n: NetworkNode, lease: string): Promise<void> {
    const key = this.nodesPrefix() + n.node;
    const r = await raw(this.client)('/v3/kv/put', { key: b64(key), value: b64(JSON.stringify(n)), lease });
    if (r.error) throw new Error(`etcd put ${key}: ${r.error}`);
  }

  async list(): Promise<{ networks: Network[]; revision: number }> {
    const p = this.networksPrefix();
    const r = await this.client.range({ key: p, rangeEnd: prefixEnd(p) });
    return { networks: r.kvs.map(decodeNetwork).filter((n): n is Network => !!n), revision: r.revision };
  }

  async get(name: string): Promise<Network | null> {
    const kv = await this.client.get(this.networksPrefix() + name);
    return kv ? decodeNetwork(kv) : null;
  }

  /** Validates and stores a new network; SpecError names the bad flag. */
  async create(req: CreateRequest, now = new Date()): Promise<Network> {
    const p = this.networksPrefix();
    for (let attempt = 1; ; attempt++) {
      const { networks, revision } = await this.list();
      const net = buildNetwork(req, networks, now, randomBytes(32).toString('hex'));
      const t = await this.client.txn({
        compare: [
          { key: p, rangeEnd: prefixEnd(p), target: 'MOD', result: 'LESS', value: revision + 1 },
          { key: p + net.name, target: 'CREATE', result: 'EQUAL', value: 0 },
        ],
        success: [{ put: { key: p + net.name, value: JSON.stringify(net) } }],
      });
      if (t.succeeded) return net;
      if (attempt >= CREATE_RETRIES) throw new SpecError(`network ${req.name}: the networks kept changing while it was being created; try again`);
    }
  }

  /**
   * Removes a network with nothing attached and no services, and its address records (knit-etcd-ipam's
   * blocks and reservations, so a network made again under the name starts clean). Attached means an
   * endpoint record (overlay) or an address held by a container (every driver: bridge and macvlan
   * networks record no endpoint); refused, naming them, while any exists. Services (pkg/service/spec.ts,
   * <prefix>/services/<network>/<name>) hold a VIP of the network: refused, naming them, too.
   */
  async remove(name: string): Promise<void> {
    const key = this.networksPrefix() + name;
    const ep = this.endpointsPrefix(name);
    const ipam = new EtcdKeys(this.prefix, name);
    const at = ipam.attachments();
    const sp = `${this.prefix}/services/${name}/`;
    const t = await this.client.txn({
      compare: [
        { key: ep, rangeEnd: prefixEnd(ep), target: 'CREATE', result: 'EQUAL', value: 0 },
        { key: at, rangeEnd: prefixEnd(at), target: 'CREATE', result: 'EQUAL', value: 0 },
        { key: sp, rangeEnd: prefixEnd(sp), target: 'CREATE', result: 'EQUAL', value: 0 },
      ],
      success: [{ del: { key } }, { del: { key: ipam.base, rangeEnd: prefixEnd(ipam.base) } }],
      failure: [{ range: { key: ep, rangeEnd: prefixEnd(ep) } }, { range: { key: at, rangeEnd: prefixEnd(at) } }, { range: { key: sp, rangeEnd: prefixEnd(sp), keysOnly: true } }],
    });
    if (t.succeeded) {
      const deleted = t.responses[0];
      if (deleted?.kind === 'del' && deleted.deleted === 0) throw new SpecError(`no network named ${name} (knitctl network ls lists them)`);
      return;
    }
    const kvs = (i: number): KeyValue[] => { const r = t.responses[i]; return r?.kind === 'range' ? r.range.kvs : []; };
    const svcs = kvs(2).map((kv) => kv.key.toString().slice(sp.length));
    if (svcs.length) throw new SpecError(`network ${name} has service${svcs.length === 1 ? '' : 's'} ${svcs.join(', ')}: remove ${svcs.length === 1 ? 'it' : 'them'} first (knitctl service rm)`);
    const who = new Map<string, string>();
    for (const e of kvs(0).map(decodeEndpoint)) if (e) who.set(`${e.node}/${e.containerId}`, attachedName(e));
    for (const kv of kvs(1)) {
      // .../attach/<node>/<containerID>:<ifname>
      const [node, owner] = kv.key.toString().slice(at.length).split('/');
      const cid = owner?.slice(0, owner.lastIndexOf(':')) ?? '';
      if (node && !who.has(`${node}/${cid}`)) who.set(`${node}/${cid}`, `${cid.slice(0, 12)} on ${node}`);
    }
    throw attachedError(name, [...who.values()]);
  }

  async endpoints(network?: string): Promise<{ endpoints: Endpoint[]; revision: number }> {
    const p = this.endpointsPrefix(network);
    const r = await this.client.range({ key: p, rangeEnd: prefixEnd(p) });
    return { endpoints: r.kvs.map(decodeEndpoint).filter((e): e is Endpoint => !!e), revision: r.revision };
  }

  /** Records an endpoint on lease `lease` (the node's), replacing one of the same attachment. */
  async putEndpoint(e: Endpoint, lease: string): Promise<void> {
    const r = await raw(this.client)('/v3/kv/put', { key: b64(this.endpointKey(e)), value: b64(JSON.stringify(e)), lease });
    if (r.error) throw new Error(`etcd put ${this.endpointKey(e)}: ${r.error}`);
  }

  async deleteEndpoint(e: Pick<Endpoint, 'network' | 'node' | 'containerId' | 'ifName'>): Promise<void> {
    await this.client.delete(this.endpointKey(e));
  }
}

/** `network rm` refused: what is attached (`<name or id12> on <node>` each), the same on etcd and the mesh. */
export function attachedError(name: string, shown: string[]): SpecError {
  return new SpecError(`network ${name} has ${shown.length} container${shown.length === 1 ? '' : 's'} attached (${shown.slice(0, 5).join(', ')}${shown.length > 5 ? ', ...' : ''}): remove or disconnect them first`);
}

/** The endpoint's attachment, as `network rm` names it. */
export const attachedName = (e: Pick<Endpoint, 'name' | 'containerId' | 'node'>): string => `${e.name ?? e.containerId.slice(0, 12)} on ${e.node}`;

export function decodeNetwork(kv: KeyValue): Network | null {
  try {
    const n = JSON.parse(kv.value.toString('utf8')) as Network;
    return n && typeof n.name === 'string' && Array.isArray(n.subnets) ? n : null;
  } catch {
    return null;
  }
}

export function decodeNode(kv: KeyValue): NetworkNode | null {
  try {
    const n = JSON.parse(kv.value.toString('utf8')) as NetworkNode;
    return n && typeof n.node === 'string' && typeof n.nodeIp === 'string' ? n : null;
  } catch {
    return null;
  }
}

export function decodeEndpoint(kv: KeyValue): Endpoint | null {
  try {
    const e = JSON.parse(kv.value.toString('utf8')) as Endpoint;
    return e && typeof e.network === 'string' && typeof e.mac === 'string' && Array.isArray(e.ips) ? e : null;
  } catch {
    return null;
  }
}
