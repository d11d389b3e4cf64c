// Named networks on the mesh (docs/mesh.md, design D21): what etcd's NetworkStore does, with no
// etcd. A network is created only when its claim (name, subnets, VNI) wins a majority's votes,
// each voter refusing a claim that conflicts with one it granted (grants.ts), so two conflicting
// networks can never both be created, not even on two sides of a partition; then its record is
// flooded like the config. `rm` writes a tombstone, refused while containers are attached.
// Endpoints are this node's own, carried in its record (state.ts): they leave every view with
// the node's liveness.
import { randomBytes } from 'node:crypto';
import { buildNetwork, SpecError, type CreateRequest, type Network } from '../network/spec';
import { attachedError, attachedName, type Endpoint, type EndpointId, type NetworkCatalog } from '../network/store';
import type { MeshNode } from './node';

/** How long a call waits for the first sync with a peer (as the pod network's calls do). */
const READY_MS = 10_000;
/** A network given no subnet or VNI picks free ones: a race lost on those is retried this often. */
const AUTO_RETRIES = 5;

const sameId = (a: EndpointId, b: EndpointId): boolean => a.network === b.network && a.containerId === b.containerId && a.ifName === b.ifName;

export class MeshNetworks implements NetworkCatalog {
  /** joinWaitMs: how long a claim waits for a joiner's connections to a quorum (tests: 0). */
  constructor(readonly node: MeshNode, private readonly joinWaitMs = READY_MS) {}

  private get self(): string { return this.node.state.self; }

  async list(): Promise<{ networks: Network[] }> {
    await this.node.ready(READY_MS);
    return { networks: this.node.state.networks() };
  }

  async get(name: string): Promise<Network | null> {
    await this.node.ready(READY_MS);
    return this.node.state.nets.get(name)?.net ?? null;
  }

  /** Validates (spec.ts, the same messages as on etcd), wins the claim's votes, then stores. */
  async create(req: CreateRequest, now = new Date()): Promise<Network> {
    await this.node.ready(READY_MS);
    const auto = !(req.subnets ?? []).length || (req.driver === 'overlay' && !(req.opts ?? []).some((o) => /^(vni|com\.docker\.network\.driver\.overlay\.vxlanid_list)=/.test(o)));
    for (let attempt = 1; ; attempt++) {
      const net = buildNetwork(req, this.node.state.networks(), now, randomBytes(32).toString('hex'));
      const claim = { kind: 'net' as const, net: { id: net.id, name: net.name, subnets: net.subnets.map((s) => s.subnet), ...(net.options.vni !== undefined ? { vni: net.options.vni } : {}) } };
      const r = await this.node.vote(claim, this.node.version(), this.joinWaitMs);
      if (r.ok) {
        this.node.putNetworkRecord({ k: 'net', name: net.name, id: net.id, v: this.node.version(), by: this.self, net });
        return net;
      }
      // A free subnet or VNI picked here was taken elsewhere meanwhile: its record is on its way.
      if (auto && attempt < AUTO_RETRIES && !/same name/.test(r.conflict ?? '')) { await new Promise((res) => setTimeout(res, 200 * attempt)); continue; }
      throw new SpecError(`network ${req.name} conflicts with ${r.conflict ?? `a claim held by ${r.holder}`} (refused by the mesh's majority: a network being created or created on another node); knitctl network ls, then pick another name, --subnet or -o vni`);
    }
  }

  /** Tombstone; refused while an endpoint or an address on a live node belongs to the network (as etcd's NetworkStore.remove). */
  async remove(name: string): Promise<void> {
    await this.node.ready(READY_MS);
    const rec = this.node.state.nets.get(name);
    if (!rec?.net) throw new SpecError(`no network named ${name} (knitctl network ls lists them)`);
    const svcs = this.node.state.services().filter((s) => s.network === name).map((s) => s.name);
    if (svcs.length) throw new SpecError(`network ${name} has service${svcs.length === 1 ? '' : 's'} ${svcs.join(', ')}: remove ${svcs.length === 1 ? 'it' : 'them'} first (knitctl service rm)`);
    const who = new Map<string, string>();
    const now = Date.now();
    for (const e of this.node.state.endpoints(now)) if (e.network === name) who.set(`${e.node}/${e.containerId}`, attachedName(e));
    // Every driver: an address a container holds (bridge and macvlan networks record no endpoint).
    for (const n of this.node.state.nodes.values()) {
      if (!this.node.state.live(n.name, now)) continue;
      for (const o of n.held?.[name] ?? []) {
        const cid = o.slice(0, o.lastIndexOf(':'));
        if (!who.has(`${n.name}/${cid}`)) who.set(`${n.name}/${cid}`, `${cid.slice(0, 12)} on ${n.name}`);
      }
    }
    if (who.size) throw attachedError(name, [...who.values()]);
    this.node.putNetworkRecord({ k: 'net', name, id: rec.id, v: Math.max(this.node.version(), rec.v + 1), by: this.self, net: null });
  }

  async endpoints(network?: string): Promise<{ endpoints: Endpoint[] }> {
    await this.node.ready(READY_MS);
    return { endpoints: this.node.state.endpoints(Date.now()).filter((e) => !network || e.network === network) };
  }

  /** Records (or replaces) an endpoint of this node; published at once. */
  putEndpoint(e: Endpoint): void {
    if (e.node !== this.self) throw new Error(`endpoint of node ${e.node}: this knitd is node ${this.self} (an endpoint is written by its own node)`);
    if (!this.node.state.nets.get(e.network)?.net) throw new SpecError(`no network named ${e.network} on the mesh (removed meanwhile?)`);
    this.node.setEndpoints([...this.node.ownEndpoints.filter((x) => !sameId(x, e)), e]);
  }

  /** Removes an endpoint of this node; nothing to remove is success (DEL is idempotent). */
  deleteEndpoint(id: EndpointId): void {
    const left = this.node.ownEndpoints.filter((x) => !sameId(x, id));
    if (left.length !== this.node.ownEndpoints.length) this.node.setEndpoints(left);
  }
}
